"""``workbench up`` (what ``make run`` runs): one URL that opens the app, and nothing open without the token."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_prints_a_url_that_opens_the_app_and_the_api_wants_the_token(home: Path, tiny_chat_dir: Path) -> None:
    api_port, app_port = _free_port(), _free_port()
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_TINY_CHAT_CACHE": str(tiny_chat_dir),
           "HF_HUB_OFFLINE": "1"}
    env.pop("WORKBENCH_ALLOWED_HOSTS", None)
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "up", "--port", str(api_port),
                             "--app-port", str(app_port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, deadline = "", time.monotonic() + 120
        while "Ctrl+C stops both" not in out and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line and proc.poll() is not None:
                break
            out += line
        app_url = re.search(r"Web app\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        token = (home / "token").read_text().strip()
        assert app_url == f"http://127.0.0.1:{app_port}/?token={token}"
        assert f"Bearer {token}" in out
        page = httpx.get(app_url, timeout=60)
        assert page.status_code == 200 and "workbench" in page.text.lower()
        assert httpx.get(app_url.split("?")[0], follow_redirects=False, timeout=30).status_code in (302, 401, 403)
        api = f"http://127.0.0.1:{api_port}"
        assert httpx.get(f"{api}/api/training/jobs", timeout=30).status_code == 401
        r = httpx.get(f"{api}/api/training/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200 and r.json() == {"jobs": []}
        from workbench.client import TrainingClient

        os.environ["WORKBENCH_HOME"] = str(home)  # the SDK finds the token by itself for a loopback server
        with TrainingClient(api) as wb:
            assert wb.request("GET", "/api/training/jobs") == {"jobs": []}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    for port in (api_port, app_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # both children stopped
