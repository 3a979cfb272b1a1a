"""Where job runs execute. An interface with a registry, as papermill registers engines, so other
backends (RunPod, torchrun) plug in by name.

:class:`LocalExecutor` (``"local"``) starts each run as ``python -m workbench.jobs.runner`` in its
own session, detached from whoever asked, so jobs outlive a notebook kernel, the CLI or the
server. :class:`InProcessExecutor` (``"in-process"``) runs it inside the caller. A queue in
the store runs at most N jobs at a time, in the order they were queued.

Each job record names the executor that launched it (``executor``). Whoever reads a job asks
that executor whether its run lives, never its own default: a job launched elsewhere is not
reconciled as dead by a process that cannot see it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psutil

from .. import home
from ..job_states import LIVE
from ..jobfiles import job_folder
from ..processes import pid_alive
from ..store import Store, get_store
from .state import TABLE, mark_running, record_outcome, transition, try_set_state


class Executor(Protocol):
    def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        """Start a run of ``job``; return fields to store on the record (pids, …)."""

    def is_alive(self, job: dict[str, Any]) -> bool: ...

    def stop(self, job: dict[str, Any], grace: float) -> None:
        """Stop a run for good: interrupt, wait ``grace`` seconds, then kill everything it started."""


def _killpg(pid: int | None, sig: int) -> None:
    if not pid:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalExecutor:
    """Runs jobs as detached processes on this machine: a new runner, or a warm one that waits
    with its kernel already up (see :mod:`workbench.jobs.warm`)."""

    name = "local"

    def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        from . import warm

        env = warm.runner_env()
        taken = warm.claim(job["id"], env)  # a warm runner (kernel up, training stack imported), if one waits
        if taken:
            return {"runner_pid": taken["pid"], "runner_create_time": taken["create_time"]}
        jd = home.job_dir(job["id"])
        cmd = [sys.executable, "-m", "workbench.jobs.runner", job["id"]]
        with open(job_folder(jd).runner_log, "ab") as logf:
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
            _killpg(kernel["pid"], signal.SIGKILL)  # the data-parallel ranks are in the kernel's group
        ranks = [r for r in _rank_infos(job["id"]) if pid_alive(r.get("pid"), r.get("create_time"))]
        for r in ranks:  # and should one have left it, by pid
            _kill(r["pid"], signal.SIGKILL)
        conn = kernel.get("connection_file")
        if conn:
            Path(conn).unlink(missing_ok=True)
        pids = [runner, kernel.get("pid")] + [r["pid"] for r in ranks]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)


class InProcessExecutor:
    """Runs each job to its end inside the calling process, without papermill or a kernel.

    For debugging, benchmarks and tests that want the engine without process overhead;
    ``launch`` returns only when the run has paused, completed or failed.
    """

    name = "in-process"

    def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        from ..training.engine import run_job

        me = psutil.Process()
        get_store().update(TABLE, job["id"], {"runner_pid": me.pid, "runner_create_time": me.create_time(),
                                               "launching": False})
        try:
            record_outcome(job["id"], run_job(home.job_dir(job["id"]), resume_from_checkpoint=job.get("resume_from"),
                                              on_start=mark_running(job["id"])))
        except Exception as exc:  # noqa: BLE001 - recorded on the job, like the runner does
            try_set_state(job["id"], "failed", error=f"{type(exc).__name__}: {exc}")
        return {}

    def is_alive(self, job: dict[str, Any]) -> bool:
        return pid_alive(job.get("runner_pid"), job.get("runner_create_time"))

    def stop(self, job: dict[str, Any], grace: float = 5.0) -> None:
        """Nothing to stop: a run in this process has already ended when ``launch`` returns."""


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _rank_infos(job_id: str) -> list[dict[str, Any]]:
    """The data-parallel ranks a run recorded (``ranks/rank-<i>.json``); none for one process."""
    import json

    out = []
    for path in sorted(job_folder(job_id).ranks.glob("rank-*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (FileNotFoundError, ValueError):
            continue
    return out


def _kernel_info(job_id: str) -> dict[str, Any]:
    import json

    try:
        return json.loads(job_folder(job_id).kernel.read_text())
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
    executor = executor or get_executor()
    name = register_executor(executor)
    store = store or get_store()
    now = time.time()
    with store.transaction() as tx:
        jobs = tx.all(TABLE)
        busy = 0
        for j in jobs:
            if j["status"] not in LIVE:
                continue
            if j.get("launching") and not launch_expired(j, now):
                busy += 1
            elif run_alive(j, executor):
                if j.get("launching"):  # it did start; only its launcher died before saying so
                    tx.update(TABLE, j["id"], {"launching": False})
                busy += 1
            elif j.get("launching"):
                transition(tx, j, "failed", error=NEVER_STARTED, launching=False)
        queued = sorted((j for j in jobs if j["status"] == "queued"), key=lambda j: j["queued_at"])
        chosen = [transition(tx, j, "pending", runner_pid=None, runner_create_time=None, launching=True,
                             executor=name)
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


# --- the registry --------------------------------------------------------------------------------

EXECUTOR_ENV = "WORKBENCH_EXECUTOR"
_FACTORIES: dict[str, Callable[[], Executor]] = {"local": LocalExecutor, "in-process": InProcessExecutor}
_INSTANCES: dict[str, Executor] = {}
_REGISTRY_LOCK = threading.Lock()


def register_executor(executor: Executor | type, name: str | None = None) -> str:
    """Make ``executor`` (an instance, or a class to build on first use) findable by name; returns the name.

    The name is ``name``, else the executor's ``name`` attribute, else its class name.
    """
    key = name or getattr(executor, "name", None) or (executor.__name__ if isinstance(executor, type)
                                                       else type(executor).__name__)
    with _REGISTRY_LOCK:
        if isinstance(executor, type):
            _FACTORIES[key] = executor
        elif _INSTANCES.get(key) is not executor:
            _INSTANCES[key] = executor
    return key


def get_executor(name: str | None = None) -> Executor:
    """The executor registered as ``name`` (default: ``WORKBENCH_EXECUTOR``, else ``local``)."""
    from ..errors import InvalidInput

    key = name or os.environ.get(EXECUTOR_ENV, "").strip() or "local"
    with _REGISTRY_LOCK:
        found = _INSTANCES.get(key)
        if found is None:
            factory = _FACTORIES.get(key)
            if factory is None:
                raise InvalidInput(f"unknown executor '{key}' (known: {', '.join(sorted(set(_FACTORIES) | set(_INSTANCES)))})",
                                   field="executor")
            found = _INSTANCES[key] = factory()
    return found


def executor_of(job: dict[str, Any], default: Executor | None = None) -> Executor | None:
    """The executor that launched ``job`` (records from before the field: ``default``); None when
    that executor is not known in this process."""
    name = job.get("executor")
    if not name:
        return default or get_executor("local")
    try:
        return get_executor(name)
    except Exception:  # noqa: BLE001 - registered only in another process
        return None


def run_alive(job: dict[str, Any], default: Executor | None = None) -> bool:
    """Whether the job's run lives, asked of the executor that launched it.

    An executor this process does not know cannot be asked: the run counts as alive, so it is
    never failed by a process that cannot see it.
    """
    executor = executor_of(job, default)
    return True if executor is None else executor.is_alive(job)
