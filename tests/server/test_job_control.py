"""Job control and live events, with a stand-in for the training engine.

Jobs are started through the real ``JobService`` with :class:`IdleExecutor` (nothing runs);
a small thread then plays the engine's part on the job's files and record — status changes,
``metrics.jsonl`` lines, the pause checkpoint — exactly as ``workbench.training`` writes them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from workbench import home
from workbench.jobs.state import record_outcome, set_state
from workbench.records import now_iso
from workbench.server.app import create_app
from workbench.server.routes import live
from workbench.server.routes.jobs import ControlResponse, ExecuteResponse
from workbench.testing import FAST

from .conftest import IdleExecutor, chat_lines, local_headers, state_fingerprint, upload


@pytest.fixture(scope="module")
def dataset(local: TestClient) -> dict[str, Any]:
    return upload(local, chat_lines(16)).json()["dataset"]


def start(client: TestClient, dataset: dict[str, Any]) -> str:
    r = client.post("/api/training/start", json={"model": "tiny-chat", "dataset": dataset["id"], "config": FAST})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    return r.json()["job_id"]


def emit(job_id: str, **event: Any) -> None:
    with open(home.job_dir(job_id) / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({**event, "timestamp": now_iso()}) + "\n")


def train_event(step: int) -> dict[str, Any]:
    return {"type": "train", "step": step, "epoch": step / 10, "total_steps": 10, "loss": 3.0 - step / 10,
            "learning_rate": 1e-3, "grad_norm": 0.5}


def play_engine(job_id: str, delay: float = 0.2) -> threading.Thread:
    """running → two logged steps (an eval after the second) → completed, ``delay`` s apart."""

    def run() -> None:
        time.sleep(delay)
        set_state(job_id, "running")
        emit(job_id, type="status", status="running", total_steps=10)
        for step in (5, 10):
            time.sleep(delay)
            emit(job_id, **train_event(step))
        emit(job_id, type="eval", step=10, epoch=1.0, eval_loss=2.5, eval_perplexity=12.18)
        time.sleep(delay)
        record_outcome(job_id, {"status": "completed", "step": 10, "total_steps": 10})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def play_pause(job_id: str) -> threading.Thread:
    """Wait for the service's pause request, save a checkpoint and report "paused" like the callback."""

    def run() -> None:
        control = home.job_dir(job_id) / "control"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (control.exists() and control.read_text() == "pause"):
            time.sleep(0.02)
        (home.job_dir(job_id) / "output" / "checkpoint-5").mkdir(parents=True)
        record_outcome(job_id, {"status": "paused", "checkpoint": "checkpoint-5"})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def patient(server_home: Path) -> Iterator[TestClient]:
    """A second single-user server over the same home."""
    with TestClient(create_app(multi_user=False, executor=IdleExecutor()), headers=local_headers()) as client:
        yield client


def test_pause_resume_cancel(patient: TestClient, dataset: dict[str, Any]) -> None:
    job_id = start(patient, dataset)
    set_state(job_id, "running")
    engine = play_pause(job_id)
    r = patient.post(f"/api/training/pause/{job_id}")  # answers at once, with the status as it stands
    assert r.status_code == 200, r.text
    assert ControlResponse.model_validate(r.json()).model_dump() == {
        "success": True, "message": "Pause requested: the job saves a checkpoint after its current step, then pauses",
        "job_id": job_id, "status": "running"}
    engine.join()
    assert patient.get(f"/api/training/status/{job_id}").json()["status"] == "paused"
    r = patient.post(f"/api/training/resume/{job_id}", json={"hyperparameters": {"learning_rate": 1e-4}})
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "Training job resumed successfully" and r.json()["status"] in ("queued", "pending")
    history = patient.get("/api/training/jobs").json()["jobs"]
    job = next(j for j in history if j["id"] == job_id)
    assert job["config"]["training"]["learning_rate"] == 1e-4 and job["resume_from"] == "checkpoint-5"
    r = patient.post(f"/api/training/cancel/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["message"] == "Training job cancelled successfully"
    for action in ("pause", "resume", "cancel"):
        assert patient.post(f"/api/training/{action}/{job_id}").status_code == 409


def test_a_pause_storm_answers_at_once(local: TestClient, dataset: dict[str, Any]) -> None:
    """40 pauses of a job that never reaches a step: each is accepted at once, none holds a thread."""
    from concurrent.futures import ThreadPoolExecutor

    job_id = start(local, dataset)  # nothing runs it: it never reaches its checkpoint
    began = time.monotonic()
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: local.post(f"/api/training/pause/{job_id}"), range(40)))
    assert time.monotonic() - began < 10  # the old pause held each call for up to 30 s
    assert {(r.status_code, r.json()["success"], r.json()["status"]) for r in answers} == {(200, True, "pending")}
    assert local.get("/api/models").status_code == 200
    local.post(f"/api/training/cancel/{job_id}")


