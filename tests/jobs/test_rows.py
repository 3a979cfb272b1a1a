"""``history.jsonl``: the job's per-step rows, written as steps become final.

The specification is :func:`step_rows.fold_rows` over the whole event log. Whatever order the
events come in, what a reader serves (the file's rows plus the rows of the events logged after
its last one) must equal that fold after every single event.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from workbench.jobfiles import layout, rows as step_rows
from workbench.jobfiles.events import append_event


def served(job_dir: Path) -> list[dict[str, Any]]:
    """What the server answers: the file's rows, then the rows of the events after them."""
    path = job_dir / layout.ROWS
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return rows + step_rows.tail_rows(job_dir / "metrics.jsonl", step_rows.last_step(path), job_dir.name)


def log(job_dir: Path, writer: step_rows.RowWriter, log_so_far: list[dict[str, Any]], ev: dict[str, Any]) -> None:
    append_event(job_dir / "metrics.jsonl", ev)
    writer.add(ev)
    log_so_far.append(ev)
    assert served(job_dir) == step_rows.fold_rows(log_so_far, job_dir.name)


def train(step: int, loss: float) -> dict[str, Any]:
    return {"timestamp": f"t{step}", "type": "train", "step": step, "epoch": step / 100, "loss": loss,
            "learning_rate": 1e-3, "grad_norm": 0.5, "tokens_per_second": 900.0}


def evaluate(step: int, loss: float) -> dict[str, Any]:
    return {"timestamp": f"e{step}", "type": "eval", "step": step, "epoch": step / 100, "eval_loss": loss,
            "eval_perplexity": 2.0}


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    d = tmp_path / "job-abc"
    d.mkdir()
    return d


def test_rows_are_written_once_their_step_is_final_and_match_the_fold(job_dir: Path) -> None:
    writer, events = step_rows.RowWriter(job_dir), []
    log(job_dir, writer, events, {"type": "status", "status": "running"})
    for step in range(5, 55, 5):
        log(job_dir, writer, events, train(step, 3.0 - step / 50))
        if step % 10 == 0:
            log(job_dir, writer, events, evaluate(step, step / 4))
            log(job_dir, writer, events, {"type": "checkpoint", "step": step, "path": f"checkpoint-{step}"})
    lines = (job_dir / layout.ROWS).read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(5, 50, 5))  # step 50 waits for its eval
    writer.flush()
    rows = [json.loads(x) for x in (job_dir / layout.ROWS).read_text().splitlines()]
    assert rows == step_rows.fold_rows(events, "job-abc") and rows[-1]["step"] == 50
    assert rows[1] == {**rows[1], "id": "job-abc-10", "train_loss": 2.8, "eval_loss": 2.5, "perplexity": 2.0}


def test_events_out_of_order_rewrite_the_file_and_stay_equal_to_the_fold(job_dir: Path) -> None:
    writer, events = step_rows.RowWriter(job_dir), []
    for ev in (train(5, 3.0), evaluate(5, 2.9), train(10, 2.0), evaluate(10, 1.9),
               train(15, 1.5), train(5, 2.5), evaluate(7, 1.5), evaluate(15, 1.4), train(20, 1.0)):
        log(job_dir, writer, events, ev)
    writer.flush()
    assert [(r["step"], r["train_loss"], r["eval_loss"]) for r in served(job_dir)] == \
        [(5, 2.5, 2.9), (7, None, 1.5), (10, 2.0, 1.9), (15, 1.5, 1.4), (20, 1.0, None)]


def test_any_order_of_events_is_served_as_the_fold(job_dir: Path) -> None:
    rng = random.Random(7)
    writer, events = step_rows.RowWriter(job_dir), []
    step = 0
    for _ in range(300):
        step = max(1, step + rng.choice([1, 1, 1, 2, 0, -3]))
        log(job_dir, writer, events, train(step, rng.random()) if rng.random() < 0.7 else evaluate(step, rng.random()))


def test_a_new_run_picks_up_rows_a_crashed_run_never_flushed(job_dir: Path) -> None:
    first, events = step_rows.RowWriter(job_dir), []
    for step in (5, 10, 15):
        log(job_dir, first, events, train(step, 1.0 / step))
    # the process dies here: step 15 was never flushed to the file
    second = step_rows.RowWriter(job_dir)
    assert step_rows.last_step(job_dir / layout.ROWS) == 15
    for step in (20, 25):
        log(job_dir, second, events, train(step, 1.0 / step))
    second.flush()
    assert served(job_dir) == step_rows.fold_rows(events, "job-abc")


def test_a_job_that_logged_before_history_existed_gets_it_rebuilt(job_dir: Path) -> None:
    events = [train(5, 3.0), evaluate(5, 2.9), train(10, 2.0)]
    for ev in events:
        append_event(job_dir / "metrics.jsonl", ev)
    writer = step_rows.RowWriter(job_dir)
    assert served(job_dir) == step_rows.fold_rows(events, "job-abc")
    log(job_dir, writer, events, train(15, 1.0))


def test_a_half_written_last_line_is_left_for_later(job_dir: Path) -> None:
    writer, events = step_rows.RowWriter(job_dir), []
    for step in (5, 10):
        log(job_dir, writer, events, train(step, 1.0))
    with (job_dir / "metrics.jsonl").open("a") as fh:
        fh.write('{"type": "train", "step": 15, "lo')
    assert served(job_dir) == step_rows.fold_rows(events, "job-abc")
