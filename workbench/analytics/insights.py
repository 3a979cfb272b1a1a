"""``GET /api/analytics/sentiment/insights``: anomalies in sentiment and feedback, with the statistics stated.

Inputs over the last ``lookback_days``: the VADER compound score of every user message the
deployments served and of every feedback comment, and every feedback verdict (a rating ≤ 2 or a
``failure`` is negative; a rating ≥ 4 or a ``success`` is positive).

* **Sudden sentiment drop** (``anomaly``): the mean sentiment of the recent window (the last
  :data:`RECENT_DAYS` days) against the earlier days as the baseline, as a z-score of the recent
  mean under the baseline's spread: ``z = (mean_recent − mean_base) / (sd_base / √n_recent)``.
  ``z ≤ −2`` is reported (``medium``), ``z ≤ −3`` is ``high``.
* **Increasing negative feedback** (``trend``) and **quality improvement / drop** (``positive`` /
  ``anomaly``): the share of negative (or positive) verdicts in the last 7 days against the 7 before,
  with a two-proportion z-test; ``|z| ≥ 2`` is reported, ``|z| ≥ 3`` is one severity higher.

Each insight names how many distinct conversations of the recent window show it, and a recommendation.
Fewer than :data:`MIN_SAMPLES` points on either side report nothing: no insight from noise.
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from .. import usage
from ..errors import InvalidInput
from . import records
from .sentiment import NEGATIVE, POSITIVE, score

RECENT_DAYS = 3
MIN_SAMPLES = 5
DAY = 86400.0


def _fill_sentiment(conn: Any, owner: str, since: float) -> None:
    """Score the user messages not scored yet (once each: the score is stored beside the message)."""
    # the column is the usage schema's (workbench.usage): adding it here made the gateway's 6-value inserts
    # into usage_messages fail ("7 columns but 6 values") from the first insights call on
    todo = conn.execute("SELECT rowid, content FROM usage_messages WHERE owner = ? AND ts >= ? AND role = 'user' "
                        "AND sentiment IS NULL", (owner, since)).fetchall()
    if todo:
        scored = [(score(r[1]), r[0]) for r in todo]  # before the write lock, which then is held briefly
        with usage.immediate(conn):
            conn.executemany("UPDATE usage_messages SET sentiment = ? WHERE rowid = ?", scored)


def _z_mean(recent: list[float], base: list[float]) -> float | None:
    if len(recent) < MIN_SAMPLES or len(base) < MIN_SAMPLES:
        return None
    sd = statistics.pstdev(base) or 1e-9
    return (statistics.fmean(recent) - statistics.fmean(base)) / (sd / math.sqrt(len(recent)))


def _z_prop(k1: int, n1: int, k0: int, n0: int) -> float | None:
    """Two-proportion z-test of k1/n1 (recent) against k0/n0 (before), pooled."""
    if n1 < MIN_SAMPLES or n0 < MIN_SAMPLES:
        return None
    p = (k1 + k0) / (n1 + n0)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n0)) or 1e-9
    return (k1 / n1 - k0 / n0) / se


def _severity(z: float, base: str = "medium") -> str:
    order = ["low", "medium", "high"]
    return order[min(2, order.index(base) + (1 if abs(z) >= 3 else 0))]


def insights(owner: str, lookback_days: int | str | None = 30, now: float | None = None) -> dict[str, Any]:
    try:
        days = int(lookback_days if lookback_days not in (None, "") else 30)
    except (TypeError, ValueError):
        raise InvalidInput("lookback_days must be a whole number of days", field="lookback_days") from None
    if not 1 <= days <= 365:
        raise InvalidInput("lookback_days must be between 1 and 365", field="lookback_days")
    now = now or time.time()
    since = now - days * DAY
    conn = records.connect()
    _fill_sentiment(conn, owner, since)
    points = [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT ts, sentiment, conversation_id FROM usage_messages WHERE owner = ? AND ts >= ? AND role = 'user' "
        "AND sentiment IS NOT NULL", (owner, since))]
    fb = conn.execute("SELECT f.ts, f.rating, f.success, f.sentiment, u.conversation_id FROM feedback f "
                      "CROSS JOIN usage u ON u.id = f.message_id AND u.owner = f.owner WHERE f.owner = ? AND f.ts >= ?",
                      (owner, since)).fetchall()
    points += [(r[0], r[3], r[4]) for r in fb if r[3] is not None]
    detected = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    out: list[dict[str, Any]] = []

    cut = now - RECENT_DAYS * DAY
    recent = [p for p in points if p[0] >= cut]
    base = [p for p in points if p[0] < cut]
    z = _z_mean([p[1] for p in recent], [p[1] for p in base])
    if z is not None and z <= -2:
        m1, m0 = statistics.fmean(p[1] for p in recent), statistics.fmean(p[1] for p in base)
        out.append({"type": "anomaly", "severity": _severity(z), "title": "Sudden Sentiment Drop Detected",
                    "description": f"Average sentiment fell from {m0:+.2f} to {m1:+.2f} (VADER compound) in the past "
                                   f"{RECENT_DAYS} days; z = {z:.1f} against the {days - RECENT_DAYS} days before",
                    "affectedConversations": len({p[2] for p in recent if p[2] and p[1] <= NEGATIVE}),
                    "detectedAt": detected, "zScore": round(z, 2),
                    "recommendation": "Review recent model changes or data quality issues"})

    def negative(r: Any) -> bool:
        return (r[1] is not None and r[1] <= 2) or r[2] == 0 or (r[3] is not None and r[3] <= NEGATIVE)

    def positive(r: Any) -> bool:
        return (r[1] is not None and r[1] >= 4) or r[2] == 1 or (r[1] is None and r[2] is None and r[3] is not None
                                                                  and r[3] >= POSITIVE)

    week = now - 7 * DAY
    this = [r for r in fb if r[0] >= week]
    prev = [r for r in fb if week - 7 * DAY <= r[0] < week]
    zn = _z_prop(sum(map(negative, this)), len(this), sum(map(negative, prev)), len(prev))
    if zn is not None and zn >= 2:
        a, b = 100 * sum(map(negative, prev)) / len(prev), 100 * sum(map(negative, this)) / len(this)
        out.append({"type": "trend", "severity": _severity(zn), "title": "Increasing Negative Feedback",
                    "description": f"Negative feedback rose from {a:.0f}% to {b:.0f}% week over week (z = {zn:.1f})",
                    "affectedConversations": len({r[4] for r in this if r[4] and negative(r)}),
                    "detectedAt": detected, "zScore": round(zn, 2),
                    "recommendation": "Analyze error patterns in recent conversations"})
    zp = _z_prop(sum(map(positive, this)), len(this), sum(map(positive, prev)), len(prev))
    if zp is not None and abs(zp) >= 2:
        a, b = 100 * sum(map(positive, prev)) / len(prev), 100 * sum(map(positive, this)) / len(this)
        if zp > 0:
            out.append({"type": "positive", "severity": "low",
                        "title": "Quality Improvement Detected",
                        "description": f"Success rate improved from {a:.0f}% to {b:.0f}% this week (z = {zp:.1f})",
                        "affectedConversations": len({r[4] for r in this if r[4] and positive(r)}),
                        "detectedAt": detected, "zScore": round(zp, 2),
                        "recommendation": "Document successful strategies for future reference"})
        else:
            out.append({"type": "anomaly", "severity": _severity(zp), "title": "Quality Drop Detected",
                        "description": f"Success rate fell from {a:.0f}% to {b:.0f}% this week (z = {zp:.1f})",
                        "affectedConversations": len({r[4] for r in this if r[4] and not positive(r)}),
                        "detectedAt": detected, "zScore": round(zp, 2),
                        "recommendation": "Compare this week's checkpoints and prompts with last week's"})
    return {"insights": out, "lookbackDays": days,
            "analyzed": {"messages": len(points) - len([r for r in fb if r[3] is not None]), "feedback": len(fb)},
            "method": "VADER compound sentiment; z-score of the recent 3-day mean against the earlier days; "
                      "two-proportion z-tests week over week; |z| >= 2 reported, >= 3 raises the severity"}
