"""Per-deployment budgets: an exact ledger, alerts at 50/80/100 %, and the auto-stop.

RunPod offers only an account-wide spend limit, so the workbench enforces each deployment's
budget itself, before any work is done: :func:`charge` reserves a request's cost in the same
SQLite write transaction that reads the spend (``BEGIN IMMEDIATE``: one writer at a time across
every process and thread), so concurrent requests can never overspend. Money is integer
micro-dollars, so $1.00 at $0.25 a request admits exactly four.

A request that would take the spend past the budget is refused; with ``auto_stop`` the
deployment is marked stopped in the same transaction, and it and every later request are
refused (HTTP 402). Refused requests are neither billed nor counted. Alerts fire once each,
as rows in ``deployment_events`` (the status shows them).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from .. import usage

THRESHOLDS = (50, 80, 100)

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    deployment_id TEXT PRIMARY KEY,
    budget_micro INTEGER NOT NULL,
    cost_micro INTEGER NOT NULL,
    auto_stop INTEGER NOT NULL,
    spend_micro INTEGER NOT NULL DEFAULT 0,
    request_count INTEGER NOT NULL DEFAULT 0,
    stopped INTEGER NOT NULL DEFAULT 0,
    stop_reason TEXT
);
CREATE TABLE IF NOT EXISTS deployment_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployment_events_dep ON deployment_events (deployment_id, id);
"""


@dataclass
class Charge:
    """The answer to "may this request run?", and what changed if it may."""

    allowed: bool
    spend_micro: int
    request_count: int
    budget_micro: int
    reason: str | None = None  # "budget" | "stopped" when refused
    alerts: list[dict[str, Any]] = field(default_factory=list)  # fired by this charge
    stopped_now: bool = False  # this charge tripped the auto-stop


def connect() -> sqlite3.Connection:
    return usage.connect(LEDGER_SCHEMA)


def open_ledger(deployment_id: str, *, budget_usd: float, cost_usd: float, auto_stop: bool) -> None:
    conn = connect()
    with usage.immediate(conn):
        conn.execute("INSERT OR IGNORE INTO ledger (deployment_id, budget_micro, cost_micro, auto_stop) "
                     "VALUES (?, ?, ?, ?)", (deployment_id, usage.to_micro(budget_usd), usage.to_micro(cost_usd),
                                             int(auto_stop)))


def charge(deployment_id: str) -> Charge:
    """Reserve one request's cost, or refuse it (and maybe stop the deployment), atomically."""
    conn = connect()
    with usage.immediate(conn):
        row = conn.execute("SELECT * FROM ledger WHERE deployment_id = ?", (deployment_id,)).fetchone()
        if row is None:
            raise KeyError(deployment_id)
        spend, count, budget, cost = row["spend_micro"], row["request_count"], row["budget_micro"], row["cost_micro"]
        if row["stopped"]:
            return Charge(False, spend, count, budget, reason=row["stop_reason"] or "stopped")
        if spend + cost > budget and row["auto_stop"]:
            conn.execute("UPDATE ledger SET stopped = 1, stop_reason = 'budget' WHERE deployment_id = ?",
                         (deployment_id,))
            _event(conn, deployment_id, "auto_stop", {"spend": usage.dollars(spend), "budget": usage.dollars(budget),
                                                      "message": "budget reached: the deployment stopped"})
            return Charge(False, spend, count, budget, reason="budget", stopped_now=True)
        spend, count = spend + cost, count + 1
        conn.execute("UPDATE ledger SET spend_micro = ?, request_count = ? WHERE deployment_id = ?",
                     (spend, count, deployment_id))
        fired = {json.loads(r[0])["threshold"] for r in conn.execute(
            "SELECT data FROM deployment_events WHERE deployment_id = ? AND kind = 'budget_alert'", (deployment_id,))}
        alerts = []
        for t in THRESHOLDS:
            if t not in fired and budget > 0 and spend * 100 >= t * budget:
                alert = {"threshold": t, "spend": usage.dollars(spend), "budget": usage.dollars(budget),
                         "message": f"{t}% of the ${usage.dollars(budget):.2f} budget used"}
                _event(conn, deployment_id, "budget_alert", alert)
                alerts.append(alert)
        return Charge(True, spend, count, budget, alerts=alerts)


def refund(deployment_id: str) -> None:
    """Undo one charge (a request refused as bad input before any work): not billed, not counted."""
    conn = connect()
    with usage.immediate(conn):
        conn.execute("UPDATE ledger SET spend_micro = MAX(0, spend_micro - cost_micro), "
                     "request_count = MAX(0, request_count - 1) WHERE deployment_id = ?", (deployment_id,))


def drop(deployment_id: str) -> None:
    """Forget a deployment that never went live (its provider refused it)."""
    conn = connect()
    with usage.immediate(conn):
        conn.execute("DELETE FROM ledger WHERE deployment_id = ?", (deployment_id,))
        conn.execute("DELETE FROM deployment_events WHERE deployment_id = ?", (deployment_id,))


def mark_stopped(deployment_id: str, reason: str) -> None:
    """Close the ledger (a manual stop): later charges are refused with ``reason``."""
    conn = connect()
    with usage.immediate(conn):
        conn.execute("UPDATE ledger SET stopped = 1, stop_reason = COALESCE(stop_reason, ?) WHERE deployment_id = ?",
                     (reason, deployment_id))
        _event(conn, deployment_id, "stopped", {"reason": reason})


def ledger(deployment_id: str) -> dict[str, Any] | None:
    row = connect().execute("SELECT * FROM ledger WHERE deployment_id = ?", (deployment_id,)).fetchone()
    return dict(row) if row else None


def events(deployment_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT ts, kind, data FROM deployment_events WHERE deployment_id = ?"
    args: list[Any] = [deployment_id]
    if kind:
        sql += " AND kind = ?"
        args.append(kind)
    out = []
    for r in connect().execute(sql + " ORDER BY id", args):
        out.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["ts"])), "kind": r["kind"],
                    **json.loads(r["data"])})
    return out


def _event(conn: sqlite3.Connection, deployment_id: str, kind: str, data: dict[str, Any]) -> None:
    conn.execute("INSERT INTO deployment_events (deployment_id, ts, kind, data) VALUES (?, ?, ?, ?)",
                 (deployment_id, time.time(), kind, json.dumps(data)))
