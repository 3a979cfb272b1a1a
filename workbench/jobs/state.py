"""Job records and their state machine, persisted in the store's ``jobs`` table.

queued → pending → running ⇄ paused → completed | failed | cancelled.
Transitions are checked inside one locked transaction, so a late writer (say a
runner finishing after a cancel) can never move a job out of a final state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import Conflict, NotFound
from ..job_states import FINAL, TRANSITIONS
from ..records import now_iso
from ..store import Store, Transaction, get_store

TABLE = "jobs"


def set_state(job_id: str, new: str, *, store: Store | None = None, expect: set[str] | None = None,
              **fields: Any) -> dict[str, Any]:
    """Move a job to ``new`` if allowed; raises Conflict otherwise (the record is unchanged)."""
    store = store or get_store()
    with store.transaction() as tx:
        rec = tx.get(TABLE, job_id)
        if rec is None:
            raise NotFound(f"job '{job_id}' not found", field="job_id")
        return transition(tx, rec, new, expect=expect, **fields)


def transition(tx: Transaction, rec: dict[str, Any], new: str, *, expect: set[str] | None = None,
               **fields: Any) -> dict[str, Any]:
    """``set_state`` inside a transaction the caller holds, on ``rec`` as read in it."""
    job_id, cur = rec["id"], rec["status"]
    if (expect is not None and cur not in expect) or (cur != new and new not in TRANSITIONS[cur]):
        raise Conflict(f"job '{job_id}' is {cur}; cannot move to {new}", field="status")
    now = now_iso()
    changes: dict[str, Any] = {"status": new, "updated_at": now, **fields}
    if new == "running" and not rec.get("started_at"):
        changes["started_at"] = now
    if new in FINAL:
        changes["finished_at"] = now
    if new == "pending":
        changes["run_started_at"] = time.time()
    if (new in FINAL or new == "paused") and rec.get("run_started_at"):
        changes["elapsed_before"] = rec.get("elapsed_before", 0.0) + time.time() - rec["run_started_at"]
        changes["run_started_at"] = None
    return tx.update(TABLE, job_id, changes)


def try_set_state(job_id: str, new: str, **fields: Any) -> dict[str, Any] | None:
    """``set_state`` for writers that lose races gracefully (runner exits, callbacks)."""
    try:
        return set_state(job_id, new, **fields)
    except Conflict:
        return None


def mark_running(job_id: str) -> Callable[[], Any]:
    """What a job's run calls when training begins: the record moves to ``running``."""
    return lambda: try_set_state(job_id, "running")


def record_outcome(job_id: str, result: dict[str, Any]) -> dict[str, Any] | None:
    """Store what a run's ``result.json`` says: paused (with its checkpoint), failed (e.g. a
    diverged loss, with its message as the error) or completed."""
    if result["status"] == "paused":
        return try_set_state(job_id, "paused", checkpoint=result.get("checkpoint"))
    if result["status"] == "failed":
        return try_set_state(job_id, "failed", error=result.get("error") or "training failed", result=result)
    return try_set_state(job_id, "completed", result=result)
