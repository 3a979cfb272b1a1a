"""What a hostile web page, a rebinding DNS name or a greedy second user can do: nothing.

Each test is an attack seen on the landed server (a foreign Host, a cross-origin page, a
"simple" text/plain POST, a server path, a flood of long calls) and asserts it is refused
and changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from workbench.server.app import create_app
from workbench.testing import FAST, TrainedJob, copy_job

from .conftest import IdleExecutor, bearer, chat_lines, upload

EVIL = {"Host": "evil.example", "Origin": "http://evil.example"}


def model_body(name: str = "m") -> dict[str, str]:
    return {"name": name, "provider": "openai", "base_url": "https://api.example", "model_id": "x",
            "auth_type": "none"}


# --- Host and Origin -------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil"])
def test_a_foreign_host_is_refused(local_app: Any, users: dict[str, str], host: str,
                                   unchanged: Any) -> None:
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, so only the Host tells."""
    with TestClient(local_app, base_url=f"http://{host}", headers=bearer(users["alice"])) as client:
        for r in (client.get("/api/training/jobs"), client.post("/api/models", json=model_body()),
                  client.get("/api/models"), client.get("/health")):
            assert (r.status_code, r.json()["error"]["field"]) == (400, "host")
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/ws/training/job-x", headers={"Host": host}):
                pass
        assert denied.value.status_code == 400  # type: ignore[attr-defined]
    unchanged()


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000"])
def test_loopback_names_are_the_servers_own(local_app: Any, users: dict[str, str], host: str) -> None:
    with TestClient(local_app, base_url=f"http://{host}", headers=bearer(users["alice"])) as client:
        assert client.get("/api/training/jobs").status_code == 200


def test_configured_host_names_are_served(server_home: Path, users: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_ALLOWED_HOSTS", "workbench.lan, gpu-box")
    app = create_app(executor=IdleExecutor(), allowed_hosts=["10.0.0.5"])
    for host in ("workbench.lan", "gpu-box:8000", "10.0.0.5:8000"):
        with TestClient(app, base_url=f"http://{host}", headers=bearer(users["alice"])) as client:
            assert client.get("/api/training/jobs").status_code == 200
    with TestClient(app, base_url="http://testserver", headers=bearer(users["alice"])) as client:
        assert client.get("/api/training/jobs").status_code == 400  # the env no longer names it


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:9999", "https://testserver"])
def test_a_cross_origin_page_is_refused(alice: TestClient, origin: str, unchanged: Any) -> None:
    """CSRF: the browser attaches what it can; the Origin it sends gives the page away."""
    for r in (alice.post("/api/models", json=model_body(), headers={"Origin": origin}),
              alice.get("/api/training/jobs", headers={"Origin": origin}),
              alice.delete("/api/training/job-x", headers={"Origin": origin})):
        assert (r.status_code, r.json()["error"]["field"]) == (403, "origin"), r.text
    with pytest.raises(WebSocketDenialResponse) as denied:
        with alice.websocket_connect("/ws/training/job-x", headers={"Origin": origin}):
            pass
    assert denied.value.status_code == 403  # type: ignore[attr-defined]
    unchanged()


def test_same_origin_and_configured_origins_pass(alice: TestClient, server_home: Path, users: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert alice.get("/api/training/jobs", headers={"Origin": "http://testserver"}).status_code == 200
    monkeypatch.setenv("WORKBENCH_ALLOWED_ORIGINS", "https://notebooks.example.org")
    with TestClient(create_app(executor=IdleExecutor()), headers=bearer(users["alice"])) as client:
        r = client.get("/api/training/jobs", headers={"Origin": "https://notebooks.example.org"})
        assert r.status_code == 200


def test_the_passwd_attack_of_the_issue(local: TestClient, unchanged: Any) -> None:
    """``dataset_path=/etc/passwd`` from a foreign page: refused at the door, nothing quoted."""
    body = {"dataset_path": "/etc/passwd", "config": {"model": {"base_model": "tiny-chat"}}}
    r = local.post("/api/training/execute", json=body, headers=EVIL)
    assert r.status_code == 400 and "root:" not in r.text
    r = local.post("/api/training/execute", json=body, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "root:" not in r.text
    r = local.post("/api/training/execute", json=body)  # even from the user: no import folder is set
    assert (r.status_code, r.json()["error"]["field"]) == (403, "dataset_path") and "root:" not in r.text
    unchanged()


# --- simple requests -------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None])
def test_json_routes_refuse_what_a_browser_sends_without_asking(alice: TestClient, content_type: str | None,
                                                               unchanged: Any) -> None:
    import orjson

    headers = {"Content-Type": content_type} if content_type else {}
    r = alice.post("/api/models", content=orjson.dumps(model_body()), headers=headers)
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["field"]) == (
        415, "UNSUPPORTED_MEDIA_TYPE", "content-type")
    unchanged()


# --- paths in responses and URLs -------------------------------------------------------------

def test_multi_user_responses_show_no_server_paths(alice: TestClient, server_home: Path) -> None:
    ds = upload(alice, chat_lines(4)).json()["dataset"]
    job = alice.post("/api/training/start", json={"model": "tiny-chat", "dataset": ds["id"], "config": FAST}).json()
    for url in ("/api/training/dataset", f"/api/training/dataset/{ds['id']}", "/api/training/jobs",
                f"/api/training/status/{job['job_id']}", f"/api/training/checkpoints/{job['job_id']}"):
        r = alice.get(url)
        assert r.status_code == 200, (url, r.text)
        assert str(server_home) not in r.text, url
    alice.post(f"/api/training/cancel/{job['job_id']}")


def test_a_huge_id_is_a_422_never_a_500(alice: TestClient) -> None:
    for url in ("/api/training/status/" + "x" * 5000, "/api/training/metrics/" + "x" * 5000,
                "/api/training/dataset/" + "y" * 300, "/api/training/" + "z" * 1000 + "/download/logs"):
        r = alice.get(url)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "INVALID_INPUT"), (url[:40], r.text)
    assert alice.post("/api/training/pause/" + "x" * 5000).status_code == 422


# --- download links --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_job(server_home: Path, users: dict[str, str],
                 finished_lora_job_source: TrainedJob) -> Iterator[tuple[TestClient, str]]:
    """A finished job of alice's (checkpoints at 5 and 10): the session's one, copied into this home."""
    job = copy_job(finished_lora_job_source, owner=users["alice_id"])
    with TestClient(create_app(multi_user=True, executor=IdleExecutor()), headers=bearer(users["alice"])) as client:
        yield client, job["id"]


