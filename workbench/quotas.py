"""Per-user quotas: active jobs, stored bytes, live streams and config size.

The limits live in :mod:`workbench.settings` (documented defaults, one environment variable
each) and are generous for one person's work; they exist so one user of a shared server
cannot fill the queue, the disk or the event loop for everyone else. Every refusal names the
limit, its value and the setting that changes it.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import home, settings
from .errors import QuotaExceeded, TooLarge
from .job_states import LIVE
from .store import Store

COUNTED = LIVE | {"queued"}  # what holds or waits for a slot


def check_active_jobs(store: Store, owner: str) -> None:
    """429 when ``owner`` already has the most queued + pending + running jobs allowed."""
    limit = settings.current().quotas.active_jobs
    active = sum(1 for j in store.all("jobs", owner) if j.get("status") in COUNTED)
    if active >= limit:
        raise QuotaExceeded(f"active jobs: {active} queued or running jobs reach the limit of {limit} per user "
                            "(WORKBENCH_QUOTA_ACTIVE_JOBS); wait for one to finish or cancel one", field="jobs")


def _folder_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def used_bytes(store: Store, owner: str) -> int:
    """Bytes on disk under the owner's dataset, job and knowledge-base document folders."""
    total = 0
    for table, folder in (("datasets", home.datasets_dir()), ("jobs", home.jobs_dir()),
                          ("kb_documents", home.home() / "knowledge")):
        for rec in store.all(table, owner):
            total += _folder_bytes(folder / rec["id"])
    return total


def check_storage(store: Store, owner: str, adding: int) -> None:
    """413 when storing ``adding`` more bytes would take ``owner`` over the storage quota."""
    limit = settings.current().quotas.storage_bytes
    used = used_bytes(store, owner)
    if used + adding > limit:
        raise TooLarge(f"storage: {used / 2**20:.1f} MB stored plus {adding / 2**20:.1f} MB would exceed the limit "
                       f"of {limit / 2**20:.0f} MB per user (WORKBENCH_QUOTA_STORAGE_MB); delete datasets or jobs",
                       field="storage")


def check_config_size(config: Any, field: str = "config") -> None:
    """413 for a config larger than ``WORKBENCH_MAX_CONFIG_KB`` as JSON."""
    limit = settings.current().quotas.config_bytes
    size = len(json.dumps(config, default=str))
    if size > limit:
        raise TooLarge(f"{field}: {size / 1024:.1f} KB is larger than the limit of {limit / 1024:.0f} KB "
                       "(WORKBENCH_MAX_CONFIG_KB)", field=field)


class StreamSlots:
    """Concurrent live streams per user, in this process (a stream lives in the process serving it)."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()
        self.lock = threading.Lock()

    def acquire(self, owner: str) -> None:
        """Take one of ``owner``'s stream slots, or 429; pair with :meth:`release`."""
        limit = settings.current().quotas.streams
        with self.lock:
            if self.open[owner] >= limit:
                raise QuotaExceeded(f"live streams: {self.open[owner]} open streams reach the limit of {limit} per "
                                    "user (WORKBENCH_QUOTA_STREAMS); close one first", field="streams")
            self.open[owner] += 1

    def release(self, owner: str) -> None:
        with self.lock:
            self.open[owner] -= 1
            if self.open[owner] <= 0:
                del self.open[owner]

    @contextmanager
    def slot(self, owner: str) -> Iterator[None]:
        self.acquire(owner)
        try:
            yield
        finally:
            self.release(owner)


STREAMS = StreamSlots()
