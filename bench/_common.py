"""Shared set-up for the benchmarks: a scratch WORKBENCH_HOME with tiny-chat built."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def scratch_home(name: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=f"wb-bench-{name}-"))
    os.environ["WORKBENCH_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = Path(tempfile.gettempdir()) / "wb-bench-tiny-chat"
    os.environ.setdefault("WORKBENCH_TINY_CHAT_CACHE", str(cache))
    from workbench.tinymodel import ensure_tiny_chat

    ensure_tiny_chat()
    return home


def table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)