def test_a_signed_link_downloads_without_a_token_for_a_short_while(finished_job: tuple[TestClient, str],
                                                                   anon: TestClient) -> None:
    from urllib.parse import urlsplit

    from workbench import signing

    client, job_id = finished_job
    r = client.get(f"/api/training/{job_id}/download/link", params={"checkpoint": "checkpoint-10"})
    assert r.status_code == 200, r.text
    link = r.json()["url"]
    assert "wb_" + "token" not in link and "Bearer" not in link
    parts = urlsplit(link)
    path_q = f"{parts.path}?{parts.query}"
    assert anon.get(f"/api/training/{job_id}/download/model?checkpoint=checkpoint-10").status_code == 401
    got = anon.get(path_q)
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip" and got.content[:2] == b"PK"
    for tampered in (path_q.replace("checkpoint-10", "checkpoint-5"), path_q.replace("/model", "/logs"),
                     path_q[:-1] + ("0" if path_q[-1] != "0" else "1")):
        assert anon.get(tampered).status_code == 401
    expired = signing.sign(parts.path, client.get("/api/training/jobs").json()["jobs"][0]["owner"],
                           {"checkpoint": "checkpoint-10"}, ttl=-1)
    assert anon.get(expired).status_code == 401
    # a link for the logs is asked for the same way; another user's job has no link
    assert client.get(f"/api/training/{job_id}/download/link", params={"kind": "logs"}).status_code == 200


def test_no_link_for_another_users_job(finished_job: tuple[TestClient, str], bob: TestClient) -> None:
    _, job_id = finished_job
    assert bob.get(f"/api/training/{job_id}/download/link").status_code == 404


# --- quotas ----------------------------------------------------------------------------------

