"""Shared set-up for panel tests: real jobs trained in this process (or copied from the session's one)."""

from __future__ import annotations

import copy
from typing import Any

from workbench.testing import FINISHED_LORA

FAST = copy.deepcopy(FINISHED_LORA)  # 10 steps, an eval and a checkpoint every 5: the session's shared job


def in_process_backend() -> Any:
    """A LocalBackend whose jobs train to the end inside this process (InProcessExecutor)."""
    from workbench.jobs.executor import InProcessExecutor
    from workbench.jobs.service import JobService
    from workbench.widgets.backend import LocalBackend

    backend = LocalBackend()
    backend.jobs = JobService(executor=InProcessExecutor())
    return backend
