"""The events log, ``metrics.jsonl``: one JSON object per line, appended by the job's kernel.

Every line has ``type`` and ``timestamp`` (ISO-8601 UTC). Readers tail it while it grows, so
every reader skips a line it cannot parse (one being appended right now, or a corrupt one),
and writers never write what readers cannot read: a NaN or infinite number becomes null and
its key is listed in the event's ``nonfinite``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypedDict

import orjson

from ..records import now_iso
from ..store import append_bytes

_BLOCK = 1 << 16


# --- typed shapes --------------------------------------------------------------------------------

class TrainEvent(TypedDict, total=False):
    type: Literal["train"]
    timestamp: str
    step: int
    epoch: float
    total_steps: int
    loss: float | None
    learning_rate: float | None
    grad_norm: float | None
    train_perplexity: float | None
    samples_per_second: float
    tokens_per_second: float
    trained_tokens_per_second: float
    num_tokens_processed: int
    num_tokens_trained: int
    rss_gb: float
    gpu_memory_allocated_gb: float | None
    gpu_memory_reserved_gb: float | None
    gpu_utilization_percent: float | None
    nonfinite: list[str]


class EvalEvent(TypedDict, total=False):
    type: Literal["eval"]
    timestamp: str
    step: int
    epoch: float
    eval_loss: float | None
    eval_perplexity: float | None
    nonfinite: list[str]


class CheckpointEvent(TypedDict, total=False):
    type: Literal["checkpoint"]
    timestamp: str
    step: int
    epoch: float
    path: str
    eval_loss: float | None
    train_loss: float | None


class StatusEvent(TypedDict, total=False):
    type: Literal["status"]
    timestamp: str
    status: str
    message: str
    total_steps: int
    total_epochs: float
    total_samples: int | None
    resumed_step: int


class DivergedEvent(TypedDict, total=False):
    type: Literal["diverged"]
    timestamp: str
    step: int
    metric: str
    value: str
    message: str


Event = TrainEvent | EvalEvent | CheckpointEvent | StatusEvent | DivergedEvent


# --- non-finite numbers ------------------------------------------------------------------------
# JSON has no NaN or Infinity: Python's json writes them anyway, and orjson (every reader here)
# rejects such a line. So writers replace them with null and name the keys in ``nonfinite``.

NONFINITE = "nonfinite"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def finite_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event with each non-finite float (NaN, ±inf) as None, its keys listed in ``nonfinite``."""
    bad = [k for k, v in event.items() if isinstance(v, float) and not math.isfinite(v)]
    if not bad:
        return event
    out = {k: (None if k in bad else v) for k, v in event.items()}
    out[NONFINITE] = sorted(set(out.get(NONFINITE) or []) | set(bad))
    return out


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float, however deep, as None (for summaries and results)."""
    return _finite(obj)


def parse_line(line: bytes | str) -> dict[str, Any] | None:
    """One metrics/history line as a dict; None for a line that is not one (never raises).

    A line being appended right now, a corrupt one, or one that is not a JSON object is None.
    A line with a bare ``NaN``/``Infinity`` (written before writers made them null) is read
    with the standard library and made finite like :func:`finite_event`.
    """
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            ev = json.loads(line)
        except (ValueError, RecursionError):
            return None
        if isinstance(ev, dict):
            ev = finite_event(ev)
    except RecursionError:  # pragma: no cover - orjson limits depth itself
        return None
    return ev if isinstance(ev, dict) else None


def append_event(path: Path, event: dict[str, Any]) -> None:
    """One JSON line per event; a single write() of a short line is atomic with O_APPEND.

    Always valid JSON: a NaN or infinite value is written as null, its key listed in the
    event's ``nonfinite`` (``json.dumps`` would write a bare ``NaN``, which readers reject).
    """
    event = finite_json(finite_event(event))
    line = json.dumps(event if "timestamp" in event else {"timestamp": now_iso(), **event}, allow_nan=False) + "\n"
    append_bytes(path, line.encode())


def iter_events(path: Path, types: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """The events of ``metrics.jsonl`` in order; lines that do not parse are skipped."""
    try:
        fh = open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return
    with fh:
        for line in fh:
            if not line.strip():
                continue
            ev = parse_line(line)
            if ev is None:  # a line being appended right now, or a corrupt one
                continue
            if types is None or ev.get("type") in types:
                yield ev


def lines_backwards(path: Path) -> Iterator[bytes]:
    """The file's complete lines, last first, read in 64 KiB blocks from the end."""
    with open(path, "rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        carry = b""
        while pos > 0:
            n = min(_BLOCK, pos)
            pos -= n
            fh.seek(pos)
            lines = (fh.read(n) + carry).split(b"\n")
            carry = lines.pop(0) if pos > 0 else b""
            yield from reversed(lines)


def nonfinite_value(value: Any) -> str | None:
    """``"NaN"`` or ``"infinite"`` for a non-finite float, None for anything else."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "infinite"
    return None
