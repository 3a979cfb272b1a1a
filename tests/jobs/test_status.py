"""The status object: derived fields computed from a job's record and metrics events."""

from __future__ import annotations

import pytest

import json
import math
import os
import time

from workbench import home
from workbench.jobfiles import summary as summaries
from workbench.jobs.status import build_status
from workbench.records import now_iso


def _job(status: str = "running", **extra) -> dict:
    now = now_iso()
    return {"id": "job-abc", "owner": "local", "status": status, "model": "tiny-chat", "created_at": now,
            "updated_at": now, "started_at": now, "run_started_at": time.time() - 100, "elapsed_before": 20.0,
            "config": {"training": {"num_train_epochs": 3}}, **extra}


def _write(events: list[dict]) -> None:
    jd = home.job_dir("job-abc")
    jd.mkdir(parents=True, exist_ok=True)
    with open(jd / "metrics.jsonl", "w") as fh:
        for ev in events:
            fh.write(json.dumps(ev) + "\n")


def _train(step: int, loss: float, t: str) -> dict:
    return {"type": "train", "timestamp": t, "step": step, "epoch": step / 10, "total_steps": 100, "loss": loss,
            "learning_rate": 1e-4, "grad_norm": 0.5, "train_perplexity": round(math.exp(loss), 4),
            "samples_per_second": 8.0, "tokens_per_second": 900.0, "trained_tokens_per_second": 400.0,
            "rss_gb": 0.5, "gpu_memory_allocated_gb": None, "gpu_memory_reserved_gb": None,
            "gpu_utilization_percent": None}


def test_status_has_every_reference_field_derived_from_the_events(home) -> None:
    _write([
        {"type": "status", "timestamp": "2026-01-01T00:00:00Z", "status": "running", "total_steps": 100,
         "total_epochs": 10, "total_samples": 80},
        _train(10, 2.0, "2026-01-01T00:00:10Z"),
        {"type": "eval", "timestamp": "2026-01-01T00:00:11Z", "step": 10, "epoch": 1.0, "eval_loss": 1.9},
        _train(20, 1.5, "2026-01-01T00:00:20Z"),
        {"type": "eval", "timestamp": "2026-01-01T00:00:21Z", "step": 20, "epoch": 2.0, "eval_loss": 1.6},
        _train(30, 1.4, "2026-01-01T00:00:30Z"),
        {"type": "eval", "timestamp": "2026-01-01T00:00:31Z", "step": 30, "epoch": 3.0, "eval_loss": 1.7},
    ])
    st = build_status(_job())
    assert st["current_step"] == 30 and st["total_steps"] == 100 and st["progress"] == 30.0
    assert st["total_epochs"] == 10 and st["total_samples"] == 80 and st["current_epoch"] == 3.0
    assert st["loss"] == 1.4 and st["eval_loss"] == 1.7
    assert (st["best_eval_loss"], st["best_step"], st["best_epoch"]) == (1.6, 20, 2.0)
    assert st["loss_trend"] == "degrading"  # eval loss rose from 1.6 to 1.7
    assert st["epochs_without_improvement"] == 1
    assert st["eval_perplexity"] == round(math.exp(1.7), 4) and st["train_perplexity"] == round(math.exp(1.4), 4)
    assert st["remaining_seconds"] == 70.0  # 1 s per step since the run's first logged step, 70 to go
    assert 119 <= st["elapsed_seconds"] <= 125  # 20 s of earlier runs + 100 s of this one
    assert st["gpu_memory_allocated_gb"] is None and st["tokens_per_second"] == 900.0
    assert st["warning"] is None


def test_no_update_for_more_than_five_minutes_gives_the_stale_warning(home) -> None:
    _write([_train(10, 2.0, "2026-01-01T00:00:10Z")])
    old = time.time() - 8 * 60
    for name in ("metrics.jsonl",):
        os.utime(home / "jobs" / "job-abc" / name, (old, old))
    job = _job(updated_at="2026-01-01T00:00:00Z")
    st = build_status(job)
    assert st["warning"].startswith("⚠️ No updates received in 8 minute(s).")
    assert build_status({**job, "status": "paused"})["warning"] is None


def test_the_summary_file_and_a_full_replay_agree(home) -> None:
    events = [_train(s, 3.0 - s / 10, f"2026-01-01T00:00:{s:02d}Z") for s in range(1, 20)]
    _write(events)
    jd = home / "jobs" / "job-abc"
    incremental = summaries.empty_summary()
    for ev in events:
        summaries.fold(incremental, ev)
    assert incremental == summaries.rebuild(jd)
    summaries.save_summary(jd, incremental)
    assert build_status(_job())["loss"] == events[-1]["loss"]
    assert summaries.loss_trend(incremental) == "improving"


@pytest.mark.parametrize("state, expected", [
    ("queued", ["cancel"]), ("pending", ["pause", "cancel"]), ("running", ["pause", "cancel"]),
    ("paused", ["resume", "cancel"]), ("completed", []), ("failed", []), ("cancelled", []),
])
def test_the_status_says_which_actions_apply(state: str, expected: list[str]) -> None:
    from workbench.job_states import STATUSES, actions

    assert state in STATUSES and actions(state) == expected
