"""Server-sent events, read line by line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Events from SSE lines (WHATWG rules: ``:`` comments, multi-line ``data``, a blank line ends
    an event, ``id`` is the last event id seen so far)."""
    event, data, event_id = None, [], None
    for line in lines:
        if not line:
            if data:
                raw = "\n".join(data)
                try:
                    payload: Any = json.loads(raw)
                except ValueError:
                    payload = raw
                yield {"event": event or "message", "data": payload, "id": event_id}
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
