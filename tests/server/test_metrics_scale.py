"""The metrics history of a long job: 100k points, merged and ordered, served fast.

A synthetic job (a real record from ``JobService.start``) gets a ``metrics.jsonl`` of 100k
train events with an eval every 100 steps, in the engine's format, and the ``history.jsonl``
a job writes beside it. The history is served from the rows the job wrote plus the events
logged since; a job without that file (from an older workbench) has its log folded here, in one
pass, and later requests with the file unchanged come from memory. Both give the same answer.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from workbench import home
from workbench.jobfiles import layout, rows as step_rows
from workbench.testing import write_synthetic_history

from .conftest import chat_lines, upload

POINTS = 100_000


@pytest.fixture(scope="module")
def long_job(local: TestClient) -> str:
    ds = upload(local, chat_lines(4)).json()["dataset"]
    job_id = local.post("/api/training/start", json={"model": "tiny-chat", "dataset": ds["id"]}).json()["job_id"]
    jd = home.job_dir(job_id)
    write_synthetic_history(jd / "metrics.jsonl", POINTS, writer=step_rows.RowWriter(jd))  # the last row still pending
    return job_id


def timed(client: TestClient, url: str) -> tuple[float, Any]:
    t = time.perf_counter()
    r = client.get(url)
    elapsed = time.perf_counter() - t
    assert r.status_code == 200
    return elapsed, r


def test_local_metrics_of_100k_points(local: TestClient, long_job: str) -> None:
    url = f"/api/training/local/{long_job}/metrics"
    cold, r = timed(local, url)
    warm = min(timed(local, url)[0] for _ in range(3))
    rows = r.json()["metrics"]
    assert len(rows) == POINTS and [row["step"] for row in rows[:3]] == [1, 2, 3] and rows[-1]["step"] == POINTS
    assert rows[99]["eval_loss"] is not None and rows[99]["perplexity"] == 3.0 and rows[98]["eval_loss"] is None
    assert rows[0]["train_loss"] == 4.9998 and rows[0]["id"] == f"{long_job}-1"
    print(f"\nlocal metrics, {POINTS} points: first {cold * 1000:.0f} ms, then {warm * 1000:.0f} ms")
    assert warm < 0.3  # the goal is 0.3 s for the first one too: bench/api_load.py measures it
    assert cold < 10


def test_the_history_file_and_a_fold_of_the_log_give_the_same_answer(local: TestClient, long_job: str) -> None:
    url = f"/api/training/local/{long_job}/metrics"
    jd = home.job_dir(long_job)
    written = local.get(url).content
    assert (jd / layout.ROWS).stat().st_size > 0
    (jd / layout.ROWS).rename(jd / "history.moved")
    try:
        folded = local.get(url).content
    finally:
        (jd / "history.moved").rename(jd / layout.ROWS)
    assert written == folded and json.loads(written)["metrics"][-1]["step"] == POINTS


def test_a_growing_history_is_never_served_stale(local: TestClient, long_job: str) -> None:
    url = f"/api/training/metrics/{long_job}"
    first = local.get(url).json()
    path = home.job_dir(long_job) / "metrics.jsonl"
    write_synthetic_history(path, 3, start=POINTS + 1)
    with path.open("a") as fh:
        fh.write('{"type": "train", "step": 999999, "lo')  # a line being written right now
    after = local.get(url).json()
    assert after["total_points"] == first["total_points"] + 3 == POINTS + 3
    assert after["metrics"][-1]["step"] == POINTS + 3  # the half-written line is left for later


def test_rows_follow_a_growing_file_through_evals_and_resumes(local: TestClient) -> None:
    """Each request reads only the new lines; an eval that arrives after its step's train row still
    merges into it, and a resumed run that logs a step again replaces that row."""
    ds = upload(local, chat_lines(4)).json()["dataset"]
    job_id = local.post("/api/training/start", json={"model": "tiny-chat", "dataset": ds["id"]}).json()["job_id"]
    path = home.job_dir(job_id) / "metrics.jsonl"
    url = f"/api/training/local/{job_id}/metrics"

    def add(**event: Any) -> None:
        with path.open("a") as fh:
            fh.write(json.dumps(event) + "\n")

    def rows() -> list[tuple[int, Any, Any]]:
        return [(r["step"], r["train_loss"], r["eval_loss"]) for r in local.get(url).json()["metrics"]]

    assert rows() == []
    add(type="status", status="running")
    add(type="train", step=5, loss=3.0)
    assert rows() == [(5, 3.0, None)]
    add(type="eval", step=5, eval_loss=2.9, eval_perplexity=18.2)
    add(type="train", step=10, loss=2.0)
    assert rows() == [(5, 3.0, 2.9), (10, 2.0, None)]
    add(type="checkpoint", step=10, path="checkpoint-10")
    add(type="eval", step=10, eval_loss=1.9, eval_perplexity=6.7)
    assert rows() == [(5, 3.0, 2.9), (10, 2.0, 1.9)]
    add(type="train", step=5, loss=2.5)  # resumed from checkpoint-0: step 5 logged again
    add(type="eval", step=7, eval_loss=1.5)  # an eval off the logging grid gets its own row
    assert rows() == [(5, 2.5, 2.9), (7, None, 1.5), (10, 2.0, 1.9)]
    assert local.get(f"/api/training/metrics/{job_id}").json()["total_points"] == 3


def test_a_job_writing_its_history_is_served_the_fold_after_every_event(local: TestClient) -> None:
    """The server reads only new bytes of ``history.jsonl`` per request; evals, a step logged again
    (which rewrites the file) and rows still pending in the job all come out as the log's fold."""
    ds = upload(local, chat_lines(4)).json()["dataset"]
    job_id = local.post("/api/training/start", json={"model": "tiny-chat", "dataset": ds["id"]}).json()["job_id"]
    jd = home.job_dir(job_id)
    writer, events = step_rows.RowWriter(jd), []
    url = f"/api/training/local/{job_id}/metrics"
    script = [("train", 5, 3.0), ("eval", 5, 2.9), ("train", 10, 2.0), ("train", 15, 1.8), ("eval", 15, 1.7),
              ("train", 20, 1.5), ("train", 10, 1.9), ("eval", 12, 1.6), ("train", 25, 1.2), ("train", 30, 1.1)]
    for kind, step, value in script:
        ev = {"type": kind, "step": step, ("loss" if kind == "train" else "eval_loss"): value}
        with (jd / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(ev) + "\n")
        writer.add(ev)
        events.append(ev)
        assert local.get(url).json()["metrics"] == step_rows.fold_rows(events, job_id)
    writer.flush()
    assert local.get(url).json()["metrics"] == step_rows.fold_rows(events, job_id)
    assert [r["step"] for r in step_rows.fold_rows(events, job_id)] == [5, 10, 12, 15, 20, 25, 30]
