"""The job process: executes ``notebooks/train.ipynb`` with papermill for one run of a job.

``python -m workbench.jobs.runner JOB_ID``. It keeps the executed notebook in the job
folder, touches a heartbeat, watches the kernel (papermill hangs if the kernel is
OOM-killed), records the outcome in the store, and then starts the next queued job.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from .. import home
from ..store import get_store
from .executor import dispatch, pid_alive
from .state import TABLE, record_outcome, try_set_state

HEARTBEAT_SECONDS = 5.0


def template_path() -> Path:
    repo = Path(__file__).resolve().parents[2] / "notebooks" / "train.ipynb"
    packaged = Path(__file__).resolve().parents[1] / "notebooks" / "train.ipynb"
    return Path(os.environ.get("WORKBENCH_TRAIN_NOTEBOOK") or (repo if repo.exists() else packaged))


def _watch(job_id: str, jd: Path, done: threading.Event) -> None:
    """Heartbeat, and fail the job if its kernel dies while papermill is still waiting on it."""
    hb = jd / "heartbeat"
    while not done.wait(HEARTBEAT_SECONDS if hb.exists() else 0.5):
        hb.touch()
        try:
            kernel = json.loads((jd / "kernel.json").read_text())
        except (FileNotFoundError, ValueError):
            continue
        if kernel.get("run") != _run_no(job_id):
            continue
        if not pid_alive(kernel["pid"]) and not (jd / "result.json").exists() and not done.is_set():
            time.sleep(1.0)  # let a normal shutdown finish writing
            if done.is_set() or (jd / "result.json").exists():
                return
            try:
                if try_set_state(job_id, "failed", error="the job's kernel process died unexpectedly "
                                 "(killed, or out of memory); see training.log"):
                    dispatch()  # the slot is free: start the next queued job before this process ends
            finally:
                os._exit(3)


def _run_no(job_id: str) -> int:
    rec = get_store().get(TABLE, job_id) or {}
    return int(rec.get("run", 1))


def main(job_id: str) -> int:
    import papermill as pm

    jd = home.job_dir(job_id)
    store = get_store()
    rec = store.get(TABLE, job_id)
    if rec is None:
        print(f"unknown job {job_id}", file=sys.stderr)
        return 2
    run = int(rec.get("run", 1))
    (jd / "result.json").unlink(missing_ok=True)
    (jd / "notebooks").mkdir(exist_ok=True)
    out_nb = jd / "notebooks" / f"run-{run}.ipynb"
    store.update(TABLE, job_id, {"runner_pid": os.getpid(), "notebook": str(out_nb.relative_to(jd))})
    done = threading.Event()
    threading.Thread(target=_watch, args=(job_id, jd, done), daemon=True).start()
    params = {"job_dir": str(jd), "resume_from_checkpoint": rec.get("resume_from")}
    try:
        pm.execute_notebook(str(template_path()), str(out_nb), parameters=params, kernel_name="python3",
                            log_output=True, progress_bar=False, cwd=str(jd))
        done.set()
        record_outcome(job_id, json.loads((jd / "result.json").read_text()))
    except KeyboardInterrupt:
        done.set()
        try_set_state(job_id, "cancelled", error="interrupted")
    except pm.PapermillExecutionError as exc:
        done.set()
        try_set_state(job_id, "failed", error=f"{exc.ename}: {exc.evalue}")
    except Exception as exc:  # noqa: BLE001 - any failure must be recorded, never lost
        done.set()
        try_set_state(job_id, "failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        done.set()
        dispatch()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
