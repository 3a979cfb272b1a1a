"""The job process: executes ``notebooks/train.ipynb`` with papermill for one run of a job.

``python -m workbench.jobs.runner JOB_ID``. It keeps the executed notebook in the job
folder, touches a heartbeat, watches the kernel (papermill hangs if the kernel is
OOM-killed), records the outcome in the store, and then starts the next queued job.

Start-up is arranged so the slow parts overlap. Before anything heavy, the runner starts
the job's kernel itself, registers it (``kernel.json``: pid, create time, connection file,
run) and asks it to import the training stack (torch, transformers, peft: seconds). While
the kernel imports, the runner imports papermill and prepares the notebook; papermill then
executes the notebook on that same kernel (``execute_notebook(..., km=km)``, which papermill
hands to nbclient), and the runner shuts the kernel down when the notebook is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..jobfiles import job_folder
from ..store import atomic_write_json, get_store
from .executor import dispatch, pid_alive
from .state import TABLE, record_outcome, try_set_state

HEARTBEAT_SECONDS = 5.0
KERNEL_NAME = "python3"
PRELOAD = "import workbench.training.engine  # the training stack (torch, transformers, peft)"
"""Sent to the kernel as soon as it starts, so it imports while the runner sets up papermill."""
START_TIMEOUT = 300
"""Seconds papermill waits for the kernel's first reply: the kernel may still be importing the
training stack, which takes 4-13 s on a quiet machine and much longer on a loaded one."""
SHUTDOWN_WAIT = 3.0


def template_path() -> Path:
    repo = Path(__file__).resolve().parents[2] / "notebooks" / "train.ipynb"
    packaged = Path(__file__).resolve().parents[1] / "notebooks" / "train.ipynb"
    return Path(os.environ.get("WORKBENCH_TRAIN_NOTEBOOK") or (repo if repo.exists() else packaged))


# ---- the kernel -----------------------------------------------------------------------------

def start_kernel(cwd: str | Path) -> Any:
    """A started ``python3`` kernel (a ``jupyter_client.KernelManager``) in ``cwd``.

    Its client class is the asynchronous one: nbclient's loop polls the shell and IOPub
    channels concurrently, which blocking channels would serialise. The history file is
    in memory, as nbclient sets it for kernels it starts itself (no shared SQLite file).
    """
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name=KERNEL_NAME, client_class="jupyter_client.asynchronous.AsyncKernelClient")
    km.shutdown_wait_time = SHUTDOWN_WAIT
    km.start_kernel(cwd=str(cwd), extra_arguments=["--HistoryManager.hist_file=:memory:"])
    return km


def kernel_pid(km: Any) -> int:
    pid = getattr(km.provisioner, "pid", None) or getattr(getattr(km, "kernel", None), "pid", None)
    if not pid:
        raise RuntimeError("the kernel manager started no local process")
    return int(pid)


def register_kernel(jd: Any, km: Any, run: int) -> dict[str, Any]:
    """Write ``kernel.json``: what the watcher, cancel (``LocalExecutor.stop``) and status read."""
    import psutil

    pid = kernel_pid(km)
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:  # it died already: the watcher reports it
        created = None
    info = {"pid": pid, "create_time": created, "connection_file": km.connection_file, "run": run,
            "started_at": time.time()}
    atomic_write_json(jd.kernel, info)
    return info


class Preload:
    """Asks a just-started kernel to import the training stack, on a shell channel of its own.

    ZMQ queues the request until the kernel binds its sockets, so this never waits. The
    request is ``silent``: no output and no execution count, so the notebook's cells number
    from 1 as usual. Papermill's requests queue behind it; a failing import is simply
    repeated, with a traceback, by the notebook's own first cell.
    """

    def __init__(self, km: Any, code: str = PRELOAD):
        from jupyter_client.blocking import BlockingKernelClient

        self.km = km
        self.kc = BlockingKernelClient()
        self.kc.load_connection_info(km.get_connection_info())
        self.kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        self.msg_id = self.send(code)

    def send(self, code: str) -> str:
        return self.kc.execute(code, silent=True, store_history=False)

    def wait(self, timeout: float = START_TIMEOUT) -> bool:
        """True once the kernel has run the preload (whatever its outcome); False if it died or timed out."""
        from queue import Empty

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_shell_msg(timeout=1.0)
            except Empty:
                if not self.km.is_alive():
                    return False
                continue
            if msg.get("parent_header", {}).get("msg_id") == self.msg_id:
                return True
        return False

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing is best effort
            self.kc.stop_channels()


def shutdown_kernel(km: Any, now: bool) -> None:
    try:
        km.shutdown_kernel(now=now)  # also removes the connection file
    except Exception:  # noqa: BLE001 - it may be gone already; make sure it is
        with contextlib.suppress(Exception):
            if km.has_kernel:
                km.kill_kernel()
        with contextlib.suppress(Exception):
            km.cleanup_resources()


# ---- the watcher ----------------------------------------------------------------------------

def _watch(job_id: str, jd: Path, done: threading.Event) -> None:
    """Heartbeat, and fail the job if its kernel dies while papermill is still waiting on it."""
    folder = job_folder(Path(jd))
    hb = folder.heartbeat
    while not done.wait(HEARTBEAT_SECONDS if hb.exists() else 0.5):
        hb.touch()
        try:
            kernel = json.loads(folder.kernel.read_text())
        except (FileNotFoundError, ValueError):
            continue
        if kernel.get("run") != _run_no(job_id):
            continue
        if not pid_alive(kernel["pid"]) and not folder.result.exists() and not done.is_set():
            time.sleep(1.0)  # let a normal shutdown finish writing
            if done.is_set() or folder.result.exists():
                return
            try:
                if try_set_state(job_id, "failed", error="the job's kernel process died unexpectedly "
                                 "(killed, or out of memory); see training.log"):
                    dispatch()  # the slot is free: start the next queued job before this process ends
            finally:
                if kernel.get("connection_file"):
                    Path(kernel["connection_file"]).unlink(missing_ok=True)
                os._exit(3)


def _run_no(job_id: str) -> int:
    rec = get_store().get(TABLE, job_id) or {}
    return int(rec.get("run", 1))


# ---- one run --------------------------------------------------------------------------------

def main(job_id: str) -> int:
    """One run of ``job_id``: start its kernel, then :func:`run` the notebook on it."""
    return run(job_id)


def run(job_id: str, km: Any = None, preload: Preload | None = None) -> int:
    """Execute the job's notebook; ``km``/``preload``: a kernel already started (a warm runner's)."""
    jd = job_folder(job_id)
    store = get_store()
    rec = store.get(TABLE, job_id)
    if rec is None:
        print(f"unknown job {job_id}", file=sys.stderr)
        if km is not None:
            shutdown_kernel(km, now=True)
        return 2
    run_no = int(rec.get("run", 1))
    jd.result.unlink(missing_ok=True)
    done = threading.Event()
    ok = False
    try:
        if km is None:
            km = start_kernel(jd.path)  # first: the kernel boots and imports while we do the rest
            preload = Preload(km)
        kernel = register_kernel(jd, km, run_no)
        out_nb = jd.notebook(run_no)
        out_nb.parent.mkdir(exist_ok=True)
        store.update(TABLE, job_id, {"runner_pid": os.getpid(), "kernel_pid": kernel["pid"],
                                     "notebook": str(out_nb.relative_to(jd.path))})
        threading.Thread(target=_watch, args=(job_id, jd.path, done), daemon=True).start()
        import papermill as pm

        params = {"job_dir": str(jd.path), "resume_from_checkpoint": rec.get("resume_from")}
        pm.execute_notebook(str(template_path()), str(out_nb), parameters=params, kernel_name=KERNEL_NAME,
                            log_output=True, progress_bar=False, cwd=str(jd.path), km=km,
                            start_timeout=START_TIMEOUT)
        done.set()
        record_outcome(job_id, json.loads(jd.result.read_text()))
        ok = True
    except KeyboardInterrupt:
        done.set()
        try_set_state(job_id, "cancelled", error="interrupted")
    except Exception as exc:  # noqa: BLE001 - any failure must be recorded, never lost
        done.set()
        try_set_state(job_id, "failed", error=_error(exc))
    finally:
        done.set()
        if preload is not None:
            preload.close()
        if km is not None:
            shutdown_kernel(km, now=not ok)
        dispatch()
    return 0


# ---- a warm runner (see workbench.jobs.warm) ----------------------------------------------------

def warm_main(owner: int) -> int:
    """Start a kernel, import the training stack and papermill, then wait to be handed a job.

    Exits, without a job, when stopped, when ``owner`` exits or when the kernel dies.
    """
    import psutil

    from . import warm
    from .executor import pid_alive

    me = psutil.Process()
    try:
        owner_created = psutil.Process(owner).create_time()
    except psutil.Error:
        return 0
    info = {"pid": me.pid, "create_time": me.create_time(), "owner": owner, "env": warm.fingerprint(dict(os.environ)),
            "ready": False, "started_at": time.time()}
    atomic_write_json(warm.info_path(me.pid), info)
    km = preload = None
    job_id = ""
    try:
        km = start_kernel(warm.warm_dir())
        preload = Preload(km)
        import papermill  # noqa: F401 - imported now, not when the job arrives

        if not preload.wait():
            print("warm runner: the kernel died or never answered", file=sys.stderr)
            return 1
        atomic_write_json(warm.info_path(me.pid), {**info, "ready": True, "ready_at": time.time()})
        while (claimed := warm.read_claim(me.pid)) is None:
            if not (pid_alive(owner, owner_created) and km.is_alive()) and warm.stop(me.pid):
                return 0
            time.sleep(warm.POLL_SECONDS)
        job_id = claimed
        if not job_id:
            return 0
        atomic_write_json(warm.info_path(me.pid), {**info, "ready": False, "job": job_id, "claimed_at": time.time()})
    finally:
        if not job_id:
            if preload is not None:
                preload.close()
            if km is not None:
                shutdown_kernel(km, now=True)
            warm.forget(me.pid)
    try:
        jd = job_folder(job_id)
        if not jd.path.is_dir():
            print(f"warm runner: no job folder for {job_id}", file=sys.stderr)
            preload.close()  # type: ignore[union-attr]
            shutdown_kernel(km, now=True)
            return 2
        log = os.open(jd.runner_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.chdir(jd.path)
        preload.send(f"import os; os.chdir({str(jd.path)!r})")  # type: ignore[union-attr]
        return run(job_id, km=km, preload=preload)
    finally:
        warm.forget(me.pid)


def _error(exc: Exception) -> str:
    if type(exc).__name__ == "PapermillExecutionError":  # a cell raised: its own error, not papermill's
        return f"{exc.ename}: {exc.evalue}"  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    if sys.argv[1] == "--warm":
        sys.exit(warm_main(int(sys.argv[2])))
    sys.exit(main(sys.argv[1]))
