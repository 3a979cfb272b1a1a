"""From the command line: deploy, chat through the openai SDK, and a server crash that loses nothing.

``workbench deploy`` without a server records the deployment; ``workbench serve`` (a real
subprocess) loads it; ``workbench chat`` talks to it with the official SDK. The server is then
killed with SIGKILL and started again: the deployment is reloaded, and its spend and counters
carry on from disk.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from workbench.testing import TrainedJob, copy_job, scratch_home

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          input=stdin, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _serve(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--no-warm",
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server did not start")


def _status(port: int, token: str, dep_id: str) -> dict:
    r = httpx.get(f"http://127.0.0.1:{port}/api/inference/deployments/{dep_id}/status",
                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return r.json()["deployment"]


def test_deploy_chat_crash_and_restart_from_the_cli(tmp_path: Path, tiny_chat_dir: Path,
                                                    finished_lora_job_source: TrainedJob) -> None:
    from workbench import local_server
    from workbench.users import local_token

    with scratch_home(tmp_path / "home", tiny_chat=tiny_chat_dir):
        job = copy_job(finished_lora_job_source)
        token = local_token()
        port = _port()
        url = f"http://127.0.0.1:{port}"
        out = _cli("deploy", job["id"], "--checkpoint", "final", "--name", "CLI Bot", "--budget", "5",
                   "--cost-per-request", "0.25", "--url", url, "--json")
        assert out.returncode == 0, out.stderr
        dep = json.loads(out.stdout)
        assert dep["status"] == "deploying" and dep["model_name"] == "cli-bot"  # no server yet: recorded only

        server = _serve(port)
        try:
            said = _cli("chat", "cli-bot", "What is the capital of France?", "--url", url, "--max-tokens", "16")
            assert said.returncode == 0, said.stderr
            assert said.stdout.strip() and "tokens in" in said.stderr
            st = _status(port, token, dep["deployment_id"])
            assert st["status"] == "active" and st["current_spend"] == 0.25 and st["request_count"] == 1
        finally:
            os.killpg(server.pid, signal.SIGKILL)  # a crash: no shutdown code runs
            server.wait(timeout=30)
        assert local_server.running() is None  # its server.json is left behind, but names a dead process

        server = _serve(port)
        try:
            deadline = time.monotonic() + 60
            while _status(port, token, dep["deployment_id"])["provider_status"].get("loaded_in_this_process") is not True:
                assert time.monotonic() < deadline, "the restarted server did not reload the deployment"
                time.sleep(0.3)
            assert local_server.running() == url
            again = _cli("chat", "cli-bot", "Hello", "--max-tokens", "8")  # no --url: this home's server is found
            assert again.returncode == 0, again.stderr
            st = _status(port, token, dep["deployment_id"])
            assert st["current_spend"] == 0.5 and st["request_count"] == 2 and st["metrics"]["total_requests"] == 2
            listed = _cli("deployments", "list")
            assert "cli-bot" in listed.stdout and "$0.5000 of $5.00" in listed.stdout
            stopped = _cli("deployments", "stop", dep["deployment_id"], "--json")
            assert json.loads(stopped.stdout)["final_spend"] == 0.5
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def test_secrets_come_from_stdin_and_are_never_shown(tmp_path: Path) -> None:
    with scratch_home(tmp_path / "home"):
        out = _cli("secrets", "set", "RUNPOD_API_KEY", stdin="rp_live_secret_value\n")
        assert out.returncode == 0, out.stderr
        assert "rp_live_secret_value" not in out.stdout
        listed = _cli("secrets", "list", "--json")
        assert [s["name"] for s in json.loads(listed.stdout)] == ["RUNPOD_API_KEY"]
        assert "rp_live_secret_value" not in (tmp_path / "home" / "store.json").read_text()
        from workbench.user_secrets import reveal

        assert reveal("RUNPOD_API_KEY") == "rp_live_secret_value"
        bad = _cli("secrets", "set", "lower-case", stdin="x\n")
        assert bad.returncode == 2 and "field: name" in bad.stderr
