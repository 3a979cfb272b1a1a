"""The ``evaluation_metrics`` tool's 13 operations, over the caller's usage rows and feedback.

Every operation takes ``startDate``/``endDate`` (default: the last 30 days) and returns plain figures,
so the assistant quotes numbers it did not make up. Definitions:

* a reply is **successful** when its feedback says ``success`` (or rates it ≥ 4), **failed** when the
  feedback says ``failure`` (or rates it ≤ 2); replies without a verdict do not count;
* **benchmarks** (``benchmark_analysis``) are the thresholds in :data:`BENCHMARKS`, typical targets of
  production LLM apps: success ≥ 90%, rating ≥ 4.0, error rate ≤ 2%, p95 latency ≤ 2 s;
* **anomalies** are days whose requests, error rate or p95 latency lie ≥ 2 standard deviations from
  the period's daily mean (z-score);
* **predictive_quality_modeling** fits a least-squares line to the daily success rate and rating and
  projects it ``horizon_days`` ahead, with R².
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from ..errors import InvalidInput
from ..usage import MICRO, percentile
from . import compare, records
from .buckets import parse_instant
from .sentiment import label, score

OPERATIONS = ("get_metrics", "quality_trends", "success_analysis", "compare_periods", "model_comparison",
              "tool_impact_analysis", "error_analysis", "temporal_analysis", "textual_feedback_analysis",
              "benchmark_analysis", "advanced_sentiment_analysis", "predictive_quality_modeling", "anomaly_detection")
BENCHMARKS = {"success_rate": 90.0, "rating": 4.0, "error_rate": 2.0, "latency_p95_ms": 2000.0}
DAY = 86400.0
_WORD = re.compile(r"[a-z']{3,}")
_STOP = frozenset(["the", "and", "for", "that", "this", "with", "was", "were", "are", "but", "not", "you", "your", "have", "has", "had", "its", "it's", "too", "very", "just", "what", "when", "from", "they", "them", "then", "than", "there", "their", "would", "could", "should", "about"])


def _range(args: dict[str, Any], prefix: str = "") -> tuple[float, float]:
    s, e = args.get(f"{prefix}startDate"), args.get(f"{prefix}endDate")
    end = parse_instant(e, f"{prefix}endDate", end_of_day=True).timestamp() if e else time.time()
    start = parse_instant(s, f"{prefix}startDate").timestamp() if s else end - 30 * DAY
    if end < start:
        raise InvalidInput(f"{prefix}endDate is before {prefix}startDate", field=f"{prefix}endDate")
    return start, end


def _rows(owner: str, start: float, end: float) -> list[Any]:
    return records.connect().execute(
        "SELECT u.*, f.rating, f.success AS verdict, f.comment, f.sentiment FROM usage u LEFT JOIN feedback f "
        "ON f.message_id = u.id AND f.owner = u.owner WHERE u.owner = ? AND u.ts >= ? AND u.ts <= ? ORDER BY u.ts",
        (owner, start, end)).fetchall()


def _verdict(r: Any) -> bool | None:
    if r["verdict"] is not None:
        return bool(r["verdict"])
    if r["rating"] is not None and r["rating"] != 3:
        return r["rating"] >= 4
    return None


def _figures(rows: list[Any]) -> dict[str, Any]:
    n = len(rows)
    verdicts = [v for v in map(_verdict, rows) if v is not None]
    ratings = [r["rating"] for r in rows if r["rating"] is not None]
    lat = sorted(r["latency_ms"] for r in rows if r["latency_ms"] is not None)
    errors = sum(1 for r in rows if not r["success"])
    return {"messages": n, "conversations": len({r["conversation_id"] for r in rows if r["conversation_id"]}),
            "tokens": sum(r["input_tokens"] + r["output_tokens"] for r in rows),
            "cost": sum(r["cost_micro"] for r in rows) / MICRO, "errors": errors,
            "error_rate": round(100 * errors / n, 2) if n else None, "evaluations": len(verdicts),
            "success_rate": round(100 * sum(verdicts) / len(verdicts), 2) if verdicts else None,
            "rating": round(statistics.fmean(ratings), 3) if ratings else None,
            "latency_p50_ms": percentile(lat, 50), "latency_p95_ms": percentile(lat, 95)}


def _daily(rows: list[Any]) -> dict[str, list[Any]]:
    days: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        days[datetime.fromtimestamp(r["ts"], UTC).date().isoformat()].append(r)
    return dict(sorted(days.items()))


def _fit(ys: list[float]) -> dict[str, float] | None:
    """Least squares y = a + b·x over x = 0..n-1, and R²."""
    n = len(ys)
    if n < 2:
        return None
    xs = list(range(n))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return {"intercept": a, "slope": b, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def run(owner: str, args: dict[str, Any]) -> dict[str, Any]:
    op = args.get("operation")
    if op not in OPERATIONS:
        raise InvalidInput(f"operation must be one of {', '.join(OPERATIONS)}", field="operation")
    start, end = _range(args)
    if op == "model_comparison":
        return {"operation": op, **compare.by_model(owner, _iso(start), _iso(end))}
    if op == "tool_impact_analysis":
        calls = records.connect().execute("SELECT tool, execution_ms, success FROM tool_calls WHERE owner = ? AND "
                                          "ts >= ? AND ts <= ?", (owner, start, end)).fetchall()
        by: dict[str, list[Any]] = defaultdict(list)
        for c in calls:
            by[c[0]].append(c)
        return {"operation": op, "tools": {t: {"calls": len(cs), "success_rate": round(100 * sum(c[2] for c in cs) / len(cs), 2),
                                                "avg_ms": round(statistics.fmean(c[1] for c in cs), 2)}
                                            for t, cs in sorted(by.items())}}
    rows = _rows(owner, start, end)
    if op == "get_metrics":
        return {"operation": op, **_figures(rows)}
    if op == "quality_trends":
        return {"operation": op, "days": [{"date": d, **{k: v for k, v in _figures(rs).items()
                                                         if k in ("messages", "success_rate", "rating", "evaluations")}}
                                          for d, rs in _daily(rows).items()]}
    if op == "success_analysis":
        verdicts = [(r, v) for r in rows if (v := _verdict(r)) is not None]
        by_model: dict[str, list[bool]] = defaultdict(list)
        for r, v in verdicts:
            by_model[r["model"]].append(v)
        return {"operation": op, "evaluated": len(verdicts), "successes": sum(v for _, v in verdicts),
                "success_rate": _figures(rows)["success_rate"],
                "by_model": {m: round(100 * sum(vs) / len(vs), 2) for m, vs in sorted(by_model.items())}}
    if op == "compare_periods":
        b_start, b_end = _range(args, "compare_")
        a, b = _figures(rows), _figures(_rows(owner, b_start, b_end))
        delta = {k: round(a[k] - b[k], 4) for k in a if isinstance(a[k], int | float) and isinstance(b[k], int | float)}
        return {"operation": op, "period": a, "compared_to": b, "change": delta}
    if op == "error_analysis":
        kinds = Counter((r["error"] or "unknown").split(":", 1)[0] for r in rows if not r["success"])
        by_model = Counter(r["model"] for r in rows if not r["success"])
        return {"operation": op, "errors": sum(kinds.values()), "error_rate": _figures(rows)["error_rate"],
                "by_type": dict(kinds.most_common()), "by_model": dict(by_model.most_common())}
    if op == "temporal_analysis":
        hours, weekdays = Counter(), Counter()
        for r in rows:
            t = datetime.fromtimestamp(r["ts"], UTC)
            hours[t.hour] += 1
            weekdays[t.strftime("%A")] += 1
        return {"operation": op, "by_hour_utc": dict(sorted(hours.items())), "by_weekday": dict(weekdays),
                "busiest_hour_utc": hours.most_common(1)[0][0] if hours else None}
    if op == "textual_feedback_analysis":
        comments = [r["comment"] for r in rows if r["comment"]]
        labels = Counter(label(score(c)) for c in comments)
        words = Counter(w for c in comments for w in _WORD.findall(c.lower()) if w not in _STOP)
        return {"operation": op, "comments": len(comments), "sentiment": dict(labels),
                "top_words": dict(words.most_common(10))}
    if op == "benchmark_analysis":
        f = _figures(rows)
        checks = {"success_rate": (f["success_rate"], ">="), "rating": (f["rating"], ">="),
                  "error_rate": (f["error_rate"], "<="), "latency_p95_ms": (f["latency_p95_ms"], "<=")}
        return {"operation": op, "benchmarks": {k: {"value": v, "target": BENCHMARKS[k], "meets": None if v is None
                                                    else (v >= BENCHMARKS[k] if op_ == ">=" else v <= BENCHMARKS[k])}
                                                for k, (v, op_) in checks.items()}}
    if op == "advanced_sentiment_analysis":
        msgs = records.connect().execute("SELECT content FROM usage_messages WHERE owner = ? AND role = 'user' AND "
                                         "ts >= ? AND ts <= ?", (owner, start, end)).fetchall()
        scores = [score(m[0]) for m in msgs] + [score(r["comment"]) for r in rows if r["comment"]]
        labels = Counter(map(label, scores))
        n = len(scores)
        return {"operation": op, "scored": n, "mean": round(statistics.fmean(scores), 4) if scores else None,
                "shares": {k: round(100 * labels[k] / n, 2) for k in ("positive", "neutral", "negative")} if n else {}}
    if op == "predictive_quality_modeling":
        try:
            horizon = int(args.get("horizon_days", 7))
        except (TypeError, ValueError):
            horizon = 0
        if not 1 <= horizon <= 365:
            raise InvalidInput("horizon_days must be a whole number of days, 1 to 365", field="horizon_days")
        days = [(d, _figures(rs)) for d, rs in _daily(rows).items()]
        out: dict[str, Any] = {"operation": op, "horizon_days": horizon, "days": len(days)}
        for key, (lo, hi) in (("success_rate", (0.0, 100.0)), ("rating", (1.0, 5.0))):
            ys = [f[key] for _, f in days if f[key] is not None]
            fit = _fit(ys)
            # a line projected past its data leaves the scale (a success rate of 150%): held to it
            ahead = fit["intercept"] + fit["slope"] * (len(ys) - 1 + horizon) if fit else None
            out[key] = None if fit is None else {**{k: round(v, 4) for k, v in fit.items()},
                                                 "forecast": round(min(hi, max(lo, ahead)), 3)}
        return out
    # anomaly_detection
    days = _daily(rows)
    series = {"requests": {d: len(rs) for d, rs in days.items()},
              "error_rate": {d: _figures(rs)["error_rate"] or 0.0 for d, rs in days.items()},
              "latency_p95_ms": {d: _figures(rs)["latency_p95_ms"] or 0.0 for d, rs in days.items()}}
    found = []
    for name, s in series.items():
        if len(s) < 3:
            continue
        mu, sd = statistics.fmean(s.values()), statistics.pstdev(s.values())
        for d, v in s.items():
            if sd and abs(v - mu) / sd >= 2:
                found.append({"date": d, "metric": name, "value": v, "mean": round(mu, 3), "z": round((v - mu) / sd, 2)})
    return {"operation": op, "anomalies": found}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
