"""The job states and actions, named once: every layer and every front-end reads them from here.

queued → pending → running ⇄ paused → completed | failed | cancelled (the reference's seven).
"""

from __future__ import annotations

STATUSES = ("queued", "pending", "running", "paused", "completed", "failed", "cancelled")  # the reference's seven
FINAL = frozenset({"completed", "failed", "cancelled"})   # nothing moves a job out of these
LIVE = frozenset({"pending", "running"})                  # a run exists, or is starting
ACTIVE = frozenset(STATUSES) - FINAL                      # may still change: queued, live or paused
SETTLED = frozenset(STATUSES) - LIVE                      # no process to ask: the record says it all
ACTIONS: dict[str, frozenset[str]] = {"pause": LIVE, "resume": frozenset({"paused"}), "cancel": ACTIVE}


def actions(status: str) -> list[str]:
    """Which of pause, resume and cancel apply to a job in ``status`` now (the status's ``actions``)."""
    return [name for name, states in ACTIONS.items() if status in states]


TRANSITIONS: dict[str, set[str]] = {  # which moves the state machine allows
    "queued": {"pending", "cancelled", "failed"},
    "pending": {"running", "paused", "completed", "failed", "cancelled"},
    "running": {"paused", "completed", "failed", "cancelled"},
    "paused": {"queued", "cancelled", "failed"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
}
