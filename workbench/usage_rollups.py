"""Rollups of the usage rows: what lets the analytics answer over a million records at once.

Every usage row also adds itself, in the same transaction, to

* ``usage_rollup``: one row per (owner, 15-minute slot, model, deployment, job, checkpoint) with the
  counts, token and cost sums and latency sums;
* ``usage_hist``: per (owner, slot, kind) a log-spaced histogram of latency and time to first
  token (bins grow by :data:`RATIO`, so a percentile read from them is within ±12% of the exact one);
* ``usage_hist_h``: the same histograms per hour, a quarter of the rows for a long range whose buckets
  start on whole hours (UTC and every whole-hour zone);
* ``usage_conv``: the (owner, slot, conversation) pairs, so distinct conversations count exactly.

Why 15 minutes: every time zone's offset from UTC is a multiple of 15 minutes (India +5:30, Nepal
+5:45), so hour, day, week and month buckets in any zone, DST included, are whole sets of slots.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

SLOT_S = 900
SLOTS_PER_HOUR = 4
RATIO = 1.25
FIRST_MS = 1.0  # bin 0 holds everything below 1 ms
SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_rollup (
    owner TEXT NOT NULL, slot INTEGER NOT NULL, model TEXT NOT NULL, deployment_id TEXT NOT NULL,
    job_id TEXT NOT NULL DEFAULT '', checkpoint TEXT NOT NULL DEFAULT '',
    requests INTEGER NOT NULL DEFAULT 0, successes INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micro INTEGER NOT NULL DEFAULT 0, latency_sum REAL NOT NULL DEFAULT 0, latency_n INTEGER NOT NULL DEFAULT 0,
    ttft_sum REAL NOT NULL DEFAULT 0, ttft_n INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, slot, model, deployment_id, job_id, checkpoint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_hist (
    owner TEXT NOT NULL, slot INTEGER NOT NULL, kind TEXT NOT NULL, bin INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (owner, slot, kind, bin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_hist_h (
    owner TEXT NOT NULL, hour INTEGER NOT NULL, kind TEXT NOT NULL, bin INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (owner, hour, kind, bin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_conv (
    owner TEXT NOT NULL, slot INTEGER NOT NULL, conversation_id TEXT NOT NULL,
    PRIMARY KEY (owner, slot, conversation_id)
) WITHOUT ROWID;
"""


