"""The summary: the events folded into what a status needs, kept in ``summary.json``.

Status requests read the summary, so status stays O(1) however long the events log grows.
:func:`fold` is the single definition of every derived field; the training callback applies
it per event and :func:`rebuild` replays the log when the summary is missing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson

from ..store import atomic_write_json
from .events import NONFINITE, finite_json, iter_events
from .layout import EVENTS, SUMMARY

TREND_TOLERANCE = 0.01


def perplexity(loss: float | None) -> float | None:
    """``exp(loss)``, capped at e^50, rounded; None for no (or a non-finite) loss."""
    if loss is None or not math.isfinite(loss):
        return None
    return round(math.exp(min(loss, 50.0)), 4)


def empty_summary() -> dict[str, Any]:
    return {"points": 0, "latest": {}, "first_loss": None, "first_at": None, "last_at": None,
            "eval_loss": None, "best_eval_loss": None, "best_step": None, "best_epoch": None,
            "evals": [], "losses": [], "peak_rss_gb": 0.0, "peak_gpu_memory_gb": None,
            "throughput_sum": 0.0, "throughput_n": 0, "trained_throughput_sum": 0.0}


def divergence_message(metric: str, step: int | None, value: str = "NaN") -> str:
    """What a job whose loss went non-finite reports, in the knowledge base's troubleshooting words."""
    at = f" at step {step}" if step is not None else ""
    return (f"{metric} became {value}{at} (exploding loss: learning rate too high, bad data, or numerical "
            "instability). Try reducing the learning rate, using gradient clipping (max_grad_norm, e.g. 1.0) "
            "or checking the data.")


def _mark_diverged(s: dict[str, Any], ev: dict[str, Any], metric: str) -> None:
    if s.get("diverged") or metric not in (ev.get(NONFINITE) or ()):
        return
    step = ev.get("step")
    s["diverged"] = {"step": step, "metric": metric, "value": None,
                     "message": divergence_message(metric, step, "NaN or infinite")}


def fold(s: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    kind = ev.get("type")
    s["last_at"] = ev.get("timestamp", s["last_at"])
    s["first_at"] = s["first_at"] or ev.get("timestamp")
    if kind == "status" and ev.get("status") == "running":
        s["anchor"] = None
        for key in ("total_steps", "total_epochs", "total_samples", "world_size"):
            if ev.get(key) is not None:
                s[key] = ev[key]
    if kind == "train":
        if not s.get("anchor") and ev.get("step") is not None:
            s["anchor"] = [ev.get("timestamp"), ev["step"]]
        s["points"] += 1
        s["latest"] = ev
        if s["first_loss"] is None:
            s["first_loss"] = ev.get("loss")
        s["losses"] = (s["losses"] + [ev.get("loss")])[-6:]
        s["peak_rss_gb"] = max(s["peak_rss_gb"], ev.get("rss_gb") or 0.0)
        if ev.get("gpu_memory_reserved_gb") is not None:
            s["peak_gpu_memory_gb"] = max(s["peak_gpu_memory_gb"] or 0.0, ev["gpu_memory_reserved_gb"])
        if ev.get("tokens_per_second"):
            s["throughput_sum"] += ev["tokens_per_second"]
            s["trained_throughput_sum"] += ev.get("trained_tokens_per_second") or 0.0
            s["throughput_n"] += 1
        _mark_diverged(s, ev, "loss")
    elif kind == "eval":
        loss = ev.get("eval_loss")
        s["eval_loss"] = loss
        if loss is not None:  # None: a non-finite eval loss (see ``nonfinite``)
            s["evals"] = (s["evals"] + [[ev.get("step"), ev.get("epoch"), loss]])[-50:]
            if s["best_eval_loss"] is None or loss < s["best_eval_loss"]:
                s["best_eval_loss"], s["best_step"], s["best_epoch"] = loss, ev.get("step"), ev.get("epoch")
        _mark_diverged(s, ev, "eval_loss")
    elif kind == "diverged":
        s["diverged"] = {"step": ev.get("step"), "metric": ev.get("metric"), "value": ev.get("value"),
                         "message": ev.get("message") or divergence_message(ev.get("metric") or "loss", ev.get("step"))}
    return s


def loss_trend(s: dict[str, Any]) -> str | None:
    """improving | degrading | stable, from the last two evals, else the train-loss window."""
    if len(s["evals"]) >= 2:
        prev, cur = s["evals"][-2][2], s["evals"][-1][2]
    else:
        losses = [x for x in s["losses"] if x is not None]
        if len(losses) < 2:
            return None
        half = len(losses) // 2
        prev, cur = sum(losses[:half]) / half, sum(losses[half:]) / (len(losses) - half)
    if cur < prev * (1 - TREND_TOLERANCE):
        return "improving"
    if cur > prev * (1 + TREND_TOLERANCE):
        return "degrading"
    return "stable"


def summary_path(job_dir: Path) -> Path:
    return job_dir / SUMMARY


def rebuild(job_dir: Path) -> dict[str, Any]:
    s = empty_summary()
    for ev in iter_events(job_dir / EVENTS):
        fold(s, ev)
    return s


def load_summary(job_dir: Path) -> dict[str, Any]:
    """``summary.json``, or the replay of ``metrics.jsonl`` when it is missing or unreadable."""
    try:
        s = orjson.loads(summary_path(job_dir).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return rebuild(job_dir)
    return s if isinstance(s, dict) else rebuild(job_dir)


def save_summary(job_dir: Path, s: dict[str, Any]) -> None:
    atomic_write_json(summary_path(job_dir), finite_json(s))
