"""Entities without an LLM: a documented, deterministic extractor that needs nothing but the text.

When no LLM is configured, graphiti's ``add_episode`` cannot run, so the knowledge graph's
entities come from here. What counts as an entity mention in a chunk:

* **identifiers** — tokens with a digit, a dot or an inner hyphen/underscore: ``GPT-4o``,
  ``llama-3.1-8b``, ``A100``, ``/api/graphrag/search``, ``v2``;
* **acronyms** — two or more capitals: ``API``, ``GPU``, ``SSE``, ``LoRA``;
* **names** — runs of capitalised words (``Fine-Tune Workbench``, ``Claude Sonnet``), not at the
  start of a sentence unless the run is longer than one word, minus stopwords;
* **code spans** — text between backticks.

Keys are lower-cased with separators unified (``GPT 4o`` and ``gpt-4o`` meet), so one entity
is one node however it is written. Spans are cut at 60 characters and 40 entities per chunk.
A query is matched against the stored keys by its 1–3-word n-grams, so a lower-case question
finds ``Claude Sonnet`` too.
"""

from __future__ import annotations

import re

from .store import STOPWORDS

MAX_PER_CHUNK = 40
MAX_CHARS = 60
_CODE = re.compile(r"`([^`\n]{2,60})`")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]*[A-Za-z0-9+]|[A-Za-z0-9]")
_SENTENCE_END = re.compile(r"[.!?:]\s*$")
_SEP = re.compile(r"[\s_\-./]+")
_VERSION = re.compile(r"\d+(\.\d+)*[a-z]?")
_COMMON = STOPWORDS | frozenset("""the this that these those each every some such when while if then here there
yes no note see use our your we you they it its new all any one two three first last best get set""".split())


def key_of(name: str) -> str:
    return _SEP.sub("-", name.strip().lower()).strip("-")


def _is_identifier(tok: str) -> bool:
    if not any(c.isalpha() for c in tok):  # 4.5, 20.00, 2025: numbers are facts, not entities
        return False
    return any(c.isdigit() for c in tok) and any(c.isalpha() for c in tok) or (
        len(tok) > 2 and any(c in tok for c in "._/") and tok[0].isalnum()) or (
        "-" in tok.strip("-") and any(c.isupper() for c in tok))


def _is_acronym(tok: str) -> bool:
    caps = sum(c.isupper() for c in tok)
    return caps >= 2 and tok[0].isupper() and len(tok) <= 12 and tok.isalnum()


def extract(text: str) -> list[tuple[str, str]]:
    """``(key, name)`` for each entity mentioned in ``text``, first mention first, no repeats."""
    found: dict[str, str] = {}

    def add(name: str) -> None:
        name = name.strip(" .,;:()[]{}\"'")[:MAX_CHARS]
        key = key_of(name)
        if len(key) > 1 and key not in _COMMON and key not in found and len(found) < MAX_PER_CHUNK:
            found[key] = name

    for m in _CODE.finditer(text):
        add(m.group(1))
    for line in text.splitlines():
        tokens = list(_TOKEN.finditer(line))
        run: list[str] = []
        run_starts_sentence = False
        for i, m in enumerate(tokens):
            tok = m.group(0)
            starts_sentence = i == 0 or bool(_SENTENCE_END.search(line[: m.start()]))
            if _is_identifier(tok) or _is_acronym(tok):
                add(tok)
            if run and line[tokens[i - 1].end():m.start()].strip():  # punctuation between: a name ends
                _flush(run, run_starts_sentence, add)
                run = []
            capital = tok[0].isupper() and tok.lower() not in _COMMON
            version = bool(run) and _VERSION.fullmatch(tok) is not None  # Claude 3 Opus, Claude Sonnet 4.5
            if capital or version:
                if not run:
                    run_starts_sentence = starts_sentence
                run.append(tok)
                continue
            _flush(run, run_starts_sentence, add)
            run = []
        _flush(run, run_starts_sentence, add)
    return list(found.items())


def _flush(run: list[str], starts_sentence: bool, add) -> None:  # noqa: ANN001
    while run and _VERSION.fullmatch(run[-1]) and len(run) == 1:
        run = run[:-1]
    if not run:
        return
    if len(run) > 1:
        add(" ".join(run))
    elif not starts_sentence and len(run[0]) > 2:
        add(run[0])


def query_keys(query: str) -> list[str]:
    """Candidate entity keys in a question: its entities, and every 1–3-word n-gram of its words."""
    keys = [k for k, _ in extract(query)]
    words = [w.lower() for w in _TOKEN.findall(query)]
    for n in (3, 2, 1):
        for i in range(len(words) - n + 1):
            gram = words[i:i + n]
            if n == 1 and (gram[0] in _COMMON or len(gram[0]) < 3):
                continue
            keys.append(key_of(" ".join(gram)))
    return list(dict.fromkeys(keys))
