"""Real jobs: tiny-chat built once per session, real papermill kernels, 1 torch thread."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.jobs.service import JobService
from workbench.testing import as_overrides, fast, scratch_home

# KEY=VALUE overrides; every test adds its own training.max_steps
FAST = as_overrides(fast(training={"max_steps": None, "save_steps": 10, "eval_steps": 10, "save_total_limit": 1}))


@pytest.fixture(scope="module")
def job_home(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path) -> Iterator[Path]:
    with scratch_home(tmp_path_factory.mktemp("home"), tiny_chat=tiny_chat_dir,
                      env={"WORKBENCH_MAX_CONCURRENT_JOBS": "2"}) as home:
        yield home
        svc = JobService()
        for job in svc.list():  # never leave a job process behind
            if job["status"] not in ("completed", "failed", "cancelled"):
                svc.cancel(job["id"], grace=1)


@pytest.fixture(scope="module")
def sample(job_home: Path) -> dict[str, Any]:
    from workbench.datasets import DatasetService

    return DatasetService().register_sample()


def wait_for(svc: JobService, job_id: str, statuses: set[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = svc.status(job_id)
        if st["status"] in statuses:
            return st
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} stuck at {svc.status(job_id)['status']}: {svc.logs(job_id, tail=20)}")


def wait_for_step(svc: JobService, job_id: str, step: int, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = svc.status(job_id)
        if (st["current_step"] or 0) >= step or st["status"] in ("completed", "failed", "cancelled"):
            return st
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached step {step}")
