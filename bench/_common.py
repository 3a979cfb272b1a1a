"""Shared set-up for the benchmarks: a scratch WORKBENCH_HOME with tiny-chat built."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from workbench.testing import scratch_home as _scratch_home
from workbench.tinymodel import CACHE_ENV

_HOMES = contextlib.ExitStack()  # held open until the benchmark's process ends: its environment stays set
TINY_CHAT_CACHE = Path(tempfile.gettempdir()) / "wb-bench-tiny-chat"


def scratch_home(name: str) -> Path:
    """A fresh ``WORKBENCH_HOME`` (``wb-bench-<name>-…`` in the temp folder) for the rest of the run,
    with tiny-chat installed, built once into a cache shared by every benchmark run."""
    cache = Path(os.environ.get(CACHE_ENV) or TINY_CHAT_CACHE)
    return _HOMES.enter_context(_scratch_home(prefix=f"wb-bench-{name}-", tiny_chat=cache, install=True))


def table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)
