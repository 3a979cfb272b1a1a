"""Route resolution: every documented path reaches its own handler although many share a prefix.

``/api/training/{id}`` (a saved config) could swallow ``/api/training/dataset``, ``/templates``,
``/start``…, and ``/api/training/{jobId}/analytics`` could swallow ``/api/training/analytics/summary``.
Literal segments are matched first; each case below would answer differently if they were not.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from workbench.server.app import create_app, operations

from .conftest import chat_lines, upload


def test_literal_routes_win_over_the_config_id(alice: TestClient) -> None:
    assert "datasets" in alice.get("/api/training/dataset").json()
    assert "templates" in alice.get("/api/training/templates").json()
    assert "jobs" in alice.get("/api/training/jobs").json()
    assert "configs" in alice.get("/api/training").json()
    # POST-only literals reached with the config methods: 405, not "config 'start' not found"
    for word in ("start", "execute", "validate", "dataset", "templates", "jobs"):
        for method in ("GET", "PUT", "DELETE"):
            r = alice.request(method, f"/api/training/{word}", json={})
            if (method, word) in {("GET", "dataset"), ("GET", "templates"), ("GET", "jobs")}:
                assert r.status_code == 200
            else:
                assert r.status_code == 405, (method, word, r.text)
                assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_the_start_route_is_not_a_config(alice: TestClient) -> None:
    r = alice.post("/api/training/start", json={})
    assert r.status_code == 422 and r.json()["error"]["field"] in ("model", "dataset")  # start's own validation


def test_analytics_routes_are_not_job_ids(alice: TestClient) -> None:
    r = alice.get("/api/training/analytics/summary")
    assert r.status_code == 200 and "total_jobs" in r.json()
    r = alice.get("/api/training/analytics/compare")
    assert r.status_code == 422 and r.json()["error"]["field"] == "job_ids"  # compare's own query check
    r = alice.get("/api/training/job-0000000000/analytics")
    assert r.status_code == 404 and "job" in r.json()["error"]["message"]


@pytest.mark.parametrize("path, word", [
    ("/api/training/status/{x}", "analytics"), ("/api/training/status/{x}", "dataset"),
    ("/api/training/metrics/{x}", "events"), ("/api/training/logs/{x}", "analytics"),
    ("/api/training/checkpoints/{x}", "download"), ("/api/training/local/{x}/status", "metrics"),
    ("/api/training/local/{x}/metrics", "status"), ("/api/training/{x}/analytics", "status"),
    ("/api/training/{x}/events", "local"), ("/api/training/{x}/download/logs", "dataset"),
])
def test_job_routes_take_any_word_as_a_job_id(alice: TestClient, path: str, word: str) -> None:
    """An id that equals another route's word still reaches the job handler (and is simply unknown)."""
    r = alice.get(path.format(x=word))
    assert r.status_code == 404, r.text
    assert r.json()["error"]["message"].startswith("job"), r.text


def test_dataset_subroutes_and_config_ids_do_not_collide(alice: TestClient) -> None:
    ds = upload(alice, chat_lines(4)).json()["dataset"]
    assert alice.get(f"/api/training/dataset/{ds['id']}").json()["dataset"]["id"] == ds["id"]
    r = alice.get(f"/api/training/{ds['id']}")  # a dataset id is not a config id
    assert r.status_code == 404 and "config" in r.json()["error"]["message"]
    cfg = alice.post("/api/training", json={"name": "c"}).json()["config"]
    assert alice.get(f"/api/training/{cfg['id']}").json()["config"]["id"] == cfg["id"]
    assert alice.get(f"/api/training/dataset/{cfg['id']}").status_code == 404


def test_unknown_paths_and_methods(alice: TestClient) -> None:
    r = alice.get("/api/nothing/here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = alice.delete("/api/models")
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_every_literal_path_is_matched_before_a_parameter_at_the_same_place() -> None:
    app = create_app(multi_user=False)
    order = [r.path for r in app.routes]  # type: ignore[attr-defined]
    for op in operations():
        for other in operations():
            a, b = op.path.split("/"), other.path.split("/")
            if len(a) != len(b) or a == b:
                continue
            diff = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
            if not a[diff].startswith("{") and b[diff].startswith("{"):
                assert order.index(op.path) < order.index(other.path), (op.path, other.path)


