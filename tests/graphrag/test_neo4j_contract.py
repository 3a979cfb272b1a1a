"""The Neo4j path, against a real Neo4j 5: runs only where ``NEO4J_URI`` (and ``NEO4J_USER``,
``NEO4J_PASSWORD``) name one. No Neo4j can run on the machines CI uses (no package, no server on
PyPI or npm), so there this file is skipped as a whole; the same behaviour on FalkorDB is what
``test_knowledge_base.py`` proves. Every query it exercises lives in ``workbench/graphrag/store.py``.
"""

from __future__ import annotations

import os
import random

import pytest

pytestmark = pytest.mark.skipif(not os.environ.get("NEO4J_URI"), reason="needs a Neo4j server: set NEO4J_URI")


def test_the_neo4j_store_indexes_searches_and_deletes_like_falkordb() -> None:
    from workbench.graphrag.backend import neo4j_driver
    from workbench.graphrag.entities import extract
    from workbench.graphrag.store import ChunkRow, Neo4jGraphStore

    kb = f"kb_contract_{random.randrange(10**9)}"
    store = Neo4jGraphStore(neo4j_driver(), os.environ.get("NEO4J_DATABASE") or None, kb=kb)
    store.ensure_indexes(4)
    texts = ["The Zorblax-9 reactor uses quinterine coolant.", "The Velmora crew services the Zorblax-9 pumps.",
             "Kelp noodles are served on Tuesdays."]
    rows = [ChunkRow(id=f"d1:{i}", document_id="d1", idx=i, heading="H", text=t,
                     embedding=[1.0 if j == i else 0.0 for j in range(4)], terms=extract(t)) for i, t in enumerate(texts)]
    store.add_chunks("d1", "doc.md", rows)
    try:
        assert store.vector_search([1.0, 0.0, 0.0, 0.0], 1, None)[0].chunk_id == "d1:0"
        assert store.keyword_search("quinterine coolant", 2, None)[0].chunk_id == "d1:0"
        assert {h.chunk_id for h in store.term_search(["zorblax-9"], 5, None)} == {"d1:0", "d1:1"}
        assert [h.chunk_id for h in store.neighbours(["d1:0"], 5, None)] == ["d1:1"]
        assert store.count("d1")["chunks"] == 3
        removed = store.delete_document("d1")
        assert removed["chunks"] == 3 and store.count()["chunks"] == 0 and store.count()["terms"] == 0
    finally:
        store.delete_document("d1")
