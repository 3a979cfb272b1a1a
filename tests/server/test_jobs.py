"""A real finished job through the API: start, status, metrics, logs, checkpoints, downloads,
validation, analytics and live events — and none of it visible to another user.

One tiny-chat LoRA job (10 steps, checkpoints at 5 and 10) is trained in this process by
``InProcessExecutor`` when ``POST /api/training/start`` is called, so every later request
reads a finished job's real files.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from workbench.server.app import create_app
from workbench.server.routes.analytics import Comparison, JobAnalytics, Summary
from workbench.server.routes.jobs import (
    CheckpointsResponse,
    JobStatus,
    LocalMetricsResponse,
    LogsResponse,
    MetricsResponse,
    StartResponse,
)
from workbench.server.routes.results import ValidationResult
from workbench.testing import FAST

from .conftest import IdleExecutor, bearer, upload


@pytest.fixture(scope="module")
def app(server_home: Path) -> Any:
    from workbench.jobs.executor import InProcessExecutor

    return create_app(multi_user=True, executor=InProcessExecutor())


@pytest.fixture(scope="module")
def alice(app: Any, users: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers=bearer(users["alice"])) as client:
        yield client


@pytest.fixture(scope="module")
def bob(app: Any, users: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers=bearer(users["bob"])) as client:
        yield client


@pytest.fixture(scope="module")
def job(alice: TestClient) -> dict[str, Any]:
    """upload → split → save a config → start: the job has finished when the answer comes."""
    import torch

    torch.set_num_threads(1)
    sample = upload(alice, name="support").json()["dataset"]
    parts = alice.post(f"/api/training/dataset/{sample['id']}/split", json={"eval_fraction": 0.05}).json()
    config = alice.post("/api/training", json={"name": "tiny", "template_type": "lora", "config_json": FAST}).json()
    r = alice.post("/api/training/start", json={"model": "tiny-chat", "dataset": parts["train"]["id"],
                                                "config": config["config"]["id"]})
    assert r.status_code == 200, r.text
    return {"start": r.json(), "id": r.json()["job_id"], "dataset": parts["train"], "eval": parts["eval"],
            "config": config["config"]}


@pytest.fixture(scope="module")
def other_job(alice: TestClient, job: dict[str, Any], server_home: Path) -> str:
    """A second job of alice's (never run), for comparisons."""
    with TestClient(create_app(multi_user=True, executor=IdleExecutor()),
                    headers=dict(alice.headers)) as client:
        r = client.post("/api/training/start", json={"model": "tiny-chat", "dataset": job["dataset"]["id"],
                                                     "config": "lora"})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def test_start_answers_in_the_reference_shape(job: dict[str, Any]) -> None:
    body = StartResponse.model_validate(job["start"])
    assert body.job_id.startswith("job-") and body.message == "Training job started successfully"
    assert body.status == "completed"  # the in-process executor ran it to the end
    assert body.estimated_duration is None


@pytest.mark.parametrize("path", ["/api/training/status/{id}", "/api/training/local/{id}/status"])
def test_status(alice: TestClient, job: dict[str, Any], path: str) -> None:
    r = alice.get(path.format(id=job["id"]))
    assert r.status_code == 200
    status = JobStatus.model_validate(r.json())
    assert (status.status, status.progress, status.current_step, status.total_steps) == ("completed", 100, 10, 10)
    assert status.loss is not None and status.eval_loss is not None and status.best_eval_loss is not None
    assert status.elapsed_time and status.remaining_seconds == 0
    assert r.json()["model_name"] == "tiny-chat"


def test_job_list(alice: TestClient, bob: TestClient, job: dict[str, Any]) -> None:
    assert job["id"] in [j["id"] for j in alice.get("/api/training/jobs").json()["jobs"]]
    assert bob.get("/api/training/jobs").json() == {"jobs": []}


def test_metrics_are_the_train_events(alice: TestClient, job: dict[str, Any]) -> None:
    body = MetricsResponse.model_validate(alice.get(f"/api/training/metrics/{job['id']}").json())
    assert [m.step for m in body.metrics] == [5, 10] and body.total_points == 2
    assert all(m.loss and m.learning_rate and m.grad_norm is not None and m.timestamp for m in body.metrics)


