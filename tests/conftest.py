"""Shared fixtures: an empty WORKBENCH_HOME per test, and tiny-chat built once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
