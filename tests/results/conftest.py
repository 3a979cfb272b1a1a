"""Real finished jobs, made once per test session without papermill.

``JobService.start`` writes the job folder and record exactly as in production; the
``InProcessExecutor`` then trains tiny-chat in this process and records the outcome the
way the papermill runner does.

* ``lora_job`` — LoRA, 20 steps, checkpoints at 10 and 20 (+ ``final``);
* ``full_job`` — full fine-tune, 10 steps (a checkpoint that is a whole model);
* ``eval_set`` — the 10 % held out by the engine's split (seed 42), registered as a dataset.

Every test runs with ``WORKBENCH_HOME`` pointing at that session home.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.testing import fast, scratch_home

FAST = fast(training={"max_steps": 20, "save_steps": 10, "eval_steps": 10, "save_total_limit": 5})


def run_real_job(dataset_id: str, config: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Start a job through JobService and train it to the end in this process."""
    from workbench.configs import deep_merge
    from workbench.jobs.executor import InProcessExecutor
    from workbench.jobs.service import JobService

    svc = JobService(executor=InProcessExecutor())
    job = svc.start("tiny-chat", dataset_id, config, overrides=deep_merge(FAST, overrides))
    assert job["status"] == "completed", job
    return job


@pytest.fixture(scope="session")
def results_env(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path) -> dict[str, Any]:
    import torch

    from workbench.datasets import DatasetService

    torch.set_num_threads(1)
    home = tmp_path_factory.mktemp("results-home")
    # the environment is set per test (below), never left behind for other test folders
    with scratch_home(home, tiny_chat=tiny_chat_dir):
        datasets = DatasetService()
        sample = datasets.register_sample()
        held_out = datasets.split(sample["id"], eval_fraction=0.1, seed=42)["eval"]
        lora = run_real_job(sample["id"], "lora", {})
        full = run_real_job(sample["id"], "full", {"training": {"max_steps": 10, "learning_rate": 1e-4}})
    return {"home": home, "tiny": tiny_chat_dir, "sample": sample, "eval_set": held_out, "lora_job": lora,
            "full_job": full}


@pytest.fixture(autouse=True)
def _results_home(results_env: dict[str, Any]) -> Iterator[None]:
    with scratch_home(results_env["home"], tiny_chat=results_env["tiny"]):
        yield


@pytest.fixture
def lora_job(results_env: dict[str, Any]) -> dict[str, Any]:
    return results_env["lora_job"]


@pytest.fixture
def full_job(results_env: dict[str, Any]) -> dict[str, Any]:
    return results_env["full_job"]


@pytest.fixture
def eval_set(results_env: dict[str, Any]) -> dict[str, Any]:
    return results_env["eval_set"]


@pytest.fixture
def sample(results_env: dict[str, Any]) -> dict[str, Any]:
    return results_env["sample"]
