"""The workbench's settings: one model, read from the environment, with documented defaults.

Every limit and every trust decision a deployment may want to change lives here, so the
server, the CLI and the widgets agree on them and the README can list them in one table.

===============================  ==========================================  ==============
variable                          what                                        default
===============================  ==========================================  ==============
``WORKBENCH_IMPORT_DIR``          the only folder server paths may name       off (no paths)
                                  (``dataset_path``, local model folders)
``WORKBENCH_ALLOWED_HOSTS``       extra Host names the server answers to      loopback names
``WORKBENCH_ALLOWED_ORIGINS``     extra browser origins allowed to call it    same origin
``WORKBENCH_QUOTA_ACTIVE_JOBS``   queued + pending + running jobs per user    20
``WORKBENCH_QUOTA_STORAGE_MB``    stored dataset + job bytes per user         20480 (20 GB)
``WORKBENCH_QUOTA_STREAMS``       concurrent live streams per user            16
``WORKBENCH_MAX_CONFIG_KB``       the largest training config                 256
``WORKBENCH_LONG_CALLS``          threads for long calls (validation, zips)   4
``WORKBENCH_MAX_UPLOAD_MB``       the largest dataset upload                  100
``WORKBENCH_AUTH``                ``1``: several users share the server       off (on for a
                                  (responses show no server paths)            non-loopback bind)
``WORKBENCH_LOCAL_COST_PER_REQUEST`` USD per request of a local deployment   0
                                  (when the deploy body names none)
``WORKBENCH_GENERATION_QUEUE``    requests waiting per loaded model (503      64
                                  beyond)
``WORKBENCH_MAX_BATCH``           requests generated together in one batch    8
===============================  ==========================================  ==============
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _list(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    return tuple(item.strip().lower() for item in raw.split(",") if item.strip())


def _number(name: str, default: float, kind: type = int, minimum: float = 1) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, not {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value


def _int(name: str, default: int) -> int:
    return int(_number(name, default))


TRUE = ("1", "true", "yes", "on")


class Quotas(BaseModel):
    """Per-user limits. The defaults leave one person's normal work alone (dozens of queued jobs)."""

    active_jobs: int = Field(20, ge=1, description="queued + pending + running jobs per user")
    storage_bytes: int = Field(20 * 2**30, ge=1, description="dataset and job files per user")
    streams: int = Field(16, ge=1, description="concurrent SSE/WebSocket streams per user")
    config_bytes: int = Field(256 * 2**10, ge=1, description="the largest config, as JSON")


class Settings(BaseModel):
    import_dir: Path | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    quotas: Quotas = Quotas()
    long_call_threads: int = 4
    max_upload_bytes: int = 100 * 2**20
    multi_user: bool = False
    cost_per_request: float = Field(0.0, ge=0, description="USD billed per request of a local deployment")
    generation_queue: int = Field(64, ge=1, description="requests waiting per loaded model before a 503")
    max_batch: int = Field(8, ge=1, description="requests generated together in one batch")

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get("WORKBENCH_IMPORT_DIR", "").strip()
        return cls(
            import_dir=Path(raw).expanduser().resolve() if raw else None,
            allowed_hosts=_list("WORKBENCH_ALLOWED_HOSTS"),
            allowed_origins=tuple(o.rstrip("/") for o in _list("WORKBENCH_ALLOWED_ORIGINS")),
            quotas=Quotas(
                active_jobs=_int("WORKBENCH_QUOTA_ACTIVE_JOBS", 20),
                storage_bytes=_int("WORKBENCH_QUOTA_STORAGE_MB", 20480) * 2**20,
                streams=_int("WORKBENCH_QUOTA_STREAMS", 16),
                config_bytes=_int("WORKBENCH_MAX_CONFIG_KB", 256) * 2**10,
            ),
            long_call_threads=_int("WORKBENCH_LONG_CALLS", 4),
            max_upload_bytes=int(_number("WORKBENCH_MAX_UPLOAD_MB", 100, float, minimum=1e-6) * 2**20),
            multi_user=os.environ.get("WORKBENCH_AUTH", "").strip().lower() in TRUE,
            cost_per_request=_number("WORKBENCH_LOCAL_COST_PER_REQUEST", 0.0, float, minimum=0),
            generation_queue=_int("WORKBENCH_GENERATION_QUEUE", 64),
            max_batch=_int("WORKBENCH_MAX_BATCH", 8),
        )


def current() -> Settings:
    """The settings as the environment says now (read per call: tests and notebooks repoint it)."""
    return Settings.from_env()
