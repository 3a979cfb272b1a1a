"""Executors are found by name, as papermill finds engines; a job is judged by the executor that launched it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workbench.errors import InvalidInput
from workbench.jobs.executor import (InProcessExecutor, LocalExecutor, dispatch, get_executor,
                                     register_executor, run_alive)
from workbench.jobs.service import JobService
from workbench.jobs.state import TABLE
from workbench.records import now_iso
from workbench.store import get_store


class ElsewhereExecutor:
    """A backend whose runs live somewhere this process cannot look (a cloud, another machine)."""

    name = "elsewhere"

    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        self.launched.append(job["id"])
        return {"remote_id": "r-1"}

    def is_alive(self, job: dict[str, Any]) -> bool:
        return True

    def stop(self, job: dict[str, Any], grace: float = 5.0) -> None:
        pass


def _queued(job_id: str) -> dict[str, Any]:
    now = now_iso()
    return {"id": job_id, "owner": "local", "status": "queued", "queued_at": 1.0, "created_at": now,
            "updated_at": now, "run": 1, "history": []}


def test_the_built_in_executors_are_registered_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(get_executor("local"), LocalExecutor) and get_executor("local") is get_executor("local")
    assert isinstance(get_executor("in-process"), InProcessExecutor)
    monkeypatch.setenv("WORKBENCH_EXECUTOR", "in-process")
    assert isinstance(get_executor(), InProcessExecutor)  # the default comes from the settings
    with pytest.raises(InvalidInput) as err:
        get_executor("nope")
    assert err.value.field == "executor" and "local" in err.value.message


def test_dispatch_writes_the_executor_on_the_record(home: Path) -> None:
    ex = ElsewhereExecutor()
    register_executor(ex)
    get_store().insert(TABLE, _queued("job-a"))
    assert dispatch(ex) == ["job-a"] and ex.launched == ["job-a"]
    rec = get_store().get(TABLE, "job-a")
    assert rec["executor"] == "elsewhere" and rec["remote_id"] == "r-1" and rec["status"] == "pending"


def test_a_job_of_an_executor_unknown_here_is_not_reconciled_as_dead(home: Path) -> None:
    """Another process (a CLI, a widget backend) reads the job: it must not fail a run it cannot see."""
    store = get_store()
    store.insert(TABLE, {**_queued("job-cloud"), "status": "running", "executor": "some-cloud",
                         "runner_pid": 999999, "run_started_at": 1.0})
    store.insert(TABLE, {**_queued("job-local"), "status": "running", "executor": "local",
                         "runner_pid": 999999, "run_started_at": 1.0})
    assert run_alive(store.get(TABLE, "job-cloud")) is True
    svc = JobService()  # its own default executor is local
    assert svc.get("job-cloud")["status"] == "running"
    assert svc.get("job-local")["status"] == "failed"  # the local executor can tell: that pid is gone
