"""``/api/graphrag`` over HTTP: the reference's shapes, the multipart upload, clear errors, per-user isolation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from workbench.testing import scratch_home

DOC = b"""# Orbital Catering

## Menu

The Orbital Catering menu serves kelp noodles on Tuesdays and basalt bread every Friday.

## Staff

Chef Marisol Ventura leads the Orbital Catering kitchen on deck nine.
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict, dict]]:
    from workbench.server.app import create_app
    from workbench.users import add_user

    with scratch_home(tmp_path_factory.mktemp("kb-api-home")):
        _, alice = add_user("alice-kb")
        _, bob = add_user("bob-kb")
        with TestClient(create_app(multi_user=True)) as client:
            yield client, {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bob}"}


def _wait(client: TestClient, h: dict, doc_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        docs = {d["id"]: d for d in client.get("/api/graphrag/documents", headers=h).json()["documents"]}
        if docs[doc_id]["processed"]:
            return docs[doc_id]
        assert docs[doc_id]["status"] != "failed", docs[doc_id]["error"]
        time.sleep(0.2)
    raise AssertionError("never processed")


def test_upload_list_search_and_delete_as_the_reference_shows(api) -> None:
    client, alice, bob = api
    r = client.post("/api/graphrag/upload", headers=alice, files={"file": ("catering.md", DOC, "text/markdown")},
                    data={"metadata": '{"title": "Catering", "source": "ops"}'})
    assert r.status_code == 200, r.text
    body = r.json()
    doc = body["document"]
    assert body["success"] is True and body["message"].startswith("Document uploaded successfully")
    assert doc["id"].startswith("doc-") and doc["fileType"] == "md" and doc["processed"] is False
    assert doc["metadata"] == {"title": "Catering", "source": "ops"} and doc["uploadPath"].endswith("/catering.md")
    assert "/" not in doc["uploadPath"].split("documents/")[0]  # a relative path, no server folder

    done = _wait(client, alice, doc["id"])
    assert done["chunks"] >= 2
    listing = client.get("/api/graphrag/documents", headers=alice).json()
    assert listing["total"] == 1 and listing["documents"][0]["neo4jEpisodeIds"] == []

    r = client.post("/api/graphrag/search", headers=alice, json={"query": "Who runs the kitchen?", "limit": 2})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["metadata"]["searchMethod"] == "hybrid" and out["metadata"]["resultsFound"] == len(out["sources"])
    assert out["query"] == "Who runs the kitchen?" and out["limit"] == 2
    top = out["sources"][0]
    assert top["documentId"] == doc["id"] and top["filename"] == "catering.md" and "Marisol" in top["excerpt"]
    assert 0 < top["relevanceScore"] <= 1 and "Sources: [1] catering.md" in out["context"]

    hood = client.get(f"/api/graphrag/chunks/{top['chunkId']}/neighbourhood", headers=alice).json()
    assert "Orbital Catering" in hood["entities"]
    assert any("Orbital Catering" in n["sharedEntities"] for n in hood["neighbours"])

    # bob sees nothing of alice's
    assert client.get("/api/graphrag/documents", headers=bob).json()["total"] == 0
    assert client.post("/api/graphrag/search", headers=bob, json={"query": "kitchen"}).json()["sources"] == []
    assert client.delete(f"/api/graphrag/delete/{doc['id']}", headers=bob).status_code == 404
    assert client.get(f"/api/graphrag/chunks/{top['chunkId']}/neighbourhood", headers=bob).status_code == 404

    r = client.delete(f"/api/graphrag/delete/{doc['id']}", headers=alice)
    assert r.status_code == 200 and r.json()["success"] is True and r.json()["removed"]["chunks"] == done["chunks"]
    assert client.post("/api/graphrag/search", headers=alice, json={"query": "Marisol kitchen"}).json()["sources"] == []
    assert client.get("/api/graphrag/documents", headers=alice).json()["total"] == 0


def test_bad_uploads_and_searches_are_clear_errors(api) -> None:
    client, alice, _ = api
    cases = [
        ({"file": ("x.exe", b"MZ\x90\x00" + b"\x00" * 32)}, {}, 415, "file"),
        ({"file": ("x.pdf", b"%PDF-1.4\nbroken")}, {}, 400, None),
        ({"file": ("notes.md", b"# fine\n\ntext here")}, {"metadata": "{not json"}, 422, "metadata"),
    ]
    for files, data, status, field in cases:
        r = client.post("/api/graphrag/upload", headers=alice, files=files, data=data)
        assert r.status_code == status, (files, r.text)
        assert field is None or r.json()["error"]["field"] == field
    assert client.get("/api/graphrag/documents", headers=alice).json()["total"] == 0  # nothing left behind
    r = client.post("/api/graphrag/search", headers=alice, json={"query": "x", "method": "psychic"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "method"
    r = client.post("/api/graphrag/search", headers=alice, json={"query": "x", "document_ids": ["doc-nope"]})
    assert r.status_code == 404 and r.json()["error"]["field"] == "document_ids"
    assert client.post("/api/graphrag/search", json={"query": "x"}).status_code == 401
