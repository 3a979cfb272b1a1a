"""The single folder that holds all workbench state.

Everything (the metadata store, datasets, models, jobs, the encryption key) lives
under ``WORKBENCH_HOME`` so that every process — server, notebook kernel, job
runner, CLI — sees the same state by agreeing on one environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path.home() / ".workbench"


_private: set[Path] = set()


def private() -> None:
    """Files this process creates are its owner's only (umask 077), as Jupyter's runtime folder is.

    Called before the first write to the home: every workbench process (server, CLI, job runner,
    kernel, Voila) writes datasets, tokens, checkpoints and the key under it.
    """
    os.umask(0o077)


def home() -> Path:
    """The home folder (mode 700), created on first use. Read on every call so tests can repoint it."""
    path = Path(os.environ.get("WORKBENCH_HOME") or DEFAULT_HOME).expanduser().resolve()
    if path not in _private:
        private()
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        _private.add(path)
    else:
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


TOKEN_FILE = "token"


def token_file(root: Path | None = None) -> Path:
    """``$WORKBENCH_HOME/token``: the local user's token, readable by its owner only (mode 600)."""
    if root is None:
        raw = os.environ.get("WORKBENCH_HOME")
        root = Path(raw).expanduser() if raw else DEFAULT_HOME
    return root / TOKEN_FILE


def read_local_token(root: Path | None = None) -> str | None:
    """The local token if this machine's home holds one (clients use it; nothing is created)."""
    try:
        token = token_file(root).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return token or None
