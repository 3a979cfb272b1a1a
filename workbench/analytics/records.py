"""What the analytics add beside the usage rows, in the same SQLite file: feedback and tool calls.

* ``feedback``: a user's rating (1–5) and/or success verdict on one reply (``message_id`` is the
  completion's ``id``), an optional comment, and the comment's sentiment (VADER's compound score).
  Rating a reply again replaces the earlier rating: one verdict per reply and user.
* ``tool_calls``: each tool the analytics assistant ran, how long it took, whether it worked.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field, model_validator

from .. import usage
from ..errors import NotFound
from .sentiment import score

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    message_id TEXT NOT NULL, owner TEXT NOT NULL, ts REAL NOT NULL,
    rating INTEGER, success INTEGER, comment TEXT, sentiment REAL,
    evaluation_type TEXT NOT NULL DEFAULT 'user_feedback',
    PRIMARY KEY (owner, message_id)
);
CREATE INDEX IF NOT EXISTS feedback_owner_ts ON feedback (owner, ts);
CREATE TABLE IF NOT EXISTS tool_calls (
    ts REAL NOT NULL, owner TEXT NOT NULL, session_id TEXT, tool TEXT NOT NULL,
    execution_ms REAL NOT NULL, success INTEGER NOT NULL, error TEXT
);
CREATE INDEX IF NOT EXISTS tool_calls_owner_ts ON tool_calls (owner, ts);
CREATE INDEX IF NOT EXISTS usage_failures ON usage (owner, ts) WHERE success = 0;
CREATE INDEX IF NOT EXISTS usage_end_user ON usage (owner, end_user, ts);
"""


def connect() -> Any:
    return usage.connect(SCHEMA)


class Feedback(BaseModel):
    """``POST /api/analytics/feedback``: a verdict on one reply."""

    message_id: str = Field(min_length=1, max_length=200, description="the reply's completion id")
    rating: int | None = Field(None, ge=1, le=5)
    success: bool | None = None
    comment: str | None = Field(None, max_length=5000)

    @model_validator(mode="after")
    def _something(self) -> Feedback:
        if self.rating is None and self.success is None:
            raise ValueError("give a rating (1-5), success (true/false), or both")
        return self


def add_feedback(fb: Feedback, owner: str) -> dict[str, Any]:
    """Store the verdict; the reply must be one of ``owner``'s (404 otherwise, and nothing is written)."""
    conn = connect()
    with usage.immediate(conn):
        row = conn.execute("SELECT ts, conversation_id, model, job_id, checkpoint FROM usage WHERE id = ? AND owner = ?",
                           (fb.message_id, owner)).fetchone()
        if row is None:
            raise NotFound(f"no reply {fb.message_id!r} of yours to rate", field="message_id")
        sentiment = score(fb.comment) if fb.comment else None
        now = time.time()
        conn.execute("INSERT OR REPLACE INTO feedback VALUES (?,?,?,?,?,?,?,?)",
                     (fb.message_id, owner, now, fb.rating, None if fb.success is None else int(fb.success),
                      fb.comment, sentiment, "user_feedback"))
    return {"message_id": fb.message_id, "rating": fb.rating, "success": fb.success, "comment": fb.comment,
            "sentiment": sentiment, "conversation_id": row["conversation_id"], "model": row["model"],
            "job_id": row["job_id"], "checkpoint": row["checkpoint"], "created_at": now}


def record_tool_call(owner: str, tool: str, execution_ms: float, success: bool, error: str | None = None,
                     session_id: str | None = None) -> None:
    conn = connect()
    conn.execute("INSERT INTO tool_calls VALUES (?,?,?,?,?,?,?)",
                 (time.time(), owner, session_id, tool, execution_ms, int(success), error))