def test_active_jobs_quota_is_a_429_naming_the_limit(server_home: Path, users: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.users import add_user

    _, token = add_user("carol")
    monkeypatch.setenv("WORKBENCH_QUOTA_ACTIVE_JOBS", "2")
    with TestClient(create_app(multi_user=True, executor=IdleExecutor()), headers=bearer(token)) as carol:
        ds = upload(carol, chat_lines(4)).json()["dataset"]
        body = {"model": "tiny-chat", "dataset": ds["id"], "config": FAST}
        ids = [carol.post("/api/training/start", json=body).json()["job_id"] for _ in range(2)]
        before = len(carol.get("/api/training/jobs").json()["jobs"])
        r = carol.post("/api/training/start", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (429, "QUOTA_EXCEEDED")
        assert "WORKBENCH_QUOTA_ACTIVE_JOBS" in r.json()["error"]["message"]
        assert len(carol.get("/api/training/jobs").json()["jobs"]) == before
        carol.post(f"/api/training/cancel/{ids[0]}")
        assert carol.post("/api/training/start", json=body).status_code == 200  # a slot came free


def test_the_default_quota_leaves_a_person_ten_queued_jobs(alice: TestClient) -> None:
    from workbench.settings import Settings

    assert Settings.from_env().quotas.active_jobs >= 10
    ds = upload(alice, chat_lines(4)).json()["dataset"]
    ids = []
    for _ in range(10):
        r = alice.post("/api/training/start", json={"model": "tiny-chat", "dataset": ds["id"], "config": FAST})
        assert r.status_code == 200, r.text
        ids.append(r.json()["job_id"])
    for job_id in ids:
        alice.post(f"/api/training/cancel/{job_id}")


def test_storage_and_config_quotas_are_413(alice: TestClient, server_home: Path,
                                           monkeypatch: pytest.MonkeyPatch, unchanged: Any) -> None:
    monkeypatch.setenv("WORKBENCH_QUOTA_STORAGE_MB", "1")
    r = upload(alice, chat_lines(12000))  # ~1.2 MB
    assert (r.status_code, r.json()["error"]["field"]) == (413, "storage")
    assert "WORKBENCH_QUOTA_STORAGE_MB" in r.json()["error"]["message"]
    monkeypatch.setenv("WORKBENCH_MAX_CONFIG_KB", "1")
    big = {"training": {"learning_rate": 1e-3}, "notes": "x" * 4000}
    r = alice.post("/api/training", json={"name": "big", "config_json": big})
    assert (r.status_code, r.json()["error"]["code"]) == (413, "TOO_LARGE") and "WORKBENCH_MAX_CONFIG_KB" in r.text
    unchanged()


def test_live_streams_quota_is_a_429(server_home: Path, users: dict[str, str], alice: TestClient,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ds = upload(alice, chat_lines(4)).json()["dataset"]
    job_id = alice.post("/api/training/start", json={"model": "tiny-chat", "dataset": ds["id"],
                                                     "config": FAST}).json()["job_id"]
    monkeypatch.setenv("WORKBENCH_QUOTA_STREAMS", "1")
    with alice.websocket_connect(f"/ws/training/{job_id}") as ws:
        ws.receive_json()  # the stream is open
        with pytest.raises(WebSocketDenialResponse) as denied:
            with alice.websocket_connect(f"/ws/training/{job_id}"):
                pass
        assert denied.value.status_code == 429  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5  # the slot comes back when the first stream ends
    while True:
        try:
            with alice.websocket_connect(f"/ws/training/{job_id}") as ws:
                ws.receive_json()
            break
        except WebSocketDenialResponse:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    alice.post(f"/api/training/cancel/{job_id}")


# --- long calls never starve short ones ------------------------------------------------------

def test_long_calls_wait_in_their_own_pool(server_home: Path, users: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """45 downloads stuck in flight (more than the 40 shared threads) and a model list still answers."""
    from concurrent.futures import ThreadPoolExecutor

    from workbench.results import downloads

    release = threading.Event()
    started = threading.Semaphore(0)

    def stuck_logs_zip(job_id: str, owner: str) -> Any:
        started.release()
        release.wait(30)
        return "logs.zip", iter([b"PK"])

    monkeypatch.setattr(downloads, "logs_zip", stuck_logs_zip)
    monkeypatch.setenv("WORKBENCH_LONG_CALLS", "2")
    app = create_app(multi_user=True, executor=IdleExecutor())
    with TestClient(app, headers=bearer(users["alice"])) as client, ThreadPoolExecutor(46) as pool:
        try:
            stuck = [pool.submit(client.get, "/api/training/job-x/download/logs") for _ in range(45)]
            assert started.acquire(timeout=10)
            time.sleep(0.5)
            quick = pool.submit(client.get, "/api/models")
            assert quick.result(timeout=10).status_code == 200
            status = pool.submit(client.get, "/api/training/jobs")
            assert status.result(timeout=10).status_code == 200
        finally:
            release.set()
        assert {f.result(timeout=60).status_code for f in stuck} == {200}
