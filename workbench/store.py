"""Metadata store: TinyDB made safe for many processes.

The server, notebook kernels, job runners and the CLI all read and write the same
``store.json``. Two things make that safe:

* every operation runs inside :meth:`Store.transaction`, which holds a cross-process
  file lock (``flock``) for the whole read-modify-write, and builds a fresh TinyDB
  with query caching off, so no process acts on another's stale view;
* :class:`AtomicJSONStorage` writes to a temp file, fsyncs it and renames it over the
  original, so a crash mid-write leaves either the old or the new file, never half of one.

Every record carries an ``id`` and an ``owner`` (user id) so front-ends can isolate users.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock
from tinydb import Query, TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

from . import home
from .errors import NotFound


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers only ever see the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def append_bytes(path: Path, data: bytes) -> None:
    """Append in one ``write()`` with O_APPEND: concurrent readers and appenders never see lines interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, default=str).encode())


class AtomicJSONStorage(Storage):
    """TinyDB storage that never leaves a truncated file behind."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return json.loads(raw) if raw.strip() else None

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        atomic_write_bytes(self.path, json.dumps(data, separators=(",", ":")).encode())

    def close(self) -> None:
        pass


class Transaction:
    """A locked view of the store; tables are created fresh so no cache goes stale."""

    def __init__(self, db: TinyDB):
        self.db = db

    def table(self, name: str) -> Table:
        return self.db.table(name, cache_size=0)

    def get(self, table: str, record_id: str) -> dict[str, Any] | None:
        doc = self.table(table).get(Query().id == record_id)
        return dict(doc) if doc is not None else None

    def insert(self, table: str, record: dict[str, Any]) -> dict[str, Any]:
        self.table(table).insert(record)
        return record

    def update(self, table: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        t = self.table(table)
        if not t.update(fields, Query().id == record_id):
            raise NotFound(f"{table} record '{record_id}' not found", field="id")
        return dict(t.get(Query().id == record_id))  # type: ignore[arg-type]

    def delete(self, table: str, record_id: str) -> bool:
        return bool(self.table(table).remove(Query().id == record_id))

    def all(self, table: str, owner: str | None = None) -> list[dict[str, Any]]:
        docs = self.table(table).all()
        return [dict(d) for d in docs if owner is None or d.get("owner") == owner]

    def search(self, table: str, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [dict(d) for d in self.table(table).all() if pred(d)]


class Store:
    """Process-safe access to ``store.json``.

    Writes (and every read-modify-write) run in one locked :meth:`transaction`. Plain
    reads (:meth:`get`, :meth:`all`) take no lock: writes are atomic renames, so a reader
    always sees a whole file, and a parsed snapshot is reused until the file changes
    (new inode, size or mtime) — status polling then costs a ``stat``, not a parse.
    """

    def __init__(self, path: str | Path | None = None, *, timeout: float = 60.0):
        self.path = Path(path) if path else home.store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", timeout=timeout)
        # Threads of one process queue here first, so they don't poll the file lock.
        self._thread_lock = threading.RLock()
        self._snap_key: tuple[int, int, int] | None = None
        self._snap: dict[str, dict[str, dict[str, Any]]] = {}

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._thread_lock, self._lock:
            db = TinyDB(self.path, storage=AtomicJSONStorage)
            yield Transaction(db)

    def _snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{table: {record_id: record}}`` of the file as it is now, parsed once per version."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._thread_lock:
            if key != self._snap_key:
                raw = AtomicJSONStorage(self.path).read() or {}
                self._snap = {t: {d["id"]: d for d in docs.values() if "id" in d} for t, docs in raw.items()}
                self._snap_key = key
            return self._snap

    def get(self, table: str, record_id: str) -> dict[str, Any] | None:
        rec = self._snapshot().get(table, {}).get(record_id)
        return copy.deepcopy(rec) if rec is not None else None

    def require(self, table: str, record_id: str, owner: str | None = None) -> dict[str, Any]:
        """The record, or NotFound — also when it belongs to another owner, so ids don't leak."""
        rec = self.get(table, record_id)
        if rec is None or (owner is not None and rec.get("owner") != owner):
            raise NotFound(f"{table.rstrip('s')} '{record_id}' not found", field="id")
        return rec

    def insert(self, table: str, record: dict[str, Any]) -> dict[str, Any]:
        with self.transaction() as tx:
            return tx.insert(table, record)

    def update(self, table: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        with self.transaction() as tx:
            return tx.update(table, record_id, fields)

    def delete(self, table: str, record_id: str) -> bool:
        with self.transaction() as tx:
            return tx.delete(table, record_id)

    def all(self, table: str, owner: str | None = None) -> list[dict[str, Any]]:
        docs = self._snapshot().get(table, {}).values()
        return [copy.deepcopy(d) for d in docs if owner is None or d.get("owner") == owner]


_stores: dict[Path, Store] = {}


def get_store() -> Store:
    """The store of the current ``WORKBENCH_HOME`` (one instance per path per process)."""
    path = home.store_path()
    if path not in _stores:
        _stores[path] = Store(path)
    return _stores[path]
