"""Knowledge-base search latency over 10k generated chunks, and ingestion throughput, on the embedded FalkorDB.

Each chunk also gets five sentence vectors (the knowledge base's small vectors), so the graph
holds 60k vectors in two HNSW indexes. The chunks are generated text over a vocabulary of products, teams and regions (so the
full-text and entity indexes have real work), each with a random unit vector (the HNSW index
does the same work whatever the vectors mean). Queries are embedded by the real local model
(all-MiniLM-L6-v2), which is part of what a user waits for, so it is reported apart.

1. search latency per method (p50, p95 over ``--queries``), with and without the query embedding
   (goal: hybrid p95 ≤ 100 ms; Zep publishes 162 ms);
2. ingestion: chunks per second written to the graph (precomputed vectors), and end to end with
   the local embedder on a sample (parse → chunk → embed → entities → graph).

    python bench/graph_search.py [--chunks 10000] [--queries 200]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

PRODUCTS = ["Zephyr", "Quasar", "Nimbus", "Orion", "Vega", "Atlas", "Helix", "Lyra", "Nova", "Pulse"]
TEAMS = ["Orca", "Falcon", "Badger", "Heron", "Lynx", "Otter"]
REGIONS = ["Frankfurt", "Oregon", "Tokyo", "Mumbai", "Dublin", "Toronto"]
WORDS = ("latency throughput rollout budget incident checkpoint adapter dataset quota billing invoice cluster "
         "gpu memory scheduler retry timeout deployment endpoint metric alert dashboard token pricing").split()


SENTENCES = 5  # sentence vectors per chunk, about what chunking.sentences gives the retrieval documents (620 / 107)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (k - lo)


def make_text(rng: random.Random, i: int) -> str:
    p, t, r = rng.choice(PRODUCTS), rng.choice(TEAMS), rng.choice(REGIONS)
    body = " ".join(rng.choice(WORDS) for _ in range(60))
    return (f"{p} {i % 97} > Operations\nThe {p}-{i % 50} service in {r} is run by team {t}. "
            f"Error E-{1000 + i % 900} means {body}.")


def unit(rng: random.Random, dim: int) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sample", type=int, default=200, help="chunks ingested end to end with real embeddings")
    args = ap.parse_args()

    from workbench.graphrag import search as searching
    from workbench.graphrag.backend import open_store
    from workbench.graphrag.embeddings import get_embedder
    from workbench.graphrag.entities import extract
    from workbench.graphrag.service import KnowledgeBaseService
    from workbench.graphrag.store import ChunkRow
    from workbench.testing import scratch_home

    rng = random.Random(7)
    with scratch_home(prefix="wb-bench-graph-"):
        embedder = get_embedder()
        store = open_store("kb_bench")
        store.ensure_indexes(embedder.dimension)
        t0 = time.perf_counter()
        batch = 200
        for start in range(0, args.chunks, batch):
            rows = []
            for i in range(start, min(args.chunks, start + batch)):
                text = make_text(rng, i)
                rows.append(ChunkRow(id=f"doc-{i // 500}:{i}", document_id=f"doc-{i // 500}", idx=i,
                                     heading=text.split("\n", 1)[0], text=text, embedding=unit(rng, embedder.dimension),
                                     terms=extract(text),
                                     sentence_embeddings=[unit(rng, embedder.dimension) for _ in range(SENTENCES)]))
            store.add_chunks(rows[0].document_id, f"gen-{start}.md", rows)
        write_s = time.perf_counter() - t0

        questions = [f"Which team runs {rng.choice(PRODUCTS)} in {rng.choice(REGIONS)} and what does error "
                     f"E-{1000 + rng.randrange(900)} mean for {rng.choice(WORDS)}?" for _ in range(args.queries)]
        vectors = {}
        embed_ms = []
        for q in questions:
            t = time.perf_counter()
            vectors[q] = embedder.embed([q])[0]
            embed_ms.append((time.perf_counter() - t) * 1000)
        rows = []
        for method in ("vector", "keyword", "graph", "hybrid"):
            searching.run(store, lambda q: vectors[q], questions[0], method=method, limit=5)  # warm
            lat = []
            for q in questions:
                t = time.perf_counter()
                searching.run(store, lambda q: vectors[q], q, method=method, limit=5)
                lat.append((time.perf_counter() - t) * 1000)
            with_embed = [a + b for a, b in zip(lat, embed_ms, strict=True)] if method in ("vector", "hybrid") else lat
            rows.append({"method": method, "p50_ms": f"{pct(lat, 50):.1f}", "p95_ms": f"{pct(lat, 95):.1f}",
                         "p95_ms_with_query_embedding": f"{pct(with_embed, 95):.1f}"})

        # end to end: the real pipeline on a sample document
        text = "\n\n".join(f"## Section {i}\n\n{make_text(rng, i)}" for i in range(args.sample))
        kb = KnowledgeBaseService()
        t0 = time.perf_counter()
        doc = kb.wait(kb.upload("sample.md", text.encode())["id"], timeout=3600)
        e2e_s = time.perf_counter() - t0

    print(f"{args.chunks} generated chunks, {args.queries} queries, embedded FalkorDB on this machine")
    print(table(rows, ["method", "p50_ms", "p95_ms", "p95_ms_with_query_embedding"]))
    hybrid = next(r for r in rows if r["method"] == "hybrid")
    print(f"hybrid p95 {hybrid['p95_ms']} ms (goal <= 100 ms; Zep publishes 162 ms); query embedding p50 "
          f"{statistics.median(embed_ms):.1f} ms")
    print(f"\ningestion: {args.chunks / write_s:.0f} chunks/s into the graph ({SENTENCES} sentence vectors each, "
          f"vectors given, entities extracted); "
          f"end to end with local embeddings: {doc['chunks'] / e2e_s:.1f} chunks/s ({doc['chunks']} chunks in "
          f"{e2e_s:.1f} s)")


if __name__ == "__main__":
    main()
