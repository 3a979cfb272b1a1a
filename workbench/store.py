"""Metadata store: TinyDB made safe for many processes.

The server, notebook kernels, job runners and the CLI all read and write the same
``store.json``. Two things make that safe:

* every operation runs inside :meth:`Store.transaction`, which holds a cross-process
  file lock (``flock``) for the whole read-modify-write and reads the file afresh
  (query caching off), so no process acts on another's stale view. A transaction is
  all or nothing: it works on an in-memory copy and writes the file once, at its end;
  one that raises writes nothing;
* :class:`AtomicJSONStorage` writes to a temp file, fsyncs it and renames it over the
  original, so a crash mid-write leaves either the old or the new file, never half of one.

Every record carries an ``id`` and an ``owner`` (user id) so front-ends can isolate users.
"""

from __future__ import annotations

import copy
import errno
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


class DiskFull(OSError):
    """A write did not fit on the disk (ENOSPC, or a short write). ``str()`` says "disk full"."""


def _disk_full(path: Path, cause: str) -> DiskFull:
    return DiskFull(errno.ENOSPC, f"disk full: {cause}", str(path))


def append_bytes(path: Path, data: bytes) -> None:
    """Append in one ``write()`` with O_APPEND: concurrent readers and appenders never see lines interleave.

    A write the disk cannot take raises :class:`DiskFull`; a short write is cut back off the
    file first (when nothing was appended after it), so a line log keeps only whole lines.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        try:
            written = os.write(fd, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(path, f"no space left to append {len(data)} bytes") from exc
            raise
        if written != len(data):
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: just past the bytes this write added
            try:
                if os.fstat(fd).st_size == end:
                    os.ftruncate(fd, end - written)
            except OSError:
                pass
            raise _disk_full(path, f"only {written} of {len(data)} bytes could be appended")
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


class BufferedStorage(Storage):
    """A transaction's working copy: the store file's JSON text, held in memory.

    Each read parses it afresh, as reading the file did, so callers never share objects
    with the buffer; writes replace the text and mark it dirty for the commit.
    """

    def __init__(self, raw: str | None):
        self.raw = raw
        self.dirty = False

    def read(self) -> dict[str, dict[str, Any]] | None:
        return json.loads(self.raw) if self.raw and self.raw.strip() else None

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self.raw = json.dumps(data, separators=(",", ":"))
        self.dirty = True

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
        self._active: Transaction | None = None  # the open transaction (of the thread holding _thread_lock)
        self._snap_key: tuple[int, int, int] | None = None
        self._snap: dict[str, dict[str, dict[str, Any]]] = {}
        # Snapshot reads have their own lock: they never wait behind a transaction (which may wait on the file lock).
        self._snap_lock = threading.RLock()
        self._indexes: dict[tuple[Any, str, str], dict[Any, dict[str, Any]]] = {}

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All or nothing: the block works on an in-memory copy of the file, written back once,
        atomically, when it exits without an exception; nothing is written when it raises.

        A transaction opened inside another one in the same thread joins it.
        """
        with self._thread_lock:
            if self._active is not None:  # only this thread can hold the re-entrant lock: a nested call
                yield self._active
                return
            with self._lock:
                try:
                    raw: str | None = self.path.read_bytes().decode()
                except FileNotFoundError:
                    raw = None
                db = TinyDB(raw, storage=BufferedStorage)
                self._active = Transaction(db)
                try:
                    yield self._active
                finally:
                    self._active = None
                buffer: BufferedStorage = db.storage  # type: ignore[assignment]
                if buffer.dirty and buffer.raw is not None:
                    atomic_write_bytes(self.path, buffer.raw.encode())

    def _snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{table: {record_id: record}}`` of the file as it is now, parsed once per version."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._snap_lock:
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

    def lookup(self, table: str, field: str, value: Any) -> dict[str, Any] | None:
        """The record whose ``field`` equals ``value``, from an index built once per snapshot.

        No lock and O(1) per call, so a flood of lookups (unknown tokens) costs a stat each.
        The returned record is shared with the snapshot: read it, don't change it.
        """
        with self._snap_lock:  # re-entrant: the snapshot and its key are read together
            self._snapshot()
            key = (self._snap_key, table, field)
            index = self._indexes.get(key)
            if index is None:
                self._indexes = {k: v for k, v in self._indexes.items() if k[0] == self._snap_key}
                index = {d.get(field): d for d in self._snap.get(table, {}).values()}
                self._indexes[key] = index
        return index.get(value)


_stores: dict[Path, Store] = {}


def get_store() -> Store:
    """The store of the current ``WORKBENCH_HOME`` (one instance per path per process)."""
    path = home.store_path()
    if path not in _stores:
        _stores[path] = Store(path)
    return _stores[path]


def build_folder_once(dest: Path, build: Callable[[Path], None], *, is_built: Callable[[Path], bool],
                      replaceable: Callable[[Path], bool], what: str) -> Path:
    """``dest``, built by ``build(tmp)`` on first use only: a folder is published whole or not at all.

    Safe across processes: a file lock makes one process build while the others wait, and the
    build goes to a temp folder renamed into place. A stale build (``replaceable``) is moved out
    of the way first; anything else already at ``dest`` is a user's own files: a Conflict.
    """
    import shutil

    from .errors import Conflict

    dest = Path(dest).expanduser().resolve()
    if is_built(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest.parent / f".{dest.name}.lock"), timeout=900):
        if is_built(dest):
            return dest
        if (dest.exists() or dest.is_symlink()) and not replaceable(dest):
            raise Conflict(f"{dest} exists and is not a {what}; remove it or choose another folder", field="dest")
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.build-"))
        tmp.chmod(0o755)  # mkdtemp makes it private; a published model is an ordinary readable folder
        try:
            build(tmp)
            if replaceable(dest):
                trash = dest.with_name(f".{dest.name}.old-{os.getpid()}")
                os.rename(dest, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
