"""graphiti with an LLM, end to end: a scripted OpenAI-compatible server (:mod:`fake_llm`), the
embedded FalkorDB and the local embedder, all real.

* The LLM is the one configured (``WORKBENCH_GRAPHRAG_LLM_*``, or a custom model entry), called
  with its model name and key; graphiti's ``add_episode`` then leaves episodes, entities and
  facts in the knowledge base's graph, and ``facts`` finds them.
* Removing the episodes leaves no episode and no entity that only they mentioned.
* Adding is all or nothing, and a document added again replaces its earlier episodes.
* Through the service, a document processed with an LLM says so (``extraction: "llm:…"``) and
  keeps its episodes' ids, which deleting it removes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .fake_llm import FakeLLM

CHUNKS_TEXT = [
    "The Zorblax-9 reactor is cooled by Quinterine coolant. Velmora Crew refills it every 41 days.",
    "Velmora Crew works from the Quasnik Depot and services the Zorblax-9 pumps.",
]
DOCUMENT = """# Zorblax Appendix

## Zorblax-9 coolant

The Zorblax-9 reactor is cooled by Quinterine coolant. Velmora Crew refills it every 41 days.

## Velmora crew

Velmora Crew works from the Quasnik Depot and services the Zorblax-9 pumps.
"""


@dataclass
class Chunk:
    index: int
    text: str


CHUNKS = [Chunk(i, t) for i, t in enumerate(CHUNKS_TEXT)]
REC = {"filename": "doc.md"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fake: FakeLLM) -> Iterator[Path]:
    """One home for the module (one embedded FalkorDB; each test its own graph), the LLM configured."""
    home = tmp_path_factory.mktemp("graphiti-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("GRAPHITI_TELEMETRY_ENABLED", "false")
        mp.delenv("WORKBENCH_GRAPHRAG_LLM", raising=False)
        mp.delenv("WORKBENCH_GRAPH_STORE", raising=False)
        mp.delenv("WORKBENCH_EMBEDDINGS_BASE_URL", raising=False)
        mp.setenv("WORKBENCH_GRAPHRAG_LLM_BASE_URL", fake.base_url)
        mp.setenv("WORKBENCH_GRAPHRAG_LLM_MODEL", "scripted")
        mp.setenv("WORKBENCH_GRAPHRAG_LLM_API_KEY", "sk-test")
        yield home
        from workbench.graphrag.falkor import embedded

        embedded(home / "graph").stop()


@pytest.fixture
def llm_calls(fake: FakeLLM) -> Iterator[FakeLLM]:
    fake.requests.clear()
    fake.refuse_if = None
    yield fake
    fake.refuse_if = None


def graph(kb: str):
    from workbench.graphrag.falkor import embedded

    return embedded().client().select_graph(kb)


def count(kb: str, pattern: str) -> int:
    return graph(kb).query(f"MATCH {pattern} RETURN count(*)").result_set[0][0]


@pytest.fixture(scope="module")
def ingested(env: Path, fake: FakeLLM) -> dict:
    """The two chunks added once to ``kb_bridge``, with what the LLM was asked meanwhile."""
    from workbench.graphrag import graphiti_bridge

    fake.requests.clear()
    llm = graphiti_bridge.configured_llm("local")
    uuids = graphiti_bridge.add_episodes("kb_bridge", llm, REC, CHUNKS)
    return {"llm": llm, "uuids": uuids, "requests": list(fake.chat_requests())}


# ---- the configured LLM ---------------------------------------------------------------------------

def test_the_llm_comes_from_the_environment(env: Path, fake: FakeLLM) -> None:
    from workbench.graphrag.graphiti_bridge import configured_llm

    assert configured_llm("local") == {"base_url": fake.base_url, "model": "scripted", "api_key": "sk-test",
                                       "auth_type": "bearer"}


def test_no_llm_configured_means_none(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.graphrag.graphiti_bridge import configured_llm

    monkeypatch.delenv("WORKBENCH_GRAPHRAG_LLM_BASE_URL")
    assert configured_llm("local") is None


def test_a_custom_model_entry_is_picked_with_its_decrypted_key(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench import models
    from workbench.graphrag.graphiti_bridge import configured_llm

    entry = models.create_custom("Extractor", "openai-compatible", "http://127.0.0.1:1/v1", "extractor-7b",
                                 "bearer", "sk-custom-secret", "local")
    monkeypatch.setenv("WORKBENCH_GRAPHRAG_LLM", entry["id"])  # wins over WORKBENCH_GRAPHRAG_LLM_BASE_URL
    llm = configured_llm("local")
    assert llm == {"base_url": "http://127.0.0.1:1/v1", "model": "extractor-7b", "api_key": "sk-custom-secret",
                   "auth_type": "bearer"}
    assert "sk-custom-secret" not in json.dumps(models.get(entry["id"], "local"))  # decrypted for the server only


def test_another_users_entry_is_not_found(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench import models
    from workbench.graphrag.graphiti_bridge import configured_llm

    entry = models.create_custom("Theirs", "openai-compatible", "http://127.0.0.1:1/v1", "m", "bearer", "sk-x", "alice")
    monkeypatch.setenv("WORKBENCH_GRAPHRAG_LLM", entry["id"])
    with pytest.raises(Exception, match="not found"):
        configured_llm("bob")


def test_an_api_key_entry_sends_its_key_in_an_api_key_header(env: Path, llm_calls: FakeLLM,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench import models
    from workbench.graphrag import graphiti_bridge

    entry = models.create_custom("Azure-ish", "azure", llm_calls.base_url, "scripted", "api-key", "az-secret", "local")
    monkeypatch.setenv("WORKBENCH_GRAPHRAG_LLM", entry["id"])
    llm = graphiti_bridge.configured_llm("local")
    assert llm["auth_type"] == "api-key"
    graphiti_bridge.add_episodes("kb_apikey", llm, REC, CHUNKS[:1])
    seen = llm_calls.chat_requests()
    assert seen and all(r.headers.get("api-key") == "az-secret" and r.authorization is None for r in seen)


# ---- add_episodes -----------------------------------------------------------------------------

def test_each_chunk_becomes_an_episode(ingested: dict) -> None:
    assert len(ingested["uuids"]) == 2 and len(set(ingested["uuids"])) == 2
    assert count("kb_bridge", "(e:Episodic)") == 2
    names = sorted(r[0] for r in graph("kb_bridge").query("MATCH (e:Episodic) RETURN e.name").result_set)
    assert names == ["doc.md#0", "doc.md#1"]


def test_the_configured_llm_was_asked_with_its_model_and_key(ingested: dict) -> None:
    seen = ingested["requests"]
    assert seen, "graphiti never called the LLM"
    assert {r.body["model"] for r in seen} == {"scripted"}
    assert {r.authorization for r in seen} == {"Bearer sk-test"}
    asked = [r.schema_name for r in seen]
    assert asked.count("ExtractedEntities") == 2  # one entity extraction per episode
    assert asked.count("ExtractedEdges") == 2  # and one fact extraction
    assert all(r.body["response_format"]["type"] == "json_schema" for r in seen)


def test_the_graph_holds_entities_mentioned_by_the_episodes_and_facts_between_them(ingested: dict) -> None:
    names = {r[0] for r in graph("kb_bridge").query("MATCH (n:Entity) RETURN n.name").result_set}
    assert {"Zorblax-9", "Velmora Crew", "Quasnik Depot"} <= names
    assert count("kb_bridge", "(:Episodic)-[:MENTIONS]->(:Entity)") >= 4
    facts = {r[0] for r in graph("kb_bridge").query("MATCH (:Entity)-[r:RELATES_TO]->(:Entity) RETURN r.fact").result_set}
    assert CHUNKS_TEXT[1] in facts
    # "Velmora Crew" is in both chunks: one entity, mentioned by both episodes
    assert count("kb_bridge", "(:Episodic)-[:MENTIONS]->(:Entity {name: 'Velmora Crew'})") == 2


def test_facts_finds_the_extracted_fact(ingested: dict) -> None:
    from workbench.graphrag.graphiti_bridge import facts

    found = facts("kb_bridge", "Where does the Velmora crew work?")
    assert found and {"fact", "name", "uuid"} <= set(found[0])
    assert CHUNKS_TEXT[1] in [f["fact"] for f in found]
    assert facts("kb_nothing_here", "Velmora") == []  # another knowledge base: nothing


def test_removing_the_episodes_removes_the_entities_only_they_mentioned(env: Path, llm_calls: FakeLLM) -> None:
    from workbench.graphrag import graphiti_bridge

    uuids = graphiti_bridge.add_episodes("kb_remove", graphiti_bridge.configured_llm("local"), REC, CHUNKS)
    assert count("kb_remove", "(e:Episodic)") == 2 and count("kb_remove", "(n:Entity)") >= 3
    assert graphiti_bridge.remove_episodes("kb_remove", uuids[:1]) == 1
    # the second episode's entities stay (Velmora Crew is in both; Quinterine only in the first)
    left = {r[0] for r in graph("kb_remove").query("MATCH (n:Entity) RETURN n.name").result_set}
    assert "Quinterine" not in left and {"Velmora Crew", "Quasnik Depot", "Zorblax-9"} <= left
    assert graphiti_bridge.remove_episodes("kb_remove", uuids) == 1  # the first is already gone: not counted
    assert count("kb_remove", "(e:Episodic)") == 0
    assert count("kb_remove", "(n:Entity)") == 0
    assert count("kb_remove", "()-[r]->()") == 0
    assert graphiti_bridge.facts("kb_remove", "Velmora Crew") == []


def test_adding_is_all_or_nothing(env: Path, llm_calls: FakeLLM) -> None:
    from workbench.graphrag import graphiti_bridge

    llm_calls.refuse_if = "Quasnik"  # the second chunk's prompts fail (a 400: not retried)
    with pytest.raises(Exception, match="scripted refusal"):
        graphiti_bridge.add_episodes("kb_partial", graphiti_bridge.configured_llm("local"), REC, CHUNKS)
    assert llm_calls.chat_requests()  # the first chunk did go through the LLM
    assert count("kb_partial", "(e:Episodic)") == 0  # and was removed again: nobody holds its uuid
    assert count("kb_partial", "(n:Entity)") == 0


def test_a_document_added_again_replaces_its_earlier_episodes(env: Path, llm_calls: FakeLLM) -> None:
    from workbench.graphrag import graphiti_bridge

    llm, rec = graphiti_bridge.configured_llm("local"), {"filename": "doc.md", "id": "doc_again"}
    first = graphiti_bridge.add_episodes("kb_again", llm, rec, CHUNKS)  # say the process died before recording these
    second = graphiti_bridge.add_episodes("kb_again", llm, rec, CHUNKS)  # the resumed run
    assert not set(first) & set(second)
    rows = graph("kb_again").query("MATCH (e:Episodic) RETURN e.name, e.uuid ORDER BY e.name").result_set
    assert rows == [["doc_again:0", second[0]], ["doc_again:1", second[1]]]  # named as the chunk layer's ids
    assert count("kb_again", "(:Entity {name: 'Velmora Crew'})") == 1


# ---- through the service ------------------------------------------------------------------------

def test_the_service_extracts_with_the_llm_and_deletion_removes_the_episodes(env: Path, llm_calls: FakeLLM) -> None:
    pytest.importorskip("workbench.graphrag.parsing")
    pytest.importorskip("workbench.graphrag.chunking")
    from workbench.graphrag.service import KnowledgeBaseService, kb_name

    svc = KnowledgeBaseService()
    doc = svc.wait(svc.upload("doc.md", DOCUMENT.encode())["id"], timeout=120)
    assert doc["extraction"].startswith("llm:") and "scripted" in doc["extraction"]
    ids = doc["neo4jEpisodeIds"]
    assert ids and len(ids) == doc["chunks"]
    assert {r.body["model"] for r in llm_calls.chat_requests()} == {"scripted"}
    kb = kb_name("local")
    assert count(kb, "(e:Episodic)") == len(ids) and count(kb, "(n:Entity)") > 0

    removed = svc.delete(doc["id"])
    assert removed["episodes"] == len(ids)
    assert count(kb, "(e:Episodic)") == 0 and count(kb, "(n:Entity)") == 0
