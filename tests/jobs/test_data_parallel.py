"""2-process data-parallel jobs through the real path: papermill notebook, kernel, accelerate's launcher, gloo.

Each test trains tiny-chat in two real ranks on this CPU machine and pauses, resumes, cancels
or kills them as a user (or the kernel's OOM killer) would.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from workbench import home
from workbench.jobs.executor import pid_alive
from workbench.jobs.service import JobService

from .conftest import FAST, wait_for, wait_for_step

pytestmark = pytest.mark.slow

DP = FAST + ["training.num_processes=2", "lora.lora_dropout=0"]


def ranks(job_id: str, timeout: float = 120) -> list[dict]:
    """Both ranks' records (pid, create_time), once both have started."""
    folder = home.job_dir(job_id) / "ranks"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob("rank-*.json"))
        if len(found) == 2:
            return [json.loads(p.read_text()) for p in found]
        time.sleep(0.1)
    raise AssertionError(f"the ranks of {job_id} never started")


def gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def train_curve(svc: JobService, job_id: str) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in svc.metrics(job_id, types={"train"})]


def test_a_2_process_job_pauses_on_one_step_in_both_ranks_and_resumes(job_home, sample) -> None:
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=DP + ["training.max_steps=20"])
    (home.job_dir(job["id"]) / "control").write_text("pause")  # both ranks see it after their first step
    st = wait_for(svc, job["id"], {"paused", "failed"})
    assert st["status"] == "paused", st["error"]
    assert st["world_size"] == 2 and st["checkpoint"] == "checkpoint-1"
    out = home.job_dir(job["id"]) / "output"
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]  # one checkpoint, written together
    ckpt = out / "checkpoint-1"
    assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert {p.name for p in ckpt.glob("logging_window-*.json")} == {"logging_window-0.json", "logging_window-1.json"}
    first = ranks(job["id"])
    assert gone([r["pid"] for r in first], within=5)

    svc.resume(job["id"])
    st = wait_for(svc, job["id"], {"completed", "failed"})
    assert st["status"] == "completed", st["error"]
    assert st["world_size"] == 2 and st["current_step"] == 20
    curve = train_curve(svc, job["id"])
    assert [s for s, _ in curve] == [5, 10, 15, 20]  # rank 0 alone writes: each step logged once
    assert curve[-1][1] < curve[0][1]
    assert (out / "final" / "adapter_model.safetensors").exists()
    log = (home.job_dir(job["id"]) / "training.log").read_text()
    assert "Launching 2 data-parallel processes (gloo)" in log and "Resuming from" in log

    straight = svc.start("tiny-chat", sample["id"], "lora", overrides=DP + ["training.max_steps=20"])
    assert wait_for(svc, straight["id"], {"completed", "failed"})["status"] == "completed"
    uninterrupted = train_curve(svc, straight["id"])
    assert [s for s, _ in uninterrupted] == [s for s, _ in curve]
    assert max(abs(a - b) for (_, a), (_, b) in zip(uninterrupted, curve)) < 1e-6  # the pause changed nothing


def test_cancelling_a_2_process_job_ends_every_rank_within_seconds(job_home, sample) -> None:
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=DP + ["training.max_steps=100000"])
    pids = [r["pid"] for r in ranks(job["id"])]
    wait_for_step(svc, job["id"], 1)
    kernel = json.loads((home.job_dir(job["id"]) / "kernel.json").read_text())
    assert all(pid_alive(p) for p in pids)
    t0 = time.monotonic()
    assert svc.cancel(job["id"], grace=1)["status"] == "cancelled"
    assert gone(pids + [kernel["pid"]], within=5), "a rank outlived the cancel"
    assert time.monotonic() - t0 < 10


def test_a_dead_rank_fails_the_job_with_its_reason(job_home, sample) -> None:
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=DP + ["training.max_steps=100000"])
    by_rank = {r["rank"]: r for r in ranks(job["id"])}
    wait_for_step(svc, job["id"], 1)
    os.kill(by_rank[1]["pid"], signal.SIGKILL)  # as the OOM killer would
    st = wait_for(svc, job["id"], {"failed", "completed", "cancelled"}, timeout=60)
    assert st["status"] == "failed"
    assert "rank 1" in st["error"] and "killed" in st["error"], st["error"]
    assert gone([by_rank[0]["pid"]], within=10), "rank 0 outlived its peer"
