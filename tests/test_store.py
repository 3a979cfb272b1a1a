"""The metadata store is safe for many processes and survives crashes mid-write."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from workbench.store import Store

WRITERS, WRITES = 8, 200


def _increment(path: str, worker: int) -> None:
    store = Store(path)
    for i in range(WRITES):
        with store.transaction() as tx:
            rec = tx.get("counters", "c")
            tx.update("counters", "c", {"n": rec["n"] + 1})
        store.insert("events", {"id": f"w{worker}-{i}", "owner": "u"})


def test_concurrent_read_modify_write_loses_no_update(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    Store(path).insert("counters", {"id": "c", "n": 0})
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(str(path), w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    store = Store(path)
    assert store.get("counters", "c")["n"] == WRITERS * WRITES
    assert len(store.all("events")) == WRITERS * WRITES
    assert len({e["id"] for e in store.all("events")}) == WRITERS * WRITES


WRITER = """
import sys
from workbench.store import Store
s = Store(sys.argv[1])
i = 0
while True:
    s.insert("blobs", {"id": f"b{i}", "owner": "u", "data": "x" * 20000})
    i += 1
"""


def test_file_stays_readable_after_kill_during_write(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        data = json.loads(path.read_text())  # never truncated or half-written
        assert len(data["blobs"]) > 0
        assert Store(path).get("blobs", "b0")["owner"] == "u"
    assert not list(tmp_path.glob(".store.json.*.tmp.leftover"))


def test_records_are_isolated_by_owner(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.json")
    store.insert("things", {"id": "a", "owner": "alice"})
    store.insert("things", {"id": "b", "owner": "bob"})
    assert [r["id"] for r in store.all("things", "alice")] == ["a"]
    import pytest

    from workbench.errors import NotFound

    with pytest.raises(NotFound):
        store.require("things", "b", owner="alice")


def test_a_transaction_that_raises_writes_nothing(tmp_path: Path) -> None:
    import pytest

    path = tmp_path / "store.json"
    store = Store(path)
    store.insert("users", {"id": "u0", "owner": "u0"})
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.insert("users", {"id": "u1", "owner": "u1"})
            tx.update("users", "u0", {"name": "changed"})
            assert tx.get("users", "u1") is not None  # the transaction sees its own writes
            raise RuntimeError("crash between two writes")
    assert path.read_bytes() == before
    assert Store(path).all("users") == [{"id": "u0", "owner": "u0"}]


def test_a_transaction_writes_the_file_once_when_it_ends(tmp_path: Path, monkeypatch) -> None:
    import workbench.store as store_mod

    path = tmp_path / "store.json"
    store = Store(path)
    writes: list[Path] = []
    real = store_mod.atomic_write_bytes
    monkeypatch.setattr(store_mod, "atomic_write_bytes", lambda p, data: (writes.append(p), real(p, data)))
    with store.transaction() as tx:
        tx.insert("users", {"id": "u1", "owner": "u1"})
        tx.insert("tokens", {"id": "t1", "user_id": "u1"})
        with store.transaction() as inner:  # a nested transaction joins the outer one
            inner.update("users", "u1", {"name": "alice"})
        assert writes == [] and store.get("users", "u1") is None  # readers see nothing before the commit
    assert writes == [path]
    assert store.get("users", "u1")["name"] == "alice" and store.get("tokens", "t1")["user_id"] == "u1"
    with store.transaction() as tx:  # a read-only transaction writes nothing
        tx.all("users")
    assert writes == [path]


def _short_writes(monkeypatch, keep: int | None) -> None:
    """os.write as on a full disk: the first ``keep`` bytes land and the count says so, or ENOSPC."""
    import errno

    import workbench.store as store_mod

    real = store_mod.os.write

    def write(fd: int, data: bytes) -> int:
        if keep is None:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, bytes(data[:keep]))

    monkeypatch.setattr(store_mod.os, "write", write)


def test_append_on_a_full_disk_raises_disk_full_and_leaves_only_whole_lines(tmp_path: Path, monkeypatch) -> None:
    import pytest

    from workbench.store import DiskFull, append_bytes

    log = tmp_path / "metrics.jsonl"
    append_bytes(log, b'{"step": 1}\n')
    for keep in (7, None):  # a short write, then ENOSPC
        with monkeypatch.context() as m:
            _short_writes(m, keep)
            with pytest.raises(DiskFull) as err:
                append_bytes(log, b'{"step": 2, "loss": 0.5}\n')
        assert isinstance(err.value, OSError) and "disk full" in str(err.value)
        assert log.read_bytes() == b'{"step": 1}\n'  # the partial line was cut back off
    append_bytes(log, b'{"step": 3}\n')
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 3]
