"""Leftovers of crashed writers (upload spools, orphaned dataset folders, temp files) are swept at start."""

from __future__ import annotations

import os
import time
from pathlib import Path

from workbench.datasets import DatasetService
from workbench.store import get_store
from workbench.sweep import GRACE_SECONDS, sweep_leftovers


def _age(path: Path, seconds: float) -> Path:
    """Set the mtime of ``path`` and of everything in it ``seconds`` into the past."""
    t = time.time() - seconds
    for p in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(p, (t, t))
    return path


def _file(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_stale_leftovers_are_removed_and_live_files_kept(home: Path) -> None:
    old = GRACE_SECONDS + 60
    sample = DatasetService().register_sample()
    get_store().insert("jobs", {"id": "job-1", "owner": "local", "status": "completed"})
    kept = [
        _age(home / "datasets" / sample["id"], old),  # registered: never an orphan, however old
        _age(_file(home / "jobs" / "job-1" / "job.json"), old),
        _file(home / "tmp" / ".upload-fresh.jsonl"),  # an upload being received right now
        _file(home / "datasets" / "dataset-inflight" / "data.jsonl"),  # being validated, no record yet
        _file(home / "jobs" / "job-1" / ".summary.json.abcd1234.tmp"),  # an atomic write in flight
        _age(_file(home / "jobs" / "job-1" / "output" / "checkpoint-5" / ".x.abcd1234.tmp"), old),  # not ours
        _age(_file(home / "tmp" / "notes.txt"), old),
    ]
    # a folder whose newest file is fresh is in use, even if the folder itself is old
    busy = home / "datasets" / "dataset-busy"
    _age(_file(busy / ".upload.csv"), old)
    _file(busy / "data.jsonl")
    kept.append(busy)
    gone = [
        _age(_file(home / "tmp" / ".upload-k3j2h1.jsonl"), old),
        _age(_file(home / "datasets" / "dataset-orphan" / "data.jsonl"), old).parent,
        _age(_file(home / ".store.json.x1y2z3w4.tmp"), old),
        _age(_file(home / "jobs" / "job-1" / ".result.json.q9_8r7s6.tmp"), old),
        _age(_file(home / "datasets" / sample["id"] / ".data.jsonl.aaaabbbb.tmp"), old),
    ]
    _age(home / "datasets" / "dataset-orphan", old)
    _age(home / "datasets" / sample["id"], old)

    removed = sweep_leftovers()

    assert sorted(removed) == sorted(gone)
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in kept)
    assert DatasetService().path(sample["id"]).is_file()
    assert sweep_leftovers() == []  # nothing left to do


def test_the_grace_period_is_a_parameter(home: Path) -> None:
    spool = _age(_file(home / "tmp" / ".upload-abc.csv"), 120)
    assert sweep_leftovers() == [] and spool.exists()
    assert sweep_leftovers(grace=60) == [spool] and not spool.exists()


def test_the_server_sweeps_when_it_starts(home: Path, monkeypatch) -> None:
    import uvicorn

    from workbench import cli

    spool = _age(_file(home / "tmp" / ".upload-left.jsonl"), GRACE_SECONDS + 60)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    assert cli.main(["serve", "--port", "0"]) == 0
    assert not spool.exists()