def test_local_metrics_merge_eval_into_the_train_rows(alice: TestClient, job: dict[str, Any]) -> None:
    body = LocalMetricsResponse.model_validate(alice.get(f"/api/training/local/{job['id']}/metrics").json())
    assert [m.step for m in body.metrics] == [5, 10]
    for m in body.metrics:
        assert m.job_id == job["id"] and m.id and m.created_at
        assert m.train_loss is not None and m.train_perplexity is not None
        assert m.eval_loss is not None and m.perplexity is not None  # the eval at the same step
        assert m.samples_per_second and m.tokens_per_second


def test_logs(alice: TestClient, job: dict[str, Any]) -> None:
    full = LogsResponse.model_validate(alice.get(f"/api/training/logs/{job['id']}").json())
    assert full.total_lines == len(full.logs) > 2
    tail = alice.get(f"/api/training/logs/{job['id']}", params={"tail": 2}).json()
    assert tail["logs"] == full.logs[-2:] and tail["total_lines"] == 2
    for bad in ("0", "-1", "abc", "1.5", ""):
        r = alice.get(f"/api/training/logs/{job['id']}", params={"tail": bad})
        assert (r.status_code, r.json()["error"]["field"]) == (422, "tail")


def test_checkpoints(alice: TestClient, job: dict[str, Any]) -> None:
    body = CheckpointsResponse.model_validate(alice.get(f"/api/training/checkpoints/{job['id']}").json())
    assert [c.path for c in body.checkpoints] == ["checkpoint-5", "checkpoint-10"] and body.total == 2
    assert body.best_checkpoint in ("checkpoint-5", "checkpoint-10")
    assert all(c.eval_loss is not None and c.size_mb > 0 for c in body.checkpoints)


def _zip(r: Any) -> zipfile.ZipFile:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.testzip() is None
    return zf


def test_download_a_checkpoint(alice: TestClient, job: dict[str, Any]) -> None:
    r = alice.get(f"/api/training/{job['id']}/download/model", params={"checkpoint": "checkpoint-10"})
    zf = _zip(r)
    short = job["id"].removeprefix("job-")
    assert r.headers["content-disposition"] == f"attachment; filename=job_{short}_checkpoint-10.zip"
    assert "adapter_config.json" in zf.namelist()
    whole = _zip(alice.get(f"/api/training/{job['id']}/download/model"))
    assert any(n.startswith("final/") for n in whole.namelist())
    assert not any(n.startswith("/") or ".." in n.split("/") for n in whole.namelist())


@pytest.mark.parametrize("checkpoint", ["../job.json", "../../store.json", "/etc/passwd", "a/b", "..\\x", ".."])
def test_download_with_a_path_in_the_checkpoint_is_400(alice: TestClient, job: dict[str, Any],
                                                       checkpoint: str) -> None:
    r = alice.get(f"/api/training/{job['id']}/download/model", params={"checkpoint": checkpoint})
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_PATH"


def test_download_of_an_unknown_checkpoint_is_404(alice: TestClient, job: dict[str, Any]) -> None:
    r = alice.get(f"/api/training/{job['id']}/download/model", params={"checkpoint": "checkpoint-999"})
    assert r.status_code == 404


