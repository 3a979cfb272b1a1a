"""The papermill job lifecycle, with real training of tiny-chat.

Each job is a papermill-executed notebook in its own detached process; these tests
start, pause, resume, cancel and kill real jobs and look at what is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from workbench import home
from workbench.errors import Conflict, InvalidInput
from workbench.jobfiles import layout, rows as step_rows
from workbench.jobs.executor import pid_alive
from workbench.jobs.service import JobService

from .conftest import FAST, wait_for, wait_for_step

pytestmark = pytest.mark.slow


def train_curve(svc: JobService, job_id: str) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in svc.metrics(job_id, types={"train"})]


def eval_curve(svc: JobService, job_id: str) -> list[tuple[int, float]]:
    return [(e["step"], e["eval_loss"]) for e in svc.metrics(job_id, types={"eval"})]


def test_pause_and_resume_give_the_same_curve_as_an_uninterrupted_run(job_home, sample) -> None:
    svc = JobService()
    steps = FAST + ["training.max_steps=30"]
    straight = svc.start("tiny-chat", sample["id"], "lora", overrides=steps)
    paused = svc.start("tiny-chat", sample["id"], "lora", overrides=steps)
    (home.job_dir(paused["id"]) / "control").write_text("pause")  # pauses when the first step ends

    st = wait_for(svc, paused["id"], {"paused", "failed"})
    assert st["status"] == "paused", st["error"]
    # not a logging boundary (logging_steps=5): the checkpoint keeps the partial logging window
    assert st["checkpoint"] == "checkpoint-1" and st["current_step"] == 1
    assert svc.checkpoints(paused["id"])["checkpoints"][-1]["path"] == "checkpoint-1"
    with pytest.raises(Conflict):
        svc.pause(paused["id"], wait=0)

    resumed = svc.resume(paused["id"])
    assert resumed["status"] in ("queued", "pending", "running")
    assert wait_for(svc, paused["id"], {"completed", "failed"})["status"] == "completed"
    assert wait_for(svc, straight["id"], {"completed", "failed"})["status"] == "completed"

    a, b = train_curve(svc, straight["id"]), train_curve(svc, paused["id"])
    assert [s for s, _ in a] == [5, 10, 15, 20, 25, 30] == [s for s, _ in b]
    assert a == b  # exactly: the window 1..5 was split by the pause
    assert eval_curve(svc, straight["id"]) == eval_curve(svc, paused["id"])
    assert a[-1][1] < a[0][1]  # it learns

    jd = home.job_dir(paused["id"])
    assert sorted(p.name for p in (jd / "notebooks").glob("*.ipynb")) == ["run-1.ipynb", "run-2.ipynb"]
    nb = json.loads((jd / "notebooks" / "run-2.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"]["resume_from_checkpoint"] == "checkpoint-1"
    spec = json.loads((jd / "job.json").read_text())
    assert len(spec["dataset"]["sha256"]) == 64 and spec["versions"]["torch"] and spec["seed"] == 42
    for jid in (straight["id"], paused["id"]):  # the history file the job wrote is the fold of its log
        written = [json.loads(line) for line in (home.job_dir(jid) / layout.ROWS).read_text().splitlines()]
        assert written == step_rows.fold_rows(svc.metrics(jid), jid) and [r["step"] for r in written][-1] == 30
    final = svc.status(paused["id"])
    assert final["progress"] == 100 and final["total_steps"] == 30 and final["best_eval_loss"] is not None
    with pytest.raises(Conflict):
        svc.resume(paused["id"])


def test_checkpoints_keep_the_best_by_eval_loss_and_the_last_k(job_home, sample) -> None:
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + [
        "training.max_steps=40", "training.save_total_limit=1", "training.learning_rate=0.05"])
    assert wait_for(svc, job["id"], {"completed", "failed"})["status"] == "completed"
    listing = svc.checkpoints(job["id"])
    evals = {e["step"]: e["eval_loss"] for e in svc.metrics(job["id"], types={"eval"})}
    best_step = min(evals, key=evals.get)
    names = [c["path"] for c in listing["checkpoints"]]
    assert names[-1] == "checkpoint-40"  # the last K=1
    assert f"checkpoint-{best_step}" in names  # and the best is never deleted
    assert listing["best_checkpoint"] == f"checkpoint-{best_step}"
    assert set(names) <= {"checkpoint-40", f"checkpoint-{best_step}"}
    c = listing["checkpoints"][0]
    assert set(c) >= {"path", "step", "epoch", "eval_loss", "train_loss", "size_mb", "created_at"}
    assert (home.job_dir(job["id"]) / "output" / "final" / "adapter_config.json").exists()


def test_cancel_leaves_no_process_behind(job_home, sample) -> None:
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=5000"])
    wait_for_step(svc, job["id"], 5)
    rec = svc.get(job["id"])
    kernel = json.loads((home.job_dir(job["id"]) / "kernel.json").read_text())
    assert psutil.pid_exists(rec["runner_pid"]) and psutil.pid_exists(kernel["pid"])
    out = svc.cancel(job["id"], grace=3)
    assert out["status"] == "cancelled"
    for pid in (rec["runner_pid"], kernel["pid"]):
        assert not _running(pid), f"pid {pid} still running"
    assert kernel["connection_file"] and not Path(kernel["connection_file"]).exists()
    with pytest.raises(Conflict):
        svc.resume(job["id"])


def test_kill_minus_9_marks_the_job_failed_with_a_reason(job_home, sample) -> None:
    svc = JobService()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=5000"])
    wait_for_step(svc, job["id"], 5)
    kernel = json.loads((home.job_dir(job["id"]) / "kernel.json").read_text())
    os.kill(kernel["pid"], signal.SIGKILL)  # the OOM killer's way
    st = wait_for(svc, job["id"], {"failed"}, timeout=60)
    assert "died" in st["error"]

    job2 = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=5000"])
    wait_for_step(svc, job2["id"], 5)
    runner = svc.get(job2["id"])["runner_pid"]
    os.killpg(runner, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: wait until the kernel has actually torn the runner down.
    deadline = time.monotonic() + 10
    while pid_alive(runner) and time.monotonic() < deadline:
        time.sleep(0.05)
    st = JobService().status(job2["id"])  # a later process re-attaches and notices
    assert st["status"] == "failed" and str(runner) in st["error"]



def test_a_killed_job_hands_its_slot_to_the_next_queued_job(job_home, tmp_path, monkeypatch) -> None:
    from workbench.datasets import DatasetService

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))  # a queue of its own
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "1")
    sample = DatasetService().register_sample()
    svc = JobService()
    a, b, c = (svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=5000"])
               for _ in range(3))
    try:
        assert [svc.get(j["id"])["status"] for j in (a, b, c)] == ["pending", "queued", "queued"]

        # The OOM killer takes A's kernel: A fails, and B gets the slot.
        wait_for_step(svc, a["id"], 5)
        os.kill(_kernel(a["id"])["pid"], signal.SIGKILL)
        assert "died" in wait_for(svc, a["id"], {"failed"}, timeout=60)["error"]
        _leaves_queue(svc, b["id"], within=5)

        # kill -9 of B's runner group and kernel: the next status read fails B and starts C at once.
        wait_for_step(svc, b["id"], 5)
        runner, kernel = svc.get(b["id"])["runner_pid"], _kernel(b["id"])["pid"]
        os.killpg(runner, signal.SIGKILL)
        _kill(kernel)
        deadline = time.monotonic() + 10
        while (pid_alive(runner) or pid_alive(kernel)) and time.monotonic() < deadline:
            time.sleep(0.05)
        st = JobService().status(b["id"])
        assert st["status"] == "failed" and str(runner) in st["error"]
        assert svc.get(c["id"])["status"] in ("pending", "running")
        wait_for_step(svc, c["id"], 1)  # and it really runs
    finally:
        for job in (a, b, c):
            if svc.get(job["id"])["status"] not in ("completed", "failed", "cancelled"):
                svc.cancel(job["id"], grace=1)


def _kernel(job_id: str) -> dict:
    return json.loads((home.job_dir(job_id) / "kernel.json").read_text())


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _leaves_queue(svc: JobService, job_id: str, within: float) -> None:
    deadline = time.monotonic() + within
    while svc.get(job_id)["status"] == "queued":
        assert time.monotonic() < deadline, f"job {job_id} still queued {within} s after the slot was freed"
        time.sleep(0.1)

def test_queue_runs_jobs_in_order_and_hyperparameters_change_while_paused(job_home, sample, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "1")
    svc = JobService()
    first = svc.start("tiny-chat", sample["id"], "lora",  # logs each step: the pause lands after step 1
                      overrides=FAST + ["training.max_steps=10", "training.lr_scheduler_type=constant",
                                        "training.logging_steps=1"])
    second = svc.start("tiny-chat", sample["id"], "lora",  # the product default: step 1 is logged at once
                       overrides=FAST + ["training.max_steps=10", "training.logging_first_step=true"])
    assert svc.get(second["id"])["status"] == "queued"
    (home.job_dir(first["id"]) / "control").write_text("pause")
    assert wait_for(svc, first["id"], {"paused", "failed"})["status"] == "paused"
    wait_for(svc, second["id"], {"pending", "running", "completed"})  # the freed slot goes to the next in line

    with pytest.raises(InvalidInput):
        svc.update_hyperparameters(first["id"], {"per_device_train_batch_size": 64})
    svc.update_hyperparameters(first["id"], {"learning_rate": 1e-4})
    hist = svc.get(first["id"])["history"]
    assert hist[-1]["changes"] == {"training.learning_rate": {"from": 1e-3, "to": 1e-4}}
    svc.resume(first["id"])
    assert wait_for(svc, first["id"], {"completed", "failed"})["status"] == "completed"
    lrs = [e["learning_rate"] for e in svc.metrics(first["id"], types={"train"})]
    assert lrs == pytest.approx([1e-3] + [1e-4] * 9)  # the resumed run trains at the new learning rate
    assert wait_for(svc, second["id"], {"completed", "failed"})["status"] == "completed"
    assert [e["step"] for e in svc.metrics(second["id"], types={"train"})] == [1, 5, 10]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
