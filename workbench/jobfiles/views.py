"""A job's metrics history as rendered JSON bodies, kept current by reading only new bytes.

The one reader of step rows for every consumer that wants them whole: the REST routes
(``/api/training/metrics/{id}``: the train events; ``/api/training/local/{id}/metrics``: the
step rows), :meth:`workbench.jobs.service.JobService.rows` and, through the server, the
remote widgets. A finished job's 100k-point history is parsed once and then served from
memory; a running job's costs only its new lines per request.

``kind`` is ``"train"`` (``{"job_id", "metrics": [train events], "total_points"}``) or
``"local"`` (``{"job_id", "metrics": [rows]}``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .events import parse_line
from .layout import EVENTS, ROWS
from .rows import fold_rows, merge, step_of, tail_rows


def _events(data: bytes) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Each complete line's event, one at a time: holding 100k parsed events (or tuples of them) at
    once would make the cyclic GC scan them again and again, doubling the time of a long history."""
    loads = orjson.loads
    for line in data.splitlines():
        if len(line) > 2:
            try:
                ev = loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(ev, dict):
                yield line, ev


def _body_head(job_id: str) -> bytes:
    return b'{"job_id":' + orjson.dumps(job_id) + b',"metrics":['


class _View:
    """One job's rendered history, kept current by reading only what was appended since last time.

    ``metrics.jsonl`` only grows, so bytes once read never change. The rows are held rendered
    (``done``: JSON objects joined by commas, rendered in one ``orjson.dumps`` per request that
    brings new lines) plus the last row as a dict, since the eval of its step may still come.
    A line still being written waits for the next request. Should an event go back to an
    earlier step (a resumed run logging a step again), the view is rebuilt from the start.
    """

    def __init__(self, kind: str, job_id: str, inode: int):
        self.kind = kind
        self.job_id = job_id
        self.inode = inode
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.done: list[bytes | memoryview] = []  # rendered rows, comma-joined within each chunk
        self.count = 0
        self.last: dict[str, Any] | None = None
        self.body: bytes | None = None

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.done) + (len(self.body) if self.body else 0)

    def update(self, path: Path, size: int) -> bytes:
        if size > self.offset:
            with open(path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(size - self.offset)
            end = data.rfind(b"\n") + 1
            if end:
                read_to = self.offset + end
                chunk = memoryview(data)[:end].tobytes() if end < len(data) else data
                self.body = None
                if self.kind == "train":
                    self._append_train(chunk)
                elif not self._append_rows(chunk):
                    self._rebuild(path, read_to)
                self.offset = read_to
        if self.body is None:
            self.body = self._render()
        return self.body

    def _extend(self, rendered: bytes | memoryview, n: int) -> None:
        if n:
            self.done.append(rendered)
            self.count += n

    def _append_train(self, data: bytes) -> None:
        """Train events as they are in the file: a line that parsed is valid JSON, no need to re-render it."""
        lines = [line.strip() for line, ev in _events(data) if ev.get("type") == "train"]
        self._extend(b",".join(lines), len(lines))

    def _append_rows(self, data: bytes) -> bool:
        """Fold new events into rows; False when one goes back before the last row (rebuild needed)."""
        rows: dict[int, dict[str, Any]] = {}
        top = None
        if self.last is not None:
            top = self.last["step"]
            rows[top] = self.last
        for _, ev in _events(data):
            step = step_of(ev)
            if step is None:
                continue
            if top is not None and step < top and step not in rows:
                return False
            merge(rows, ev, step, self.job_id)
            if top is None or step > top:
                top = step
        self._settle(list(rows.values()))
        return True

    def _settle(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._extend(memoryview(orjson.dumps(rows[:-1]))[1:-1], len(rows) - 1)  # no copy: drop the brackets
            self.last = rows[-1]

    def _rebuild(self, path: Path, size: int) -> None:
        with open(path, "rb") as fh:
            data = fh.read(size)
        self._reset()
        self._settle(fold_rows((ev for _, ev in _events(data)), self.job_id))

    def _render(self) -> bytes:
        """One copy of the rows into the body (``join``), however many chunks they arrived in."""
        rows = list(self.done)
        if self.last is not None:
            rows.append(orjson.dumps(self.last))
        parts: list[bytes | memoryview] = [_body_head(self.job_id)]
        for i, chunk in enumerate(rows):
            if i:
                parts.append(b",")
            parts.append(chunk)
        if self.kind == "train":
            parts.append(b'],"total_points":' + str(self.count).encode() + b"}")
        else:
            parts.append(b"]}")
        return b"".join(parts)


class _HistoryView:
    """The local history of a job that writes ``history.jsonl``: its rows are already rendered.

    The file only grows (a rewrite is a new inode), so each request reads just its new bytes,
    turns newlines into commas, and adds the rows of the events logged since its last row.
    """

    def __init__(self, kind: str, job_id: str, inode: int):
        self.kind = kind
        self.job_id = job_id
        self.inode = inode
        self.lock = threading.Lock()
        self.offset = 0
        self.done: list[bytes] = []
        self.last_step: int | None = None
        self.seal = b""
        self.key: tuple[int, int] | None = None
        self.body: bytes | None = None

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.done) + (len(self.body) if self.body else 0)

    def update(self, path: Path, size: int) -> bytes:
        metrics = path.parent / EVENTS
        try:
            msize = os.stat(metrics).st_size
        except FileNotFoundError:
            msize = 0
        if self.body is not None and self.key == (size, msize):
            return self.body
        with open(path, "rb") as fh:
            if self.offset and os.pread(fh.fileno(), len(self.seal), self.offset - len(self.seal)) != self.seal:
                self.offset, self.done, self.last_step = 0, [], None  # rewritten under a recycled inode
            if size > self.offset:
                fh.seek(self.offset)
                data = fh.read(size - self.offset)
                end = data.rfind(b"\n")
                if end >= 0:
                    self.offset += end + 1
                    self.done.append(data[:end].replace(b"\n", b","))
                    self.seal = data[data.rfind(b"\n", 0, end) + 1:end + 1]  # the last row, as read
                    last = parse_line(self.seal)
                    self.last_step = last.get("step") if last else None
        tail = tail_rows(metrics, self.last_step, self.job_id)
        parts = [_body_head(self.job_id), b",".join(self.done)]
        if tail:
            parts.append((b"," if self.done else b"") + orjson.dumps(tail)[1:-1])
        parts.append(b"]}")
        self.body, self.key = b"".join(parts), (size, msize)
        return self.body


class MetricsBodies:
    """The rendered metrics histories of recently asked-for jobs, bounded by memory (LRU).

    A finished job's 100k-point history is parsed once and then served from memory; a running
    job's costs only its new lines per request.
    """

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self.views: OrderedDict[tuple[str, str], _View] = OrderedDict()
        self.lock = threading.Lock()

    def body(self, kind: str, job_id: str, path: Path) -> bytes:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return _View(kind, job_id, 0).update(path, 0)
        factory: Any = _View
        if kind == "local":
            try:
                hpath = path.parent / ROWS
                st, path, factory = os.stat(hpath), hpath, _HistoryView
            except FileNotFoundError:
                pass  # a job from before history.jsonl: fold its events here
        key = (kind, str(path))
        with self.lock:
            view = self.views.get(key)
            if view is None or view.inode != st.st_ino or st.st_size < view.offset:  # a new or replaced file
                view = self.views[key] = factory(kind, job_id, st.st_ino)
            self.views.move_to_end(key)
        with view.lock:
            body = view.update(path, st.st_size)
        self._evict()
        return body

    def _evict(self) -> None:
        with self.lock:
            total = sum(v.size for v in self.views.values())
            while total > self.max_bytes and len(self.views) > 1:
                _, view = self.views.popitem(last=False)
                total -= view.size


BODIES = MetricsBodies()
