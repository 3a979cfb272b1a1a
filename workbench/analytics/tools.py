"""The analytics assistant's tools: real functions over the caller's data, described for the model.

Each tool is a JSON-schema'd function (OpenAI's ``tools`` format) and a Python function
``(owner, args) -> dict``. Every call is timed and recorded (:func:`records.record_tool_call`), which
is what the data endpoint's ``tools`` metric shows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import InvalidInput, WorkbenchError
from ..usage import MICRO
from . import evaluation, records
from .buckets import parse_instant, zone
from .calculator import calculate

Tool = Callable[[str, dict[str, Any]], dict[str, Any]]


def _calculator(owner: str, a: dict[str, Any]) -> dict[str, Any]:
    return calculate(str(a.get("expression", "")))


def _datetime(owner: str, a: dict[str, Any]) -> dict[str, Any]:
    op = a.get("operation", "now")
    tz = zone(a.get("timezone"))
    if op == "now":
        return {"now": datetime.now(tz).isoformat()}
    if op == "convert":
        t = parse_instant(a.get("datetime"), "datetime")
        return {"datetime": t.astimezone(zone(a.get("to_timezone"))).isoformat()}
    if op == "add":
        t = parse_instant(a.get("datetime"), "datetime")
        delta = timedelta(days=float(a.get("days", 0)), hours=float(a.get("hours", 0)),
                          minutes=float(a.get("minutes", 0)))
        return {"datetime": (t + delta).astimezone(tz).isoformat()}
    if op == "diff":
        t1, t2 = parse_instant(a.get("datetime"), "datetime"), parse_instant(a.get("other"), "other")
        s = (t2 - t1).total_seconds()
        return {"seconds": s, "hours": s / 3600, "days": s / 86400}
    raise InvalidInput("datetime operation must be now, convert, add or diff", field="operation")


def _system_monitor(owner: str, a: dict[str, Any]) -> dict[str, Any]:
    import psutil

    mem = psutil.virtual_memory()
    disk = shutil.disk_usage(os.path.expanduser("~"))
    out: dict[str, Any] = {"cpu_percent": psutil.cpu_percent(interval=0.1), "cpu_count": psutil.cpu_count(),
                           "memory": {"total_gb": round(mem.total / 2**30, 2), "used_percent": mem.percent},
                           "disk": {"free_gb": round(disk.free / 2**30, 2)}, "gpus": []}
    if shutil.which("nvidia-smi"):
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,utilization.gpu,memory.used,memory.total",
                                "--format=csv,noheader,nounits"], check=False, capture_output=True, text=True,
                               timeout=5)
            for line in q.stdout.strip().splitlines():
                name, util, used, total = (x.strip() for x in line.split(","))
                out["gpus"].append({"name": name, "utilization_percent": float(util), "memory_used_mb": float(used),
                                    "memory_total_mb": float(total)})
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return out


def _conv_ids(a: dict[str, Any]) -> list[str]:
    ids = a.get("conversation_ids") or a.get("conversationIds") or []
    if not isinstance(ids, list) or not ids:
        raise InvalidInput("conversation_ids: give one or more conversation ids", field="conversation_ids")
    return [str(i) for i in ids][:200]


def _session_evaluations(owner: str, a: dict[str, Any]) -> dict[str, Any]:
    ids = _conv_ids(a)
    rows = records.connect().execute(
        "SELECT u.conversation_id, f.message_id, f.rating, f.success, f.comment, f.sentiment FROM feedback f JOIN usage u "
        f"ON u.id = f.message_id AND u.owner = f.owner WHERE f.owner = ? AND u.conversation_id IN ({','.join('?' * len(ids))})",
        [owner, *ids]).fetchall()
    return {"evaluations": [dict(r) for r in rows]}


def _session_metrics(owner: str, a: dict[str, Any]) -> dict[str, Any]:
    ids = _conv_ids(a)
    rows = records.connect().execute(
        "SELECT conversation_id, COUNT(*) AS messages, SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS "
        "output_tokens, SUM(cost_micro) AS cost_micro, AVG(latency_ms) AS avg_latency_ms, SUM(1 - success) AS errors "
        f"FROM usage WHERE owner = ? AND conversation_id IN ({','.join('?' * len(ids))}) GROUP BY conversation_id",
        [owner, *ids]).fetchall()
    return {"sessions": [{**{k: v for k, v in dict(r).items() if k != "cost_micro"}, "cost": r["cost_micro"] / MICRO}
                         for r in rows]}


def _session_conversations(owner: str, a: dict[str, Any]) -> dict[str, Any]:
    ids = _conv_ids(a)
    rows = records.connect().execute(
        "SELECT conversation_id, message_id, ts, role, content FROM usage_messages WHERE owner = ? AND "
        f"conversation_id IN ({','.join('?' * len(ids))}) ORDER BY ts, rowid", [owner, *ids]).fetchall()
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["conversation_id"], []).append({"message_id": r["message_id"], "role": r["role"],
                                                          "content": r["content"][:4000], "ts": r["ts"]})
    return {"conversations": out}


def _training_control(owner: str, a: dict[str, Any]) -> dict[str, Any]:
    """The core's own services, with the caller's identity: nothing here bypasses a permission or a quota."""
    from ..configs import ConfigService
    from ..datasets import DatasetService
    from ..jobs.service import JobService

    action = a.get("action")
    if action == "list_configs":
        return {"configs": [{"id": c["id"], "name": c.get("name")} for c in ConfigService().list(owner)]}
    if action == "list_datasets":
        return {"datasets": [{"id": d["id"], "name": d.get("name"), "rows": d.get("rows")}
                             for d in DatasetService().list(owner)]}
    if action == "start_training":
        if not a.get("dataset"):
            raise InvalidInput("start_training needs a dataset (attach one by its id)", field="dataset")
        job = JobService().start(a.get("model"), str(a["dataset"]), a.get("config"), owner=owner)
        return {"job_id": job["id"], "status": job.get("status")}
    raise InvalidInput("action must be list_configs, list_datasets or start_training", field="action")


def _schema(desc: str, props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"description": desc, "parameters": {"type": "object", "properties": props, "required": required or []}}


_RANGE = {"startDate": {"type": "string", "description": "ISO 8601"}, "endDate": {"type": "string"}}
_CONVS = {"conversation_ids": {"type": "array", "items": {"type": "string"}}}
TOOLS: dict[str, tuple[Tool, dict[str, Any]]] = {
    "calculator": (_calculator, _schema("Exact arithmetic (fractions, never floating error): + - * / // % ** sqrt",
                                        {"expression": {"type": "string"}}, ["expression"])),
    "evaluation_metrics": (lambda o, a: evaluation.run(o, a), _schema(
        "Quality, success, errors, sentiment, trends and anomalies of the usage data",
        {"operation": {"type": "string", "enum": list(evaluation.OPERATIONS)}, **_RANGE,
         "compare_startDate": {"type": "string"}, "compare_endDate": {"type": "string"},
         "horizon_days": {"type": "integer"}}, ["operation"])),
    "datetime": (_datetime, _schema("Current time, time-zone conversion, date arithmetic",
                                    {"operation": {"type": "string", "enum": ["now", "convert", "add", "diff"]},
                                     "datetime": {"type": "string"}, "other": {"type": "string"},
                                     "timezone": {"type": "string"}, "to_timezone": {"type": "string"},
                                     "days": {"type": "number"}, "hours": {"type": "number"},
                                     "minutes": {"type": "number"}}, ["operation"])),
    "system_monitor": (_system_monitor, _schema("CPU, memory, disk and GPU of the workbench's machine", {})),
    "get_session_evaluations": (_session_evaluations, _schema("Ratings and feedback of conversations", _CONVS,
                                                              ["conversation_ids"])),
    "get_session_metrics": (_session_metrics, _schema("Tokens, cost and latency of conversations", _CONVS,
                                                      ["conversation_ids"])),
    "get_session_conversations": (_session_conversations, _schema("The messages of conversations", _CONVS,
                                                                  ["conversation_ids"])),
    "training_control": (_training_control, _schema(
        "List configs and datasets, or start a training job on a dataset",
        {"action": {"type": "string", "enum": ["list_configs", "list_datasets", "start_training"]},
         "model": {"type": "string"}, "dataset": {"type": "string"}, "config": {"type": "string"}}, ["action"])),
}


def openai_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": name, **spec}} for name, (_, spec) in TOOLS.items()]


def call(owner: str, name: str, args: dict[str, Any], session_id: str | None = None) -> dict[str, Any]:
    """Run one tool; an error becomes ``{"error": …}`` for the model to read, and is recorded as a failure."""
    if name not in TOOLS:
        raise InvalidInput(f"unknown tool {name!r}; tools: {', '.join(TOOLS)}", field="tool")
    t = time.perf_counter()
    try:
        out = TOOLS[name][0](owner, args if isinstance(args, dict) else {})
        ok, err = True, None
    except WorkbenchError as exc:
        out, ok, err = {"error": exc.message, "field": exc.field}, False, exc.message
    except Exception as exc:  # noqa: BLE001 - a tool's failure is the model's to read, never the server's crash
        out, ok, err = {"error": f"{type(exc).__name__}: {exc}"}, False, str(exc)
    records.record_tool_call(owner, name, (time.perf_counter() - t) * 1000, ok, err, session_id)
    return out


def now_utc() -> str:
    return datetime.now(UTC).isoformat()
