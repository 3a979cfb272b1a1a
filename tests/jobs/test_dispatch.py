"""The queue: concurrent dispatchers, stale launch claims, dead jobs freeing their slot, unknown ids.

No training here: a fake executor counts launches, and job records are crafted in the store.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from workbench import home as wb_home
from workbench.errors import NotFound
from workbench.jobs import executor as executor_mod
from workbench.jobs.executor import dispatch
from workbench.jobs.service import JobService
from workbench.jobs.state import TABLE
from workbench.records import now_iso
from workbench.store import Store, Transaction, get_store


class CountingExecutor:
    """Launches nothing; counts launches per job; a launched job stays alive until ``kill``."""

    def __init__(self) -> None:
        self.launches: Counter[str] = Counter()
        self.alive: set[str] = set()
        self.lock = threading.Lock()

    def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.launches[job["id"]] += 1
            self.alive.add(job["id"])
        return {"launched_by": "fake"}

    def is_alive(self, job: dict[str, Any]) -> bool:
        return job["id"] in self.alive

    def kill(self, job_id: str) -> None:
        self.alive.discard(job_id)

    def stop(self, job: dict[str, Any], grace: float = 5.0) -> None:
        self.kill(job["id"])


class RacingStore(Store):
    """A store whose owner, after the first transaction that looked at the jobs table, waits at
    ``barrier`` (outside the lock) until every other dispatcher has looked too: it forces the
    interleaving where all of them pick from the same queue."""

    def __init__(self, path: Path, barrier: threading.Barrier):
        super().__init__(path)
        self.barrier = barrier
        self.waited = False

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        looked = []
        with super().transaction() as tx:
            real_all = tx.all

            def all_(table: str, owner: str | None = None) -> list[dict[str, Any]]:
                if table == TABLE:
                    looked.append(True)
                return real_all(table, owner)

            tx.all = all_  # type: ignore[method-assign]
            yield tx
        if looked and not self.waited:
            self.waited = True
            try:
                self.barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass


def _job(job_id: str, status: str = "queued", queued_at: float | None = None, **extra: Any) -> dict[str, Any]:
    now = now_iso()
    return {"id": job_id, "owner": "local", "name": job_id, "status": status, "run": 1, "resume_from": None,
            "queued_at": time.time() if queued_at is None else queued_at, "created_at": now, "updated_at": now,
            "started_at": None, "finished_at": None, "error": None, "history": [], **extra}


def _run_threads(n: int, target: Any) -> list[BaseException]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return errors


# --- concurrent dispatchers ----------------------------------------------------------------

def test_concurrent_dispatchers_never_raise_and_launch_each_job_once(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "2")
    path = wb_home.store_path()
    for i in range(3):
        Store(path).insert(TABLE, _job(f"job-{i}", queued_at=1000.0 + i))
    ex = CountingExecutor()
    barrier = threading.Barrier(4)
    launched: list[str] = []

    errors = _run_threads(4, lambda: launched.extend(dispatch(ex, RacingStore(path, barrier))))

    assert errors == []
    assert dict(ex.launches) == {"job-0": 1, "job-1": 1}  # the two oldest, once each
    assert sorted(launched) == ["job-0", "job-1"]
    status = {j["id"]: j["status"] for j in Store(path).all(TABLE)}
    assert status == {"job-0": "pending", "job-1": "pending", "job-2": "queued"}


def test_start_never_raises_conflict_for_its_own_job(home: Path, monkeypatch) -> None:
    from workbench.datasets import DatasetService

    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "2")
    monkeypatch.setattr("workbench.models.resolve", lambda *a, **k: None)  # no model needed to queue a job
    sample = DatasetService().register_sample()
    path = wb_home.store_path()
    ex = CountingExecutor()
    barrier = threading.Barrier(2)
    started: list[dict[str, Any]] = []

    def start() -> None:
        svc = JobService(store=RacingStore(path, barrier), executor=ex)
        started.append(svc.start("tiny-chat", sample["id"], "lora"))

    errors = _run_threads(2, start)

    assert errors == []
    assert len(started) == 2 and all(j["status"] == "pending" for j in started)
    assert dict(ex.launches) == {j["id"]: 1 for j in started}


# --- stale launch claims -------------------------------------------------------------------

def test_a_launch_claim_older_than_the_timeout_frees_its_slot_and_fails_the_job(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "1")
    monkeypatch.setattr(executor_mod, "LAUNCH_TIMEOUT", 5.0, raising=False)
    store = get_store()
    # a dispatcher claimed this job 60 s ago and died before launching it
    store.insert(TABLE, _job("job-stale", "pending", queued_at=1.0, launching=True, runner_pid=None,
                             run_started_at=time.time() - 60))
    store.insert(TABLE, _job("job-next", queued_at=2.0))
    ex = CountingExecutor()

    assert dispatch(ex, store) == ["job-next"]

    stale = store.get(TABLE, "job-stale")
    assert stale["status"] == "failed" and stale["error"] == "the job process never started"
    assert not stale.get("launching") and stale["finished_at"]
    assert store.get(TABLE, "job-next")["status"] == "pending"
    assert dict(ex.launches) == {"job-next": 1}


def test_a_fresh_launch_claim_still_holds_its_slot(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "1")
    monkeypatch.setattr(executor_mod, "LAUNCH_TIMEOUT", 5.0, raising=False)
    store = get_store()
    store.insert(TABLE, _job("job-launching", "pending", queued_at=1.0, launching=True, runner_pid=None,
                             run_started_at=time.time() - 1))
    store.insert(TABLE, _job("job-next", queued_at=2.0))
    ex = CountingExecutor()

    assert dispatch(ex, store) == []
    assert JobService(store, ex).status("job-launching")["status"] == "pending"
    assert store.get(TABLE, "job-next")["status"] == "queued"


def test_reading_a_job_whose_launch_claim_expired_fails_it_and_dispatches_the_queue(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "1")
    monkeypatch.setattr(executor_mod, "LAUNCH_TIMEOUT", 5.0, raising=False)
    store = get_store()
    store.insert(TABLE, _job("job-stale", "pending", queued_at=1.0, launching=True, runner_pid=None,
                             run_started_at=time.time() - 60))
    store.insert(TABLE, _job("job-next", queued_at=2.0))
    ex = CountingExecutor()

    st = JobService(store, ex).status("job-stale")

    assert st["status"] == "failed" and "never started" in st["error"]
    assert store.get(TABLE, "job-next")["status"] == "pending"
    assert dict(ex.launches) == {"job-next": 1}


# --- a dead job frees its slot ----------------------------------------------------------------

def test_whoever_notices_a_dead_job_starts_the_next_in_line(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "1")
    store = get_store()
    store.insert(TABLE, _job("job-a", queued_at=1.0))
    store.insert(TABLE, _job("job-b", queued_at=2.0))
    ex = CountingExecutor()
    assert dispatch(ex, store) == ["job-a"]
    assert store.get(TABLE, "job-b")["status"] == "queued"

    ex.kill("job-a")  # kill -9: no outcome reported
    st = JobService(store, ex).status("job-a")

    assert st["status"] == "failed" and "died" in st["error"]
    assert store.get(TABLE, "job-b")["status"] == "pending"
    assert dict(ex.launches) == {"job-a": 1, "job-b": 1}


# --- unknown ids -----------------------------------------------------------------------------

def test_an_unknown_id_is_not_found_before_any_file_is_touched(home: Path, monkeypatch) -> None:
    svc = JobService(executor=CountingExecutor())
    long_id = "x" * 5000  # longer than any file name may be

    def no_files(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the job folder was touched for an unknown job")

    with monkeypatch.context() as m:
        m.setattr(wb_home, "job_dir", no_files)
        for read in (svc.status, svc.get, svc.job_dir, svc.metrics, svc.logs, svc.checkpoints):
            with pytest.raises(NotFound):
                read(long_id)
    with pytest.raises(NotFound):  # and with the real file system: never OSError (name too long)
        JobService().status(long_id)


def test_the_runner_that_sees_its_kernel_die_starts_the_next_in_line(home: Path, monkeypatch) -> None:
    import json
    import subprocess
    import sys

    from workbench.jobs import runner

    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "1")
    store = get_store()
    ex = CountingExecutor()
    store.insert(TABLE, _job("job-a", queued_at=1.0))
    store.insert(TABLE, _job("job-b", queued_at=2.0))
    assert dispatch(ex, store) == ["job-a"]
    jd = wb_home.job_dir("job-a")
    jd.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (jd / "kernel.json").write_text(json.dumps({"pid": gone.pid, "run": 1}))  # the OOM killer took it
    exits: list[int] = []

    class Exited(Exception):
        pass

    def exit_(code: int) -> None:
        exits.append(code)
        raise Exited  # ends the watcher thread, not the test process

    def watch() -> None:
        try:
            runner._watch("job-a", jd, threading.Event())
        except Exited:
            pass

    monkeypatch.setattr(runner.os, "_exit", exit_)
    monkeypatch.setattr(runner, "dispatch", lambda: dispatch(ex, store))
    watcher = threading.Thread(target=watch)
    watcher.start()
    watcher.join(timeout=30)

    assert exits == [3]
    assert "kernel" in store.get(TABLE, "job-a")["error"]
    assert store.get(TABLE, "job-b")["status"] == "pending"
    assert dict(ex.launches) == {"job-a": 1, "job-b": 1}
