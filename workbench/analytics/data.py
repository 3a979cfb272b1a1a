"""``GET /api/analytics/data``: usage aggregated per time bucket, in the reference's shape.

How a range is read, so a month over a million records answers in milliseconds:

* a range with at most :data:`EXACT_ROWS` usage rows is read row by row (cheaper than the rollups there): every figure is exact;
* a larger one reads the 15-minute rollups (:mod:`workbench.usage_rollups`) for the slots wholly
  inside it and the rows themselves for the partial slots at its two ends; latency percentiles then
  come from the log-spaced histograms (within ±12%), everything else stays exact;
* a ``cohort_id``, ``model`` or ``job_id`` filter always reads rows: the histograms and conversation
  slots are kept per owner only, and cohorts cut across every rollup key.

Quality (feedback), tools (the assistant's tool calls) and error kinds are small tables, always read
as rows; ``quality`` and ``tools`` list their records (newest ``limit``), the other metrics one entry
per bucket. ``series`` adds what charts need beside the reference's shape: quality per bucket
(evaluations, mean rating, success rate) and a per-tool summary.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import usage_rollups
from ..errors import BadQuery
from ..usage import MICRO, percentile
from . import records
from .buckets import Buckets, buckets, parse_instant, zone

METRICS = ("tokens", "quality", "tools", "conversations", "errors", "latency")
EXACT_ROWS = 5_000
RECORD_LIMIT = 1000


def parse_metrics(raw: str | None) -> list[str]:
    if not raw or raw.strip() == "all":
        return list(METRICS)
    out = [m.strip() for m in raw.split(",") if m.strip()]
    bad = [m for m in out if m not in METRICS]
    if bad or not out:
        raise BadQuery(f"metrics: unknown {', '.join(bad) or 'empty list'}; use a comma list of "
                           f"{', '.join(METRICS)}, or all", field="metrics")
    return out


@dataclass
class Cell:
    """One bucket's sums."""

    requests: int = 0
    successes: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0
    ttft_sum: float = 0.0
    ttft_n: int = 0
    latency: list[float] = field(default_factory=list)  # exact values (row path)
    ttft: list[float] = field(default_factory=list)
    latency_hist: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    ttft_hist: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    conversations: set[str] = field(default_factory=set)
    conv_count: int | None = None  # the rollups' distinct count (the set is the row path's)

    @property
    def n_conversations(self) -> int:
        return len(self.conversations) if self.conv_count is None else self.conv_count

    def add_row(self, r: Any, exact: bool) -> None:
        self.requests += 1
        self.successes += r["success"]
        self.input_tokens += r["input_tokens"]
        self.output_tokens += r["output_tokens"]
        self.cost_micro += r["cost_micro"]
        for kind in ("latency", "ttft"):
            ms = r[f"{kind}_ms"]
            if ms is not None:
                setattr(self, f"{kind}_sum", getattr(self, f"{kind}_sum") + ms)
                setattr(self, f"{kind}_n", getattr(self, f"{kind}_n") + 1)
                if exact:
                    getattr(self, kind).append(ms)
                else:
                    getattr(self, f"{kind}_hist")[usage_rollups.bin_of(ms)] += 1
        if r["conversation_id"]:
            self.conversations.add(r["conversation_id"])

    def merge(self, other: Cell) -> None:
        for name in ("requests", "successes", "input_tokens", "output_tokens", "cost_micro", "latency_sum",
                     "latency_n", "ttft_sum", "ttft_n"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency += other.latency
        self.ttft += other.ttft
        for kind in ("latency_hist", "ttft_hist"):
            mine = getattr(self, kind)
            for b, n in getattr(other, kind).items():
                mine[b] += n
        self.conversations |= other.conversations

    def pct(self, kind: str, q: float, exact: bool) -> float | None:
        if exact:
            return _round(percentile(sorted(getattr(self, kind)), q))
        return _round(usage_rollups.hist_percentile(getattr(self, f"{kind}_hist"), q))


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


def _filters(model: str | None, job_id: str | None, members: list[str] | None) -> tuple[str, list[Any]]:
    sql, args = "", []
    if model:
        sql += " AND model = ?"
        args.append(model)
    if job_id:
        sql += " AND job_id = ?"
        args.append(job_id)
    if members is not None:
        sql += f" AND end_user IN ({','.join('?' * len(members))})"
        args += members
    return sql, args


_SCANS = ThreadPoolExecutor(max_workers=3, thread_name_prefix="wb-analytics-scan")
ROW_COLS = "ts, success, input_tokens, output_tokens, cost_micro, latency_ms, ttft_ms, conversation_id"


def _bucket_sql(b: Buckets, first: int) -> tuple[str, list[Any], str]:
    """SQL for a slot's bucket index: arithmetic when the buckets after the first are all as long (hours
    always; days and weeks without a DST change), else a chain of comparisons (months, DST days), else
    (hundreds of uneven buckets) a join on the bucket bounds."""
    slot_s = usage_rollups.SLOT_S
    bounds = [first] + [int(x) // slot_s for x in b.starts[1:]]
    widths = {bounds[i + 1] - bounds[i] for i in range(1, len(bounds) - 1)}
    if len(bounds) == 1:
        return "0", [], ""
    if len(widths) <= 1:
        w = widths.pop() if widths else 1 << 40  # two buckets: everything from the second start is the second
        return "(CASE WHEN slot < ? THEN 0 ELSE 1 + (slot - ?) / ? END)", [bounds[1], bounds[1], w], ""
    if len(bounds) <= 400:  # a few uneven buckets (months, a DST day): a chain of comparisons
        chain = " ".join(f"WHEN slot < {hi} THEN {i}" for i, hi in enumerate(bounds[1:]))
        return f"(CASE {chain} ELSE {len(bounds) - 1} END)", [], ""
    edges = ",".join(f"({i}, {lo}, {hi})" for i, (lo, hi) in enumerate(zip([-(1 << 62), *bounds[1:]],
                                                                           [*bounds[1:], 1 << 62], strict=True)))
    join = f" JOIN (SELECT column1 AS idx, column2 AS lo, column3 AS hi FROM (VALUES {edges})) e"
    return "e.idx", [], join + " ON slot >= e.lo AND slot < e.hi"


def cells(owner: str, b: Buckets, *, model: str | None = None, job_id: str | None = None,
          members: list[str] | None = None) -> tuple[list[Cell], bool, int]:
    """Each bucket's sums, whether they are exact (the row path) or from the rollups, and the range's
    distinct conversations."""
    conn = records.connect()
    where, args = _filters(model, job_id, members)
    out = [Cell() for _ in b.starts]
    if members is not None and not members:
        return out, True, 0
    slot_s = usage_rollups.SLOT_S
    first = math.ceil(b.starts[0] / slot_s)  # the first slot wholly inside (a start may be mid-second)
    last = math.floor(b.end / slot_s) - 1  # the last slot wholly inside (the end is inclusive)
    exact = members is not None or first > last or bool(model or job_id)
    if not exact:  # about how many rows (the rollups of the slots it touches): cheaper than counting them
        n = conn.execute("SELECT COALESCE(SUM(requests), 0) FROM usage_rollup WHERE owner = ? AND slot >= ? "
                         "AND slot <= ?", (owner, first - 1, last + 1)).fetchone()[0]
        exact = n <= EXACT_ROWS
    if exact:
        convs: set[str] = set()
        for r in conn.execute(f"SELECT {ROW_COLS} FROM usage WHERE owner = ? AND ts >= ? AND ts <= ?{where}",
                              [owner, b.starts[0], b.end, *args]):
            i = b.index(r["ts"])
            if i is not None:
                out[i].add_row(r, exact=True)
                if r["conversation_id"]:
                    convs.add(r["conversation_id"])
        return out, True, len(convs)

    edge_convs: dict[int, set[str]] = {}
    for lo, hi in ((b.starts[0], first * slot_s), ((last + 1) * slot_s, b.end)):  # the ragged ends, row by row
        if hi <= lo and not (lo == hi == b.end):
            continue
        op = "<=" if hi == b.end else "<"
        for r in conn.execute(f"SELECT {ROW_COLS} FROM usage WHERE owner = ? AND ts >= ? AND ts {op} ?",
                              [owner, lo, hi]):
            i = b.index(r["ts"])
            if i is not None:
                out[i].add_row(r, exact=False)
                if r["conversation_id"]:
                    edge_convs.setdefault(i, set()).add(r["conversation_id"])
    idx, idx_args, join = _bucket_sql(b, first)
    rng = [owner, first, last]
    for r in conn.execute(f"SELECT {idx} AS i, SUM(requests), SUM(successes), SUM(input_tokens), SUM(output_tokens), "
                          "SUM(cost_micro), SUM(latency_sum), SUM(latency_n), SUM(ttft_sum), SUM(ttft_n) "
                          f"FROM usage_rollup{join} WHERE owner = ? AND slot >= ? AND slot <= ? GROUP BY i",
                          [*idx_args, *rng]):
        c = out[r[0]]
        c.requests += r[1]
        c.successes += r[2]
        c.input_tokens += r[3]
        c.output_tokens += r[4]
        c.cost_micro += r[5]
        c.latency_sum += r[6]
        c.latency_n += r[7]
        c.ttft_sum += r[8]
        c.ttft_n += r[9]
    every = sorted(set().union(*edge_convs.values())) if edge_convs else []

    per_hour = usage_rollups.SLOTS_PER_HOUR
    h0, h1 = -(-first // per_hour), (last + 1) // per_hour - 1  # the whole hours inside [first, last]
    hourly = h0 <= h1 and all(int(x) % 3600 == 0 for x in b.starts[1:])  # buckets on whole hours

    def hist_rows() -> list[Any]:
        """From the hourly histograms where buckets start on whole hours, the 15-minute ones around them."""
        pieces = [(first, h0 * per_hour - 1), ((h1 + 1) * per_hour, last)] if hourly else [(first, last)]
        sql = " UNION ALL ".join("SELECT slot, kind, bin, n FROM usage_hist WHERE owner = ? AND slot >= ? AND slot <= ?"
                                 for lo, hi in pieces if lo <= hi)
        args: list[Any] = [a for lo, hi in pieces if lo <= hi for a in (owner, lo, hi)]
        if hourly:
            sql = " UNION ALL ".join(filter(None, [sql, f"SELECT hour * {per_hour} AS slot, kind, bin, n FROM usage_hist_h "
                                                        "WHERE owner = ? AND hour >= ? AND hour <= ?"]))
            args += [owner, h0, h1]
        return records.connect().execute(f"SELECT {idx} AS i, kind, bin, SUM(n) FROM ({sql}){join} GROUP BY i, kind, bin",
                                         [*idx_args, *args]).fetchall()

    def conv_rows() -> list[Any]:
        if len(out) == 1:  # one bucket: its count is the total
            return []
        return records.connect().execute(
            f"SELECT {idx} AS i, COUNT(DISTINCT conversation_id) FROM usage_conv{join} WHERE owner = ? AND slot >= ? "
            "AND slot <= ? GROUP BY i", [*idx_args, *rng]).fetchall()

    def conv_total() -> int:
        return records.connect().execute(
            "SELECT COUNT(*) FROM (SELECT conversation_id FROM usage_conv WHERE owner = ? AND slot >= ? AND slot <= ? "
            "UNION SELECT value FROM json_each(?))", (*rng, json.dumps(every))).fetchone()[0]

    # three independent scans at once (sqlite3 lets go of the GIL while a statement steps; each thread has
    # its own connection): the histograms, the conversations per bucket, the conversations in all
    jobs = [_SCANS.submit(hist_rows), _SCANS.submit(conv_rows), _SCANS.submit(conv_total)]
    hists = {"latency": [c.latency_hist for c in out], "ttft": [c.ttft_hist for c in out]}
    for i, kind, bin_, cnt in jobs[0].result():
        hists[kind][i][bin_] += cnt
    for i, cnt in jobs[1].result():
        out[i].conv_count = cnt
    total = jobs[2].result()
    for i, ids in edge_convs.items() if len(out) > 1 else ():  # a ragged end's may also be in its bucket's interior
        lo = first if i == 0 else int(b.starts[i]) // slot_s
        hi = last if i == len(out) - 1 else int(b.starts[i + 1]) // slot_s - 1
        out[i].conv_count = conn.execute(
            "SELECT COUNT(*) FROM (SELECT conversation_id FROM usage_conv WHERE owner = ? AND slot >= ? AND slot <= ? "
            "UNION SELECT value FROM json_each(?))", (owner, lo, hi, json.dumps(sorted(ids)))).fetchone()[0]
    if len(out) == 1:
        out[0].conv_count = total
    return out, False, total


def _feedback(owner: str, b: Buckets, members: list[str] | None, model: str | None,
              job_id: str | None) -> list[Any]:
    where, args = _filters(model, job_id, members)
    where = where.replace("model", "u.model").replace("job_id", "u.job_id").replace("end_user", "u.end_user")
    # the verdicts on the range's replies, whenever they were given: the same replies as the other figures
    # (and as /models and evaluation_metrics read), so a rating given today of yesterday's reply is yesterday's
    return records.connect().execute(
        "SELECT f.*, u.ts AS reply_ts, u.conversation_id, u.model, u.job_id, u.checkpoint FROM feedback f "
        "CROSS JOIN usage u ON u.id = f.message_id AND u.owner = f.owner "
        f"WHERE f.owner = ? AND u.ts >= ? AND u.ts <= ?{where} ORDER BY f.ts", [owner, b.starts[0], b.end, *args]
    ).fetchall()


def query(owner: str, *, start: str | None, end: str | None, metrics: str | None = None,
          granularity: str | None = None, timezone: str | None = None, members: list[str] | None = None,
          model: str | None = None, job_id: str | None = None, limit: int = RECORD_LIMIT) -> dict[str, Any]:
    s, e = parse_instant(start, "startDate"), parse_instant(end, "endDate", end_of_day=True)
    wanted = parse_metrics(metrics)
    tz = zone(timezone)
    period = granularity or "day"
    b = buckets(s, e, period, tz)
    cs, exact, n_convs = cells(owner, b, model=model, job_id=job_id, members=members)
    total = Cell()
    for c in cs:
        total.merge(c)
    fb = _feedback(owner, b, members, model, job_id)
    conn = records.connect()
    out: dict[str, Any] = {}
    if "tokens" in wanted:
        out["tokenUsage"] = [{"timestamp": b.labels[i], "messages": c.requests, "inputTokens": c.input_tokens,
                              "outputTokens": c.output_tokens, "totalTokens": c.input_tokens + c.output_tokens,
                              "estimatedCost": c.cost_micro / MICRO} for i, c in enumerate(cs)]
    if "quality" in wanted:
        out["quality"] = [{"timestamp": _iso(r["ts"], tz), "messageId": r["message_id"],
                           "conversationId": r["conversation_id"], "modelId": r["model"], "jobId": r["job_id"],
                           "checkpoint": r["checkpoint"], "rating": r["rating"],
                           "successStatus": None if r["success"] is None else ("success" if r["success"] else "failure"),
                           "evaluationType": r["evaluation_type"], "comment": r["comment"],
                           "sentiment": r["sentiment"]} for r in fb[-limit:]]
    tool_rows = conn.execute("SELECT * FROM tool_calls WHERE owner = ? AND ts >= ? AND ts <= ? ORDER BY ts",
                             (owner, b.starts[0], b.end)).fetchall()
    if "tools" in wanted:
        out["tools"] = [{"timestamp": _iso(r["ts"], tz), "toolName": r["tool"], "executionTimeMs": round(r["execution_ms"], 2),
                         "success": bool(r["success"]), "error": r["error"]} for r in tool_rows[-limit:]]
    if "conversations" in wanted:
        out["conversations"] = [{"timestamp": b.labels[i], "conversations": c.n_conversations, "messages": c.requests,
                                 "messagesPerConversation": _round(c.requests / c.n_conversations)
                                 if c.n_conversations else None} for i, c in enumerate(cs)]
    if "errors" in wanted:
        kinds = _error_kinds(owner, b, model, job_id, members, exact)
        out["errors"] = [{"timestamp": b.labels[i], "errors": c.requests - c.successes,
                          "errorRate": _round(100 * (c.requests - c.successes) / c.requests) if c.requests else None,
                          "byType": kinds.get(i, {})} for i, c in enumerate(cs)]
    if "latency" in wanted:
        out["latency"] = [{"timestamp": b.labels[i], "requests": c.requests,
                           "avgMs": _round(c.latency_sum / c.latency_n) if c.latency_n else None,
                           "p50Ms": c.pct("latency", 50, exact), "p95Ms": c.pct("latency", 95, exact),
                           "p99Ms": c.pct("latency", 99, exact),
                           "ttftAvgMs": _round(c.ttft_sum / c.ttft_n) if c.ttft_n else None,
                           "ttftP50Ms": c.pct("ttft", 50, exact), "ttftP95Ms": c.pct("ttft", 95, exact)}
                          for i, c in enumerate(cs)]
    series = {"quality": _quality_series(fb, b), "tools": _tool_summary(tool_rows)}
    ratings = [r["rating"] for r in fb if r["rating"] is not None]
    verdicts = [r["success"] for r in fb if r["success"] is not None]
    n = total.requests
    tokens = total.input_tokens + total.output_tokens
    aggregations = {
        "totals": {"messages": n, "conversations": n_convs, "tokens": tokens,
                   "inputTokens": total.input_tokens, "outputTokens": total.output_tokens,
                   "cost": total.cost_micro / MICRO, "evaluations": len(fb), "errors": n - total.successes,
                   "toolCalls": len(tool_rows)},
        "averages": {"tokensPerMessage": _round(tokens / n) if n else None,
                     "costPerMessage": round(total.cost_micro / MICRO / n, 8) if n else None,
                     "rating": _round(sum(ratings) / len(ratings)) if ratings else None,
                     "successRate": _round(100 * sum(verdicts) / len(verdicts)) if verdicts else None,
                     "errorRate": _round(100 * (n - total.successes) / n) if n else None,
                     "latencyMs": _round(total.latency_sum / total.latency_n) if total.latency_n else None,
                     "latencyP50Ms": total.pct("latency", 50, exact), "latencyP95Ms": total.pct("latency", 95, exact),
                     "latencyP99Ms": total.pct("latency", 99, exact),
                     "ttftMs": _round(total.ttft_sum / total.ttft_n) if total.ttft_n else None,
                     "ttftP95Ms": total.pct("ttft", 95, exact)},
    }
    return {"success": True, "data": {
        "userId": owner,
        "timeRange": {"start": _iso(s.timestamp(), None), "end": _iso(e.timestamp(), None), "period": period,
                      "timezone": tz.key},
        "metrics": out, "aggregations": aggregations, "series": series,
        "percentiles": "exact" if exact else "histogram (±12%)"}}


def _quality_series(fb: list[Any], b: Buckets) -> list[dict[str, Any]]:
    """Per bucket of the replies: how many verdicts, the mean rating and the success rate (the charts' quality line)."""
    per: dict[int, list[Any]] = defaultdict(list)
    for r in fb:
        i = b.index(r["reply_ts"])
        if i is not None:
            per[i].append(r)
    out = []
    for i, label in enumerate(b.labels):
        rs = per.get(i, [])
        ratings = [r["rating"] for r in rs if r["rating"] is not None]
        verdicts = [r["success"] for r in rs if r["success"] is not None]
        out.append({"timestamp": label, "evaluations": len(rs),
                    "rating": _round(sum(ratings) / len(ratings)) if ratings else None,
                    "successRate": _round(100 * sum(verdicts) / len(verdicts)) if verdicts else None})
    return out


def _tool_summary(rows: list[Any]) -> list[dict[str, Any]]:
    per: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        per[r["tool"]].append(r)
    return [{"toolName": t, "calls": len(rs), "successRate": _round(100 * sum(r["success"] for r in rs) / len(rs)),
             "avgMs": _round(sum(r["execution_ms"] for r in rs) / len(rs))} for t, rs in sorted(per.items())]


_KIND = "CASE WHEN instr(error, ':') > 0 THEN substr(error, 1, instr(error, ':') - 1) ELSE COALESCE(error, 'unknown') END"


def _error_kinds(owner: str, b: Buckets, model: str | None, job_id: str | None,
                 members: list[str] | None, exact: bool = True) -> dict[int, dict[str, int]]:
    where, args = _filters(model, job_id, members)
    out: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if not exact:  # a month of failures grouped in SQL: the bucket of each row's slot, as the rollups use
        slot_s = usage_rollups.SLOT_S
        idx, idx_args, join = _bucket_sql(b, math.ceil(b.starts[0] / slot_s))
        for i, kind, n in records.connect().execute(
                f"SELECT {idx} AS i, {_KIND} AS k, COUNT(*) FROM (SELECT CAST(ts / {slot_s} AS INTEGER) AS slot, error "
                f"FROM usage WHERE owner = ? AND success = 0 AND ts >= ? AND ts <= ?{where}){join} GROUP BY i, k",
                [*idx_args, owner, b.starts[0], b.end, *args]):
            out[i][kind] = n
        return {i: dict(v) for i, v in out.items()}
    for ts, err in records.connect().execute(
            f"SELECT ts, error FROM usage WHERE owner = ? AND success = 0 AND ts >= ? AND ts <= ?{where}",
            [owner, b.starts[0], b.end, *args]):
        i = b.index(ts)
        if i is not None:
            out[i][(err or "unknown").split(":", 1)[0]] += 1
    return {i: dict(v) for i, v in out.items()}


def _iso(ts: float, tz: Any) -> str:
    from datetime import UTC

    dt = datetime.fromtimestamp(ts, tz or UTC)
    return dt.isoformat().replace("+00:00", "Z") if tz is None or tz.key == "UTC" else dt.isoformat()
