"""The SDK methods added for parity with ``/openapi.json``, against the real server.

(The mapping of every operation to a method is checked in ``tests/test_client_sdk.py``.)
"""

from __future__ import annotations

from typing import Any

import pytest

from workbench.client import APIError, TrainingClient
from workbench.datasets import SAMPLE_DATASET, SAMPLE_NAME
from workbench.widgets.backend import RemoteBackend

from .conftest import LiveServer


def test_openapi_and_health(client: TrainingClient) -> None:
    spec = client.openapi()
    assert spec["openapi"].startswith("3.1") and "/api/training/start" in spec["paths"]
    assert client.health() == {"status": "ok"}


def test_upload_bytes_preview_split_and_update_config(client: TrainingClient) -> None:
    ds = client.upload_dataset(SAMPLE_DATASET.read_bytes(), name="sdk bytes", filename="chats.jsonl")
    assert ds["samples"] == 400 and ds["is_sample"] is False
    p = client.preview_dataset(ds["id"], index=2)
    assert p["index"] == 2 and p["samples"] == 400 and 0 < p["trained_tokens"] <= p["total_tokens"]
    assert {t["trained"] for t in p["tokens"]} == {True, False}
    with pytest.raises(APIError) as err:
        client.preview_dataset(ds["id"], index=400)
    assert err.value.status_code == 422
    parts = client.split_dataset(ds["id"], eval_fraction=0.25, seed=1)
    assert parts["train"]["samples"] + parts["eval"]["samples"] == 400
    cfg = client.create_config("sdk cfg", {"training": {"max_steps": 4}}, template_type="lora", description="a")
    updated = client.update_config(cfg["id"], description="b")  # the other fields are left as they are
    assert (updated["name"], updated["description"]) == ("sdk cfg", "b")
    assert updated["config_json"]["training"]["max_steps"] == 4


def test_start_training_with_name_eval_dataset_and_overrides(client: TrainingClient) -> None:
    ds = client.upload_dataset(SAMPLE_DATASET, name="sdk start")
    parts = client.split_dataset(ds["id"], eval_fraction=0.1)
    with pytest.raises(APIError) as err:  # eval_dataset really reaches the server
        client.start_training("tiny-chat", parts["train"]["id"], "lora", eval_dataset="dataset-0000000000")
    assert err.value.status_code == 404
    with pytest.raises(APIError) as err:  # and so do the overrides
        client.start_training("tiny-chat", parts["train"]["id"], "lora",
                              overrides={"training": {"learning_rate": -1}})
    assert err.value.status_code == 422
    job = client.start_training("tiny-chat", parts["train"]["id"], "lora", name="sdk run",
                                eval_dataset=parts["eval"]["id"], overrides={"training": {"max_steps": 2}})
    try:
        listed = next(j for j in client.list_jobs() if j["id"] == job["job_id"])
        assert listed["name"] == "sdk run"
        if "config" in listed:
            assert listed["config"]["training"]["max_steps"] == 2
    finally:
        assert client.cancel(job["job_id"])["status"] == "cancelled"
    # the WebSocket method gives the SSE method's events, for a finished job a replay then close
    ws = list(client.ws_events(job["job_id"], timeout=30))
    sse = list(client.events(job["job_id"], timeout=30))
    assert [(e["event"], e["data"]) for e in ws] == [(e["event"], e["data"]) for e in sse]
    assert ws[-1]["event"] == "status" and ws[-1]["data"]["status"] == "cancelled"
    assert [e["event"] for e in client.events(job["job_id"], from_start=False, timeout=30)] == ["status"]


def test_ws_events_of_another_users_job_is_an_api_error(client: TrainingClient,
                                                        bob_client: TrainingClient) -> None:
    with pytest.raises(APIError) as err:
        list(bob_client.ws_events("job-0000000000", timeout=10))
    assert err.value.status_code == 404 and err.value.code == "NOT_FOUND"


def test_remote_backend_finds_the_sample_by_is_sample(live_server: LiveServer) -> None:
    from workbench.datasets import DatasetService
    from workbench.users import add_user

    user, token = add_user("carol")
    backend = RemoteBackend(live_server.base_url, token=token)
    decoy = backend.client.upload_dataset(SAMPLE_DATASET, name=SAMPLE_NAME)  # the name alone is no sample
    uploaded = backend.register_sample()  # no marked record yet: the bundled file, uploaded once
    assert uploaded["id"] != decoy["id"] and backend.register_sample()["id"] == uploaded["id"]
    backend.client.delete_dataset(uploaded["id"])
    sample = DatasetService().register_sample(owner=user["id"])  # as `workbench make` registers it
    listed: list[dict[str, Any]] = backend.list_datasets()
    assert {d["id"]: d["is_sample"] for d in listed} == {decoy["id"]: False, sample["id"]: True}
    assert backend.register_sample()["id"] == sample["id"]
    assert len(backend.list_datasets()) == 2  # nothing uploaded again


def test_the_knowledge_base_from_the_sdk(client: TrainingClient, tmp_path) -> None:
    import time

    doc_path = tmp_path / "runbook.md"
    doc_path.write_text("# Pager duty\n\nThe Frankfurt GPU pool is watched by the #gpu-eu-oncall channel.\n\n"
                        "# Refunds\n\nRefunds take five business days to reach the card.\n")
    doc = client.upload_document(doc_path, {"team": "ops"})  # the document itself, like list_documents
    assert doc["filename"] == "runbook.md" and doc["metadata"] == {"team": "ops"} and doc["processed"] is False
    deadline = time.monotonic() + 240
    while not next(d for d in client.list_documents() if d["id"] == doc["id"])["processed"]:
        assert time.monotonic() < deadline, "the document was never processed"
        time.sleep(0.5)
    found = client.search_knowledge("Which channel watches the Frankfurt GPUs?", limit=1)
    assert found["sources"][0]["documentId"] == doc["id"] and "#gpu-eu-oncall" in found["sources"][0]["text"]
    client.delete_document(doc["id"])
    assert all(d["id"] != doc["id"] for d in client.list_documents())
