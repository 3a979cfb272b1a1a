"""Who is calling: bearer tokens in multi-user mode, the local user in single-user mode."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from workbench.records import LOCAL_USER
from workbench.server.app import create_app

from .conftest import IdleExecutor, bearer, chat_lines, upload

PROTECTED = ["/api/models", "/api/training", "/api/training/dataset", "/api/training/analytics/summary",
             "/api/training/status/job-x", "/api/training/job-x/events"]


@pytest.mark.parametrize("path", PROTECTED)
def test_multi_user_mode_needs_a_token(anon: TestClient, path: str) -> None:
    r = anon.get(path)
    assert r.status_code == 401
    assert r.json() == {"success": False, "error": {"code": "UNAUTHORIZED", "message": r.json()["error"]["message"]}}
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer wb_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "wb_abc",
                                    "Bearer " + "x" * 5000])
def test_a_bad_token_is_401(anon: TestClient, header: str) -> None:
    r = anon.get("/api/training", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"


def test_a_revoked_token_stops_working_at_once(anon: TestClient, users: dict[str, str]) -> None:
    from workbench.users import issue_token, revoke

    record, token = issue_token("alice")
    assert anon.get("/api/training", headers=bearer(token)).status_code == 200
    revoke(record["id"])
    assert anon.get("/api/training", headers=bearer(token)).status_code == 401


def test_health_and_openapi_are_public(anon: TestClient) -> None:
    assert anon.get("/health").json() == {"status": "ok"}
    assert anon.get("/openapi.json").json()["openapi"].startswith("3.")


def test_the_token_decides_whose_data_it_is(alice: TestClient, bob: TestClient) -> None:
    ds = upload(alice, chat_lines(3)).json()["dataset"]
    assert ds["owner"] != LOCAL_USER
    assert ds["id"] in [d["id"] for d in alice.get("/api/training/dataset").json()["datasets"]]
    assert ds["id"] not in [d["id"] for d in bob.get("/api/training/dataset").json()["datasets"]]


def test_local_mode_needs_no_token_and_is_the_local_user(local: TestClient, alice: TestClient,
                                                         users: dict[str, str]) -> None:
    mine = upload(local, chat_lines(2), filename="local.jsonl").json()["dataset"]
    assert mine["owner"] == LOCAL_USER
    assert mine["id"] not in [d["id"] for d in alice.get("/api/training/dataset").json()["datasets"]]
    # a valid token still maps to its user in local mode; an invalid one is refused, never silently "local"
    as_alice = local.get("/api/training/dataset", headers=bearer(users["alice"])).json()["datasets"]
    assert mine["id"] not in [d["id"] for d in as_alice] and as_alice
    assert local.get("/api/training/dataset", headers=bearer("wb_forged")).status_code == 401


def test_auth_mode_from_the_environment(server_home: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_AUTH", "1")
    with TestClient(create_app(executor=IdleExecutor())) as client:
        assert client.get("/api/models").status_code == 401
    monkeypatch.setenv("WORKBENCH_AUTH", "0")
    with TestClient(create_app(executor=IdleExecutor())) as client:
        assert client.get("/api/models").status_code == 200


def test_websocket_without_a_valid_token_is_refused(anon: TestClient) -> None:
    for url in ("/ws/training/job-x", "/ws/training/job-x?token=wb_forged"):
        with pytest.raises(WebSocketDenialResponse) as denied:
            with anon.websocket_connect(url):
                pass
        assert denied.value.status_code == 401  # type: ignore[attr-defined]


def test_query_token_is_only_for_streams(anon: TestClient, users: dict[str, str]) -> None:
    """``?token=`` would end up in access logs; only WebSockets and SSE (EventSource) need it."""
    assert anon.get(f"/api/training?token={users['alice']}").status_code == 401
    r = anon.get(f"/api/training/job-unknown/events?token={users['alice']}")
    assert r.status_code == 404  # authenticated, then: no such job
