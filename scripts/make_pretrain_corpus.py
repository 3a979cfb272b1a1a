"""Generate ``workbench/data/pretrain_corpus.txt``, the text the local ``tiny-chat`` model is pretrained on.

The corpus is written by this script (nothing is downloaded) and is deterministic. It holds
two kinds of documents, separated by blank lines:

* short everyday-English paragraphs, so the model learns common words and sentence shape;
* generic ChatML dialogues (small talk, definitions, arithmetic, how-to answers), so it
  learns the ``<|im_start|>role ... <|im_end|>`` turn format used by the chat template.

It deliberately contains no customer-support conversations: those are what users fine-tune on,
and the fine-tuning demo should show the model learning them.

Run: ``python scripts/make_pretrain_corpus.py [--out PATH] [--seed N]``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "workbench" / "data" / "pretrain_corpus.txt"

TOPICS: dict[str, list[str]] = {
    "weather": [
        "The morning was cold and grey, and a light rain fell on the roofs.",
        "By noon the clouds had gone and the sun was warm on the street.",
        "In the spring the days grow longer and the air smells of fresh grass.",
        "A strong wind blew from the sea and shook the old trees by the road.",
        "Snow covered the hills, and the children made a small snowman in the garden.",
        "It is a good idea to carry an umbrella when the sky looks dark.",
        "Summer evenings are long, and many people sit outside until late.",
        "The weather report said it would be dry and sunny for the rest of the week.",
        "After the storm the river was high and the paths were full of water.",
        "Autumn leaves turn red and yellow before they fall to the ground.",
    ],
    "cooking": [
        "To make a simple soup, cook onions and carrots in a little oil, then add water and salt.",
        "Fresh bread tastes best when it is still warm from the oven.",
        "She cut the vegetables into small pieces and put them in a large pan.",
        "A good breakfast can be as simple as eggs, toast and a cup of tea.",
        "Rice needs about twice as much water as rice, and it cooks in about fifteen minutes.",
        "He tasted the sauce, added a pinch of pepper, and let it cook a little longer.",
        "Wash your hands before you start to cook and after you touch raw meat.",
        "Apples, bananas and oranges are easy to carry and make a healthy snack.",
        "The cake was ready when a knife came out of the middle clean.",
        "Many people like to cook a big meal on Sunday and share it with their family.",
    ],
    "travel": [
        "The train left the station at eight and arrived in the city two hours later.",
        "Before a long trip, it helps to make a list of everything you need to pack.",
        "We walked through the old town and stopped at a small cafe for lunch.",
        "The bus was late, so they waited at the stop and talked about their plans.",
        "From the top of the hill you can see the whole valley and the lake below.",
        "She kept her ticket and her passport in the front pocket of her bag.",
        "The hotel was quiet and clean, and the staff were friendly and helpful.",
        "Travelling by bike is slow, but you see much more of the country.",
        "The flight was smooth, and most of the passengers slept until we landed.",
        "A good map and comfortable shoes are the best friends of any traveller.",
    ],
    "garden": [
        "Tomatoes need a lot of sun and regular water to grow well.",
        "In the autumn he planted bulbs that would flower the next spring.",
        "The roses by the gate were red, pink and white.",
        "Weeds grow quickly, so it is easier to pull them out when they are small.",
        "Birds came to the garden every morning to look for seeds and worms.",
        "She watered the plants in the evening, when the ground was cool.",
        "A small garden can still grow herbs such as mint, basil and parsley.",
        "The apple tree was old, but every year it gave a basket of sweet fruit.",
        "Good soil is dark and soft and full of life.",
        "Bees move from flower to flower and help the plants make fruit.",
    ],
    "reading": [
        "He liked to read a few pages of a book every night before he went to sleep.",
        "The library had thousands of books, and borrowing them was free.",
        "A good story has interesting people, a clear problem and a surprising end.",
        "She wrote notes in the margin so she could remember the important ideas.",
        "Reading every day helps you learn new words and think more clearly.",
        "The old book had a brown cover and yellow pages that smelled of dust.",
        "Children often ask to hear the same story again and again.",
        "The newspaper had an article about the new park in the centre of town.",
        "Some people prefer paper books, and others like to read on a screen.",
        "At the end of the chapter, the writer left a question that made us want to read on.",
    ],
    "work": [
        "The meeting started at nine and everyone shared what they had done the day before.",
        "She answered her emails first and then worked on the report until lunch.",
        "A short walk during the day can help you focus when you come back to your desk.",
        "The team finished the project on time because they planned each step carefully.",
        "He wrote a clear list of tasks and checked them off one by one.",
        "Good work often comes from asking simple questions and listening to the answers.",
        "The office was busy, and the phone rang many times in the afternoon.",
        "When a problem is large, it helps to break it into smaller parts.",
        "They took a break for coffee and talked about their weekend.",
        "At the end of the week she looked back at what went well and what could be better.",
    ],
    "music": [
        "He played the piano every evening, and the music filled the whole house.",
        "The band played old songs and new ones, and the crowd sang along.",
        "Learning an instrument takes time, patience and a little practice every day.",
        "She listened to quiet music while she worked, because it helped her think.",
        "The concert was in the park, and people brought blankets to sit on the grass.",
        "A song can bring back memories of a place or a person.",
        "The guitar was old, but it still had a warm and gentle sound.",
        "The choir met every Thursday to practise for the winter concert.",
    ],
    "animals": [
        "The dog ran across the field and came back with a stick in its mouth.",
        "Cats sleep for many hours during the day and are active at night.",
        "A family of ducks swam slowly across the pond.",
        "Horses need space to run, fresh water and good food.",
        "The little bird built its nest in the tree outside the kitchen window.",
        "Elephants live in groups and remember places where they can find water.",
        "The farmer fed the chickens early in the morning.",
        "Fish swim together in large groups to stay safe.",
        "Our neighbour has a friendly old dog that waits by the gate every afternoon.",
    ],
    "city": [
        "The city was busy in the morning, with cars, buses and people everywhere.",
        "There is a market in the square every Saturday, where farmers sell fruit and cheese.",
        "The new library is next to the park, across the road from the school.",
        "At night the streets were quiet and the lights of the bridge shone on the river.",
        "Many people ride bikes to work because it is faster than driving.",
        "The museum is open every day except Monday, and entry is free on Sundays.",
        "A small shop on the corner sells newspapers, sweets and cold drinks.",
        "The old station was turned into a cafe and a place for art shows.",
    ],
    "health": [
        "Drinking enough water during the day is good for your body and your mind.",
        "Regular sleep helps you feel rested and think clearly.",
        "A walk of thirty minutes a day is an easy way to stay active.",
        "Fresh fruit and vegetables are an important part of a healthy diet.",
        "When you feel tired, a short rest can make a big difference.",
        "Stretching in the morning can help your back and shoulders feel better.",
        "It is important to see a doctor if a pain does not go away.",
        "Spending time with friends can make people feel happier and less stressed.",
    ],
    "learning": [
        "The teacher explained the lesson slowly and answered every question.",
        "Practice is the best way to get better at anything, from sports to maths.",
        "Students worked in small groups and then shared their answers with the class.",
        "Making mistakes is a normal part of learning something new.",
        "She learned a few new words in Spanish every day on her way to work.",
        "A clear example often explains an idea better than a long definition.",
        "The school garden helped the children learn how plants grow.",
        "He reviewed his notes the night before the test and slept well.",
    ],
    "technology": [
        "A computer follows instructions written by people, one step at a time.",
        "Always save your work often so you do not lose it if something goes wrong.",
        "A strong password is long and hard to guess.",
        "The phone battery lasted all day, even with heavy use.",
        "She backed up her photos so she would not lose them.",
        "The printer needed new paper before it could finish the job.",
        "Restarting a device can fix many small problems.",
        "The new app helped him plan his week and remember important dates.",
    ],
}

# --------------------------------------------------------------------------- a small grammar
# Sentences are put together from parts, so the model sees the same words in many
# combinations and learns how English is built instead of memorising a few sentences.

WOMEN = ["Anna", "Clara", "Emma", "Grace", "Iris", "Kate", "Maya", "Olivia", "Rosa", "Vera", "Lucy", "Nina",
         "Sara", "Mia", "Eva"]
MEN = ["Ben", "David", "Frank", "Henry", "Jack", "Leo", "Noah", "Paul", "Sam", "Tom", "Omar", "Peter", "Ali",
       "Jonas", "Hugo"]
NAMES = WOMEN + MEN
PEOPLE = ["my mother", "my father", "her brother", "his sister", "our neighbour", "the old farmer",
          "a young teacher", "the baker", "my best friend", "their grandmother", "the new doctor",
          "a tall man", "a little girl", "the driver", "my cousin", "the shop owner", "a student",
          "the children", "my friends", "the whole family", "our team", "the visitors"]
PRONOUN = {"he": "He", "she": "She", "they": "They", "we": "We", "I": "I"}
PLACES = ["the park", "the library", "the market", "the station", "the beach", "the old town", "the museum",
          "the garden", "the river", "a small cafe", "the school", "the hill", "the post office", "the bakery",
          "the city centre", "the lake", "the hospital", "the cinema", "the airport", "the village",
          "the supermarket", "the bookshop", "the harbour", "the forest", "the office", "the gym"]
CITIES = ["London", "Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Dublin", "Vienna", "Oslo", "Prague",
          "Amsterdam", "Athens", "Tokyo", "Cairo", "Toronto", "Sydney"]
TIMES = ["in the morning", "after lunch", "in the afternoon", "in the evening", "on Saturday", "on Monday",
         "last week", "every Sunday", "yesterday", "at the weekend", "before dinner", "early today",
         "last summer", "one cold winter night", "after work", "on a rainy day", "at noon", "last year",
         "two days ago", "on Friday night", "in the spring", "after breakfast"]
THINGS = ["book", "lamp", "chair", "bicycle", "coat", "phone", "watch", "camera", "bag", "umbrella",
          "table", "pair of shoes", "kettle", "map", "guitar", "laptop", "jacket", "plant", "clock",
          "radio", "basket", "blanket", "mirror", "desk", "scarf"]
ADJ = ["old", "new", "small", "large", "red", "blue", "green", "heavy", "light", "beautiful", "simple",
       "cheap", "expensive", "strange", "useful", "broken", "quiet", "bright", "warm", "wooden"]
FOODS = ["vegetable soup", "a chicken salad", "pasta with tomato sauce", "fresh bread", "rice and beans",
         "an apple pie", "fish and potatoes", "a cheese sandwich", "pancakes", "a hot curry",
         "a bowl of porridge", "roast vegetables", "lemon cake", "mushroom risotto"]
SUBJECTS = ["history", "the sea", "birds", "old trains", "the stars", "cooking", "music", "gardens",
            "mountains", "the human body", "computers", "art", "football", "ancient Rome", "the weather"]
FEELINGS = ["happy", "tired but happy", "calm", "glad", "relaxed", "pleased", "excited", "proud",
            "a little nervous", "surprised", "hungry", "sleepy", "grateful", "worried"]
DAY_ADJ = ["long", "busy", "quiet", "wonderful", "strange", "cold", "sunny", "lovely", "difficult", "short"]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def thing(rng: random.Random) -> str:
    return _a(f"{rng.choice(ADJ)} {rng.choice(THINGS)}") if rng.random() < 0.6 else _a(rng.choice(THINGS))


def person(rng: random.Random) -> str:
    return rng.choice(NAMES) if rng.random() < 0.5 else rng.choice(PEOPLE)


def verb_phrase(rng: random.Random) -> str:
    """A past-tense predicate (past tense needs no agreement with the subject)."""
    options = [
        lambda: f"bought {thing(rng)} at {rng.choice(PLACES)}",
        lambda: f"walked to {rng.choice(PLACES)}",
        lambda: f"cooked {rng.choice(FOODS)} for {person(rng)}",
        lambda: f"wrote a long letter to {person(rng)}",
        lambda: f"read a book about {rng.choice(SUBJECTS)}",
        lambda: f"visited {person(rng)} in {rng.choice(CITIES)}",
        lambda: f"found {thing(rng)} under the {rng.choice(THINGS)}",
        lambda: f"lost {thing(rng)} near {rng.choice(PLACES)}",
        lambda: f"fixed the {rng.choice(ADJ)} {rng.choice(THINGS)}",
        lambda: f"called {person(rng)} to talk about {rng.choice(SUBJECTS)}",
        lambda: f"ordered {thing(rng)} online, and it arrived "
                f"{rng.choice(['the next day', 'a week later', 'on time', 'two days late'])}",
        lambda: f"sent an email to {person(rng)}",
        lambda: f"waited for the bus outside {rng.choice(PLACES)}",
        lambda: f"watched a film about {rng.choice(SUBJECTS)}",
        lambda: f"took the train to {rng.choice(CITIES)}",
        lambda: f"made {rng.choice(FOODS)} and shared it with {person(rng)}",
        lambda: f"met {person(rng)} at {rng.choice(PLACES)}",
        lambda: f"gave {person(rng)} {thing(rng)} as a present",
        lambda: f"learned a lot about {rng.choice(SUBJECTS)}",
        lambda: "cleaned the kitchen and opened all the windows",
        lambda: f"carried {thing(rng)} all the way home",
        lambda: f"painted a picture of {rng.choice(PLACES)}",
        lambda: f"asked {person(rng)} for help with {thing(rng)}",
        lambda: f"returned {thing(rng)} to {rng.choice(PLACES)}",
        lambda: f"spent the whole day at {rng.choice(PLACES)}",
    ]
    return rng.choice(options)()


def reason(rng: random.Random) -> str:
    return rng.choice([
        f"because the weather was {rng.choice(['warm', 'cold', 'nice', 'terrible', 'perfect'])}",
        "because " + rng.choice(["it was a holiday", "the shops were closed", "there was no time", "it was late",
                                 "everyone was busy"]),
        f"before {rng.choice(['the sun went down', 'the shop closed', 'the guests arrived', 'the rain started'])}",
        f"after {rng.choice(['a long day', 'the meeting', 'school', 'the storm', 'a short rest'])}",
        f"with {person(rng)}",
        "",
    ])


def sentence(rng: random.Random, subject: str, when: bool = True) -> str:
    parts = [subject, verb_phrase(rng)]
    why = reason(rng) if rng.random() < 0.5 else ""
    if why and not (why.startswith("with") and " with " in parts[1]):
        parts.append(why)
    text = " ".join(parts)
    if when and rng.random() < 0.3:
        text = f"{rng.choice(TIMES)}, {text}"
    return text[0].upper() + text[1:] + "."


def story(rng: random.Random) -> str:
    """A short past-tense story about one character, with pronouns after the first mention."""
    pron = rng.choice(["he", "she"])
    name = rng.choice(WOMEN if pron == "she" else MEN)
    lines = [sentence(rng, f"{rng.choice(TIMES)}, {name}", when=False)]
    for _ in range(rng.randint(2, 5)):
        r = rng.random()
        if r < 0.45:
            lines.append(sentence(rng, pron))
        elif r < 0.6:
            lines.append(f"{PRONOUN[pron]} felt {rng.choice(FEELINGS)}.")
        elif r < 0.75:
            lines.append(f"It was a {rng.choice(DAY_ADJ)} day.")
        elif r < 0.9:
            lines.append(sentence(rng, person(rng)))
        else:
            lines.append(f"Later, {pron} {verb_phrase(rng)}.")
    return " ".join(lines)


def paragraph(rng: random.Random) -> str:
    """Hand-written sentences on one topic, mixed with a generated story."""
    if rng.random() < 0.5:
        return story(rng)
    topic = rng.choice(sorted(TOPICS))
    sentences = rng.sample(TOPICS[topic], k=rng.randint(2, 3))
    sentences.insert(rng.randint(0, len(sentences)), story(rng))
    return " ".join(sentences)


# --------------------------------------------------------------------------- dialogues

NUM_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
             "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
             "eighteen", "nineteen", "twenty"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CAPITALS = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin", "Japan": "Tokyo",
            "Egypt": "Cairo", "Canada": "Ottawa", "Portugal": "Lisbon", "Ireland": "Dublin", "Norway": "Oslo",
            "Greece": "Athens", "Austria": "Vienna"}
COLOURS = {"grass": "green", "the sky on a clear day": "blue", "snow": "white", "a ripe banana": "yellow",
           "a ripe tomato": "red", "coal": "black", "an orange": "orange"}

DEFINITIONS = {
    "a river": "A river is a large stream of fresh water that flows across the land to a lake or the sea.",
    "a library": "A library is a place where people can read and borrow books, often for free.",
    "a planet": "A planet is a large round object that moves around a star, like the Earth moves around the Sun.",
    "a recipe": "A recipe is a list of ingredients and steps that tells you how to cook a dish.",
    "a map": "A map is a drawing of a place that shows where roads, towns and rivers are.",
    "a calendar": "A calendar shows the days, weeks and months of the year so you can plan ahead.",
    "a password": "A password is a secret word or phrase that you use to prove who you are on a computer.",
    "a habit": "A habit is something you do often, almost without thinking, like brushing your teeth.",
    "a forest": "A forest is a large area of land covered with trees and plants.",
    "an island": "An island is a piece of land with water all around it.",
    "a vegetable": "A vegetable is a plant or part of a plant that people eat, such as a carrot or a potato.",
    "a museum": "A museum is a building where people can see art, history or science on display.",
    "the weather": "The weather is what the air is like outside: warm or cold, wet or dry, windy or calm.",
    "a computer": "A computer is a machine that stores information and follows instructions very quickly.",
    "a friend": "A friend is someone you know well, like and trust.",
    "an email": "An email is a message that you write on a computer or phone and send over the internet.",
    "a budget": "A budget is a plan for how much money you will spend and save.",
    "a receipt": "A receipt is a piece of paper or an email that shows what you paid for.",
    "a volcano": "A volcano is a mountain with an opening through which hot rock and gas can come out.",
    "a verb": "A verb is a word that describes an action or a state, like run, think or be.",
}

HOWTO = {
    "make a cup of tea": ["Boil some fresh water.", "Put a tea bag in a cup.",
                          "Pour the hot water over it and wait three minutes.",
                          "Take out the tea bag and add milk or sugar if you like."],
    "plant a seed": ["Fill a small pot with soil.", "Push the seed gently into the soil.", "Water it a little.",
                     "Put the pot in a warm, bright place and keep the soil damp."],
    "write a short letter": ["Start with a greeting.", "Say why you are writing in one or two sentences.",
                             "Add any details.", "End with a kind closing and your name."],
    "sleep better": ["Go to bed at the same time every night.", "Keep your room dark and quiet.",
                     "Avoid screens for an hour before bed.", "Try not to drink coffee late in the day."],
    "learn new words": ["Read a little every day.", "Write new words in a notebook.",
                        "Use each new word in a sentence.", "Review your list at the end of the week."],
    "boil an egg": ["Put the egg in a small pan of cold water.", "Bring the water to the boil.",
                    "Cook for seven minutes for a firm egg.", "Cool it in cold water before you peel it."],
    "plan a trip": ["Choose where you want to go and for how long.", "Check the weather and the travel times.",
                    "Book a place to stay.", "Make a list of what to pack."],
    "stay focused": ["Choose one task to work on.", "Put your phone away.", "Work for twenty five minutes.",
                     "Take a short break, then start again."],
    "save money": ["Write down what you spend each week.", "Decide on a simple budget.",
                   "Cook at home more often.", "Put a little money aside every month."],
    "keep a plant healthy": ["Give it enough light.", "Water it when the soil feels dry.",
                             "Do not let it stand in water.", "Remove dead leaves."],
    "clean a window": ["Mix warm water with a little soap.", "Wipe the glass with a soft cloth.",
                       "Dry it with a clean towel.", "Work from the top down so drops do not spoil clean parts."],
    "start running": ["Buy comfortable shoes.", "Start with short runs of ten minutes.",
                      "Walk when you need to.", "Add a few minutes each week."],
}

SYSTEMS = ["You are a helpful assistant.", "You are a friendly and polite assistant.",
           "You are a helpful assistant. Answer clearly and briefly.",
           "You are a kind assistant who gives short, useful answers."]
GREETINGS = [("Hello!", "Hello! How can I help you today?"), ("Hi there.", "Hi! What can I do for you?"),
             ("Good morning.", "Good morning! How can I help you?"),
             ("Hey, are you there?", "Yes, I am here. How can I help?"),
             ("Good evening.", "Good evening! What would you like to talk about?"),
             ("Hi, can I ask you something?", "Of course! Go ahead and ask.")]
THANKS = [("Thank you!", "You are welcome! Is there anything else I can help with?"),
          ("Thanks, that helps.", "I am glad it helps. Have a nice day!"),
          ("Great, thanks a lot.", "You are very welcome. Let me know if you need anything else."),
          ("That is all, thank you.", "Happy to help. Have a great day!"),
          ("Perfect, thank you so much.", "You are welcome. Take care!"),
          ("Bye!", "Goodbye! Have a lovely day.")]
BAD_FEELINGS = {"tired": "A short rest, a glass of water and some fresh air can help a lot.",
                "stressed": "Try to take a few slow, deep breaths and make a short list of what to do first.",
                "bored": "Maybe you could go for a walk, read a few pages of a book or call a friend.",
                "sad": "It can help to talk to someone you trust, or to do something small that you enjoy.",
                "worried about a test": "Make a simple plan, review a little each day and get a good night's sleep.",
                "lonely": "Calling a friend or joining a local club can be a good way to meet people."}
GOOD_NEWS = ["I passed my driving test", "I finished my first painting", "I got a new job",
             "my sister had a baby", "I ran five kilometres today", "I planted my first tomatoes"]
OPENERS = ["Sure!", "Of course.", "Happy to help.", "Certainly."]


def turn(role: str, content: str) -> str:
    return f"<|im_start|>{role}\n{content}<|im_end|>"


def arithmetic(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 12), rng.randint(0, 12)
    op = rng.choice(["plus", "minus", "times"])
    if op == "minus":
        a, b = max(a, b), min(a, b)
    result = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    return f"What is {a} {op} {b}?", f"{a} {op} {b} is {result}."


def exchange(rng: random.Random) -> list[tuple[str, str]]:
    """One or two user/assistant pairs on a generic subject."""
    kind = rng.randrange(13)
    if kind == 0:
        word, meaning = rng.choice(sorted(DEFINITIONS.items()))
        q = rng.choice([f"What is {word}?", f"Can you tell me what {word} is?", f"Please explain {word}."])
        return [(q, meaning)]
    if kind == 1:
        task, steps = rng.choice(sorted(HOWTO.items()))
        q = rng.choice([f"How do I {task}?", f"Can you help me {task}?", f"What is the best way to {task}?"])
        body = " ".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        return [(q, f"{rng.choice(OPENERS)} Here is a simple way to {task}: {body}")]
    if kind == 2:
        return [arithmetic(rng)]
    if kind == 3:
        n = rng.randint(0, 20)
        return [(f"How do you write {n} in words?", f"{n} is written as {NUM_WORDS[n]}.")]
    if kind == 4:
        country, city = rng.choice(sorted(CAPITALS.items()))
        return [(f"What is the capital of {country}?", f"The capital of {country} is {city}.")]
    if kind == 5:
        i = rng.randrange(7)
        return [(f"What day comes after {DAYS[i]}?", f"{DAYS[(i + 1) % 7]} comes after {DAYS[i]}.")]
    if kind == 6:
        item, colour = rng.choice(sorted(COLOURS.items()))
        return [(f"What colour is {item}?", f"{item[0].upper() + item[1:]} is {colour}.")]
    if kind == 7:
        feeling, advice = rng.choice(sorted(BAD_FEELINGS.items()))
        return [(f"I feel {feeling} today.", f"I am sorry to hear that. {advice}")]
    if kind == 8:
        news = rng.choice(GOOD_NEWS)
        return [(f"Guess what, {news}!", rng.choice(["That is great news! Congratulations!",
                                                       "Well done! You must be very proud.",
                                                       "How wonderful! Thank you for telling me."]))]
    if kind == 9:
        text = story(rng)
        first = text.split(". ")[0].rstrip(".") + "."
        return [(f"Can you give me the first sentence of this story? {text}", f"{rng.choice(OPENERS)} {first}")]
    if kind == 10:
        who = person(rng)
        return [(f"Can you write one sentence about {who}?", f"{rng.choice(OPENERS)} {sentence(rng, who)}")]
    if kind == 11:
        food = rng.choice(FOODS)
        return [(rng.choice(["What should I cook tonight?", "Any idea for dinner?", "What can I make for lunch?"]),
                 f"How about {food}? It is {rng.choice(['simple', 'quick', 'cheap', 'healthy'])} to make "
                 "and most people like it."),
                ("That sounds good.", "Enjoy your meal!")] if rng.random() < 0.4 else [
                (rng.choice(["What should I cook tonight?", "Any idea for dinner?"]),
                 f"How about {food}? It is easy to make.")]
    topic = rng.choice(sorted(TOPICS))
    return [(f"Tell me something about {topic}.", " ".join(rng.sample(TOPICS[topic], k=2)))]


def dialogue(rng: random.Random) -> str:
    """A ChatML conversation: optional system turn and greeting, 1-3 exchanges, optional thanks."""
    turns: list[str] = []
    if rng.random() < 0.4:
        turns.append(turn("system", rng.choice(SYSTEMS)))
    pairs: list[tuple[str, str]] = []
    if rng.random() < 0.3:
        pairs.append(rng.choice(GREETINGS))
    for _ in range(rng.choice([1, 1, 2, 3])):
        pairs += exchange(rng)
    if rng.random() < 0.3:
        pairs.append(rng.choice(THANKS))
    for user, bot in pairs:
        turns += [turn("user", user), turn("assistant", bot)]
    return "\n".join(turns)


def make_corpus(seed: int = 1234, n_paragraphs: int = 700, n_dialogues: int = 360) -> str:
    rng = random.Random(seed)
    docs = [paragraph(rng) for _ in range(n_paragraphs)] + [dialogue(rng) for _ in range(n_dialogues)]
    rng.shuffle(docs)
    return "\n\n".join(docs) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    text = make_corpus(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {len(text.splitlines())} lines, {len(text.encode()) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
