"""Follow a job live: new metrics events as they are appended, plus status changes.

Each item has ``kind``: ``"status"`` (the record's status changed) or ``"metric"``
(one ``metrics.jsonl`` event, whose own ``type`` is train/eval/checkpoint/status/diverged;
a line that does not parse is skipped).

One generator feeds the CLI progress bar, the server's SSE/WebSocket streams and the
widgets, so "live" means the same thing everywhere. It tails ``metrics.jsonl`` by byte
offset (never re-reading history) and polls the record's status.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..job_states import FINAL
from ..jobfiles import job_folder
from ..jobfiles.events import parse_line
from ..records import LOCAL_USER


def watch(service: Any, job_id: str, owner: str = LOCAL_USER, *, poll: float = 0.25,
          stop_on: set[str] = FINAL, from_start: bool = True, timeout: float | None = None) -> Iterator[dict[str, Any]]:
    path = job_folder(job_id).events
    offset = 0 if from_start else (path.stat().st_size if path.exists() else 0)
    last_status = None
    buf = b""
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        rec = service.get(job_id, owner)
        if rec["status"] != last_status:
            last_status = rec["status"]
            yield {"kind": "status", "status": last_status, "error": rec.get("error")}
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                ev = parse_line(line) if line.strip() else None
                if ev is not None:  # a corrupt line is skipped: it must never end a live stream
                    yield {"kind": "metric", **ev}
        elif last_status in stop_on:
            return
        if deadline and time.monotonic() > deadline:
            return
        if not chunk:
            time.sleep(poll)
