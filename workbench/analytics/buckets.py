"""Time ranges and buckets, in any time zone, DST included.

Bucket starts are local calendar instants (the hour, midnight, Monday's midnight, the 1st of the
month) converted to UTC, so a day in ``Europe/Berlin`` is 23 hours long on the day clocks go
forward. The first bucket starts at ``start`` itself, the last ends at ``end`` (inclusive).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import BadQuery

Granularity = Literal["hour", "day", "week", "month", "all"]
GRANULARITIES = ("hour", "day", "week", "month", "all")


def parse_instant(value: str | None, field: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date-time; a naive one is UTC. A bad or missing one is a 400 naming ``field``.

    ``end_of_day``: a bare date (``2025-11-12``) as an inclusive end means the whole of that day."""
    if not value:
        raise BadQuery(f"{field} is required (ISO 8601, e.g. 2025-11-01T00:00:00Z)", field=field)
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{field} is not an ISO 8601 date: {value!r}", field=field) from None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    if end_of_day and len(value.strip()) == 10:  # a date without a time
        dt += timedelta(days=1, microseconds=-1)
    return dt


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise BadQuery(f"timezone is not an IANA time zone: {name!r}", field="timezone") from None


def _floor(t: datetime, granularity: str) -> datetime:
    if granularity == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next(t: datetime, granularity: str) -> datetime:
    """The next local bucket start (wall-clock arithmetic, then re-resolved in the zone)."""
    naive = t.replace(tzinfo=None)
    if granularity == "hour":
        return (t.astimezone(UTC) + timedelta(hours=1)).astimezone(t.tzinfo)  # real hours, DST or not
    if granularity == "day":
        naive += timedelta(days=1)
    elif granularity == "week":
        naive += timedelta(days=7)
    else:
        naive = naive.replace(year=naive.year + naive.month // 12, month=naive.month % 12 + 1)
    return naive.replace(tzinfo=t.tzinfo)


@dataclass
class Buckets:
    starts: list[float]  # unix seconds, ascending; bucket i is [starts[i], starts[i+1]) (the last to end)
    labels: list[str]  # each bucket's start in the requested zone, ISO 8601 with its offset
    end: float  # inclusive

    def index(self, ts: float) -> int | None:
        if ts < self.starts[0] or ts > self.end:
            return None
        return bisect_right(self.starts, ts) - 1


MAX_BUCKETS = 10_000


def buckets(start: datetime, end: datetime, granularity: str, tz: ZoneInfo) -> Buckets:
    if end < start:
        raise BadQuery("endDate is before startDate", field="endDate")
    if granularity not in GRANULARITIES:
        raise BadQuery(f"granularity must be one of {', '.join(GRANULARITIES)}", field="granularity")
    s, e = start.timestamp(), end.timestamp()
    local = start.astimezone(tz)
    starts, labels = [s], [_label(local)]
    if granularity != "all":
        t = _next(_floor(local, granularity), granularity)
        while t.timestamp() <= e:
            if len(starts) >= MAX_BUCKETS:
                raise BadQuery(f"more than {MAX_BUCKETS} buckets: use a coarser granularity", field="granularity")
            starts.append(t.timestamp())
            labels.append(_label(t))
            t = _next(t, granularity)
    return Buckets(starts, labels, e)


def _label(t: datetime) -> str:
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
