"""The ``workbench`` command: train with a progress bar, Ctrl+C pauses, jobs subcommands with --json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.datasets import SAMPLE_DATASET
from workbench.testing import as_cli_args, fast

pytestmark = pytest.mark.slow
FAST = as_cli_args(fast(training={"max_steps": None, "learning_rate": None}))  # --max-steps, the template's rate


@pytest.fixture
def env(home: Path, tiny_chat_dir: Path) -> dict[str, str]:
    return {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_TINY_CHAT_CACHE": str(tiny_chat_dir),
            "HF_HUB_OFFLINE": "1"}


def wb(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_train_follows_the_job_to_completion_and_jobs_commands_report_it(env) -> None:
    out = wb(env, "train", "--model", "tiny-chat", "--dataset", str(SAMPLE_DATASET), "--template", "lora",
             "--max-steps", "10", *FAST, "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["status"] == "completed" and status["current_step"] == 10 and status["progress"] == 100
    assert "loss=" in out.stderr and "10/10" in out.stderr  # the tqdm bar showed the loss
    job_id = status["job_id"]

    listed = json.loads(wb(env, "jobs", "list", "--json").stdout)
    assert [j["job_id"] for j in listed] == [job_id]
    shown = json.loads(wb(env, "jobs", "show", job_id, "--json").stdout)
    assert shown["status"] == "completed" and shown["loss"] == status["loss"]
    ckpts = json.loads(wb(env, "jobs", "checkpoints", job_id, "--json").stdout)
    assert ckpts["best_checkpoint"] in {c["path"] for c in ckpts["checkpoints"]}
    logs = wb(env, "jobs", "logs", job_id).stdout
    assert "Training completed" in logs
    again = wb(env, "jobs", "resume", job_id)
    assert again.returncode == 2 and "only a paused job can be resumed" in again.stderr


def test_ctrl_c_pauses_the_job_and_resume_finishes_it(env, home: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", "--dataset", str(SAMPLE_DATASET),
                             "--template", "lora", "--max-steps", "400", *FAST, "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not list(home.glob("jobs/*/metrics.jsonl")):
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert stdout, stderr
    status = json.loads(stdout)
    assert status["status"] == "paused" and 0 < status["current_step"] < 400
    job_id = status["job_id"]
    out = wb(env, "jobs", "cancel", job_id, "--json")
    assert out.returncode == 0, out.stderr
    cancelled = json.loads(out.stdout)
    assert cancelled["status"] == "cancelled"


def test_a_bad_dataset_is_rejected_with_line_numbers(env, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    out = wb(env, "train", "--dataset", str(bad), "--max-steps", "5")
    assert out.returncode == 2
    assert '"line": 1' in out.stderr and '"line": 2' in out.stderr
    assert json.loads(wb(env, "jobs", "list", "--json").stdout) == []
