"""The knowledge base end to end on the embedded defaults: real FalkorDB, real local embeddings.

``knowledge-base.md`` (the product's own document) is ingested once per module; questions its
text answers must rank the right passage first, every method reports itself, deletion leaves
nothing any method can find, one user never sees another's documents, and bad files are refused
leaving nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.errors import BadDocument, NotFound, UnsupportedType
from workbench.testing import scratch_home

KB = Path(__file__).resolve().parents[1] / "data" / "knowledge-base.md"  # a copy of ../shared/seeds/knowledge-base.md
UNIQUE = """# Zorblax Appendix

## Zorblax-9 coolant

The Zorblax-9 reactor uses quinterine coolant, refilled every 41 days by the Velmora crew.

## Velmora crew

The Velmora crew works from the Quasnik depot and also services the Zorblax-9 pumps.
"""


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, dict]]:
    from workbench.graphrag.service import KnowledgeBaseService

    with scratch_home(tmp_path_factory.mktemp("kb-home")):
        svc = KnowledgeBaseService()
        doc = svc.upload("knowledge-base.md", KB.read_bytes(), metadata={"title": "Knowledge base"})
        assert doc["processed"] is False and doc["fileType"] == "md" and doc["metadata"]["title"] == "Knowledge base"
        yield svc, svc.wait(doc["id"], timeout=300)


def test_processing_fills_in_the_document(kb) -> None:
    svc, doc = kb
    assert doc["processed"] and doc["status"] == "processed" and doc["chunks"] > 10 and doc["entities"] > 20
    assert doc["progress"] == {"chunks_done": doc["chunks"], "chunks_total": doc["chunks"]}
    assert doc["extraction"].startswith("local:")  # no LLM configured: the local extractor ran, and says so
    assert [d["id"] for d in svc.list()] == [doc["id"]]


@pytest.mark.parametrize(("question", "needles"), [
    ("Which models have vision capabilities?", ["Vision Support"]),
    ("How much does Claude 3 Opus cost per million input tokens?", ["Claude 3 Opus", "15.00"]),
    ("What is the context window of GPT-4.1 Mini?", ["GPT-4.1 Mini", "128K"]),
])
def test_questions_the_text_answers_rank_the_right_passage_first(kb, question: str, needles: list[str]) -> None:
    svc, _ = kb
    top = svc.search(question, limit=5)["sources"][0]
    assert all(n in top["text"] for n in needles), top["text"][:300]


def test_every_method_reports_itself_and_honours_the_limit(kb) -> None:
    svc, doc = kb
    for method in ("hybrid", "vector", "keyword", "graph"):
        out = svc.search("Claude Haiku 4.5 pricing", method=method, limit=3)
        assert out["metadata"]["searchMethod"] == method and 1 <= len(out["sources"]) <= 3
        scores = [s["relevanceScore"] for s in out["sources"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        src = out["sources"][0]
        assert src["documentId"] == doc["id"] and src["filename"] == "knowledge-base.md" and src["excerpt"]
    with pytest.raises(Exception, match="method"):
        svc.search("x", method="psychic")


def test_the_context_is_ready_for_a_prompt_and_names_its_sources(kb) -> None:
    svc, _ = kb
    out = svc.search("Which models have vision capabilities?", limit=2)
    assert out["context"].startswith("[1] knowledge-base.md\n")
    assert "Sources: [1] knowledge-base.md" in out["context"] and "[2]" in out["context"]
    assert out["sources"][0]["text"] in out["context"]


def test_deleting_a_document_leaves_nothing_any_method_can_find(kb) -> None:
    from workbench.graphrag.backend import open_store
    from workbench.graphrag.service import documents_dir, kb_name

    svc, kb_doc = kb
    doc = svc.wait(svc.upload("zorblax.md", UNIQUE.encode())["id"])
    store = open_store(kb_name("local"))
    assert store.term_frequencies(["zorblax-9", "velmora"]) == {"zorblax-9": 2, "velmora": 2}
    for method in ("hybrid", "vector", "keyword", "graph"):
        hits = svc.search("What coolant does the Zorblax-9 reactor use?", method=method, limit=3)["sources"]
        assert hits and hits[0]["documentId"] == doc["id"], method
    kept = store.count()["terms"]
    assert store.count(doc["id"])["sentences"] >= doc["chunks"]  # its sentence vectors are in the graph too

    removed = svc.delete(doc["id"])
    assert removed["chunks"] == doc["chunks"] and removed["terms"] >= 3
    assert not (documents_dir() / doc["id"]).exists()
    for method in ("hybrid", "vector", "keyword", "graph"):
        hits = svc.search("What coolant does the Zorblax-9 reactor use? Velmora Quasnik", method=method, limit=10)
        assert all(s["documentId"] != doc["id"] and "Zorblax" not in s["text"] for s in hits["sources"]), method
    assert store.term_frequencies(["zorblax-9", "velmora", "quasnik"]) == {}
    assert store.count(doc["id"]) == {"chunks": 0, "sentences": 0} and store.count()["terms"] == kept - removed["terms"]
    assert store.count(kb_doc["id"])["chunks"] == kb_doc["chunks"]  # the other document is untouched
    with pytest.raises(NotFound):
        svc.delete(doc["id"])


def test_another_user_sees_nothing(kb) -> None:
    svc, doc = kb
    assert svc.list(owner="mallory") == []
    assert svc.search("Which models have vision capabilities?", owner="mallory")["sources"] == []
    with pytest.raises(NotFound):
        svc.delete(doc["id"], owner="mallory")
    with pytest.raises(NotFound):
        svc.search("vision", owner="mallory", document_ids=[doc["id"]])


def test_bad_files_are_refused_and_leave_nothing(kb) -> None:
    from workbench.graphrag.service import documents_dir

    svc, _ = kb
    before = (len(svc.list()), sorted(p.name for p in documents_dir().iterdir()))
    with pytest.raises(BadDocument):
        svc.upload("broken.pdf", b"%PDF-1.7\n1 0 obj <<")
    with pytest.raises(UnsupportedType):
        svc.upload("tool.exe", b"MZ\x90\x00" + b"\x00" * 64)
    with pytest.raises(BadDocument):
        svc.upload("empty.txt", b"   \n")
    assert (len(svc.list()), sorted(p.name for p in documents_dir().iterdir())) == before


def test_unfinished_documents_resume_in_a_new_process(kb) -> None:
    from workbench.graphrag.service import TABLE

    svc, _ = kb
    doc = svc.wait(svc.upload("again.md", UNIQUE.encode())["id"])
    svc.store.update(TABLE, doc["id"], {"status": "processing", "processed": False})  # as a crash leaves it
    assert doc["id"] in svc.resume()
    again = svc.wait(doc["id"])
    assert again["processed"] and again["chunks"] == doc["chunks"]
    assert svc.search("Zorblax-9 coolant", method="keyword", document_ids=[doc["id"]])["sources"]
    svc.delete(doc["id"])