def test_resume_refusals_change_nothing(patient: TestClient, dataset: dict[str, Any], server_home: Path) -> None:
    job_id = start(patient, dataset)
    set_state(job_id, "running")
    engine = play_pause(job_id)
    patient.post(f"/api/training/pause/{job_id}")
    engine.join()
    before = state_fingerprint(server_home)
    r = patient.post(f"/api/training/resume/{job_id}", json={"hyperparameters": {"num_train_epochs": 3}})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "training.num_train_epochs")
    r = patient.post(f"/api/training/resume/{job_id}", json={"hyperparameters": "fast"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "hyperparameters")
    assert state_fingerprint(server_home) == before
    assert patient.get(f"/api/training/status/{job_id}").json()["status"] == "paused"
    patient.post(f"/api/training/cancel/{job_id}")


def test_resume_of_a_completed_job_is_409(local: TestClient, dataset: dict[str, Any]) -> None:
    job_id = start(local, dataset)
    set_state(job_id, "running")
    record_outcome(job_id, {"status": "completed", "step": 10, "total_steps": 10})
    r = local.post(f"/api/training/resume/{job_id}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"
    assert local.get(f"/api/training/status/{job_id}").json()["status"] == "completed"


# --- execute ---------------------------------------------------------------------------------

EXEC_CONFIG = {"model": {"base_model": "tiny-chat", "model_type": "causal-lm"}, **FAST}


def test_execute_with_inline_data(local: TestClient) -> None:
    r = local.post("/api/training/execute", json={"execution_id": "exec-123", "name": "My Training Job",
                                                  "dataset_content": chat_lines(6).decode(), "config": EXEC_CONFIG})
    assert r.status_code == 200, r.text
    body = ExecuteResponse.model_validate(r.json())
    assert body.message == "Training job queued successfully" and body.status in ("queued", "pending")
    assert r.json()["execution_id"] == "exec-123"
    ds = local.get(f"/api/training/dataset/{body.dataset_id}").json()["dataset"]
    assert (ds["name"], ds["samples"]) == ("My Training Job", 6)
    status = local.get(f"/api/training/status/{body.job_id}").json()
    assert status["model_name"] == "tiny-chat" and status["dataset_id"] == body.dataset_id
    local.post(f"/api/training/cancel/{body.job_id}")


def test_execute_with_a_server_path_only_inside_the_import_folder(local: TestClient, alice: TestClient,
                                                                  tmp_path: Path, server_home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    imports = tmp_path / "imports"
    imports.mkdir()
    data = imports / "local.jsonl"
    data.write_bytes(chat_lines(4))
    before = state_fingerprint(server_home)
    for client in (local, alice):  # off by default, for every user
        r = client.post("/api/training/execute", json={"dataset_path": str(data), "config": EXEC_CONFIG})
        assert (r.status_code, r.json()["error"]["field"]) == (403, "dataset_path"), r.text
    assert state_fingerprint(server_home) == before
    monkeypatch.setenv("WORKBENCH_IMPORT_DIR", str(imports))
    for client in (local, alice):
        r = client.post("/api/training/execute", json={"dataset_path": str(data), "config": EXEC_CONFIG})
        assert r.status_code == 200, r.text
        client.post(f"/api/training/cancel/{r.json()['job_id']}")
    r = local.post("/api/training/execute", json={"dataset_path": "local.jsonl", "config": EXEC_CONFIG})
    assert r.status_code == 200, r.text  # relative to the import folder
    local.post(f"/api/training/cancel/{r.json()['job_id']}")
    (imports / "escape.jsonl").symlink_to(server_home / "secret.key" if (server_home / "secret.key").exists()
                                          else "/etc/passwd")
    before = state_fingerprint(server_home)
    for path in ("/etc/passwd", str(imports / ".." / "x.jsonl"), str(imports / "escape.jsonl"), "../x.jsonl"):
        r = local.post("/api/training/execute", json={"dataset_path": path, "config": EXEC_CONFIG})
        assert (r.status_code, r.json()["error"]["field"]) == (403, "dataset_path"), (path, r.text)
    assert state_fingerprint(server_home) == before


def test_nothing_read_from_a_server_path_is_quoted_back(local: TestClient, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    imports = tmp_path / "imports"
    imports.mkdir()
    secret = imports / "secret.jsonl"
    secret.write_text('{"messages": "s3cr3t-value"}\n{"prompt": 1}\nroot:x:0:0:root:/root:/bin/bash\n')
    monkeypatch.setenv("WORKBENCH_IMPORT_DIR", str(imports))
    r = local.post("/api/training/execute", json={"dataset_path": str(secret), "config": EXEC_CONFIG})
    assert r.status_code == 422 and r.json()["error"]["field"] == "dataset_path"
    assert [e["line"] for e in r.json()["error"]["details"]["errors"]] == [1, 2, 3]  # still says where
    assert "s3cr3t" not in r.text and "root:x" not in r.text
    # the same content uploaded as one's own data is quoted, to help fix it
    r = local.post("/api/training/execute", json={"dataset_content": secret.read_text(), "config": EXEC_CONFIG})
    assert r.status_code == 422 and "s3cr3t" in r.text


CONTENT = chat_lines(3).decode()


@pytest.mark.parametrize("body, status, field", [
    ({"config": EXEC_CONFIG}, 422, "dataset_content"),
    ({"config": EXEC_CONFIG, "dataset_content": CONTENT, "dataset_path": "/x"}, 422, "dataset_path"),
    ({"dataset_content": CONTENT}, 422, "config"),
    ({"dataset_content": CONTENT, "config": "lora"}, 422, "config"),
    ({"dataset_content": CONTENT, "config": {"training": {"learning_rate": -1}}}, 422,
     "config.training.learning_rate"),
    ({"dataset_content": CONTENT, "config": {"training": {"bogus": 1}}}, 422, "config.training.bogus"),
    ({"dataset_content": '{"messages": []}\n', "config": EXEC_CONFIG}, 422, "file"),
    ({"dataset_content": CONTENT, "config": EXEC_CONFIG, "execution_id": 5}, 422, "execution_id"),
    ({"dataset_path": "/no/such/file.jsonl", "config": EXEC_CONFIG}, 403, "dataset_path"),
])
def test_execute_refusals_store_nothing(local: TestClient, server_home: Path, body: dict[str, Any], status: int,
                                        field: str) -> None:
    before = state_fingerprint(server_home)
    r = local.post("/api/training/execute", json=body)
    assert (r.status_code, r.json()["error"]["field"]) == (status, field), r.text
    if r.json()["error"]["code"] == "INVALID_INPUT":
        assert r.json()["error"]["message"].startswith(f"{field}: ")
    assert state_fingerprint(server_home) == before


def test_execute_with_bad_records_lists_them_by_line(local: TestClient) -> None:
    content = chat_lines(2).decode() + '{"messages": [{"role": "user"}]}\n'
    r = local.post("/api/training/execute", json={"dataset_content": content, "config": EXEC_CONFIG})
    assert r.status_code == 422
    assert [(e["line"], e["field"]) for e in r.json()["error"]["details"]["errors"]] == [(3, "messages[0].content")]


def test_execute_with_an_unknown_model_leaves_no_dataset(local: TestClient) -> None:
    before = local.get("/api/training/dataset").json()["datasets"]
    r = local.post("/api/training/execute", json={"dataset_content": chat_lines(3).decode(),
                                                  "config": {"model": {"base_model": "no such model"}}})
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"
    assert local.get("/api/training/dataset").json()["datasets"] == before


def test_execute_content_over_the_upload_limit_is_413(server_home: Path) -> None:
    with TestClient(create_app(multi_user=False, max_upload_bytes=1024, executor=IdleExecutor()),
                    headers=local_headers()) as client:
        r = client.post("/api/training/execute", json={"dataset_content": chat_lines(100).decode(),
                                                       "config": EXEC_CONFIG})
        assert r.status_code == 413


# --- live events -----------------------------------------------------------------------------

def sse_events(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            out.append({"event": fields["event"], "data": json.loads(fields["data"])})
    return out


def test_sse_follows_a_running_job_to_its_end(local: TestClient, dataset: dict[str, Any]) -> None:
    job_id = start(local, dataset)
    engine = play_engine(job_id)
    r = local.get(f"/api/training/{job_id}/events")
    engine.join()
    events = sse_events(r.text)
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses[0] == "pending" and "running" in statuses and statuses[-1] == "completed"
    assert events[-1]["event"] == "status"  # the final status comes after every metric
    kinds = [(e["data"]["type"], e["data"].get("step")) for e in events if e["event"] == "metric"]
    assert kinds == [("status", None), ("train", 5), ("train", 10), ("eval", 10)]


def test_websocket_follows_a_running_job(local: TestClient, dataset: dict[str, Any]) -> None:
    job_id = start(local, dataset)
    engine = play_engine(job_id)
    frames = []
    with local.websocket_connect(f"/ws/training/{job_id}") as ws:
        while True:
            message = ws.receive()
            if message["type"] == "websocket.close":
                break
            frames.append(json.loads(message["text"]))
    engine.join()
    assert frames[0] == {"kind": "status", "status": "pending", "error": None}
    assert frames[-1] == {"kind": "status", "status": "completed", "error": None}
    assert [f.get("step") for f in frames if f.get("type") == "train"] == [5, 10]
    # the same job replayed afterwards: the same metric items
    replay = sse_events(local.get(f"/api/training/{job_id}/events").text)
    assert [e["data"] for e in replay if e["event"] == "metric"] == [f for f in frames if f["kind"] == "metric"]


def test_quiet_streams_send_keep_alives(local: TestClient, dataset: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.1)
    job_id = start(local, dataset)
    engine = play_engine(job_id, delay=0.4)
    text = local.get(f"/api/training/{job_id}/events").text
    engine.join()
    assert ": keep-alive" in text and sse_events(text)[-1]["data"]["status"] == "completed"


def test_a_listener_that_leaves_stops_its_watcher_thread(local: TestClient, dataset: dict[str, Any]) -> None:
    from workbench.jobs.service import JobService
    from workbench.records import LOCAL_USER

    job_id = start(local, dataset)

    async def listen_briefly() -> dict[str, Any] | None:
        items = live.follow(JobService(executor=IdleExecutor()), job_id, LOCAL_USER, heartbeat=0.1)
        first = await items.__anext__()
        await items.aclose()
        return first

    assert anyio.run(listen_briefly) == {"kind": "status", "status": "pending", "error": None}
    deadline = time.monotonic() + 3
    while any(t.name == f"watch-{job_id}" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == f"watch-{job_id}" for t in threading.enumerate())
    local.post(f"/api/training/cancel/{job_id}")


def test_events_of_an_unknown_job_are_404(local: TestClient) -> None:
    assert local.get("/api/training/job-0000000000/events").status_code == 404
    with pytest.raises(WebSocketDenialResponse) as denied:
        with local.websocket_connect("/ws/training/job-0000000000"):
            pass
    assert denied.value.status_code == 404  # type: ignore[attr-defined]


def test_head_of_a_stream_answers_at_once(local: TestClient, dataset: dict[str, Any]) -> None:
    job_id = start(local, dataset)  # pending for ever: a GET would follow it until it ends
    r = local.head(f"/api/training/{job_id}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream") and not r.content
    local.post(f"/api/training/cancel/{job_id}")


def test_models_by_server_path_only_inside_the_import_folder(local: TestClient, alice: TestClient,
                                                             dataset: dict[str, Any], server_home: Path,
                                                             tiny_chat_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder path would let a caller train on (or probe) any folder: only the import folder's."""
    folder = str(tiny_chat_dir)
    mine = upload(alice, chat_lines(4)).json()["dataset"]
    before = state_fingerprint(server_home)
    for client, ds in ((local, dataset), (alice, mine)):
        for model in (folder, "../models/tiny-chat", "~/x"):
            r = client.post("/api/training/start", json={"model": model, "dataset": ds["id"]})
            assert (r.status_code, r.json()["error"]["field"]) == (403, "model"), r.text
    r = alice.post("/api/training/execute", json={"dataset_content": CONTENT,
                                                  "config": {"model": {"base_model": folder}}})
    assert (r.status_code, r.json()["error"]["field"]) == (403, "config.model.base_model")
    r = alice.get(f"/api/training/dataset/{mine['id']}", params={"model": folder})
    assert (r.status_code, r.json()["error"]["field"]) == (403, "model")
    assert state_fingerprint(server_home) == before
    monkeypatch.setenv("WORKBENCH_IMPORT_DIR", str(tiny_chat_dir.parent))
    r = local.post("/api/training/start", json={"model": folder, "dataset": dataset["id"], "config": FAST})
    assert r.status_code == 200, r.text
    local.post(f"/api/training/cancel/{r.json()['job_id']}")


def test_events_without_the_history(local: TestClient, dataset: dict[str, Any]) -> None:
    job_id = start(local, dataset)
    play_engine(job_id, delay=0.05).join()
    replay = sse_events(local.get(f"/api/training/{job_id}/events").text)
    assert len(replay) > 1
    fresh = sse_events(local.get(f"/api/training/{job_id}/events", params={"from_start": "false"}).text)
    assert fresh == [{"event": "status", "data": {"kind": "status", "status": "completed", "error": None}}]
    r = local.get(f"/api/training/{job_id}/events", params={"from_start": "maybe"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "from_start")
