"""Small helpers every record shares: ids, timestamps, the local user."""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timezone

LOCAL_USER = os.environ.get("WORKBENCH_USER", "local")


def new_id(prefix: str) -> str:
    """A short, URL-safe, collision-resistant id such as ``job-3f9a1c2b7d``."""
    return f"{prefix}-{secrets.token_hex(5)}"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
