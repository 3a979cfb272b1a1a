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
