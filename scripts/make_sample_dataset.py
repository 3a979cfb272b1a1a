"""Generate ``workbench/data/sample_support_chats.jsonl``, the bundled sample dataset.

About 400 synthetic customer-support chats for the fictional shop Acme, written from
templates in this file (nothing is downloaded) and fully deterministic for a given seed.

Each intent (order status, refunds, shipping, passwords, billing, returns, account,
product questions) has several phrasings of the question but exactly one answer
template, filled with the same slots (order number, product, country …) that appear in
the question. That consistency is deliberate: a small model can learn the mapping, so a
fine-tune on this file shows a clear drop in loss. About a third of the chats have a
second user turn (a thank-you or a follow-up question).

Run: ``python scripts/make_sample_dataset.py [--out PATH] [--n 400] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "workbench" / "data" / "sample_support_chats.jsonl"
SYSTEM = "You are a helpful customer support assistant for Acme."

# product → (price, warranty in years, colours)
PRODUCTS: dict[str, tuple[str, int, str]] = {
    "Acme Rocket Skates": ("$129.00", 2, "red and black"),
    "Acme Anvil": ("$79.50", 10, "iron grey"),
    "Acme Jet Pack": ("$899.00", 1, "silver"),
    "Acme Giant Magnet": ("$45.00", 3, "red"),
    "Acme Spring Shoes": ("$59.99", 1, "blue, green and yellow"),
    "Acme Portable Hole": ("$19.99", 5, "black"),
    "Acme Bird Seed": ("$9.99", 0, "natural"),
    "Acme Tornado Kit": ("$249.00", 2, "white"),
    "Acme Super Glue": ("$6.49", 0, "clear"),
    "Acme Smart Kettle": ("$69.00", 2, "white, black and copper"),
    "Acme Trail Backpack": ("$99.00", 3, "green, navy and orange"),
    "Acme Wireless Earbuds": ("$129.99", 1, "black and white"),
    "Acme Desk Lamp": ("$39.00", 2, "black, white and brass"),
    "Acme Coffee Grinder": ("$54.00", 2, "steel"),
    "Acme Yoga Mat": ("$29.00", 1, "purple, teal and grey"),
}
COUNTRIES = ["Canada", "Mexico", "Germany", "France", "Spain", "Italy", "Japan", "Australia",
             "Brazil", "Ireland", "the Netherlands", "Sweden", "Norway", "New Zealand", "Portugal"]
NAMES = ["Alex", "Sam", "Maria", "John", "Priya", "Chen", "Fatima", "Lucas", "Emma", "Noah",
         "Olivia", "Ahmed", "Sofia", "Liam", "Yuki", "Grace", "Omar", "Hannah", "Diego", "Zoe"]
DOMAINS = ["example.com", "mail.com", "inbox.org", "post.net"]
GREETINGS = ["", "", "", "Hi! ", "Hello! ", "Hi there. ", "Good morning! "]


@dataclass(frozen=True)
class Intent:
    name: str
    questions: list[str]
    answer: str


INTENTS: list[Intent] = [
    Intent("order_status", [
        "Where is my order {order}?",
        "Can you tell me the status of order {order}?",
        "My order {order} hasn't arrived yet. Where is it?",
        "Has order {order} shipped yet?",
        "I'm {name}. What is happening with my order {order}?",
    ], "Thanks for reaching out! Order {order} has shipped and should arrive within 3 to 5 business days. "
       "You can follow it under Account > Orders > Track package."),
    Intent("refund", [
        "I want a refund for my {product}.",
        "How do I get my money back for the {product}?",
        "The {product} I bought doesn't work. Can I get a refund?",
        "Please refund the {product} from order {order}.",
    ], "I'm sorry the {product} didn't work out. Start a refund under Account > Orders > Request refund. "
       "Once we receive the item, the money goes back to your original payment method within 5 to 7 business days."),
    Intent("shipping", [
        "Do you ship to {country}?",
        "How long does shipping to {country} take?",
        "What does shipping to {country} cost?",
        "Can I order from {country}?",
    ], "Yes, we ship to {country}. Standard shipping takes 5 to 8 business days and is free on orders over $50. "
       "Express shipping takes 2 to 3 business days and costs $12.99."),
    Intent("password", [
        "I forgot the password for {email}.",
        "How do I reset my password? My email is {email}.",
        "I can't log in with {email}. The password doesn't work.",
        "Please help me reset the password for my account {email}.",
    ], "No problem! On the sign-in page, click \"Forgot password\" and enter {email}. "
       "We will send a reset link to {email} that is valid for 24 hours. If it doesn't arrive, check your spam folder."),
    Intent("double_charge", [
        "I was charged {amount} twice for order {order}.",
        "Why do I see two charges of {amount} for order {order}?",
        "My card was billed {amount} two times for order {order}.",
    ], "I'm sorry about that. The second charge of {amount} for order {order} is a pending authorisation, "
       "not a payment. It will disappear from your card within 3 business days."),
    Intent("invoice", [
        "Where can I download the invoice for order {order}?",
        "I need an invoice for order {order}.",
        "Can you send me a receipt for order {order}?",
    ], "You can download the invoice for order {order} under Account > Orders > Invoice. "
       "It is a PDF that includes your billing address and the VAT."),
    Intent("returns", [
        "How do I return the {product}?",
        "Can I send back the {product}?",
        "I'd like to return a {product} I bought {days} days ago.",
        "What is your return policy for the {product}?",
    ], "You can return the {product} within 30 days of delivery. Go to Account > Orders, choose \"Return item\" "
       "and print the free return label. Pack the {product} in its original box and drop it at any post office."),
    Intent("change_email", [
        "How do I change the email on my account to {email}?",
        "I want to use {email} as my new email address.",
        "Please update my account email to {email}.",
    ], "Go to Account > Settings > Email, enter {email} and click Save. "
       "We will send a confirmation link to {email}, and the change takes effect once you click it."),
    Intent("delete_account", [
        "Please delete my account.",
        "How can I close my Acme account?",
        "I'm {name} and I want to delete my account.",
    ], "I'm sorry to see you go. You can delete your account under Account > Settings > Privacy > Delete account. "
       "This permanently removes your order history and cannot be undone."),
    Intent("product_info", [
        "How much is the {product}?",
        "What colours does the {product} come in?",
        "Tell me about the {product}.",
        "Is the {product} in stock?",
    ], "The {product} costs {price} and comes in {colours}. It is in stock and ships within one business day."),
    Intent("warranty", [
        "Does the {product} come with a warranty?",
        "How long is the warranty on the {product}?",
        "My {product} broke. Is it still under warranty?",
    ], "{warranty_sentence} To make a claim, go to Account > Orders > Warranty claim and describe the problem."),
]
BY_NAME = {intent.name: intent for intent in INTENTS}

THANKS = (["Thanks, that helps!", "Great, thank you.", "Perfect, thanks!", "Thank you so much!"],
          "You're welcome! Is there anything else I can help you with today?")
# follow-up intents that make sense after a first one
FOLLOW_UPS: dict[str, list[str]] = {
    "order_status": ["invoice", "returns"],
    "refund": ["returns"],
    "returns": ["refund"],
    "double_charge": ["invoice"],
    "invoice": ["order_status"],
    "product_info": ["warranty", "shipping"],
    "warranty": ["returns"],
    "password": ["change_email"],
    "change_email": ["password"],
    "shipping": ["order_status"],
}


def make_slots(rng: random.Random) -> dict[str, str]:
    """One customer's facts; the same slots fill every turn of a chat so it stays coherent."""
    product = rng.choice(list(PRODUCTS))
    price, warranty, colours = PRODUCTS[product]
    name = rng.choice(NAMES)
    if warranty:
        years = f"{warranty}-year" if warranty > 1 else "1-year"
        warranty_sentence = f"Yes, the {product} comes with a {years} warranty from the date of delivery."
    else:
        warranty_sentence = f"The {product} has no warranty, but you can return it within 30 days."
    return {
        "order": f"A{rng.randint(10000, 99999)}",
        "product": product,
        "price": price,
        "colours": colours,
        "warranty_sentence": warranty_sentence,
        "country": rng.choice(COUNTRIES),
        "name": name,
        "email": f"{name.lower()}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}",
        "amount": f"${rng.randint(5, 400)}.{rng.randint(0, 99):02d}",
        "days": str(rng.randint(2, 25)),
    }


