"""The single folder that holds all workbench state.

Everything (the metadata store, datasets, models, jobs, the encryption key) lives
under ``WORKBENCH_HOME`` so that every process — server, notebook kernel, job
runner, CLI — sees the same state by agreeing on one environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path.home() / ".workbench"


def home() -> Path:
    """The home folder, created on first use. Read on every call so tests can repoint it."""
    path = Path(os.environ.get("WORKBENCH_HOME") or DEFAULT_HOME).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def subdir(*parts: str) -> Path:
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    return subdir("datasets")


def models_dir() -> Path:
    return subdir("models")


def jobs_dir() -> Path:
    return subdir("jobs")


def job_dir(job_id: str) -> Path:
    return jobs_dir() / job_id


def store_path() -> Path:
    return home() / "store.json"
