"""Analytics of training jobs: one job, all of a user's jobs, and side-by-side comparison.

Everything comes from what a job leaves behind: its record (status, elapsed time), its
``metrics.jsonl`` events (read once per job, in one pass) and its checkpoint folders.
Scans are cached in-process, keyed by the metrics file's size and mtime, so asking again
about an unchanged job reads nothing.

Definitions
-----------
* ``duration.total_seconds`` — wall time the job's runs took (queued and paused time
  excluded; model loading included), from the job record.
* ``performance.avg_iteration_time`` — seconds per optimizer step while training: the
  time between consecutive ``train`` events over the steps between them, with evaluation
  and checkpoint saving left out (the clock restarts after each ``eval``/``checkpoint``
  event, and at the start of every run).
* ``performance.throughput`` — mean processed tokens/s (non-padding tokens fed to the
  model) over the logged windows; ``trained_tokens_per_second`` likewise for label tokens.
* ``resources.gpu_utilization`` — mean GPU utilisation as a fraction (0..1); null on CPU.
  ``memory_used_gb`` — peak reserved GPU memory on a GPU, else the peak process RSS.
  ``peak_temperature`` is not measured (null).
* ``loss_progression`` — ``initial_loss`` is the first logged training loss (the mean over
  the first logging window), ``final_loss`` the last; ``improvement`` their difference.

Efficiency score
----------------
``efficiency_score = relative_improvement × token_utilisation``, in [0, 1]:

* ``relative_improvement = clamp((initial_loss − final_loss) / initial_loss, 0, 1)`` — the
  fraction of the starting training loss the job removed (scale-free, so jobs on different
  models and datasets compare; a job whose loss rose scores 0);
* ``token_utilisation = trained tokens / processed tokens`` over all runs — the share of
  the compute spent on tokens that carry loss (assistant replies, under the prompt
  masking that training uses). Padding is never counted as processed; long prompts
  around short replies lower it.

So 1.0 would be a job that drove its loss to zero while every token it processed was
learned from. Null when the job has logged fewer than one training window or no tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..job_states import STATUSES
from ..jobfiles import job_folder
from ..jobs.status import fmt_duration
from ..records import LOCAL_USER, parse_iso
from ..stamps import StampCache

TOP_JOBS = 5
_SCANS: StampCache[dict[str, Any]] = StampCache(512)  # metrics scans, while the events log is unchanged


def _ts(value: str | None) -> float | None:
    return parse_iso(value).timestamp() if value else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value: float | None, ndigits: int = 4) -> float | None:
    return None if value is None else round(value, ndigits)


# --- one pass over metrics.jsonl ------------------------------------------------------------

def scan_metrics(path: Path) -> dict[str, Any]:
    """Every figure the analytics need, from one streamed read of the events."""
    from ..jobfiles.events import iter_events

    first_loss = final_loss = None
    last_step = 0
    best_eval = best_step = None
    anchor: tuple[float, int] | None = None
    iter_time, iter_steps = 0.0, 0
    tps, ttps, sps, gpu = [], [], [], []
    peak_rss, peak_gpu = 0.0, None
    processed = trained = 0  # summed over runs: the engine's counters restart with every run
    run_processed = run_trained = 0
    first_at = last_at = None
    for ev in iter_events(path):
        kind = ev.get("type")
        ts = _ts(ev.get("timestamp"))
        if ts is not None:
            first_at = first_at if first_at is not None else ts
            last_at = ts
        if kind == "status" and ev.get("status") == "running":
            processed, trained = processed + run_processed, trained + run_trained
            run_processed = run_trained = 0
            anchor = (ts, int(ev.get("resumed_step") or 0)) if ts is not None else None
        elif kind == "train":
            step = int(ev.get("step") or 0)
            if ts is not None and anchor is not None and step > anchor[1]:
                iter_time += max(0.0, ts - anchor[0])
                iter_steps += step - anchor[1]
            anchor = (ts, step) if ts is not None else None
            last_step = max(last_step, step)
            if ev.get("loss") is not None:
                first_loss = ev["loss"] if first_loss is None else first_loss
                final_loss = ev["loss"]
            for key, acc in (("tokens_per_second", tps), ("trained_tokens_per_second", ttps),
                             ("samples_per_second", sps)):
                if ev.get(key) is not None:
                    acc.append(float(ev[key]))
            if ev.get("gpu_utilization_percent") is not None:
                gpu.append(float(ev["gpu_utilization_percent"]) / 100.0)
            peak_rss = max(peak_rss, ev.get("rss_gb") or 0.0)
            if ev.get("gpu_memory_reserved_gb") is not None:
                peak_gpu = max(peak_gpu or 0.0, ev["gpu_memory_reserved_gb"])
            run_processed = int(ev.get("num_tokens_processed") or run_processed)
            run_trained = int(ev.get("num_tokens_trained") or run_trained)
        elif kind in ("eval", "checkpoint"):
            if kind == "eval" and ev.get("eval_loss") is not None and (best_eval is None or ev["eval_loss"] < best_eval):
                best_eval, best_step = ev["eval_loss"], ev.get("step")
            if anchor is not None and ts is not None:
                anchor = (ts, anchor[1])  # evaluation and saving are not iteration time
    processed, trained = processed + run_processed, trained + run_trained
    return {
        "first_loss": first_loss, "final_loss": final_loss, "last_step": last_step,
        "best_eval_loss": best_eval, "best_step": best_step,
        "avg_iteration_time": iter_time / iter_steps if iter_steps else None,
        "throughput": _mean(tps), "trained_tokens_per_second": _mean(ttps), "samples_per_second": _mean(sps),
        "gpu_utilization": _mean(gpu), "peak_rss_gb": peak_rss or None, "peak_gpu_memory_gb": peak_gpu,
        "tokens_processed": processed, "tokens_trained": trained,
        "first_at": first_at, "last_at": last_at,
    }


def _scan_cached(job: dict[str, Any]) -> dict[str, Any]:
    path = job_folder(job["id"]).events
    return _SCANS.get_or_compute(str(path), [path], lambda: scan_metrics(path))


# --- scores ---------------------------------------------------------------------------------

def efficiency_score(initial_loss: float | None, final_loss: float | None,
                     tokens_trained: int | None, tokens_processed: int | None) -> float | None:
    """``clamp((initial − final) / initial, 0, 1) × trained / processed`` (see the module doc)."""
    if initial_loss is None or final_loss is None or not tokens_processed or initial_loss <= 0 \
            or not math.isfinite(initial_loss) or not math.isfinite(final_loss):
        return None
    relative = min(1.0, max(0.0, (initial_loss - final_loss) / initial_loss))
    utilisation = min(1.0, max(0.0, (tokens_trained or 0) / tokens_processed))
    return round(relative * utilisation, 4)


def _duration(job: dict[str, Any], facts: dict[str, Any]) -> float:
    from ..jobs.status import elapsed_seconds

    seconds = elapsed_seconds(job)
    if seconds <= 0 and facts["first_at"] is not None and facts["last_at"] is not None:
        seconds = facts["last_at"] - facts["first_at"]  # a record without run times (imported job)
    return max(0.0, seconds)


def _checkpoints(job_id: str) -> dict[str, Any]:
    """Count and best (lowest eval loss, else the latest) — the rule of the checkpoints listing."""
    from ..jobfiles.checkpoints import best_checkpoint, checkpoint_dirs

    dirs = checkpoint_dirs(job_folder(job_id).output)
    best = best_checkpoint(dirs)
    return {"total": len(dirs), "best_checkpoint": best.name if best else None}


def _analytics(job: dict[str, Any]) -> dict[str, Any]:
    f = _scan_cached(job)
    seconds = _duration(job, f)
    first, final = f["first_loss"], f["final_loss"]
    improvement = first - final if first is not None and final is not None else None
    result = job.get("result") or {}
    return {
        "job_id": job["id"],
        "status": job["status"],
        "duration": {"total_seconds": round(seconds, 1), "formatted": fmt_duration(seconds, full=True)},
        "performance": {
            "avg_iteration_time": _round(f["avg_iteration_time"]),
            "throughput": _round(f["throughput"], 1),
            "trained_tokens_per_second": _round(f["trained_tokens_per_second"], 1),
            "samples_per_second": _round(f["samples_per_second"], 3),
            "total_iterations": max(f["last_step"], int(result.get("step") or 0)),
            "tokens_processed": f["tokens_processed"],
            "tokens_trained": f["tokens_trained"],
        },
        "resources": {
            "gpu_utilization": _round(f["gpu_utilization"]),
            "memory_used_gb": _round(f["peak_gpu_memory_gb"] if f["peak_gpu_memory_gb"] is not None
                                     else f["peak_rss_gb"], 3),
            "peak_rss_gb": _round(f["peak_rss_gb"], 3),
            "peak_temperature": None,
        },
        "loss_progression": {
            "initial_loss": _round(first),
            "final_loss": _round(final),
            "improvement": _round(improvement),
            "improvement_pct": _round(100.0 * improvement / first, 2) if improvement is not None and first else None,
            "best_eval_loss": _round(f["best_eval_loss"]),
            "best_step": f["best_step"],
        },
        "checkpoints": _checkpoints(job["id"]),
        "efficiency_score": efficiency_score(first, final, f["tokens_trained"], f["tokens_processed"]),
    }


# --- the public API -------------------------------------------------------------------------

def job_analytics(job_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
    """Analytics of one job (``GET /api/training/:jobId/analytics``); NotFound for another owner's."""
    from ..jobs.service import JobService

    return _analytics(JobService().get(job_id, owner))


