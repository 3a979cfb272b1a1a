"""The per-step rows of a job, ``history.jsonl``: one row per logged step, train and eval merged.

The events log is the truth; the rows (the reference's "local metrics") are a fold of it.
Folding a 100k-step log takes ~1 s of JSON parsing on a small machine, so the job also writes
the folded rows as each step becomes final (its eval merged in): serving a long history is
then reading bytes, plus folding the one or two events logged since the last final row
(:func:`tail_rows`, which reads the log from its end). :func:`read_rows` is the one reader.

Invariant kept by :class:`RowWriter`: ``history.jsonl`` holds, in step order, the rows of
every step up to its last one, exactly as :func:`fold_rows` would give them from the events
logged up to that step; events after the last row's step come later in the log. A step
logged out of order (an eval of an earlier step, a run that logs a step again) rewrites the
file from the log, atomically, so the invariant holds whatever the engine does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ..store import append_bytes, atomic_write_bytes
from .events import iter_events, lines_backwards, parse_line
from .layout import EVENTS, ROWS


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
            "tokens_per_second": g("tokens_per_second"),
            "trained_tokens_per_second": g("trained_tokens_per_second"), "created_at": g("timestamp"),
        }
        return
    if row is None:
        row = rows[step] = {
            "id": f"{job_id}-{step}", "job_id": job_id, "step": step, "epoch": ev.get("epoch"), "train_loss": None,
            "eval_loss": None, "train_perplexity": None, "perplexity": None, "learning_rate": None,
            "grad_norm": None, "gpu_memory_allocated_gb": None, "gpu_memory_reserved_gb": None,
            "gpu_utilization_percent": None, "samples_per_second": None, "tokens_per_second": None,
            "trained_tokens_per_second": None, "created_at": ev.get("timestamp"),
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
    """The rows of a sequence of events, ordered by step (the definition the file must match)."""
    rows: dict[int, dict[str, Any]] = {}
    for ev in events:
        step = step_of(ev)
        if step is not None:
            merge(rows, ev, step, job_id)
    return [rows[s] for s in sorted(rows)]


def tail_rows(metrics: Path, after: int | None, job_id: str) -> list[dict[str, Any]]:
    """Rows of the events logged after the last train/eval event at a step ≤ ``after``."""
    events: list[dict[str, Any]] = []
    try:
        for line in lines_backwards(metrics):
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


def last_step(rows_file: Path) -> int | None:
    """The step of the file's last complete row."""
    try:
        for line in lines_backwards(rows_file):
            row = parse_line(line) if len(line) > 2 else None
            if row is not None and isinstance(row.get("step"), int):
                return row["step"]
    except FileNotFoundError:
        pass
    return None


class RowWriter:
    """Keeps ``history.jsonl`` in step with ``metrics.jsonl``; the job process is its only writer.

    Call :meth:`add` with each event right after appending it to ``metrics.jsonl``, and
    :meth:`flush` when the run ends. The newest row stays in memory until a later step is
    logged, because its eval comes after it.
    """

    def __init__(self, job_dir: Path, job_id: str | None = None):
        self.path = job_dir / ROWS
        self.metrics = job_dir / EVENTS
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


def read_rows(job_dir: Path) -> list[dict[str, Any]]:
    """Every row of a job, in step order: the written rows plus those of events logged since.

    The one reader of step rows (status views, ``JobService.metrics``-style readers, the
    remote widgets). A job from before ``history.jsonl`` existed is folded from its log.
    """
    rows_file, events = job_dir / ROWS, job_dir / EVENTS
    try:
        data = rows_file.read_bytes()
    except FileNotFoundError:
        return fold_rows(iter_events(events), job_dir.name)
    rows = [r for line in data.splitlines() if (r := parse_line(line)) is not None]
    last = rows[-1]["step"] if rows and isinstance(rows[-1].get("step"), int) else None
    return rows + tail_rows(events, last, job_dir.name)
