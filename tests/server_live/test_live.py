"""The REST API over a real socket, driven by the SDK client: a whole fine-tune, live streams,
downloads and user isolation.

One module-scoped flow trains a real job through the product path (papermill, a detached
process): upload the sample → create_config → start_training → monitor_training. While it
runs, two threads follow the same job over SSE and over the WebSocket, recording when each
event arrived. The tests below read that record.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from workbench.client import FINAL_STATES, APIError, TrainingClient, filename_from_disposition, parse_sse
from workbench.datasets import SAMPLE_DATASET
from workbench.testing import FAST

from .conftest import LiveServer

JOB_TIMEOUT = 240


# --- recording the live streams --------------------------------------------------------------

class Recorder(threading.Thread):
    """Collects ``(seconds since start, event)`` from an iterator of events, in a thread."""

    def __init__(self, source: Iterator[dict[str, Any]]):
        super().__init__(daemon=True)
        self.source = source
        self.t0 = time.monotonic()
        self.items: list[tuple[float, dict[str, Any]]] = []
        self.error: BaseException | None = None
        self.closed = False

    def run(self) -> None:
        try:
            for ev in self.source:
                self.items.append((time.monotonic() - self.t0, ev))
            self.closed = True
        except BaseException as exc:  # noqa: BLE001 - reported by the tests
            self.error = exc

    @property
    def events(self) -> list[dict[str, Any]]:
        return [ev for _, ev in self.items]


def ws_events(server: LiveServer, job_id: str, token: str, *, via_query: bool = False) -> Iterator[dict[str, Any]]:
    """WebSocket frames as ``{"event", "data"}``, until the server closes the socket."""
    from websockets.exceptions import ConnectionClosedOK
    from websockets.sync.client import connect

    url = f"{server.ws_url}/ws/training/{job_id}"
    headers = None
    if via_query:
        url += f"?token={token}"
    else:
        headers = {"Authorization": f"Bearer {token}"}
    with connect(url, additional_headers=headers, open_timeout=10, close_timeout=5) as ws:
        while True:
            try:
                frame = ws.recv(timeout=JOB_TIMEOUT)
            except ConnectionClosedOK:
                return
            yield normalise(json.loads(frame))


def normalise(frame: dict[str, Any]) -> dict[str, Any]:
    """A WebSocket frame in the SSE shape, so the two streams compare item by item."""
    if "event" in frame and "data" in frame:
        return {"event": frame["event"], "data": frame["data"]}
    return {"event": frame.get("kind") or frame.get("type"), "data": frame}


def sse_events(client: TrainingClient, job_id: str) -> Iterator[dict[str, Any]]:
    for ev in client.events(job_id, timeout=JOB_TIMEOUT):
        yield {"event": ev["event"], "data": ev["data"]}


def status_of(ev: dict[str, Any]) -> str | None:
    return ev["data"].get("status") if ev["event"] == "status" and isinstance(ev["data"], dict) else None


# --- the flow ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flow(live_server: LiveServer, alice: tuple[dict, str]) -> dict[str, Any]:
    """upload → create_config → start_training, both streams attached, monitor until completed."""
    _, token = alice
    with TrainingClient(live_server.base_url, token=token) as wb, \
            TrainingClient(live_server.base_url, token=token) as streams:
        dataset = wb.upload_dataset(SAMPLE_DATASET, name="support chats")
        config = wb.create_config("tiny 10 steps", FAST, template_type="lora", description="live test")
        started = wb.start_training("tiny-chat", dataset["id"], config["id"])
        job_id = started["job_id"]
        sse = Recorder(sse_events(streams, job_id))
        ws = Recorder(ws_events(live_server, job_id, token))
        sse.start()
        ws.start()
        t0 = time.monotonic()
        polled = []
        for status in wb.monitor_training(job_id, interval=0.5, progress=True):  # the tqdm bar, as users call it
            polled.append((time.monotonic() - t0, status))
            assert time.monotonic() - t0 < JOB_TIMEOUT, f"job stuck: {status}"
        finished_at = time.monotonic()
        sse.join(timeout=30)
        ws.join(timeout=30)
    return {"dataset": dataset, "config": config, "started": started, "job_id": job_id, "polled": polled,
            "sse": sse, "ws": ws, "finished_at": finished_at, "token": token}


def test_start_training_answers_with_a_queued_job(flow: dict[str, Any]) -> None:
    started = flow["started"]
    assert re.fullmatch(r"job-[0-9a-f]+", started["job_id"])
    assert started["status"] in ("queued", "pending", "running")
    assert {"message", "estimated_duration"} <= set(started)
    assert flow["config"]["is_validated"] and flow["config"]["config_json"]["training"]["max_steps"] == 10
    assert flow["dataset"]["samples"] == 400


def test_monitor_training_yields_statuses_until_completed(flow: dict[str, Any], live_server: LiveServer) -> None:
    statuses = [s for _, s in flow["polled"]]
    assert statuses[-1]["status"] == "completed", statuses[-1]
    assert statuses[-1]["current_step"] == statuses[-1]["total_steps"] == 10
    assert statuses[-1]["progress"] == 100
    assert all(s["status"] not in FINAL_STATES for s in statuses[:-1])
    assert len(statuses) >= 3  # it really polled a running job
    # the product path: a papermill run of the job notebook, in a process of its own
    assert (live_server.home / "jobs" / flow["job_id"] / "notebooks" / "run-1.ipynb").is_file()


def test_sse_events_arrive_live_and_end_at_the_final_state(flow: dict[str, Any]) -> None:
    sse: Recorder = flow["sse"]
    assert sse.error is None, repr(sse.error)
    assert sse.closed, "the server must close the stream once the job is final"
    events = sse.events
    assert {e["event"] for e in events} <= {"status", "metric"}
    statuses = [s for e in events if (s := status_of(e))]
    assert statuses[-1] == "completed", statuses
    assert "running" in statuses
    train = [e["data"] for e in events if e["event"] == "metric" and e["data"].get("type") == "train"]
    assert [m["step"] for m in train] == [5, 10]
    assert all(isinstance(m["loss"], float) for m in train)
    # live: the first events came while the job was still running, well before the last ones
    arrivals = [t for t, _ in sse.items]
    assert arrivals[-1] - arrivals[0] > 2.0, arrivals
    first_train = next(t for t, e in sse.items if e["event"] == "metric" and e["data"].get("type") == "train")
    assert first_train < arrivals[-1] - 0.5


def test_websocket_delivers_the_same_events(flow: dict[str, Any]) -> None:
    ws: Recorder = flow["ws"]
    assert ws.error is None, repr(ws.error)
    assert ws.closed
    assert ws.events == flow["sse"].events


def test_streams_of_a_finished_job_replay_and_close(live_server: LiveServer, flow: dict[str, Any],
                                                   client: TrainingClient) -> None:
    t0 = time.monotonic()
    sse = list(sse_events(client, flow["job_id"]))
    ws = list(ws_events(live_server, flow["job_id"], flow["token"], via_query=True))
    assert time.monotonic() - t0 < 10
    # the metrics history again, then the status the job is in now (its earlier ones were live only)
    live_metrics = [e for e in flow["sse"].events if e["event"] == "metric"]
    assert [e for e in sse if e["event"] == "metric"] == live_metrics
    assert [status_of(e) for e in sse if e["event"] == "status"] == ["completed"]
    assert status_of(sse[-1]) == "completed"
    assert ws == sse


def test_checkpoints_listing(flow: dict[str, Any], client: TrainingClient) -> None:
    listing = client.list_checkpoints(flow["job_id"])
    assert listing["job_id"] == flow["job_id"]
    assert [c["step"] for c in listing["checkpoints"]] == [5, 10]
    assert listing["total"] == 2 and listing["best_checkpoint"] in ("checkpoint-5", "checkpoint-10")
    assert all(c["eval_loss"] is not None and c["size_mb"] > 0 for c in listing["checkpoints"])


def test_metrics_and_logs(flow: dict[str, Any], client: TrainingClient) -> None:
    metrics = client.get_metrics(flow["job_id"])
    assert metrics["job_id"] == flow["job_id"] and metrics["total_points"] == len(metrics["metrics"]) >= 2
    assert [m["step"] for m in metrics["metrics"] if "loss" in m][:2] == [5, 10]
    local = client.get_local_metrics(flow["job_id"])
    assert local["job_id"] == flow["job_id"] and local["metrics"]
    logs = client.get_logs(flow["job_id"])
    assert logs["total_lines"] == len(logs["logs"]) > 0


def test_validate_the_final_model(flow: dict[str, Any], client: TrainingClient) -> None:
    res = client.validate("final", flow["dataset"]["id"], ["perplexity", "accuracy"], job_id=flow["job_id"])
    assert res["status"] == "completed" and res["job_id"].startswith("val-")
    assert set(res["metrics"]) == {"perplexity", "accuracy"}
    assert res["metrics"]["perplexity"] > 1 and 0 <= res["metrics"]["accuracy"] <= 1


def test_download_model_is_a_zip_named_as_documented(flow: dict[str, Any], client: TrainingClient,
                                                     tmp_path: Path) -> None:
    job = flow["job_id"]
    short = job.replace("-", "_", 1)  # the reference: job_12345-abcde_checkpoint-2000.zip
    path = client.download_model(job, tmp_path, checkpoint="checkpoint-10")
    assert path.name == f"{short}_checkpoint-10.zip"
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
    assert "adapter_config.json" in [Path(n).name for n in names]
    assert not any(n.startswith("/") or ".." in n.split("/") for n in names)
    whole = client.download_model(job, tmp_path / "model.zip")
    with zipfile.ZipFile(whole) as zf:
        assert zf.testzip() is None and len(zf.namelist()) >= len(names)
    assert not list(tmp_path.glob("*.part"))


def test_download_logs_holds_training_log_and_progress_json(flow: dict[str, Any], client: TrainingClient,
                                                          tmp_path: Path) -> None:
    job = flow["job_id"]
    path = client.download_logs(job, tmp_path)
    assert path.name == f"{job.replace('-', '_', 1)}_logs.zip"
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert {"training.log", "progress.json"} <= set(zf.namelist())
        progress = json.loads(zf.read("progress.json"))
    assert progress  # the metrics history, as JSON


def test_download_headers(live_server: LiveServer, flow: dict[str, Any]) -> None:
    job = flow["job_id"]
    headers = {"Authorization": f"Bearer {flow['token']}"}
    for suffix, name in (("model?checkpoint=checkpoint-5", f"{job.replace('-', '_', 1)}_checkpoint-5.zip"),
                         ("logs", f"{job.replace('-', '_', 1)}_logs.zip")):
        with httpx.stream("GET", f"{live_server.base_url}/api/training/{job}/download/{suffix}",
                          headers=headers, timeout=60) as r:
            body = r.read()
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/zip"
        assert r.headers["content-disposition"].startswith("attachment;")
        assert filename_from_disposition(r.headers["content-disposition"]) == name
        assert zipfile.ZipFile(io.BytesIO(body)).testzip() is None


def test_download_of_an_unknown_checkpoint_is_404(flow: dict[str, Any], client: TrainingClient,
                                                  tmp_path: Path) -> None:
    with pytest.raises(APIError) as err:
        client.download_model(flow["job_id"], tmp_path, checkpoint="checkpoint-999")
    assert err.value.status_code == 404
    with pytest.raises(APIError) as err:
        client.download_model(flow["job_id"], tmp_path, checkpoint="../../store.json")
    assert err.value.status_code == 400 and err.value.field == "checkpoint"  # refused before any lookup
    assert not list(tmp_path.iterdir())


def test_analytics_of_the_job(flow: dict[str, Any], client: TrainingClient) -> None:
    a = client.get_analytics(flow["job_id"])
    assert a["job_id"] == flow["job_id"]
    assert a["loss_progression"]["final_loss"] < a["loss_progression"]["initial_loss"]
    assert 0 <= a["efficiency_score"] <= 1
    summary = client.analytics_summary()
    assert summary["total_jobs"] >= 1 and summary["jobs_by_status"].get("completed", 0) >= 1
    with pytest.raises(APIError) as err:
        client.compare([flow["job_id"]])
    assert err.value.status_code == 422 and err.value.field == "job_ids"  # a comparison needs two


def test_control_of_a_finished_job_is_a_conflict(flow: dict[str, Any], client: TrainingClient) -> None:
    for action in (client.pause, client.resume, client.cancel):
        with pytest.raises(APIError) as err:
            action(flow["job_id"])
        assert err.value.status_code == 409 and err.value.code == "CONFLICT"


def test_execute_queues_a_job_from_inline_data_and_cancel_stops_it(flow: dict[str, Any],
                                                                  client: TrainingClient) -> None:
    rows = [json.loads(line) for line in SAMPLE_DATASET.read_text().splitlines()[:40]]
    config = {"model": {"base_model": "tiny-chat"}, **FAST}
    job = client.execute(config, name="inline", dataset_content=rows)
    assert job["status"] in ("queued", "pending", "running") and job["job_id"]
    assert client.get_status(job["job_id"])["job_id"] == job["job_id"]
    cancelled = client.cancel(job["job_id"])
    assert cancelled["status"] == "cancelled"
    assert client.get_status(job["job_id"])["status"] == "cancelled"
    cmp = client.compare([flow["job_id"], job["job_id"]])
    assert {row["job_id"] for row in cmp["comparison"]} == {flow["job_id"], job["job_id"]}


# --- users -------------------------------------------------------------------------------------

def test_another_user_sees_nothing_of_alices(flow: dict[str, Any], bob_client: TrainingClient,
                                             live_server: LiveServer, bob: tuple[dict, str], tmp_path: Path) -> None:
    job, dataset = flow["job_id"], flow["dataset"]["id"]
    for call in (lambda: bob_client.get_status(job), lambda: bob_client.get_metrics(job),
                 lambda: bob_client.get_logs(job), lambda: bob_client.list_checkpoints(job),
                 lambda: bob_client.get_analytics(job), lambda: bob_client.cancel(job),
                 lambda: bob_client.get_config(flow["config"]["id"]),
                 lambda: bob_client.download_logs(job, tmp_path),
                 lambda: list(bob_client.events(job, timeout=10)),
                 lambda: bob_client.start_training("tiny-chat", dataset, "lora"),
                 lambda: bob_client.validate("final", dataset, job_id=job)):
        with pytest.raises(APIError) as err:
            call()
        assert err.value.status_code == 404, err.value
    assert dataset not in [d["id"] for d in bob_client.list_datasets()]
    assert flow["config"]["id"] not in [c["id"] for c in bob_client.list_configs()]
    assert bob_client.analytics_summary()["total_jobs"] == 0
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:  # the WebSocket refuses too, before accepting
        list(ws_events(live_server, job, bob[1]))
    assert refused.value.response.status_code == 404


def test_requests_without_a_valid_token_are_401(live_server: LiveServer, flow: dict[str, Any], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.users import issue_token, revoke

    with TrainingClient(live_server.base_url) as local:  # finds the local user's token in the home
        with pytest.raises(APIError) as err:
            local.get_status(flow["job_id"])
        assert err.value.status_code == 404  # authenticated as the local user: alice's job is not theirs
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))  # a process with no token to find
    monkeypatch.delenv("WORKBENCH_TOKEN", raising=False)
    anon = TrainingClient(live_server.base_url)
    monkeypatch.undo()
    with anon:
        with pytest.raises(APIError) as err:
            anon.get_status(flow["job_id"])
        assert err.value.status_code == 401
        assert anon.health() is not None  # health needs no token
    rec, token = issue_token("alice")
    with TrainingClient(live_server.base_url, token=token) as c:
        assert c.get_status(flow["job_id"])["status"] == "completed"
        revoke(rec["id"])
        with pytest.raises(APIError) as err:
            c.get_status(flow["job_id"])
        assert err.value.status_code == 401
    with TrainingClient(live_server.base_url, token="wb_" + "x" * 43) as c, pytest.raises(APIError) as err:
        c.list_configs()
    assert err.value.status_code == 401 and err.value.code == "UNAUTHORIZED"
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        list(ws_events(live_server, flow["job_id"], token))  # the revoked token
    assert refused.value.response.status_code == 401


def test_errors_carry_code_message_and_field(client: TrainingClient) -> None:
    with pytest.raises(APIError) as err:
        client.get_status("job-0000000000")
    assert err.value.status_code == 404 and err.value.code == "NOT_FOUND" and err.value.message
    with pytest.raises(APIError) as err:
        client.create_config("")
    assert err.value.status_code == 422 and err.value.code == "INVALID_INPUT" and err.value.field == "name"
    # a config that fails validation is kept, marked invalid, with the offending field named
    bad = client.create_config("bad lr", {"training": {"learning_rate": -1}})
    assert bad["is_validated"] is False and "training.learning_rate" in bad["validation_errors"]
    with pytest.raises(APIError) as err:
        client.start_training("tiny-chat", "dataset-0000000000", bad["id"])
    assert err.value.status_code in (404, 422)


# --- the client on its own ---------------------------------------------------------------------

def test_parse_sse_follows_the_wire_format() -> None:
    lines = [": keep-alive", "event: status", 'data: {"status": "running"}', "", "data: {\"a\":", "data: 1}",
             "id: 7", "", "event: metric", "data: not json", ""]
    assert list(parse_sse(iter(lines))) == [
        {"event": "status", "data": {"status": "running"}, "id": None},
        {"event": "message", "data": {"a": 1}, "id": "7"},
        {"event": "metric", "data": "not json", "id": "7"},  # the last event id carries over, as in browsers
    ]


@pytest.mark.parametrize("header, name", [
    ("attachment; filename=job_1-a_logs.zip", "job_1-a_logs.zip"),
    ('attachment; filename="a b.zip"', "a b.zip"),
    ("attachment; filename*=UTF-8''caf%C3%A9.zip", "café.zip"),
    ('attachment; filename="../../etc/passwd"', "passwd"),
    ("attachment", None),
    (None, None),
])
def test_filename_from_disposition(header: str | None, name: str | None) -> None:
    assert filename_from_disposition(header) == name


def test_api_error_from_the_error_envelope() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/models/x":
            return httpx.Response(403, json={"success": False, "error": "Cannot delete global models"})
        return httpx.Response(422, json={"success": False, "error": {
            "code": "INVALID_INPUT", "message": "name is required", "field": "name"}})

    with TrainingClient("http://wb.test", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(APIError) as err:
            c.create_config("")
        assert (err.value.status_code, err.value.code, err.value.field) == (422, "INVALID_INPUT", "name")
        with pytest.raises(APIError) as err:
            c.delete_model("x")
        assert err.value.status_code == 403 and err.value.message == "Cannot delete global models"


def test_ids_stay_one_path_segment() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"job_id": "x", "status": "running"})

    with TrainingClient("http://wb.test", transport=httpx.MockTransport(handler)) as c:
        c.get_status("../../api/models?x=1")
    assert seen == ["/api/training/status/..%2F..%2Fapi%2Fmodels%3Fx%3D1"]
