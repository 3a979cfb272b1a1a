"""Search over one knowledge base: vector, keyword, graph, and the hybrid that fuses them.

* ``vector`` — the chunk layer's HNSW index (cosine similarity of the query's embedding);
* ``keyword`` — the full-text index (TF-IDF over the query's words);
* ``graph`` — the entities the query names (its n-grams matched against the stored entity
  keys), the chunks that mention them (rarer entities count more), one hop further through the
  entities those chunks share, and graphiti's facts when an LLM built them;
* ``hybrid`` — weighted reciprocal rank fusion (RRF, k = 5) of the vector (1.0), keyword (0.5)
  and graph (0.1) lists, then an expansion: the chunks that share rare entities with the top two
  hits join at weight 0.1, which is how a second passage of a multi-hop question is found; a
  chunk whose section title is a name the query spells out gains a first place's worth (1.0).

The weights were tuned on the even-numbered questions of ``bench/data/retrieval`` only;
``bench/retrieval.py`` prints the odd (held-out) half apart. Vector search carries most of the
weight because it scores each chunk by its best sentence too (see ``chunking.sentences``).

``relevanceScore`` is each method's own score scaled to [0, 1]: cosine similarity for
``vector``, the score over the best one for ``keyword`` and ``graph``, the fused score over the
highest a chunk could get for ``hybrid``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any, Literal

from .chunking import HEADING_SEPARATOR
from .entities import extract, key_of, query_keys
from .store import WORD, GraphStore, Hit, keyword_query

Method = Literal["hybrid", "vector", "keyword", "graph"]
METHODS = ("hybrid", "vector", "keyword", "graph")
RRF_K = 5  # small: the top ranks decide; with 60, chunks that mention everything win by being everywhere
CANDIDATES = 20
EXPAND_FROM = 2
EXPAND_WEIGHT = 0.1
# weights of the fused lists (vector 1), tuned on the even-numbered questions of bench/data/retrieval
KEYWORD_WEIGHT = 0.5
GRAPH_WEIGHT = 0.1
TITLE_WEIGHT = 1.0  # see titled()
EXCERPT_CHARS = 300
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def rrf(lists: list[tuple[list[Hit], float]]) -> list[tuple[Hit, float]]:
    """Reciprocal rank fusion: each list adds ``weight / (k + rank)`` to its chunks."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for hits, weight in lists:
        for rank, h in enumerate(hits, 1):
            scores[h.chunk_id] = scores.get(h.chunk_id, 0.0) + weight / (RRF_K + rank)
            first.setdefault(h.chunk_id, h)
    return sorted(((first[c], s) for c, s in scores.items()), key=lambda p: -p[1])


def named_entities(query: str) -> set[str]:
    """The multi-part names the query spells out (``GPT-4.1 Mini``, ``Claude 3 Opus``) as entity keys."""
    return {k for k, _ in extract(query) if "-" in k}


def titled(fused: list[tuple[Hit, float]], named: set[str]) -> list[tuple[Hit, float]]:
    """A chunk whose own section is titled by a name the query spells out gains what first place in a
    list gives (field boosting on the title): the sentence vectors of ``GPT-5 Mini`` and ``GPT-4.1 Mini``
    are near neighbours, their names are not."""
    if not named:
        return fused
    bonus = TITLE_WEIGHT / (RRF_K + 1)
    def names(h: Hit) -> bool:
        title = f"-{key_of(h.heading.split(HEADING_SEPARATOR)[-1])}-"
        return any(f"-{k}-" in title for k in named)

    out = [(h, s + bonus if names(h) else s) for h, s in fused]
    return sorted(out, key=lambda p: -p[1])


def entity_keys(store: GraphStore, query: str) -> list[str]:
    """The stored entities the query names; the most specific only: when it names a multi-word or
    versioned entity (``claude-3-opus``), the single words inside it (``claude``) do not count."""
    keys = query_keys(query)
    known = store.term_frequencies(keys)
    specific = [k for k in known if "-" in k]
    chosen = [k for k in specific if not any(k != o and k in o for o in specific)] if specific else list(known)
    return chosen


def bm25(query: str, hits: list[Hit], k1: float = 1.2, b: float = 0.75) -> list[Hit]:
    """Re-rank full-text candidates with BM25 (term frequency saturates, long chunks pay), the
    document frequencies taken over the candidates: the index's own TF-IDF lets one chunk that
    repeats a word many times outrank the one that answers."""
    terms = [t for t in (keyword_query(query) or "").split("|") if t]
    if not hits or not terms:
        return hits
    docs = [[w.lower() for w in WORD.findall(h.text)] for h in hits]
    avg = sum(len(d) for d in docs) / len(docs) or 1.0
    n = len(docs)
    df = {t: sum(1 for d in docs if t in d) for t in terms}
    for h, d in zip(hits, docs, strict=True):
        score = 0.0
        for t in terms:
            tf = d.count(t)
            if tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avg))
        h.score = score
    return sorted(hits, key=lambda h: -h.score)


