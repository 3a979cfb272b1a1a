"""The REST API in process: ``create_app`` behind ``starlette.testclient.TestClient``, over the real core.

Every test module gets its own ``WORKBENCH_HOME`` (``server_home``); users are real
``workbench.users`` records with real tokens. Jobs run through the real ``JobService``
with an injected executor:

* :class:`IdleExecutor` launches nothing, so a started job stays ``pending`` — enough for
  control-flow and conflict tests, in milliseconds;
* ``InProcessExecutor`` (in ``test_jobs.py``) trains tiny-chat to the end inside the
  request, for the routes that read a finished job's files.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.testing import IdleExecutor
from starlette.testclient import TestClient

from workbench.datasets import SAMPLE_DATASET
from workbench.server.app import create_app
from workbench.testing import scratch_home



@pytest.fixture(scope="module")
def server_home(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path) -> Iterator[Path]:
    """A fresh home for the module (tiny-chat copied from the session's build when a job needs it);
    idle (pending) jobs never block a later one."""
    with scratch_home(tmp_path_factory.mktemp("server-home"), tiny_chat=tiny_chat_dir, env={
            "WORKBENCH_MAX_CONCURRENT_JOBS": "8", "WORKBENCH_AUTH": None, "WORKBENCH_MAX_UPLOAD_MB": None}) as home:
        yield home


@pytest.fixture(scope="module")
def users(server_home: Path) -> dict[str, str]:
    """``{"alice": token, "bob": token, "alice_id": …, "bob_id": …}``."""
    from workbench.users import add_user

    out: dict[str, str] = {}
    for name in ("alice", "bob"):
        user, token = add_user(name)
        out[name], out[f"{name}_id"] = token, user["id"]
    return out


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def multi_app(server_home: Path) -> Any:
    return create_app(multi_user=True, executor=IdleExecutor())


@pytest.fixture(scope="module")
def local_app(server_home: Path) -> Any:
    return create_app(multi_user=False, executor=IdleExecutor())


@pytest.fixture(scope="module")
def alice(multi_app: Any, users: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(multi_app, headers=bearer(users["alice"])) as client:
        yield client


@pytest.fixture(scope="module")
def bob(multi_app: Any, users: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(multi_app, headers=bearer(users["bob"])) as client:
        yield client


@pytest.fixture(scope="module")
def anon(multi_app: Any) -> Iterator[TestClient]:
    with TestClient(multi_app) as client:
        yield client


def local_headers() -> dict[str, str]:
    """The local user's token, as every client on this machine finds it in the home."""
    from workbench.users import local_token

    return bearer(local_token())


@pytest.fixture(scope="module")
def local(local_app: Any) -> Iterator[TestClient]:
    with TestClient(local_app, headers=local_headers()) as client:
        yield client


# --- data ------------------------------------------------------------------------------------

SAMPLE_BYTES = SAMPLE_DATASET.read_bytes()


def chat_lines(n: int) -> bytes:
    return b"".join(b'{"messages": [{"role": "user", "content": "hi %d"}, {"role": "assistant", "content": '
                    b'"hello %d"}]}\n' % (i, i) for i in range(n))


def upload(client: TestClient, content: bytes = SAMPLE_BYTES, filename: str = "chats.jsonl",
           **fields: str) -> Any:
    return client.post("/api/training/dataset", files={"file": (filename, io.BytesIO(content))}, data=fields)


def multipart(filename: str, content: bytes, boundary: str = "wbboundary",
              **fields: str) -> tuple[bytes, dict[str, str]]:
    """A multipart body built by hand, for what httpx won't send (raw file names, no Content-Length)."""
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def state_fingerprint(home: Path) -> str:
    """Everything a request could change: the store and the files under datasets/ and jobs/."""
    h = hashlib.sha256()
    store = home / "store.json"
    h.update(store.read_bytes() if store.exists() else b"")
    for folder in ("datasets", "jobs"):
        root = home / folder
        if root.exists():
            for path in sorted(root.rglob("*")):
                h.update(str(path.relative_to(home)).encode())
                if path.is_file():
                    h.update(str(path.stat().st_size).encode())
    return h.hexdigest()


@pytest.fixture
def unchanged(server_home: Path) -> Callable[[], None]:
    """Call it after bad requests: fails if they changed any state since the test began."""
    before = state_fingerprint(server_home)

    def check() -> None:
        assert state_fingerprint(server_home) == before, "a refused request changed the workbench state"

    return check
