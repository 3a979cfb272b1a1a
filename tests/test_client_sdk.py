"""The SDK's parity with the server: every operation of ``/openapi.json`` has a client method,
which takes every field the operation reads; and the package's public surface, pinned.

The live round trips are in ``tests/server_live/test_sdk_live.py``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from workbench.testing import IdleExecutor
from starlette.testclient import TestClient

import workbench.client
from workbench.client import OPERATIONS, TrainingClient
from workbench.server.app import create_app, operations

# where a client parameter is named differently from the API field it fills
PARAM_ALIASES = {
    "results_validate": {"metrics_to_compute": "metrics"},
    "datasets_upload_dataset": {"file": "path"},
    **{op: {"startDate": "start_date", "endDate": "end_date"} for op in (
        "usage_analytics_data", "usage_models", "usage_export_records")},
    "usage_run_tool": {"arguments": "arguments"},
}



@pytest.fixture
def spec(home: Path) -> dict[str, Any]:
    with TestClient(create_app(executor=IdleExecutor())) as http:
        r = http.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _operation_ids(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {op["operationId"]: (method.upper(), path)
            for path, item in spec["paths"].items() for method, op in item.items()}


def test_every_operation_of_the_app_has_a_client_method(spec: dict[str, Any]) -> None:
    ids = _operation_ids(spec)
    missing = []
    for op in operations():
        op_id = spec["paths"][op.path][op.method.lower()]["operationId"]
        name = OPERATIONS.get(op_id)
        method = getattr(TrainingClient, name, None) if name else None
        if not callable(method):
            missing.append(f"{op_id}: {op.method} {op.path} ({op.summary}) -> {name!r}")
    assert not missing, "operations without a TrainingClient method:\n" + "\n".join(missing)
    # the two app-level routes of the document too, and no stale entry left in the mapping
    for op_id in ids:
        assert callable(getattr(TrainingClient, OPERATIONS.get(op_id, ""), None)), f"{op_id} {ids[op_id]}"
    assert not set(OPERATIONS) - set(ids), f"mapped operations the server no longer has: {set(OPERATIONS) - set(ids)}"
    assert len(set(OPERATIONS.values())) == len(OPERATIONS)  # one method per operation


def test_every_client_method_takes_every_field_of_its_operation(spec: dict[str, Any]) -> None:
    """What the server reads (body, form, query) the method can send: no raw requests needed."""
    gaps = []
    for op in operations():
        op_id = spec["paths"][op.path][op.method.lower()]["operationId"]
        params = inspect.signature(getattr(TrainingClient, OPERATIONS[op_id])).parameters
        aliases = PARAM_ALIASES.get(op_id, {})
        for model in (op.body, op.form, op.query):
            for field in model.model_fields if model is not None else ():
                if aliases.get(field, field) not in params:
                    gaps.append(f"{op_id}.{OPERATIONS[op_id]}: no parameter for {model.__name__}.{field}")
        positional = [p for p in params.values() if p.name != "self"][:len(op.path_params)]
        assert len(positional) == len(op.path_params), op_id
    assert not gaps, "\n".join(gaps)


def test_public_surface() -> None:
    assert workbench.client.__all__ == [
        "FINAL_STATES",
        "OPERATIONS",
        "APIError",
        "TrainingClient",
        "filename_from_disposition",
        "find_token",
        "parse_sse",
    ]
    for name in workbench.client.__all__:
        assert hasattr(workbench.client, name), name
    public = {n for n in vars(workbench.client) if not n.startswith("_") and n != "annotations"}
    assert public == set(workbench.client.__all__)
    assert TrainingClient.__module__ == workbench.client.APIError.__module__ == "workbench.client"
    from workbench.client import APIError, find_token  # noqa: F401 - the documented imports


# --- what the new methods send, over a mock transport ---------------------------------------------

class Recorder:
    def __init__(self, body: Any = None):
        self.requests: list[httpx.Request] = []
        self.body = body if body is not None else {"job_id": "job-1", "status": "queued"}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return httpx.Response(200, json=self.body)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def _client(rec: Recorder) -> TrainingClient:
    return TrainingClient("http://wb.test", token="wb_test", transport=httpx.MockTransport(rec))


def test_start_training_sends_name_eval_dataset_and_overrides() -> None:
    rec = Recorder()
    with _client(rec) as c:
        c.start_training("tiny-chat", "dataset-1", "lora", name="run", eval_dataset="dataset-2",
                         overrides={"training": {"max_steps": 3}})
        assert json.loads(rec.last.content) == {"model": "tiny-chat", "dataset": "dataset-1", "config": "lora",
                                                "name": "run", "eval_dataset": "dataset-2",
                                                "overrides": {"training": {"max_steps": 3}}}
        c.start_training("tiny-chat", "dataset-1", overrides=("learning_rate=1e-4",))
        assert json.loads(rec.last.content) == {"model": "tiny-chat", "dataset": "dataset-1",
                                                "overrides": ["learning_rate=1e-4"]}
    assert rec.last.headers["authorization"] == "Bearer wb_test"


def test_preview_update_config_events_and_upload_of_bytes() -> None:
    rec = Recorder({"config": {"id": "config-1"}})
    with _client(rec) as c:
        c.preview_dataset("dataset-1", model="tiny-chat", index=3)
        assert rec.last.url.path == "/api/training/dataset/dataset-1/preview"
        assert dict(rec.last.url.params) == {"model": "tiny-chat", "index": "3"}
        assert c.update_config("config-1", description="") == {"id": "config-1"}
        assert (rec.last.method, json.loads(rec.last.content)) == ("PUT", {"description": ""})  # None: unchanged
        c.upload_dataset(b'{"messages": []}\n', name="inline", filename="../x/chats.jsonl")
        assert b'filename="chats.jsonl"' in rec.last.content and b"inline" in rec.last.content
        c.openapi()
        assert rec.last.url.path == "/openapi.json"
    seen = []

    def sse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text='event: status\ndata: {"status": "completed"}\n\n',
                              headers={"content-type": "text/event-stream"})

    with TrainingClient("http://wb.test", token="t", transport=httpx.MockTransport(sse)) as c:
        assert list(c.events("job-1", from_start=False)) == [
            {"event": "status", "data": {"status": "completed"}, "id": None}]
        assert dict(seen[-1].url.params) == {"from_start": "false"}
        list(c.events("job-1"))
        assert not seen[-1].url.params


def test_ws_url_follows_the_scheme() -> None:
    from workbench.client._transport import Transport

    assert Transport("http://h:1/", "t").ws_url("/ws/x") == "ws://h:1/ws/x"
    assert Transport("https://h/wb", "t").ws_url("/ws/x") == "wss://h/wb/ws/x"


def test_a_closed_port_is_an_httpx_error(unused_port: int) -> None:
    with TrainingClient(f"http://127.0.0.1:{unused_port}", token="t", timeout=5) as c, \
            pytest.raises(httpx.ConnectError):
        c.list_jobs()


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_monitor_training_draws_its_bar_while_the_job_has_no_total_yet(capsys) -> None:
    answers = iter([{"job_id": "job-1", "status": "pending", "current_step": None, "total_steps": None},
                    {"job_id": "job-1", "status": "pending", "current_step": None, "total_steps": None},
                    {"job_id": "job-1", "status": "running", "current_step": 5, "total_steps": 10, "loss": 1.5},
                    {"job_id": "job-1", "status": "completed", "current_step": 10, "total_steps": 10, "loss": 1.0}])

    def status(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=next(answers))

    with TrainingClient("http://wb.test", token="t", transport=httpx.MockTransport(status)) as c:
        seen = [s["status"] for s in c.monitor_training("job-1", interval=0, progress=True)]
    assert seen == ["pending", "pending", "running", "completed"]
    assert "10/10" in capsys.readouterr().err  # the bar reached the total
