"""The engine in this process: a scratch home with tiny-chat and the sample dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.testing import scratch_home


@pytest.fixture(scope="module")
def engine_home(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path) -> Iterator[Path]:
    with scratch_home(tmp_path_factory.mktemp("home"), tiny_chat=tiny_chat_dir) as home:
        yield home


@pytest.fixture(scope="module")
def sample(engine_home: Path) -> dict[str, Any]:
    from workbench.datasets import DatasetService

    return DatasetService().register_sample()
