"""The per-step metrics history of a job: one row per logged step, train and eval merged.

``metrics.jsonl`` is the event log; the history (the reference's "local metrics" rows) is a
fold of it. Folding a 100k-step log takes ~1 s of JSON parsing on a small machine, so the job
also writes the folded rows to ``history.jsonl`` as each step becomes final (its eval merged
in): serving a long history is then reading bytes, plus folding the one or two events logged
since the last final row (:func:`tail_rows`, which reads ``metrics.jsonl`` from its end).

Invariant kept by :class:`HistoryWriter`: ``history.jsonl`` holds, in step order, the rows of
every step up to its last one, exactly as :func:`fold_rows` would give them from the events in
``metrics.jsonl`` logged up to that step; events after the last row's step come later in the log.
A step logged out of order (an eval of an earlier step, a run that logs a step again) rewrites
the file from the log, atomically, so the invariant holds whatever the engine does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..store import append_bytes, atomic_write_bytes
from .progress import iter_events, parse_line

HISTORY = "history.jsonl"
_BLOCK = 1 << 16


def merge(rows: dict[int, dict[str, Any]], ev: dict[str, Any], step: int, job_id: str) -> None:
    """Fold one train or eval event into the row of its step (a dict literal: this runs 100k times)."""
    row = rows.get(step)
    if ev["type"] == "train":
        g = ev.get
        rows[step] = {
            "id": f"{job_id}-{step}", "job_id": job_id, "step": step, "epoch": g("epoch"), "train_loss": g("loss"),
            "eval_loss": row["eval_loss"] if row else None, "train_perplexity": g("train_perplexity"),
            "perplexity": row["perplexity"] if row else None, "learning_rate": g("learning_rate"),
            "grad_norm": g("grad_norm"), "gpu_memory_allocated_gb": g("gpu_memory_allocated_gb"),
            "gpu_memory_reserved_gb": g("gpu_memory_reserved_gb"),
            "gpu_utilization_percent": g("gpu_utilization_percent"), "samples_per_second": g("samples_per_second"),
            "tokens_per_second": g("tokens_per_second"), "created_at": g("timestamp"),
        }
        return
    if row is None:
        row = rows[step] = {
            "id": f"{job_id}-{step}", "job_id": job_id, "step": step, "epoch": ev.get("epoch"), "train_loss": None,
            "eval_loss": None, "train_perplexity": None, "perplexity": None, "learning_rate": None,
            "grad_norm": None, "gpu_memory_allocated_gb": None, "gpu_memory_reserved_gb": None,
            "gpu_utilization_percent": None, "samples_per_second": None, "tokens_per_second": None,
            "created_at": ev.get("timestamp"),
        }
    row["eval_loss"], row["perplexity"] = ev.get("eval_loss"), ev.get("eval_perplexity")


def step_of(ev: Any) -> int | None:
    """The step of a train or eval event; None for any other line."""
    if isinstance(ev, dict) and ev.get("type") in ("train", "eval"):
        step = ev.get("step")
        if isinstance(step, int):
            return step
    return None


def fold_rows(events: Iterable[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """The history rows of a sequence of events, ordered by step (the definition the file must match)."""
    rows: dict[int, dict[str, Any]] = {}
    for ev in events:
        step = step_of(ev)
        if step is not None:
            merge(rows, ev, step, job_id)
    return [rows[s] for s in sorted(rows)]


def _lines_backwards(path: Path) -> Iterator[bytes]:
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


def tail_rows(metrics: Path, after: int | None, job_id: str) -> list[dict[str, Any]]:
    """Rows of the events logged after the last train/eval event at a step ≤ ``after``."""
    events: list[dict[str, Any]] = []
    try:
        for line in _lines_backwards(metrics):
            if len(line) < 3:
                continue
            ev = parse_line(line)  # None: a line being written right now, or a corrupt one
            step = step_of(ev)
            if step is None:
                continue
            if after is not None and step <= after:
                break
            events.append(ev)
    except FileNotFoundError:
        return []
    return fold_rows(reversed(events), job_id)


def last_step(history: Path) -> int | None:
    """The step of the file's last complete row."""
    try:
        for line in _lines_backwards(history):
            row = parse_line(line) if len(line) > 2 else None
            if row is not None and isinstance(row.get("step"), int):
                return row["step"]
    except FileNotFoundError:
        pass
    return None


class HistoryWriter:
    """Keeps ``history.jsonl`` in step with ``metrics.jsonl``; the job process is its only writer.

    Call :meth:`add` with each event right after appending it to ``metrics.jsonl``, and
    :meth:`flush` when the run ends. The newest row stays in memory until a later step is
    logged, because its eval comes after it.
    """

    def __init__(self, job_dir: Path, job_id: str | None = None):
        self.path = job_dir / HISTORY
        self.metrics = job_dir / "metrics.jsonl"
        self.job_id = job_id or job_dir.name
        self.pending: dict[str, Any] | None = None
        self.last = last_step(self.path)
        if self.last is None:
            if self.metrics.exists():  # a job that logged before its history existed
                self.rebuild()
            return
        missed = tail_rows(self.metrics, self.last, self.job_id)  # a run that ended without flushing
        if missed:
            self._append(missed)

    def _append(self, rows: list[dict[str, Any]]) -> None:
        # orjson writes a NaN or infinite value as null: the rows are always valid JSON (the event
        # log, metrics.jsonl, names such keys in its "nonfinite" marker)
        append_bytes(self.path, b"".join(orjson.dumps(r) + b"\n" for r in rows))
        self.last = rows[-1]["step"]

    def add(self, ev: dict[str, Any]) -> None:
        step = step_of(ev)
        if step is None:
            return
        if self.pending is not None and step == self.pending["step"]:
            rows = {step: self.pending}
        elif (self.pending is not None and step < self.pending["step"]) or (self.last is not None and step <= self.last):
            self.rebuild()  # out of order: the log has this event already
            return
        else:
            self.flush()
            rows = {}
        merge(rows, ev, step, self.job_id)
        self.pending = rows[step]

    def flush(self) -> None:
        if self.pending is not None:
            self._append([self.pending])
            self.pending = None

    def rebuild(self) -> None:
        """Every row from the event log, all final; an atomic replace, so readers see old or new."""
        rows = fold_rows(iter_events(self.metrics), self.job_id)
        atomic_write_bytes(self.path, b"".join(orjson.dumps(r) + b"\n" for r in rows))
        self.last = rows[-1]["step"] if rows else None
        self.pending = None