def slot_of(ts: float) -> int:
    return int(ts // SLOT_S)


def bin_of(ms: float) -> int:
    return 0 if ms < FIRST_MS else 1 + int(math.log(ms / FIRST_MS, RATIO))


def bin_value(b: int) -> float:
    """The geometric middle of bin ``b`` (milliseconds)."""
    return FIRST_MS / 2 if b == 0 else FIRST_MS * RATIO ** (b - 1) * math.sqrt(RATIO)


def apply(conn: sqlite3.Connection, v: dict[str, Any]) -> None:
    """Add one usage row's values (a dict of the usage columns) to the rollups."""
    slot = slot_of(v["ts"])
    lat, ttft = v.get("latency_ms"), v.get("ttft_ms")
    conn.execute(
        "INSERT INTO usage_rollup VALUES (?,?,?,?,?,?,1,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
        "requests = requests + 1, successes = successes + excluded.successes, "
        "input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, "
        "cost_micro = cost_micro + excluded.cost_micro, latency_sum = latency_sum + excluded.latency_sum, "
        "latency_n = latency_n + excluded.latency_n, ttft_sum = ttft_sum + excluded.ttft_sum, "
        "ttft_n = ttft_n + excluded.ttft_n",
        (v["owner"], slot, v["model"], v["deployment_id"], v.get("job_id") or "", v.get("checkpoint") or "",
         int(v["success"]), v["input_tokens"], v["output_tokens"], v["cost_micro"], lat or 0.0, int(lat is not None),
         ttft or 0.0, int(ttft is not None)))
    for kind, ms in (("latency", lat), ("ttft", ttft)):
        if ms is not None:
            conn.execute("INSERT INTO usage_hist VALUES (?,?,?,?,1) ON CONFLICT DO UPDATE SET n = n + 1",
                         (v["owner"], slot, kind, bin_of(ms)))
            conn.execute("INSERT INTO usage_hist_h VALUES (?,?,?,?,1) ON CONFLICT DO UPDATE SET n = n + 1",
                         (v["owner"], slot // SLOTS_PER_HOUR, kind, bin_of(ms)))
    if v.get("conversation_id"):
        conn.execute("INSERT OR IGNORE INTO usage_conv VALUES (?,?,?)", (v["owner"], slot, v["conversation_id"]))


def backfill(conn: sqlite3.Connection) -> None:
    """Build the rollups of a database whose usage rows were written before there were rollups.

    Under the write lock, and only when the rollup tables do not exist yet: two processes opening
    the same old database fill them once."""
    if _has_rollups(conn):
        if not _has_table(conn, "usage_hist_h"):  # rollups from before the hourly histograms
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not _has_table(conn, "usage_hist_h"):
                    conn.execute(SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS usage_hist_h"):].split(";")[0])
                    conn.execute(f"INSERT INTO usage_hist_h SELECT owner, slot / {SLOTS_PER_HOUR}, kind, bin, SUM(n) "
                                 "FROM usage_hist GROUP BY 1, 2, 3, 4")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _has_rollups(conn):
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.create_function("wb_slot", 1, slot_of, deterministic=True)
            conn.create_function("wb_bin", 1, bin_of, deterministic=True)
            conn.execute(
                "INSERT INTO usage_rollup SELECT owner, wb_slot(ts), model, deployment_id, COALESCE(job_id, ''), "
                "COALESCE(checkpoint, ''), COUNT(*), SUM(success), SUM(input_tokens), SUM(output_tokens), "
                "SUM(cost_micro), COALESCE(SUM(latency_ms), 0), COUNT(latency_ms), COALESCE(SUM(ttft_ms), 0), "
                "COUNT(ttft_ms) FROM usage GROUP BY 1, 2, 3, 4, 5, 6")
            for kind in ("latency", "ttft"):
                conn.execute(f"INSERT INTO usage_hist SELECT owner, wb_slot(ts), '{kind}', wb_bin({kind}_ms), COUNT(*) "
                             f"FROM usage WHERE {kind}_ms IS NOT NULL GROUP BY 1, 2, 4")
            conn.execute(f"INSERT INTO usage_hist_h SELECT owner, slot / {SLOTS_PER_HOUR}, kind, bin, SUM(n) "
                         "FROM usage_hist GROUP BY 1, 2, 3, 4")
            conn.execute("INSERT OR IGNORE INTO usage_conv SELECT DISTINCT owner, wb_slot(ts), conversation_id "
                         "FROM usage WHERE conversation_id IS NOT NULL AND conversation_id != ''")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _has_rollups(conn: sqlite3.Connection) -> bool:
    return _has_table(conn, "usage_rollup")


def hist_percentile(bins: dict[int, int], q: float) -> float | None:
    """The ``q``-th percentile of a histogram ``{bin: count}``, read the way :func:`workbench.usage.percentile`
    reads sorted values (numpy's linear method): rank ``k = (n - 1)·q/100``, between the ``⌊k⌋``-th and the next
    value, each taken as its bin's geometric middle.

    A value ``v`` of bin ``b`` lies in ``[RATIO^(b-1), RATIO^b)`` and the middle is ``RATIO^(b-1)·√RATIO``, so
    each stands for its value within ``√1.25 − 1 ≈ 11.8%``; the interpolation between two of them stays within
    that of the exact interpolation. (Interpolating inside one bin instead can be 25% off: a constant 87 ms
    latency near its bin's lower edge read as 107 ms at p95.) Below :data:`FIRST_MS` everything reads as 0.5 ms.
    """
    total = sum(bins.values())
    if not total:
        return None
    k = (total - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, total - 1)
    v_lo = v_hi = None
    seen = 0
    for b in sorted(bins):
        seen += bins[b]
        if v_lo is None and seen > lo:
            v_lo = bin_value(b)
        if seen > hi:
            v_hi = bin_value(b)
            break
    assert v_lo is not None and v_hi is not None
    return v_lo + (v_hi - v_lo) * (k - lo)
