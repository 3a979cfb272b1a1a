"""Usage records: one row per inference request, in SQLite (WAL), built for volume.

Not TinyDB: that store rewrites one JSON file per write, fine for a few hundred records but
not for a row per request. SQLite in WAL mode appends, lets readers run while one process
writes, locks across processes, and aggregates with indexed SQL (the analytics area reads
these rows). Cost is kept in integer micro-dollars, so sums are exact: four requests at
$0.25 are exactly $1.00.

The file is ``$WORKBENCH_HOME/usage/usage.sqlite3``; each connection is per thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from . import home, usage_rollups

MICRO = 1_000_000  # micro-dollars per dollar
FILE = "usage.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id TEXT PRIMARY KEY,            -- the reply's id (chatcmpl-…/cmpl-…): the message id analytics joins on
    ts REAL NOT NULL,               -- unix seconds when the request arrived
    owner TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    model TEXT NOT NULL,            -- the deployment's model name, as the client asked for it
    provider TEXT NOT NULL,
    base_model TEXT,
    job_id TEXT,
    checkpoint TEXT,
    conversation_id TEXT,
    route TEXT NOT NULL,            -- chat | completion
    stream INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL,
    ttft_ms REAL,
    success INTEGER NOT NULL,
    error TEXT,
    cost_micro INTEGER NOT NULL DEFAULT 0,
    end_user TEXT,                  -- the request's `user` (OpenAI's end-user field): what cohorts group
    tier TEXT                       -- the request's metadata.tier: what subscription cohorts group
);
CREATE TABLE IF NOT EXISTS usage_messages (
    message_id TEXT NOT NULL,       -- the usage row (the reply) they belong to
    ts REAL NOT NULL, owner TEXT NOT NULL, conversation_id TEXT, role TEXT NOT NULL, content TEXT NOT NULL,
    sentiment REAL                  -- VADER's compound score of a user message, filled in by the insights
);
CREATE INDEX IF NOT EXISTS usage_messages_owner_ts ON usage_messages (owner, ts);
CREATE INDEX IF NOT EXISTS usage_messages_conv ON usage_messages (owner, conversation_id);
CREATE INDEX IF NOT EXISTS usage_deployment_ts ON usage (deployment_id, ts);
CREATE INDEX IF NOT EXISTS usage_owner_ts ON usage (owner, ts);
CREATE INDEX IF NOT EXISTS usage_job ON usage (job_id, checkpoint);
"""


class UsageRecord(BaseModel):
    """What one request cost and how it went."""

    id: str
    ts: float = Field(default_factory=time.time)
    owner: str
    deployment_id: str
    model: str
    provider: str
    base_model: str | None = None
    job_id: str | None = None
    checkpoint: str | None = None
    conversation_id: str | None = None
    route: str
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    success: bool
    error: str | None = None
    cost_micro: int = 0
    end_user: str | None = None
    tier: str | None = None


class Message(BaseModel):
    """One message of a served conversation, kept for the analytics (sentiment, the assistant's history)."""

    role: str
    content: str


COLUMNS = tuple(UsageRecord.model_fields)
_local = threading.local()
_schema_done: set[Path] = set()
_schema_lock = threading.Lock()


def path() -> Path:
    folder = home.home() / "usage"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / FILE


def connect(extra_schema: str = "") -> sqlite3.Connection:
    """This thread's connection to the usage database (WAL, 30 s busy wait), schema ensured once.

    ``extra_schema``: tables another area keeps beside the usage rows (the serving ledger)."""
    db = path()
    conns: dict[Path, sqlite3.Connection] = getattr(_local, "conns", None) or {}
    _local.conns = conns
    conn = conns.get(db)
    if conn is None:
        conn = sqlite3.connect(db, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
        conns[db] = conn
    key = db.with_suffix(f".{hash(extra_schema)}")
    if key not in _schema_done:
        with _schema_lock:
            _migrate(conn)
            conn.executescript(SCHEMA + usage_rollups.SCHEMA + extra_schema)
            _schema_done.add(key)
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the database's write lock at once (no lost updates)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    """What was added since a database was created (``CREATE TABLE IF NOT EXISTS`` keeps old tables):
    columns, and the rollups of the rows written before there were rollups (else a range read from the
    rollups would miss them)."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(usage)")}
    if have:
        for col in ("end_user", "tier"):
            if col not in have:
                _add_column(conn, "usage", col, "TEXT")
        usage_rollups.backfill(conn)
    have = {r[1] for r in conn.execute("PRAGMA table_info(usage_messages)")}
    if have and "sentiment" not in have:
        _add_column(conn, "usage_messages", "sentiment", "REAL")


