"""Shared fixtures: an empty WORKBENCH_HOME per test; tiny-chat and a finished job, each made once per session.

The helpers behind them (``FAST``, ``scratch_home``, ``copy_job``…) live in ``workbench.testing``,
which ``bench/`` uses too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.testing import FINISHED_LORA, TrainedJob, train_finished_job

# Starlette's TestClient sends ``Host: testserver``; the server answers only to names it is told.
os.environ.setdefault("WORKBENCH_ALLOWED_HOSTS", "testserver")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "home"
    monkeypatch.setenv("WORKBENCH_HOME", str(path))
    yield path


@pytest.fixture(scope="session")
def tiny_chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny-chat build per test session (or the prebuilt cache named by WORKBENCH_TINY_CHAT_CACHE)."""
    import os

    from workbench.tinymodel import CACHE_ENV, ensure_tiny_chat

    cached = os.environ.get(CACHE_ENV)
    dest = Path(cached) if cached else tmp_path_factory.getbasetemp() / "tiny-chat-cache" / "tiny-chat"
    return ensure_tiny_chat(dest, progress=False)


@pytest.fixture(scope="session")
def finished_lora_job_source(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path) -> TrainedJob:
    """The finished LoRA job (``FINISHED_LORA``: 10 steps, an eval and a checkpoint at 5 and 10, + ``final``),
    trained once per test run in a home of its own; a module puts a copy in its home with ``copy_job``."""
    return train_finished_job(tmp_path_factory.getbasetemp() / "finished-jobs", overrides=FINISHED_LORA,
                              tiny_chat=tiny_chat_dir)
