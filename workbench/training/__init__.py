"""The training engine that runs inside a job's papermill notebook.

Imports torch/transformers lazily: ``from workbench.training import run_job``
is what the notebook calls, and importing this package must stay cheap elsewhere.
"""

from __future__ import annotations

from typing import Any


def run_job(job_dir: str, resume_from_checkpoint: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`workbench.training.engine.run_job`, imported on first call."""
    from .engine import run_job as _run

    return _run(job_dir, resume_from_checkpoint=resume_from_checkpoint, **kwargs)