def turn(intent: Intent, slots: dict[str, str], rng: random.Random, greet: bool) -> list[dict[str, str]]:
    question = rng.choice(intent.questions).format(**slots)
    prefix = rng.choice(GREETINGS) if greet else ""
    return [{"role": "user", "content": prefix + question},
            {"role": "assistant", "content": intent.answer.format(**slots)}]


def make_chat(rng: random.Random) -> list[dict[str, str]]:
    intent = rng.choice(INTENTS)
    slots = make_slots(rng)
    messages = [{"role": "system", "content": SYSTEM}, *turn(intent, slots, rng, greet=True)]
    second = rng.random()
    if second < 0.15:
        messages += [{"role": "user", "content": rng.choice(THANKS[0])}, {"role": "assistant", "content": THANKS[1]}]
    elif second < 0.35 and intent.name in FOLLOW_UPS:
        follow = BY_NAME[rng.choice(FOLLOW_UPS[intent.name])]
        messages += turn(follow, slots, rng, greet=False)
    return messages


def generate(n: int = 400, seed: int = 7, make: Callable[[random.Random], list[dict[str, str]]] = make_chat) -> list[str]:
    """``n`` distinct chats as compact JSON lines (duplicates are redrawn)."""
    rng = random.Random(seed)
    lines: list[str] = []
    seen: set[str] = set()
    while len(lines) < n:
        line = json.dumps({"messages": make(rng)}, ensure_ascii=False, separators=(",", ":"))
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    lines = generate(args.n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} chats, {args.out.stat().st_size / 1024:.0f} KiB → {args.out}")


if __name__ == "__main__":
    main()
