"""Who is calling: a bearer token on every protected route, in every mode, loopback included."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from workbench.records import LOCAL_USER
from workbench.server.app import create_app

from .conftest import IdleExecutor, bearer, chat_lines, upload

PROTECTED = ["/api/training", "/api/training/dataset", "/api/training/analytics/summary",
             "/api/training/status/job-x", "/api/training/job-x/events"]


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize("mode", ["multi", "local"])
def test_every_mode_needs_a_token(anon: TestClient, local_app: Any, mode: str, path: str) -> None:
    if mode == "local":  # the single-user server on loopback is no exception (Jupyter's rule)
        with TestClient(local_app, base_url="http://127.0.0.1:8000") as client:
            r = client.get(path)
    else:
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


def test_health_openapi_and_the_model_list_are_public(anon: TestClient, alice: TestClient) -> None:
    assert anon.get("/health").json() == {"status": "ok"}
    assert anon.get("/openapi.json").json()["openapi"].startswith("3.")
    custom = alice.post("/api/models", json={"name": "mine", "provider": "openai", "base_url": "https://api.example",
                                             "model_id": "m", "auth_type": "none"})
    assert custom.status_code == 201, custom.text
    public = [m["id"] for m in anon.get("/api/models").json()["models"]]
    assert "tiny-chat" in public and custom.json()["model"]["id"] not in public  # built-ins only, without a token
    assert custom.json()["model"]["id"] in [m["id"] for m in alice.get("/api/models").json()["models"]]
    assert anon.post("/api/models", json={}).status_code == 401  # only the GET is public


def test_the_token_decides_whose_data_it_is(alice: TestClient, bob: TestClient) -> None:
    ds = upload(alice, chat_lines(3)).json()["dataset"]
    assert ds["owner"] != LOCAL_USER
    assert ds["id"] in [d["id"] for d in alice.get("/api/training/dataset").json()["datasets"]]
    assert ds["id"] not in [d["id"] for d in bob.get("/api/training/dataset").json()["datasets"]]


def test_the_local_token_is_the_local_user(local: TestClient, alice: TestClient, users: dict[str, str]) -> None:
    mine = upload(local, chat_lines(2), filename="local.jsonl").json()["dataset"]
    assert mine["owner"] == LOCAL_USER
    assert mine["id"] not in [d["id"] for d in alice.get("/api/training/dataset").json()["datasets"]]
    # another user's token maps to that user; an invalid one is refused, never silently "local"
    as_alice = local.get("/api/training/dataset", headers=bearer(users["alice"])).json()["datasets"]
    assert mine["id"] not in [d["id"] for d in as_alice] and as_alice
    assert local.get("/api/training/dataset", headers=bearer("wb_forged")).status_code == 401


def test_the_local_token_is_made_on_first_start_in_a_private_file(tmp_path: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import stat

    from workbench.client import find_token
    from workbench.users import authenticate

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "fresh"))
    monkeypatch.delenv("WORKBENCH_TOKEN", raising=False)
    create_app(executor=IdleExecutor())
    token_file = tmp_path / "fresh" / "token"
    token = token_file.read_text().strip()
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "fresh").st_mode) == 0o700
    assert authenticate(token) == LOCAL_USER
    create_app(executor=IdleExecutor())
    assert token_file.read_text().strip() == token  # stable across restarts
    # clients find it by themselves, for loopback servers only (it never leaves the machine)
    assert find_token("http://127.0.0.1:8000") == token
    assert find_token("http://localhost:9") == token
    assert find_token("https://workbench.example.org") is None
    monkeypatch.setenv("WORKBENCH_TOKEN", "wb_explicit")
    assert find_token("https://workbench.example.org") == "wb_explicit"


def test_authentication_never_takes_the_store_lock(server_home: Any, users: dict[str, str]) -> None:
    """A flood of unknown tokens is answered from the lock-free snapshot, even while a writer holds the lock."""
    import threading

    from workbench.store import get_store
    from workbench.users import authenticate

    store = get_store()
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store.transaction():
            held.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(5)
        done = []
        reader = threading.Thread(target=lambda: done.append([authenticate(users["alice"])]
                                                             + [authenticate(f"wb_unknown{i}") for i in range(2000)]))
        reader.start()
        reader.join(5)
        assert done, "authentication waited for the store's lock"
        assert done[0][0] == users["alice_id"] and set(done[0][1:]) == {None}
    finally:
        release.set()
        t.join()


def test_multi_user_mode_from_the_environment(server_home: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_AUTH", "1")
    assert create_app(executor=IdleExecutor()).state.settings.multi_user is True
    monkeypatch.setenv("WORKBENCH_AUTH", "0")
    app = create_app(executor=IdleExecutor())
    assert app.state.settings.multi_user is False
    with TestClient(app) as client:  # secure by default all the same
        assert client.get("/api/training/jobs").status_code == 401


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
