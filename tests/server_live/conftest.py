"""A real uvicorn serving ``create_app()`` on a free loopback port, for the whole folder.

The server runs in a background thread of the test process, on a socket bound here (so no
port race), with auth required: every test talks to it as a user made with
``workbench.users``, through the SDK client. Jobs run with the real ``LocalExecutor``
(papermill, detached processes) in a scratch ``WORKBENCH_HOME``; teardown cancels any job
still alive and stops the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from workbench.client import TrainingClient
from workbench.testing import scratch_home, serve_in_thread


@dataclass
class LiveServer:
    base_url: str
    ws_url: str
    home: Path


@pytest.fixture(scope="package")
def live_home(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path) -> Iterator[Path]:
    with scratch_home(tmp_path_factory.mktemp("live-home"), tiny_chat=tiny_chat_dir,
                      env={"WORKBENCH_MAX_CONCURRENT_JOBS": "2"}) as home:
        yield home


@pytest.fixture(scope="package")
def live_server(live_home: Path) -> Iterator[LiveServer]:
    from workbench.jobs.service import JobService
    from workbench.job_states import FINAL
    from workbench.jobs.state import TABLE

    from workbench.server.app import create_app

    server, thread, port = serve_in_thread(create_app(multi_user=True))
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", live_home)
    finally:
        svc = JobService()
        for job in svc.store.all(TABLE):  # never leave a job process behind
            if job["status"] not in FINAL:
                svc.cancel(job["id"], owner=job["owner"], grace=1)
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=15)


@pytest.fixture(scope="package")
def alice(live_server: LiveServer) -> tuple[dict, str]:
    from workbench.users import add_user

    return add_user("alice")


@pytest.fixture(scope="package")
def bob(live_server: LiveServer) -> tuple[dict, str]:
    from workbench.users import add_user

    return add_user("bob")


@pytest.fixture
def client(live_server: LiveServer, alice: tuple[dict, str]) -> Iterator[TrainingClient]:
    with TrainingClient(live_server.base_url, token=alice[1]) as c:
        yield c


@pytest.fixture
def bob_client(live_server: LiveServer, bob: tuple[dict, str]) -> Iterator[TrainingClient]:
    with TrainingClient(live_server.base_url, token=bob[1]) as c:
        yield c