def summary(owner: str = LOCAL_USER) -> dict[str, Any]:
    """Across all of ``owner``'s jobs (``GET /api/training/analytics/summary``).

    ``avg_training_duration_seconds`` averages completed jobs; ``total_training_time_hours``
    sums every job's run time (failed and cancelled runs used the machine too);
    ``avg_throughput``, ``avg_gpu_usage`` and ``avg_memory_gb`` average the jobs that logged them.
    """
    from ..jobs.service import JobService

    jobs = JobService().list(owner)
    by_status = Counter(j["status"] for j in jobs)
    rows = [_analytics(j) for j in jobs]
    completed = [r["duration"]["total_seconds"] for r in rows if r["status"] == "completed"]
    throughputs = [r["performance"]["throughput"] for r in rows if r["performance"]["throughput"] is not None]
    gpu = [r["resources"]["gpu_utilization"] for r in rows if r["resources"]["gpu_utilization"] is not None]
    memory = [r["resources"]["memory_used_gb"] for r in rows if r["resources"]["memory_used_gb"] is not None]
    ranked = sorted((r for r in rows if r["efficiency_score"] is not None),
                    key=lambda r: (-r["efficiency_score"], r["duration"]["total_seconds"]))
    return {
        "total_jobs": len(jobs),
        "jobs_by_status": {s: by_status.get(s, 0) for s in STATUSES} | {s: n for s, n in by_status.items()
                                                                        if s not in STATUSES},
        "avg_training_duration_seconds": _round(_mean(completed), 1),
        "total_training_time_hours": round(sum(r["duration"]["total_seconds"] for r in rows) / 3600.0, 4),
        "avg_throughput": _round(_mean(throughputs), 1),
        "top_performing_jobs": [{"job_id": r["job_id"], "efficiency_score": r["efficiency_score"],
                                 "duration_seconds": r["duration"]["total_seconds"]} for r in ranked[:TOP_JOBS]],
        "resource_utilization": {"avg_gpu_usage": _round(_mean(gpu)), "avg_memory_gb": _round(_mean(memory), 3)},
    }


