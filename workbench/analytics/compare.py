"""Usage joined back to training: quality, cost and latency per fine-tuned model and per checkpoint.

Every usage row names the deployment's job and checkpoint, and feedback names the reply, so the
comparison groups by (model, job, checkpoint). No observability tool can do this: none trained the model.
"""

from __future__ import annotations

from typing import Any

from ..usage import MICRO, percentile
from . import records
from .buckets import parse_instant


def by_model(owner: str, start: str | None, end: str | None) -> dict[str, Any]:
    s, e = parse_instant(start, "startDate").timestamp(), parse_instant(end, "endDate", end_of_day=True).timestamp()
    conn = records.connect()
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in conn.execute("SELECT u.model, COALESCE(u.job_id, ''), COALESCE(u.checkpoint, ''), u.success, "
                          "u.input_tokens, u.output_tokens, u.cost_micro, u.latency_ms, f.rating, f.success AS verdict "
                          "FROM usage u LEFT JOIN feedback f ON f.message_id = u.id AND f.owner = u.owner "
                          "WHERE u.owner = ? AND u.ts >= ? AND u.ts <= ?", (owner, s, e)):
        g = groups.setdefault((r[0], r[1], r[2]), {"requests": 0, "errors": 0, "tokens": 0, "cost_micro": 0,
                                                   "latency": [], "ratings": [], "verdicts": [], "evaluations": 0})
        g["requests"] += 1
        g["errors"] += 1 - r[3]
        g["tokens"] += r[4] + r[5]
        g["cost_micro"] += r[6]
        if r[7] is not None:
            g["latency"].append(r[7])
        g["evaluations"] += int(r[8] is not None or r[9] is not None)
        if r[8] is not None:
            g["ratings"].append(r[8])
        if r[9] is not None:
            g["verdicts"].append(r[9])
    rows = []
    for (model, job, ckpt), g in sorted(groups.items()):
        lat = sorted(g["latency"])
        rows.append({"modelId": model, "jobId": job or None, "checkpoint": ckpt or None, "requests": g["requests"],
                     "errorRate": round(100 * g["errors"] / g["requests"], 2), "tokens": g["tokens"],
                     "cost": g["cost_micro"] / MICRO, "costPerMessage": round(g["cost_micro"] / MICRO / g["requests"], 8),
                     "latencyP50Ms": _r(percentile(lat, 50)), "latencyP95Ms": _r(percentile(lat, 95)),
                     "evaluations": g["evaluations"],
                     "rating": _r(sum(g["ratings"]) / len(g["ratings"])) if g["ratings"] else None,
                     "successRate": _r(100 * sum(g["verdicts"]) / len(g["verdicts"])) if g["verdicts"] else None})
    return {"models": rows}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