def test_head_of_a_download_sends_the_headers_only(alice: TestClient, job: dict[str, Any]) -> None:
    r = alice.head(f"/api/training/{job['id']}/download/model", params={"checkpoint": "checkpoint-5"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip" and not r.content
    assert r.headers["content-disposition"].endswith("_checkpoint-5.zip")


def test_download_logs(alice: TestClient, job: dict[str, Any]) -> None:
    r = alice.get(f"/api/training/{job['id']}/download/logs")
    zf = _zip(r)
    assert r.headers["content-disposition"].endswith(f"_{job['id'].removeprefix('job-')}_logs.zip")
    assert {"training.log", "progress.json"} <= set(zf.namelist())
    events = json.loads(zf.read("progress.json"))
    assert [e["step"] for e in events if e["type"] == "train"] == [5, 10]


def test_validate(alice: TestClient, job: dict[str, Any]) -> None:
    r = alice.post("/api/training/validate", json={"model_path": "final", "job_id": job["id"],
                                                   "test_dataset_id": job["eval"]["id"], "max_samples": 8,
                                                   "metrics_to_compute": ["perplexity", "accuracy"]})
    assert r.status_code == 200, r.text
    body = ValidationResult.model_validate(r.json())
    assert body.job_id.startswith("val-") and body.status == "completed"
    assert set(body.metrics) == {"perplexity", "accuracy"} and body.metrics["perplexity"] > 1
    assert body.message == "Validation completed successfully with 2 metrics"
    r = alice.post("/api/training/validate", json={"model_path": f"{job['id']}/checkpoint-5", "max_samples": 4,
                                                   "test_dataset_id": job["eval"]["id"],
                                                   "metrics_to_compute": ["perplexity"]})
    assert r.status_code == 200 and r.json()["model_path"] == f"{job['id']}/checkpoint-5"


@pytest.mark.parametrize("body, status, field", [
    ({"model_path": "../../x"}, 400, "model_path"),
    ({"model_path": "/models/checkpoint-2000"}, 400, "model_path"),
    ({"model_path": "final", "metrics_to_compute": ["rouge"]}, 422, "metrics_to_compute.0"),
    ({"model_path": "final", "metrics_to_compute": []}, 422, "metrics_to_compute"),
    ({"model_path": "final", "max_samples": 0}, 422, "max_samples"),
    ({"model_path": "checkpoint-999"}, 404, "checkpoint"),
    ({"model_path": "final", "test_dataset_id": "dataset-0000000000"}, 404, "id"),
])
def test_validate_refuses_bad_input(alice: TestClient, job: dict[str, Any], body: dict[str, Any], status: int,
                                    field: str) -> None:
    r = alice.post("/api/training/validate", json={"job_id": job["id"], "test_dataset_id": job["eval"]["id"],
                                                   **body})
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field


def test_analytics(alice: TestClient, job: dict[str, Any], other_job: str) -> None:
    a = JobAnalytics.model_validate(alice.get(f"/api/training/{job['id']}/analytics").json())
    assert a.loss_progression["final_loss"] < a.loss_progression["initial_loss"]
    assert a.checkpoints["total"] == 2 and 0 <= a.efficiency_score <= 1
    s = Summary.model_validate(alice.get("/api/training/analytics/summary").json())
    assert s.total_jobs == 2 and s.jobs_by_status["completed"] == 1
    c = alice.get("/api/training/analytics/compare", params={"job_ids": f"{job['id']},{other_job}"})
    body = Comparison.model_validate(c.json())
    assert [row["job_id"] for row in body.comparison] == [job["id"], other_job]
    assert body.winner["best_efficiency"] == job["id"]
    r = alice.get("/api/training/analytics/compare", params={"job_ids": job["id"]})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "job_ids")


def _sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append({"event": lines["event"], "data": json.loads(lines["data"])})
    return events


def test_events_of_a_finished_job_replay_then_end(alice: TestClient, job: dict[str, Any]) -> None:
    r = alice.get(f"/api/training/{job['id']}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _sse(r.text)
    assert {e["event"] for e in events} == {"status", "metric"}
    assert events[-1] == {"event": "status", "data": {"kind": "status", "status": "completed", "error": None}}
    train = [e["data"] for e in events if e["data"].get("type") == "train"]
    assert [m["step"] for m in train] == [5, 10]


def test_websocket_sends_the_same_items(alice: TestClient, job: dict[str, Any], users: dict[str, str]) -> None:
    sse = [e["data"] for e in _sse(alice.get(f"/api/training/{job['id']}/events").text)]
    for url, headers in ((f"/ws/training/{job['id']}", bearer(users["alice"])),
                         (f"/ws/training/{job['id']}?token={users['alice']}", {})):
        frames = []
        with TestClient(alice.app, headers=headers) as client, client.websocket_connect(url) as ws:
            while True:
                message = ws.receive()
                if message["type"] == "websocket.close":
                    assert message["code"] == 1000
                    break
                frames.append(json.loads(message["text"]))
        assert frames == sse


def test_control_of_a_finished_job_is_a_conflict(alice: TestClient, job: dict[str, Any]) -> None:
    for action in ("pause", "resume", "cancel"):
        r = alice.post(f"/api/training/{action}/{job['id']}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT", r.text
    assert alice.get(f"/api/training/status/{job['id']}").json()["status"] == "completed"


def test_another_user_gets_404_on_every_job_resource(bob: TestClient, job: dict[str, Any],
                                                     users: dict[str, str]) -> None:
    jid = job["id"]
    requests = [
        ("GET", f"/api/training/status/{jid}", None), ("GET", f"/api/training/local/{jid}/status", None),
        ("GET", f"/api/training/metrics/{jid}", None), ("GET", f"/api/training/local/{jid}/metrics", None),
        ("GET", f"/api/training/logs/{jid}", None), ("GET", f"/api/training/checkpoints/{jid}", None),
        ("GET", f"/api/training/{jid}/download/model", None),
        ("GET", f"/api/training/{jid}/download/model?checkpoint=checkpoint-5", None),
        ("GET", f"/api/training/{jid}/download/logs", None), ("GET", f"/api/training/{jid}/analytics", None),
        ("GET", f"/api/training/{jid}/events", None),
        ("GET", f"/api/training/analytics/compare?job_ids={jid},{jid}x", None),
        ("POST", f"/api/training/pause/{jid}", None), ("POST", f"/api/training/resume/{jid}", None),
        ("POST", f"/api/training/cancel/{jid}", None),
        ("POST", "/api/training/validate", {"model_path": f"{jid}/final", "test_dataset_id": job["eval"]["id"]}),
        ("POST", "/api/training/validate", {"model_path": "final", "job_id": jid,
                                            "test_dataset_id": job["eval"]["id"]}),
        ("POST", "/api/training/start", {"model": "tiny-chat", "dataset": job["dataset"]["id"], "config": "lora"}),
        ("POST", "/api/training/start", {"model": "tiny-chat", "dataset": job["dataset"]["id"],
                                         "config": job["config"]["id"]}),
        ("GET", f"/api/training/{job['config']['id']}", None),
        ("GET", f"/api/training/dataset/{job['dataset']['id']}", None),
    ]
    for method, url, body in requests:
        r = bob.request(method, url, json=body)
        assert r.status_code == 404, (method, url, r.status_code, r.text)
        assert r.json()["error"]["code"] == "NOT_FOUND"
    with pytest.raises(WebSocketDenialResponse) as denied:
        with bob.websocket_connect(f"/ws/training/{jid}"):
            pass
    assert denied.value.status_code == 404  # type: ignore[attr-defined]
    summary = bob.get("/api/training/analytics/summary").json()
    assert summary["total_jobs"] == 0
    assert jid not in bob.get("/api/training/jobs").text


def test_job_routes_need_a_token(app: Any, job: dict[str, Any]) -> None:
    with TestClient(app) as anon:
        for url in (f"/api/training/status/{job['id']}", f"/api/training/{job['id']}/download/logs",
                    f"/api/training/{job['id']}/events"):
            assert anon.get(url).status_code == 401
        assert anon.post("/api/training/start", json={}).status_code == 401


def test_start_refuses_bad_input(alice: TestClient, job: dict[str, Any], server_home: Path) -> None:
    from .conftest import state_fingerprint

    before = state_fingerprint(server_home)
    ds = job["dataset"]["id"]
    cases = [
        ({"dataset": ds}, 422, "model"),
        ({"model": "tiny-chat"}, 422, "dataset"),
        ({"model": "tiny-chat", "dataset": ds, "config": 5}, 422, "config"),
        ({"model": "tiny-chat", "dataset": ds, "config": "no-such-config"}, 404, "id"),
        ({"model": "no/such-model-here", "dataset": "dataset-0000000000"}, 404, "id"),
        ({"model": "not a model", "dataset": ds}, 404, "model"),
        ({"model": "tiny-chat", "dataset": ds, "overrides": {"training": {"learning_rate": -1}}}, 422,
         "training.learning_rate"),
    ]
    for body, status, field in cases:
        r = alice.post("/api/training/start", json=body)
        assert (r.status_code, r.json()["error"].get("field")) == (status, field), r.text
    assert state_fingerprint(server_home) == before
