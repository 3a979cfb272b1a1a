"""The usage records of a date range as CSV or JSONL, streamed (a month of records never sits in memory),
each row with its feedback."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from ..errors import InvalidInput
from . import records
from .buckets import parse_instant

FORMATS = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
COLUMNS = ("id", "ts", "owner", "deployment_id", "model", "provider", "base_model", "job_id", "checkpoint",
           "conversation_id", "end_user", "tier", "route", "stream", "input_tokens", "output_tokens", "latency_ms",
           "ttft_ms", "success", "error", "cost_micro", "rating", "feedback_success", "comment", "sentiment")


def export(owner: str, start: str | None, end: str | None, fmt: str | None) -> tuple[Iterator[bytes], str]:
    """``(chunks, media type)``; the range and format are checked before the first byte."""
    fmt = fmt or "csv"
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", field="format")
    s, e = parse_instant(start, "startDate").timestamp(), parse_instant(end, "endDate", end_of_day=True).timestamp()
    if e < s:
        raise InvalidInput("endDate is before startDate", field="endDate")

    def rows() -> Iterator[dict]:
        cur = records.connect().execute(
            f"SELECT {', '.join('u.' + c for c in COLUMNS[:21])}, f.rating, f.success AS feedback_success, f.comment, "
            "f.sentiment FROM usage u LEFT JOIN feedback f ON f.message_id = u.id AND f.owner = u.owner "
            "WHERE u.owner = ? AND u.ts >= ? AND u.ts <= ? ORDER BY u.ts", (owner, s, e))
        while batch := cur.fetchmany(2000):
            yield from (dict(r) for r in batch)

    def csv_chunks() -> Iterator[bytes]:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS)
        w.writeheader()
        for i, r in enumerate(rows(), 1):
            w.writerow(r)
            if i % 2000 == 0:
                yield buf.getvalue().encode()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue().encode()

    def jsonl_chunks() -> Iterator[bytes]:
        for r in rows():
            yield (json.dumps(r) + "\n").encode()

    return (csv_chunks() if fmt == "csv" else jsonl_chunks()), FORMATS[fmt]
