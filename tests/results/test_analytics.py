"""Job analytics, the per-user summary and comparison, from real job folders.

``clone`` copies the real LoRA job under a new id with a rewritten metrics history, so
comparisons have known winners.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workbench import home
from workbench.errors import InvalidInput, NotFound
from workbench.jobfiles import events as event_log
from workbench.jobs.service import JobService
from workbench.jobs.state import TABLE
from workbench.records import new_id
from workbench.results import analytics
from workbench.jobs.status import fmt_duration
from workbench.results.analytics import compare, efficiency_score, job_analytics, scan_metrics, summary
from workbench.store import get_store

Event = dict[str, Any]


@pytest.fixture
def clone(lora_job) -> Callable[..., dict[str, Any]]:
    """A copy of the LoRA job with ``edit`` applied to each event, and record fields changed."""

    def make(edit: Callable[[Event], Event] = lambda e: e, owner: str | None = None, **fields: Any) -> dict[str, Any]:
        job_id = new_id("job")
        src, dst = home.job_dir(lora_job["id"]), home.job_dir(job_id)
        shutil.copytree(src, dst)
        events = [edit(dict(e)) for e in event_log.iter_events(src / "metrics.jsonl")]
        (dst / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        (dst / "summary.json").unlink(missing_ok=True)
        record = {**get_store().get(TABLE, lora_job["id"]), "id": job_id, **fields}
        if owner:
            record["owner"] = owner
        get_store().insert(TABLE, record)
        return record

    return make


def train_events(job_id: str) -> list[Event]:
    return JobService().metrics(job_id, types={"train"})


# --- one job ----------------------------------------------------------------------------------

def test_job_analytics_has_the_reference_shape_and_the_jobs_numbers(lora_job) -> None:
    a = job_analytics(lora_job["id"])
    train = train_events(lora_job["id"])
    evals = JobService().metrics(lora_job["id"], types={"eval"})

    assert a["job_id"] == lora_job["id"]
    assert a["duration"]["total_seconds"] > 0
    assert re.fullmatch(r"\d+h \d+m \d+s", a["duration"]["formatted"])
    perf = a["performance"]
    assert perf["total_iterations"] == 20
    assert 0 < perf["avg_iteration_time"] < a["duration"]["total_seconds"]
    assert perf["throughput"] == pytest.approx(sum(e["tokens_per_second"] for e in train) / len(train), abs=0.1)
    assert 0 < perf["trained_tokens_per_second"] <= perf["throughput"]
    assert perf["samples_per_second"] > 0
    res = a["resources"]
    assert res["gpu_utilization"] is None and res["peak_temperature"] is None  # CPU, not measured
    assert res["memory_used_gb"] == res["peak_rss_gb"] == pytest.approx(max(e["rss_gb"] for e in train), abs=1e-3)
    loss = a["loss_progression"]
    assert loss["initial_loss"] == pytest.approx(train[0]["loss"], abs=1e-4)
    assert loss["final_loss"] == pytest.approx(train[-1]["loss"], abs=1e-4)
    assert loss["improvement"] == pytest.approx(train[0]["loss"] - train[-1]["loss"], abs=1e-3) and loss["improvement"] > 0
    assert loss["improvement_pct"] == pytest.approx(100 * loss["improvement"] / loss["initial_loss"], abs=0.01)
    best = min(evals, key=lambda e: e["eval_loss"])
    assert loss["best_eval_loss"] == pytest.approx(best["eval_loss"], abs=1e-4) and loss["best_step"] == best["step"]
    listing = JobService().checkpoints(lora_job["id"])
    assert a["checkpoints"] == {"total": listing["total"], "best_checkpoint": listing["best_checkpoint"]}


def test_efficiency_score_is_relative_loss_improvement_times_token_utilisation(lora_job) -> None:
    a = job_analytics(lora_job["id"])
    last = train_events(lora_job["id"])[-1]  # one run: its counters are the job's totals
    relative = (a["loss_progression"]["initial_loss"] - a["loss_progression"]["final_loss"]) / a["loss_progression"]["initial_loss"]
    utilisation = last["num_tokens_trained"] / last["num_tokens_processed"]

    assert 0 < utilisation < 1  # prompts are masked: not every processed token is trained on
    assert a["efficiency_score"] == pytest.approx(relative * utilisation, abs=1e-3)
    assert 0 <= a["efficiency_score"] <= 1


def test_efficiency_score_bounds() -> None:
    assert efficiency_score(4.0, 1.0, 50, 100) == 0.375
    assert efficiency_score(4.0, 0.0, 100, 100) == 1.0
    assert efficiency_score(2.0, 3.0, 50, 100) == 0.0  # loss went up
    assert efficiency_score(None, 1.0, 50, 100) is None  # nothing logged yet
    assert efficiency_score(2.0, 1.0, 0, 0) is None


def test_format_duration_matches_the_reference() -> None:
    assert fmt_duration(3600, full=True) == "1h 0m 0s"
    assert fmt_duration(3725.4, full=True) == "1h 2m 5s"
    assert fmt_duration(59, full=True) == "0h 0m 59s"


def test_iteration_time_leaves_out_evaluation_saving_and_the_gap_between_runs(tmp_path: Path) -> None:
    def ev(t: float, **kw: Any) -> str:
        return json.dumps({"timestamp": f"2025-01-15T10:{int(t) // 60:02d}:{t % 60:06.3f}Z", **kw}) + "\n"

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join([
        ev(0, type="status", status="running", resumed_step=0),
        ev(5, type="train", step=5, loss=4.0, tokens_per_second=100.0, num_tokens_processed=100, num_tokens_trained=50),
        ev(8, type="eval", step=5, eval_loss=3.5),          # 3 s evaluating
        ev(9, type="checkpoint", step=5, path="checkpoint-5"),  # 1 s saving
        ev(14, type="train", step=10, loss=3.0, tokens_per_second=300.0, num_tokens_processed=200, num_tokens_trained=100),
        ev(100, type="status", status="running", resumed_step=10),  # paused, resumed later
        ev(105, type="train", step=15, loss=2.0, tokens_per_second=200.0, num_tokens_processed=40, num_tokens_trained=10),
    ]))
    f = scan_metrics(path)

    assert f["avg_iteration_time"] == pytest.approx(1.0)  # 15 s of training for 15 steps
    assert f["throughput"] == pytest.approx(200.0)
    assert (f["tokens_processed"], f["tokens_trained"]) == (240, 110)  # counters restart with each run
    assert (f["first_loss"], f["final_loss"], f["best_eval_loss"], f["best_step"]) == (4.0, 2.0, 3.5, 5)


def test_analytics_read_the_metrics_file_once_and_reuse_it_while_it_is_unchanged(lora_job, monkeypatch) -> None:
    reads: list[Path] = []
    real = event_log.iter_events
    monkeypatch.setattr(event_log, "iter_events", lambda path, types=None: reads.append(path) or real(path, types))
    analytics._SCANS.items.clear()

    first = job_analytics(lora_job["id"])
    assert len(reads) == 1
    assert job_analytics(lora_job["id"]) == first and len(reads) == 1


def test_another_owners_job_is_not_found(lora_job) -> None:
    with pytest.raises(NotFound):
        job_analytics(lora_job["id"], owner="someone-else")
    with pytest.raises(NotFound):
        job_analytics("job-doesnotexist")


# --- comparison -------------------------------------------------------------------------------

def test_compare_names_the_best_job_for_each_metric(lora_job, clone) -> None:
    """The clone ran faster and at twice the throughput, but learned less and evaluates worse."""

    def worse_but_faster(e: Event) -> Event:
        if e["type"] == "train":
            e["tokens_per_second"] *= 2
            e["loss"] = e["loss"] * 0.5 + lora_job_first_loss * 0.5  # half the improvement
        if e["type"] == "eval":
            e["eval_loss"] += 1.0
        return e

    lora_job_first_loss = train_events(lora_job["id"])[0]["loss"]
    other = clone(worse_but_faster, elapsed_before=0.5)
    out = compare([lora_job["id"], other["id"]])

    rows = {r["job_id"]: r for r in out["comparison"]}
    assert [r["job_id"] for r in out["comparison"]] == [lora_job["id"], other["id"]]
    for row in out["comparison"]:
        assert set(row) >= {"job_id", "duration_seconds", "throughput", "loss_improvement", "gpu_utilization",
                            "efficiency_score", "final_loss", "best_eval_loss"}
    assert rows[other["id"]]["loss_improvement"] == pytest.approx(rows[lora_job["id"]]["loss_improvement"] / 2, abs=1e-3)
    assert out["winner"] == {"best_duration": other["id"], "best_throughput": other["id"],
                             "best_efficiency": lora_job["id"], "best_loss_improvement": lora_job["id"],
                             "best_eval_loss": lora_job["id"]}


def test_compare_accepts_the_query_string_form(lora_job, full_job) -> None:
    out = compare(f"{lora_job['id']}, {full_job['id']}")
    assert [r["job_id"] for r in out["comparison"]] == [lora_job["id"], full_job["id"]]


def test_compare_needs_two_distinct_jobs_of_the_owner(lora_job, full_job, clone) -> None:
    for ids in ([], [lora_job["id"]], [lora_job["id"], lora_job["id"]]):
        with pytest.raises(InvalidInput) as err:
            compare(ids)
        assert err.value.field == "job_ids"
    with pytest.raises(NotFound):
        compare([lora_job["id"], "job-doesnotexist"])
    theirs = clone(owner="someone-else")
    with pytest.raises(NotFound):
        compare([lora_job["id"], theirs["id"]])


# --- summary ----------------------------------------------------------------------------------

def test_summary_aggregates_the_owners_jobs(lora_job, full_job, clone) -> None:
    clone(owner="someone-else")  # never counted for "local"
    failed = clone(lambda e: e, status="failed")
    jobs = JobService().list()
    each = {j["id"]: job_analytics(j["id"]) for j in jobs}

    s = summary()

    assert s["total_jobs"] == len(jobs) >= 3
    assert s["jobs_by_status"]["completed"] == sum(j["status"] == "completed" for j in jobs)
    assert s["jobs_by_status"]["failed"] >= 1 and sum(s["jobs_by_status"].values()) == len(jobs)
    completed = [each[j["id"]]["duration"]["total_seconds"] for j in jobs if j["status"] == "completed"]
    assert s["avg_training_duration_seconds"] == pytest.approx(sum(completed) / len(completed), abs=0.1)
    total = sum(a["duration"]["total_seconds"] for a in each.values())
    assert s["total_training_time_hours"] == pytest.approx(total / 3600, abs=1e-3)
    throughputs = [a["performance"]["throughput"] for a in each.values()]
    assert s["avg_throughput"] == pytest.approx(sum(throughputs) / len(throughputs), abs=0.1)

    top = s["top_performing_jobs"]
    assert 1 <= len(top) <= 5 and set(top[0]) == {"job_id", "efficiency_score", "duration_seconds"}
    scores = [t["efficiency_score"] for t in top]
    assert scores == sorted(scores, reverse=True)
    assert top[0]["efficiency_score"] == max(a["efficiency_score"] for a in each.values())
    assert failed["id"] in each
    assert s["resource_utilization"]["avg_gpu_usage"] is None  # CPU
    assert s["resource_utilization"]["avg_memory_gb"] > 0


def test_summary_of_a_user_without_jobs() -> None:
    s = summary(owner="nobody")
    assert s["total_jobs"] == 0 and s["top_performing_jobs"] == [] and s["avg_throughput"] is None
    assert set(s["jobs_by_status"].values()) == {0}
