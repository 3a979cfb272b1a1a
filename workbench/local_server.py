"""Where this home's workbench server listens, so the CLI and the LLM clients find it on any port.

``workbench serve`` (and so ``workbench up``) writes ``$WORKBENCH_HOME/server.json`` (its URL, pid and
start time) as it starts, and removes it when it stops. :func:`url` answers ``WORKBENCH_API_URL``
when set, else the URL of a server of this home that still runs, else the default port.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from . import home
from .processes import pid_alive
from .store import atomic_write_json

DEFAULT_URL = "http://127.0.0.1:8000"


def _path() -> Path:
    return home.home() / "server.json"


def announce(url: str) -> None:
    me = psutil.Process()
    atomic_write_json(_path(), {"url": url.rstrip("/"), "pid": me.pid, "create_time": me.create_time()})


def withdraw() -> None:
    """Remove the file if this process wrote it (a later server of the same home may have replaced it)."""
    try:
        if json.loads(_path().read_text()).get("pid") == os.getpid():
            _path().unlink(missing_ok=True)
    except (FileNotFoundError, ValueError):
        pass


def running() -> str | None:
    """The URL of this home's server if its process still runs."""
    try:
        info = json.loads(_path().read_text())
    except (FileNotFoundError, ValueError):
        return None
    return info.get("url") if pid_alive(info.get("pid"), info.get("create_time")) else None


def url() -> str:
    return (os.environ.get("WORKBENCH_API_URL") or running() or DEFAULT_URL).rstrip("/")
