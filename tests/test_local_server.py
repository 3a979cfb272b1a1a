"""Finding this home's server: ``WORKBENCH_API_URL`` first, then a running server's ``server.json``, then
the default port; a file left by a dead server, or written by another process, is never trusted or removed."""

from __future__ import annotations

import json
import subprocess
import sys

from workbench import home, local_server
from workbench.store import atomic_write_json
from workbench.testing import scratch_home


def test_the_url_is_the_env_then_a_live_server_then_the_default(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WORKBENCH_API_URL", raising=False)
    with scratch_home(tmp_path / "home"):
        assert local_server.url() == local_server.DEFAULT_URL
        local_server.announce("http://127.0.0.1:8123/")
        assert local_server.running() == local_server.url() == "http://127.0.0.1:8123"
        monkeypatch.setenv("WORKBENCH_API_URL", "http://10.0.0.5:9000/")
        assert local_server.url() == "http://10.0.0.5:9000"
        monkeypatch.delenv("WORKBENCH_API_URL")
        local_server.withdraw()
        assert not (home.home() / "server.json").exists() and local_server.url() == local_server.DEFAULT_URL


def test_a_dead_servers_file_is_ignored_and_another_processes_file_is_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WORKBENCH_API_URL", raising=False)
    with scratch_home(tmp_path / "home"):
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        path = home.home() / "server.json"
        atomic_write_json(path, {"url": "http://127.0.0.1:8124", "pid": dead.pid, "create_time": 0.0})
        assert local_server.running() is None and local_server.url() == local_server.DEFAULT_URL
        local_server.withdraw()  # not ours: a later server of the same home may have written it
        assert json.loads(path.read_text())["pid"] == dead.pid