def keyword_hits(store: GraphStore, query: str, k: int, docs: list[str] | None) -> list[Hit]:
    return bm25(query, store.keyword_search(query, max(k, 50), docs))[:k]


def graph_hits(store: GraphStore, query: str, k: int, docs: list[str] | None) -> list[Hit]:
    """Chunks that mention the query's entities, then their one-hop neighbours (ranked after them)."""
    direct = store.term_search(entity_keys(store, query), k, docs)
    if not direct:
        return []
    seen = {h.chunk_id for h in direct}
    near = [h for h in store.neighbours([h.chunk_id for h in direct[:3]], k, docs)
            if h.chunk_id not in seen]
    if near:  # one hop away ranks after every direct mention: its score is scaled below theirs
        floor, top = min(h.score for h in direct), max(h.score for h in near) or 1.0
        for h in near:
            h.score = 0.9 * floor * h.score / top
    return (direct + near)[:k]


def run(store: GraphStore, embed: Callable[[str], list[float]], query: str, *, method: Method = "hybrid",
        limit: int = 5, document_ids: list[str] | None = None) -> tuple[list[tuple[Hit, float]], dict[str, Any]]:
    """Ranked ``(hit, relevance in [0, 1])`` pairs and timings for one query."""
    t0 = time.perf_counter()
    docs = document_ids or None
    timings: dict[str, float] = {}
    n = max(limit, CANDIDATES)

    def timed(name: str, fn: Callable[[], list[Hit]]) -> list[Hit]:
        t = time.perf_counter()
        out = fn()
        timings[name] = round((time.perf_counter() - t) * 1000, 2)
        return out

    if method == "vector":
        hits = timed("vector", lambda: store.vector_search(embed(query), limit, docs))
        ranked = [(h, max(0.0, min(1.0, h.score))) for h in hits]
    elif method in ("keyword", "graph"):
        fn = (lambda: keyword_hits(store, query, limit, docs)) if method == "keyword" else (
            lambda: graph_hits(store, query, limit, docs))
        hits = timed(method, fn)
        top = max((h.score for h in hits), default=1.0) or 1.0
        ranked = [(h, round(h.score / top, 4)) for h in hits]
    else:
        vec = timed("vector", lambda: store.vector_search(embed(query), n, docs))
        kw = timed("keyword", lambda: keyword_hits(store, query, n, docs))
        gr = timed("graph", lambda: store.term_search(entity_keys(store, query), n, docs))
        named = named_entities(query)
        fused = titled(rrf([(vec, 1.0), (kw, KEYWORD_WEIGHT), (gr, GRAPH_WEIGHT)]), named)
        seeds = [h.chunk_id for h, _ in fused[:EXPAND_FROM]]
        near = timed("expand", lambda: store.neighbours(seeds, n, docs)) if seeds else []
        fused = titled(rrf([(vec, 1.0), (kw, KEYWORD_WEIGHT), (gr, GRAPH_WEIGHT), (near, EXPAND_WEIGHT)]), named)
        best = (1.0 + KEYWORD_WEIGHT + GRAPH_WEIGHT + EXPAND_WEIGHT + TITLE_WEIGHT) / (RRF_K + 1)  # first everywhere
        ranked = [(h, round(min(1.0, s / best), 4)) for h, s in fused[:limit]]
    timings["total"] = round((time.perf_counter() - t0) * 1000, 2)
    return ranked[:limit], {"timings_ms": timings}


def excerpt(text: str, query: str, width: int = EXCERPT_CHARS) -> str:
    """The sentences of ``text`` that share the most words with the query, up to ``width`` characters."""
    words = {w.lower() for w in WORD.findall(query) if len(w) > 2}
    body = text.split("\n", 1)[1] if "\n" in text else text  # past the heading line
    sentences = [s.strip() for s in _SENTENCE.split(body) if s.strip()]
    if not sentences:
        return text[:width]
    best = max(range(len(sentences)), key=lambda i: (len(words & {w.lower() for w in WORD.findall(sentences[i])}), -i))
    out = sentences[best]
    j = best + 1
    while j < len(sentences) and len(out) + len(sentences[j]) + 1 <= width:
        out += " " + sentences[j]
        j += 1
    return out if len(out) <= width else out[: width - 1].rstrip() + "…"


def context(sources: list[dict[str, Any]]) -> str:
    """Numbered passages with where they come from, then the list of sources: ready for a prompt."""
    if not sources:
        return ""
    blocks = [f"[{i}] {s['filename']}\n{s['text']}" for i, s in enumerate(sources, 1)]  # the text leads with its headings
    cited = "; ".join(f"[{i}] {s['filename']}" + (f" ({s['heading']})" if s["heading"] else "")
                      for i, s in enumerate(sources, 1))
    return "\n\n".join(blocks) + f"\n\nSources: {cited}"
