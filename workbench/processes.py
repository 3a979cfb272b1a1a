"""Is a recorded process still the one that was recorded? A pid plus its start time, since pids are reused."""

from __future__ import annotations

import psutil


def pid_alive(pid: int | None, create_time: float | None = None) -> bool:
    """True while ``pid`` runs (not a zombie) and, given ``create_time``, is the process started then."""
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(p.create_time() - create_time) < 1.0
    except psutil.Error:
        return False
