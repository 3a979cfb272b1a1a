"""The status object of a job: every field of both status responses in the API reference."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .. import home
from ..job_states import LIVE, SETTLED, actions
from ..jobfiles import job_folder
from ..jobfiles import summary as summaries
from ..records import parse_iso
from ..stamps import StampCache

STALE_SECONDS = 300


def fmt_duration(seconds: float | None, *, full: bool = False) -> str | None:
    """``"1h 23m"`` as the status reference shows it; ``full`` always gives ``"1h 0m 0s"``."""
    if seconds is None:
        return None
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if full:
        return f"{h}h {m}m {s}s"
    return f"{h}h {m}m" if h else (f"{m}m {s}s" if m else f"{s}s")


def last_update(job: dict[str, Any]) -> float:
    folder = job_folder(job["id"])
    times = [parse_iso(job["updated_at"]).timestamp()]
    for path in (folder.events, folder.log):
        try:
            times.append(os.path.getmtime(path))
        except FileNotFoundError:
            pass
    return max(times)


def elapsed_seconds(job: dict[str, Any]) -> float:
    run = time.time() - job["run_started_at"] if job.get("run_started_at") else 0.0
    return job.get("elapsed_before", 0.0) + run


def build_status(job: dict[str, Any], summary: dict[str, Any] | None = None) -> dict[str, Any]:
    s = summary if summary is not None else summaries.load_summary(home.job_dir(job["id"]))
    latest = s.get("latest") or {}
    result = job.get("result") or {}
    total_steps = s.get("total_steps") or latest.get("total_steps") or result.get("total_steps")
    step = latest.get("step") or 0
    if job["status"] in ("completed",):
        step = result.get("step", step)
    if job["status"] == "paused" and job.get("checkpoint"):
        step = int(job["checkpoint"].split("-")[-1])
    progress_pct = round(100.0 * step / total_steps, 1) if total_steps else 0.0
    if job["status"] == "completed":
        progress_pct = 100.0
    elapsed = elapsed_seconds(job)
    remaining = None
    anchor = s.get("anchor")
    if job["status"] in ("running", "pending") and anchor and total_steps and step > anchor[1]:
        per_step = (parse_iso(latest["timestamp"]).timestamp() - parse_iso(anchor[0]).timestamp()) / (step - anchor[1])
        remaining = max(0.0, per_step * (total_steps - step))
    elif job["status"] == "completed":
        remaining = 0.0
    best_epoch = s.get("best_epoch")
    epoch = latest.get("epoch")
    warning = None
    diverged = s.get("diverged") or result.get("diverged")  # the loss became NaN/inf (see summaries.fold)
    if diverged:
        warning = "⚠️ " + (diverged.get("message") or summaries.divergence_message("loss", diverged.get("step")))
    elif job["status"] in LIVE:
        idle = time.time() - last_update(job)
        if idle > STALE_SECONDS:
            warning = (f"⚠️ No updates received in {int(idle // 60)} minute(s). "
                       "The training process may have terminated unexpectedly.")
    total_epochs = s.get("total_epochs") or job.get("config", {}).get("training", {}).get("num_train_epochs")
    return {
        "job_id": job["id"],
        "status": job["status"],
        "actions": actions(job["status"]),  # which of pause, resume, cancel apply now
        "model_name": job.get("model"),
        "dataset_id": job.get("dataset_id"),
        "progress": progress_pct,
        "current_epoch": epoch,
        "total_epochs": total_epochs,
        "current_step": step,
        "world_size": s.get("world_size") or job.get("config", {}).get("training", {}).get("num_processes") or 1,
        "total_steps": total_steps,
        "total_samples": s.get("total_samples"),
        "loss": latest.get("loss"),
        "eval_loss": s.get("eval_loss"),
        "best_eval_loss": s.get("best_eval_loss"),
        "best_epoch": best_epoch,
        "best_step": s.get("best_step"),
        "loss_trend": summaries.loss_trend(s) if s.get("points") else None,
        "epochs_without_improvement": int(epoch - best_epoch) if epoch is not None and best_epoch is not None else 0,
        "train_perplexity": latest.get("train_perplexity"),
        "eval_perplexity": summaries.perplexity(s.get("eval_loss")) if s.get("eval_loss") is not None else None,
        "learning_rate": latest.get("learning_rate"),
        "grad_norm": latest.get("grad_norm"),
        "gpu_memory_allocated_gb": latest.get("gpu_memory_allocated_gb"),
        "gpu_memory_reserved_gb": latest.get("gpu_memory_reserved_gb"),
        "gpu_utilization_percent": latest.get("gpu_utilization_percent"),
        "samples_per_second": latest.get("samples_per_second"),
        "tokens_per_second": latest.get("tokens_per_second"),
        "trained_tokens_per_second": latest.get("trained_tokens_per_second"),
        "memory_rss_gb": latest.get("rss_gb"),
        "created_at": job["created_at"],
        "started_at": job.get("started_at"),
        "updated_at": job.get("updated_at"),
        "finished_at": job.get("finished_at"),
        "elapsed_seconds": round(elapsed, 1),
        "remaining_seconds": round(remaining, 1) if remaining is not None else None,
        "elapsed_time": fmt_duration(elapsed),
        "estimated_remaining": fmt_duration(remaining),
        "warning": warning,
        "diverged": bool(diverged),
        "diverged_at_step": diverged.get("step") if diverged else None,
        "error": job.get("error"),
        "reason": job.get("reason"),  # why it was cancelled, when something said (a sweep's "pruned")
        "checkpoint": job.get("checkpoint"),
        "history": job.get("history", []),
    }


# --- rendered, cached status objects -------------------------------------------------------------
# A status of a job that is not pending or running is a function of the store (the record),
# summary.json and metrics.jsonl alone — no clock, no process to check — so an unchanged stamp
# of the three means an unchanged answer. Monitors poll finished and queued jobs too; this
# serves them with a few stat() calls. Pending and running jobs are always computed (liveness,
# elapsed time, ETA). An entry is made only from the core's own answer for that owner.

_RENDERED: StampCache[bytes] = StampCache(4096)


def _sources(job_id: str) -> list[Path]:
    folder = job_folder(job_id)
    return [home.store_path(), folder.summary, folder.events]


def cached_status_json(job_id: str, owner: str) -> bytes | None:
    """The rendered status if it is known for the files as they are now; else None."""
    return _RENDERED.get((str(home.home()), job_id, owner), _sources(job_id))


def status_json(compute: Callable[[], dict[str, Any]], job_id: str, owner: str) -> bytes:
    """``compute()`` (the status) rendered as JSON, kept for settled jobs."""
    return _RENDERED.get_or_compute((str(home.home()), job_id, owner), _sources(job_id),
                                    lambda: orjson.dumps(compute(), default=str),
                                    keep=lambda body: orjson.loads(body)["status"] in SETTLED)
