"""Where job runs execute. An interface, so other backends (RunPod, torchrun) can plug in.

:class:`LocalExecutor` starts each run as ``python -m workbench.jobs.runner`` in its own
session, detached from whoever asked, so jobs outlive a notebook kernel, the CLI or the
server. A queue in the store runs at most N jobs at a time, in the order they were queued.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import psutil

from .. import home
from ..store import Store, get_store
from .state import TABLE, record_outcome, transition, try_set_state


class Executor(Protocol):
    def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        """Start a run of ``job``; return fields to store on the record (pids, …)."""

    def is_alive(self, job: dict[str, Any]) -> bool: ...

    def stop(self, job: dict[str, Any], grace: float) -> None:
        """Stop a run for good: interrupt, wait ``grace`` seconds, then kill everything it started."""


def pid_alive(pid: int | None, create_time: float | None = None) -> bool:
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(p.create_time() - create_time) < 1.0
    except psutil.Error:
        return False


def _killpg(pid: int | None, sig: int) -> None:
    if not pid:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalExecutor:
    """Runs jobs as detached processes on this machine."""

    def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        jd = home.job_dir(job["id"])
        cmd = [sys.executable, "-m", "workbench.jobs.runner", job["id"]]
        env = {**os.environ, "WORKBENCH_HOME": str(home.home()), "PYTHONUNBUFFERED": "1"}
        with open(jd / "runner.log", "ab") as logf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, cwd=str(jd))
        # Reap it if we outlive it, so a finished runner never lingers as a zombie.
        threading.Thread(target=proc.wait, daemon=True).start()
        return {"runner_pid": proc.pid, "runner_create_time": psutil.Process(proc.pid).create_time()}

    def is_alive(self, job: dict[str, Any]) -> bool:
        return pid_alive(job.get("runner_pid"), job.get("runner_create_time"))

    def stop(self, job: dict[str, Any], grace: float = 5.0) -> None:
        runner = job.get("runner_pid") if self.is_alive(job) else None
        kernel = _kernel_info(job["id"])
        if runner:
            _killpg(runner, signal.SIGINT)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and pid_alive(runner):
                time.sleep(0.1)
            _killpg(runner, signal.SIGKILL)
        if kernel.get("pid") and pid_alive(kernel["pid"], kernel.get("create_time")):
            _killpg(kernel["pid"], signal.SIGKILL)
        conn = kernel.get("connection_file")
        if conn:
            Path(conn).unlink(missing_ok=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (pid_alive(runner) or pid_alive(kernel.get("pid"))):
            time.sleep(0.05)


class InProcessExecutor:
    """Runs each job to its end inside the calling process, without papermill or a kernel.

    For debugging, benchmarks and tests that want the engine without process overhead;
    ``launch`` returns only when the run has paused, completed or failed.
    """

    def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        from ..training.engine import run_job

        me = psutil.Process()
        get_store().update(TABLE, job["id"], {"runner_pid": me.pid, "runner_create_time": me.create_time(),
                                               "launching": False})
        try:
            record_outcome(job["id"], run_job(home.job_dir(job["id"]), resume_from_checkpoint=job.get("resume_from")))
        except Exception as exc:  # noqa: BLE001 - recorded on the job, like the runner does
            try_set_state(job["id"], "failed", error=f"{type(exc).__name__}: {exc}")
        return {}

    def is_alive(self, job: dict[str, Any]) -> bool:
        return pid_alive(job.get("runner_pid"), job.get("runner_create_time"))

    def stop(self, job: dict[str, Any], grace: float = 5.0) -> None:
        """Nothing to stop: a run in this process has already ended when ``launch`` returns."""


def _kernel_info(job_id: str) -> dict[str, Any]:
    import json

    try:
        return json.loads((home.job_dir(job_id) / "kernel.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def max_concurrent() -> int:
    return max(1, int(os.environ.get("WORKBENCH_MAX_CONCURRENT_JOBS", "1")))


LAUNCH_TIMEOUT = 120.0
"""Seconds a dispatcher may hold a launch claim (``launching``) before the job counts as never started."""

NEVER_STARTED = "the job process never started"


def launch_expired(job: dict[str, Any], now: float | None = None) -> bool:
    """A launch claim older than :data:`LAUNCH_TIMEOUT`: its dispatcher died between claim and launch."""
    if not job.get("launching"):
        return False
    return (now if now is not None else time.time()) - (job.get("run_started_at") or 0.0) > LAUNCH_TIMEOUT


def dispatch(executor: Executor | None = None, store: Store | None = None) -> list[str]:
    """Launch queued jobs, oldest first, while fewer than N are pending or running.

    Picking and claiming (queued → pending with ``launching`` set) happen in one transaction,
    so concurrent dispatchers never claim the same job; the launches run after the lock is
    released. A claim older than :data:`LAUNCH_TIMEOUT` whose process is not alive frees its
    slot: that job is failed here, in the same transaction.
    """
    executor = executor or LocalExecutor()
    store = store or get_store()
    now = time.time()
    with store.transaction() as tx:
        jobs = tx.all(TABLE)
        busy = 0
        for j in jobs:
            if j["status"] not in ("pending", "running"):
                continue
            if j.get("launching") and not launch_expired(j, now):
                busy += 1
            elif executor.is_alive(j):
                if j.get("launching"):  # it did start; only its launcher died before saying so
                    tx.update(TABLE, j["id"], {"launching": False})
                busy += 1
            elif j.get("launching"):
                transition(tx, j, "failed", error=NEVER_STARTED, launching=False)
        queued = sorted((j for j in jobs if j["status"] == "queued"), key=lambda j: j["queued_at"])
        chosen = [transition(tx, j, "pending", runner_pid=None, runner_create_time=None, launching=True)
                  for j in queued[: max(0, max_concurrent() - busy)]]
    launched = []
    for j in chosen:
        try:
            fields = executor.launch(j)
            if fields:
                store.update(TABLE, j["id"], {**fields, "launching": False})
            launched.append(j["id"])
        except Exception as exc:  # could not even start a process
            try_set_state(j["id"], "failed", store=store, error=f"could not launch job: {exc}", launching=False)
    return launched
