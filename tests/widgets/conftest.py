"""Shared set-up for panel tests: a home for real jobs trained in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

FAST = {"training": {"max_steps": 10, "logging_steps": 5, "save_steps": 5, "eval_steps": 5, "torch_threads": 1,
                     "per_device_train_batch_size": 4, "max_seq_length": 256, "learning_rate": 1e-3}}


def use_home(mp: pytest.MonkeyPatch, home: Path, tiny: Path) -> None:
    mp.setenv("WORKBENCH_HOME", str(home))
    mp.setenv("WORKBENCH_TINY_CHAT_CACHE", str(tiny))
    mp.setenv("HF_HUB_OFFLINE", "1")


def in_process_backend() -> Any:
    """A LocalBackend whose jobs train to the end inside this process (InProcessExecutor)."""
    from workbench.jobs.executor import InProcessExecutor
    from workbench.jobs.service import JobService
    from workbench.widgets.backend import LocalBackend

    backend = LocalBackend()
    backend.jobs = JobService(executor=InProcessExecutor())
    return backend
