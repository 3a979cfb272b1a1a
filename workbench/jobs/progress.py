"""Reading a job's metrics events and folding them into a running summary.

The summary (``summary.json``) is what status requests read, so status stays O(1)
however long the metrics history grows. ``fold`` is the single definition of every
derived field; the training callback applies it per event and :func:`rebuild` replays
``metrics.jsonl`` when the summary is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..store import atomic_write_json

TREND_TOLERANCE = 0.01


def _ppl(loss: float) -> float:
    import math

    return round(math.exp(min(loss, 50.0)), 4)


def iter_events(path: Path, types: set[str] | None = None) -> Iterator[dict[str, Any]]:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:  # a line being appended right now
                continue
            if types is None or ev.get("type") in types:
                yield ev


def empty_summary() -> dict[str, Any]:
    return {"points": 0, "latest": {}, "first_loss": None, "first_at": None, "last_at": None,
            "eval_loss": None, "best_eval_loss": None, "best_step": None, "best_epoch": None,
            "evals": [], "losses": [], "peak_rss_gb": 0.0, "peak_gpu_memory_gb": None,
            "throughput_sum": 0.0, "throughput_n": 0, "trained_throughput_sum": 0.0}


def fold(s: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    kind = ev.get("type")
    s["last_at"] = ev.get("timestamp", s["last_at"])
    s["first_at"] = s["first_at"] or ev.get("timestamp")
    if kind == "status" and ev.get("status") == "running":
        s["anchor"] = None
        for key in ("total_steps", "total_epochs", "total_samples"):
            if ev.get(key) is not None:
                s[key] = ev[key]
    if kind == "train":
        if not s.get("anchor"):
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
    elif kind == "eval":
        s["eval_loss"] = ev["eval_loss"]
        s["evals"] = (s["evals"] + [[ev["step"], ev.get("epoch"), ev["eval_loss"]]])[-50:]
        if s["best_eval_loss"] is None or ev["eval_loss"] < s["best_eval_loss"]:
            s["best_eval_loss"], s["best_step"], s["best_epoch"] = ev["eval_loss"], ev["step"], ev.get("epoch")
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
    return job_dir / "summary.json"


def rebuild(job_dir: Path) -> dict[str, Any]:
    s = empty_summary()
    for ev in iter_events(job_dir / "metrics.jsonl"):
        fold(s, ev)
    return s


def load_summary(job_dir: Path) -> dict[str, Any]:
    try:
        return json.loads(summary_path(job_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return rebuild(job_dir)


def save_summary(job_dir: Path, s: dict[str, Any]) -> None:
    atomic_write_json(summary_path(job_dir), s)
