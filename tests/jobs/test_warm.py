"""Warm runners: a runner with its kernel up and the training stack imported, handed a job.

The claim protocol is checked without processes; the slow tests hand real jobs to real warm
runners and check they run as papermill notebooks, cancel cleanly and never outlive their owner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from workbench import home
from workbench.jobs import warm
from workbench.jobs.executor import LocalExecutor, pid_alive
from workbench.jobs.service import JobService
from workbench.store import atomic_write_json

from .conftest import FAST, wait_for, wait_for_step


def _fake(pid: int, env_fp: str, ready: bool = True) -> dict:
    info = {"pid": pid, "create_time": psutil.Process(pid).create_time() if psutil.pid_exists(pid) else 0.0,
            "env": env_fp, "ready": ready}
    atomic_write_json(warm.info_path(pid), info)
    return info


def test_a_claim_has_exactly_one_winner(home) -> None:
    assert warm.try_claim(123, "job-a") and not warm.try_claim(123, "job-b") and not warm.stop(123)
    assert warm.read_claim(123) == "job-a"
    warm.forget(123)
    assert warm.read_claim(123) is None


def test_launch_hands_the_job_to_a_ready_warm_runner_with_the_same_environment(home, monkeypatch) -> None:
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: pytest.fail("a cold runner was started"))
    me = os.getpid()
    _fake(me, warm.fingerprint(warm.runner_env()))
    fields = LocalExecutor().launch({"id": "job-x"})
    assert fields["runner_pid"] == me and abs(fields["runner_create_time"] - psutil.Process().create_time()) < 1
    assert warm.read_claim(me) == "job-x"


def test_no_warm_runner_is_claimed_across_environments_or_when_dead_or_not_ready(home) -> None:
    me = os.getpid()
    _fake(me, "another environment")
    assert warm.claim("job-x", warm.runner_env()) is None and warm.read_claim(me) is None
    _fake(me, warm.fingerprint(warm.runner_env()), ready=False)
    assert warm.claim("job-x", warm.runner_env()) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _fake(dead.pid, warm.fingerprint(warm.runner_env()))
    assert warm.claim("job-x", warm.runner_env()) is None
    assert not warm.info_path(dead.pid).exists()  # a dead runner's files are removed by the next reader
    # the environment a job gets must match, per-shell noise aside
    env = warm.runner_env()
    assert warm.fingerprint({**env, "PWD": "/elsewhere", "SHLVL": "9"}) == warm.fingerprint(env)
    # `workbench serve` sets its Host list for itself: a job from a plain shell still matches its runner
    assert warm.fingerprint({**env, "WORKBENCH_ALLOWED_HOSTS": "127.0.0.1"}) == warm.fingerprint(env)
    assert warm.fingerprint({**env, "CUDA_VISIBLE_DEVICES": "1"}) != warm.fingerprint(env)


def test_the_keeper_is_off_when_asked(monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_WARM_RUNNER", "0")
    assert warm.keep() is None


@pytest.mark.slow
def test_a_warm_runner_runs_the_job_as_a_papermill_notebook_and_leaves_nothing(job_home, sample) -> None:
    proc = warm.spawn()
    assert warm.wait_ready(proc.pid, timeout=240), (home.home() / "warm" / "warm.log").read_text()[-2000:]
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=10"])
    assert svc.get(job["id"])["runner_pid"] == proc.pid
    st = wait_for(svc, job["id"], {"completed", "failed"})
    assert st["status"] == "completed", st["error"]
    jd = home.job_dir(job["id"])
    nb = json.loads((jd / "notebooks" / "run-1.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"]["job_dir"] == str(jd)
    assert [c["execution_count"] for c in nb["cells"]] == [1, 2, 3, 4]  # the silent preload counts no cell
    kernel = json.loads((jd / "kernel.json").read_text())
    assert kernel["run"] == 1 and kernel["connection_file"]
    proc.wait(timeout=30)
    assert not pid_alive(kernel["pid"]) and not os.path.exists(kernel["connection_file"])
    assert not warm.info_path(proc.pid).exists() and warm.read_claim(proc.pid) is None
    assert "Training completed" in (jd / "training.log").read_text()


@pytest.mark.slow
def test_cancelling_a_job_in_a_warm_runner_leaves_no_process_behind(job_home, sample) -> None:
    proc = warm.spawn()
    assert warm.wait_ready(proc.pid, timeout=240)
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=5000"])
    assert svc.get(job["id"])["runner_pid"] == proc.pid
    wait_for_step(svc, job["id"], 5)
    kernel = json.loads((home.job_dir(job["id"]) / "kernel.json").read_text())
    assert svc.cancel(job["id"], grace=3)["status"] == "cancelled"
    for pid in (proc.pid, kernel["pid"]):
        assert not pid_alive(pid), f"pid {pid} still running"
    assert not os.path.exists(kernel["connection_file"])


@pytest.mark.slow
def test_a_waiting_warm_runner_exits_with_its_owner_and_takes_its_kernel_along(job_home) -> None:
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        proc = warm.spawn(owner=owner.pid)
        assert warm.wait_ready(proc.pid, timeout=240)
        kernel_pids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert kernel_pids
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in kernel_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in kernel_pids)
    assert not warm.info_path(proc.pid).exists()
    assert warm.claim("job-x", warm.runner_env()) is None


class _Proc:
    def __init__(self, pid: int, rc: int | None = None):
        self.pid, self.returncode = pid, rc

    def poll(self) -> int | None:
        return self.returncode


def test_the_keeper_keeps_one_waiting_and_backs_off_when_they_fail(home, monkeypatch) -> None:
    spawned: list[_Proc] = []

    def spawn() -> _Proc:
        spawned.append(_Proc(1000 + len(spawned)))
        return spawned[-1]

    monkeypatch.setattr(warm, "spawn", spawn)
    k = warm.Keeper()
    k.tick()
    k.tick()
    assert len(spawned) == 1  # one waits (or starts): no second
    warm.try_claim(spawned[0].pid, "job-a")
    k.tick()
    assert len(spawned) == 2  # the first took a job: another one waits
    spawned[1].returncode = 1  # it crashed
    k.tick()
    assert len(spawned) == 2 and k.failures == 1 and k.next_try > time.monotonic()
    k.next_try = 0.0
    k.tick()
    assert len(spawned) == 3
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "1")
    monkeypatch.setattr(warm, "_slots_free", lambda: False)
    spawned[2].returncode = 0  # it ran its job; the only slot is busy now
    k.tick()
    assert len(spawned) == 3 and k.failures == 0


@pytest.mark.slow
def test_a_cli_job_from_a_plain_shell_goes_to_the_warm_runner_of_a_running_server(job_home) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (ready := [r for r in warm.runners() if r.get("ready")]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready, (home.home() / "warm" / "warm.log").read_text()[-2000:]
        shell = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_ALLOWED")}
        out = subprocess.run([sys.executable, "-m", "workbench.cli", "train", "--dataset", "sample", "--detach",
                              "--json", *[a for o in FAST for a in ("--set", o)], "--set", "training.max_steps=3"],
                             env=shell, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        job_id = json.loads(out.stdout)["job_id"]
        svc = JobService()
        assert svc.get(job_id)["runner_pid"] == ready[0]["pid"]  # no cold start
        assert wait_for(svc, job_id, {"completed", "failed"})["status"] == "completed"
    finally:
        server.terminate()
        server.wait(timeout=30)
