"""A full disk under a running job: the job fails with "disk full" and its metrics log stays line-valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import workbench.store as store_mod
from workbench import home as wb_home
from workbench.datasets import DatasetService
from workbench.jobs.executor import InProcessExecutor
from workbench.jobs.service import JobService

from .conftest import FAST


@pytest.mark.parametrize("how", ["short write", "ENOSPC"])
def test_a_job_whose_metrics_hit_a_full_disk_fails_with_disk_full(home: Path, tiny_chat_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    import errno

    monkeypatch.setenv("WORKBENCH_TINY_CHAT_CACHE", str(tiny_chat_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sample = DatasetService().register_sample()
    real_write = store_mod.os.write

    def write(fd: int, data: bytes) -> int:  # the disk fills up just as the first training step is logged
        if isinstance(data, bytes) and b'"type": "train"' in data:
            if how == "ENOSPC":
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data[:20])
        return real_write(fd, data)

    monkeypatch.setattr(store_mod.os, "write", write)
    svc = JobService(executor=InProcessExecutor())
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=10"])
    monkeypatch.setattr(store_mod.os, "write", real_write)

    assert job["status"] == "failed"
    assert "disk full" in job["error"]
    lines = (wb_home.job_dir(job["id"]) / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert lines and all(line.endswith("\n") for line in lines)
    events = [json.loads(line) for line in lines]  # every line is whole
    assert not [e for e in events if e.get("type") == "train"]