def _add_column(conn: sqlite3.Connection, table: str, col: str, kind: str) -> None:
    try:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {kind}")
    except sqlite3.OperationalError as exc:  # another process added it first
        if "duplicate column" not in str(exc):
            raise


_INSERT = f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def record(rec: UsageRecord, conn: sqlite3.Connection | None = None, messages: Sequence[Message] = ()) -> None:
    """Append one usage row, its rollups and its conversation's messages, in one transaction
    (``conn``'s, when it is inside one)."""
    record_many([(rec, messages)], conn)


def record_many(items: Sequence[tuple[UsageRecord, Sequence[Message]]], conn: sqlite3.Connection | None = None) -> None:
    """Append several usage rows at once: one transaction, so an importer or a bench writes fast."""
    conn = conn or connect()
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        for rec, messages in items:
            values = rec.model_dump()
            values["stream"] = int(values["stream"])
            values["success"] = int(values["success"])
            conn.execute(_INSERT, [values[c] for c in COLUMNS])
            usage_rollups.apply(conn, values)
            for m in messages:
                conn.execute("INSERT INTO usage_messages (message_id, ts, owner, conversation_id, role, content) "
                             "VALUES (?,?,?,?,?,?)",
                             (rec.id, rec.ts, rec.owner, rec.conversation_id, m.role, m.content))
    except BaseException:
        if own:
            conn.execute("ROLLBACK")
        raise
    if own:
        conn.execute("COMMIT")


def rows(*, owner: str | None = None, deployment_id: str | None = None, start: float | None = None,
         end: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Usage rows, oldest first, filtered by owner, deployment and a ``[start, end)`` time range."""
    where, args = _where(owner=owner, deployment_id=deployment_id, start=start, end=end)
    sql = f"SELECT * FROM usage{where} ORDER BY ts, rowid"
    if limit:
        sql += f" LIMIT {int(limit)}"
    out = []
    for r in connect().execute(sql, args):
        d = dict(r)
        d["stream"], d["success"] = bool(d["stream"]), bool(d["success"])
        out.append(d)
    return out


def totals(*, owner: str | None = None, deployment_id: str | None = None, start: float | None = None,
           end: float | None = None) -> dict[str, Any]:
    """Counts, tokens, cost and latency figures (avg, p50, p95, p99; TTFT avg and p95) in one pass."""
    where, args = _where(owner=owner, deployment_id=deployment_id, start=start, end=end)
    conn = connect()
    row = conn.execute(
        "SELECT COUNT(*) AS requests, COALESCE(SUM(success), 0) AS successes, "
        "COALESCE(SUM(input_tokens), 0) AS input_tokens, COALESCE(SUM(output_tokens), 0) AS output_tokens, "
        "COALESCE(SUM(cost_micro), 0) AS cost_micro, AVG(latency_ms) AS avg_latency_ms, "
        "AVG(ttft_ms) AS avg_ttft_ms, MIN(ts) AS first_ts, MAX(ts) AS last_ts "
        f"FROM usage{where}", args).fetchone()
    out = dict(row)
    out["failures"] = out["requests"] - out["successes"]
    lat = [r[0] for r in conn.execute(f"SELECT latency_ms FROM usage{where}"
                                      f"{' AND' if where else ' WHERE'} latency_ms IS NOT NULL ORDER BY latency_ms",
                                      args)]
    ttft = [r[0] for r in conn.execute(f"SELECT ttft_ms FROM usage{where}"
                                       f"{' AND' if where else ' WHERE'} ttft_ms IS NOT NULL ORDER BY ttft_ms", args)]
    for q in (50, 95, 99):
        out[f"p{q}_latency_ms"] = percentile(lat, q)
    out["p95_ttft_ms"] = percentile(ttft, 95)
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile of already sorted values, linearly interpolated (numpy's default)."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo))


def _where(**filters: Any) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for col in ("owner", "deployment_id"):
        if filters.get(col) is not None:
            clauses.append(f"{col} = ?")
            args.append(filters[col])
    if filters.get("start") is not None:
        clauses.append("ts >= ?")
        args.append(filters["start"])
    if filters.get("end") is not None:
        clauses.append("ts < ?")
        args.append(filters["end"])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def dollars(micro: int) -> float:
    return round(micro / MICRO, 6)


def to_micro(usd: float) -> int:
    return round(usd * MICRO)
