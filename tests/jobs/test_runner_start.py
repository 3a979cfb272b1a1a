"""The runner starts the job's kernel itself, registers it at once, and papermill runs on it."""

from __future__ import annotations

import json
import os
import time

import pytest

from workbench import home
from workbench.jobs.executor import pid_alive
from workbench.jobs.service import JobService

from .conftest import FAST, wait_for

pytestmark = pytest.mark.slow


def test_the_kernel_is_registered_before_it_has_imported_the_training_stack_and_cancel_works_then(
        job_home, sample) -> None:
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=5000"])
    path = home.job_dir(job["id"]) / "kernel.json"
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, "no kernel.json"
        time.sleep(0.02)
    kernel = json.loads(path.read_text())
    assert set(kernel) >= {"pid", "create_time", "connection_file", "run"} and kernel["run"] == 1
    assert svc.get(job["id"])["status"] == "pending"  # still starting: nothing trains yet
    assert not (home.job_dir(job["id"]) / "metrics.jsonl").exists()
    runner = svc.get(job["id"])["runner_pid"]
    assert svc.cancel(job["id"], grace=3)["status"] == "cancelled"
    for pid in (runner, kernel["pid"]):
        assert not pid_alive(pid), f"pid {pid} still running"
    assert not os.path.exists(kernel["connection_file"])


def test_the_job_notebook_records_the_stack_import_and_the_run_as_cells(job_home, sample) -> None:
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=5"])
    assert wait_for(svc, job["id"], {"completed", "failed"})["status"] == "completed"
    jd = home.job_dir(job["id"])
    nb = json.loads((jd / "notebooks" / "run-1.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in cells] == [1, 2, 3, 4]
    assert "import workbench.training.engine" in "".join(cells[0]["source"])
    assert all(c["metadata"]["papermill"]["status"] == "completed" for c in cells)
    kernel = json.loads((jd / "kernel.json").read_text())
    assert svc.get(job["id"])["kernel_pid"] == kernel["pid"]
    deadline = time.monotonic() + 15  # the runner shuts its kernel down after recording the outcome
    while (pid_alive(kernel["pid"]) or os.path.exists(kernel["connection_file"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(kernel["pid"]) and not os.path.exists(kernel["connection_file"])
