"""Usage rows for the analytics tests, written the way the serving gateway writes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from workbench import usage


def at(text: str) -> float:
    """Unix seconds of an ISO 8601 instant (``Z`` allowed)."""
    return datetime.fromisoformat(text).timestamp()


def row(id: str, ts: float | str, owner: str, messages: Sequence[tuple[str, str]] = (),
        **fields: Any) -> tuple[usage.UsageRecord, list[usage.Message]]:
    """One usage row (a served reply) and its conversation's messages; unnamed fields get plain defaults."""
    values: dict[str, Any] = {"deployment_id": "dep-1", "model": "model-a", "provider": "local", "route": "chat",
                              "success": True}
    values.update(fields)
    rec = usage.UsageRecord(id=id, ts=at(ts) if isinstance(ts, str) else ts, owner=owner, **values)
    return rec, [usage.Message(role=r, content=c) for r, c in messages]


def write(items: Iterable[tuple[usage.UsageRecord, list[usage.Message]]]) -> None:
    usage.record_many(list(items))