def _winner(rows: list[dict[str, Any]], key: str, best: Any) -> str | None:
    """The job id with the best value of ``key`` (``min``/``max``); ties go to the first listed."""
    scored = [r for r in rows if r[key] is not None]
    if not scored:
        return None
    target = best(r[key] for r in scored)
    return next(r["job_id"] for r in scored if r[key] == target)


def compare(job_ids: list[str] | str, owner: str = LOCAL_USER) -> dict[str, Any]:
    """Side by side (``GET /api/training/analytics/compare?job_ids=a,b``), with the best job per metric.

    Accepts a list or a comma-separated string; duplicates are dropped. Raises InvalidInput
    (field ``job_ids``) for fewer than two distinct jobs, NotFound for an unknown one.
    """
    from ..jobs.service import JobService

    ids = job_ids.split(",") if isinstance(job_ids, str) else list(job_ids or [])
    ids = list(dict.fromkeys(i.strip() for i in ids if i and i.strip()))
    if len(ids) < 2:
        raise InvalidInput("compare needs at least two distinct job ids", field="job_ids")
    svc = JobService()
    jobs = [svc.get(i, owner) for i in ids]
    rows = []
    for job in jobs:
        a = _analytics(job)
        rows.append({
            "job_id": job["id"],
            "status": job["status"],
            "duration_seconds": a["duration"]["total_seconds"],
            "throughput": a["performance"]["throughput"],
            "loss_improvement": a["loss_progression"]["improvement"],
            "gpu_utilization": a["resources"]["gpu_utilization"],
            "efficiency_score": a["efficiency_score"],
            "final_loss": a["loss_progression"]["final_loss"],
            "best_eval_loss": a["loss_progression"]["best_eval_loss"],
        })
    return {
        "comparison": rows,
        "winner": {
            "best_duration": _winner([r for r in rows if r["duration_seconds"]], "duration_seconds", min),
            "best_throughput": _winner(rows, "throughput", max),
            "best_efficiency": _winner(rows, "efficiency_score", max),
            "best_loss_improvement": _winner(rows, "loss_improvement", max),
            "best_eval_loss": _winner(rows, "best_eval_loss", min),
        },
    }
