"""``create_app``: the Starlette application over the core services.

The server has no business logic of its own: routes turn HTTP into core calls made as the
authenticated user (``owner=``) and map :mod:`workbench.errors` to status codes.

    uvicorn --factory workbench.server.app:create_app      # or: workbench serve
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ..errors import WorkbenchError
from ..jobs.executor import Executor, LocalExecutor
from . import errors
from .auth import AuthMiddleware
from .openapi import Operation, build_spec, specificity, to_route
from .routes import analytics, configs, datasets, jobs, live, models, results
from .routes._common import DEFAULT_MAX_UPLOAD_BYTES, Services, Settings
from .routes._json import ORJSONResponse

AREAS = (models, datasets, configs, jobs, results, analytics, live)
TRUE = ("1", "true", "yes", "on")


def _env_auth() -> bool:
    return os.environ.get("WORKBENCH_AUTH", "").strip().lower() in TRUE


def _env_upload_limit() -> int:
    raw = os.environ.get("WORKBENCH_MAX_UPLOAD_MB", "").strip()
    if not raw:
        return DEFAULT_MAX_UPLOAD_BYTES
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"WORKBENCH_MAX_UPLOAD_MB must be a number of megabytes, not {raw!r}") from None
    if mb <= 0:
        raise ValueError("WORKBENCH_MAX_UPLOAD_MB must be positive")
    return int(mb * 2**20)


def operations() -> list[Operation]:
    """Every declared operation, most specific path first (the order routes are matched in)."""
    ops = [op for area in AREAS for op in area.api.operations]
    return sorted(ops, key=lambda op: specificity(op.path))


def create_app(*, auth_required: bool | None = None, max_upload_bytes: int | None = None,
               executor: Executor | None = None, pause_wait_s: float = 30.0, debug: bool = False) -> Starlette:
    """The REST application.

    * ``auth_required``: multi-user mode (a bearer token on every request but ``/health`` and
      ``/openapi.json``). ``None`` reads ``WORKBENCH_AUTH`` (``1`` = on); off means local
      single-user mode, the default for a server bound to 127.0.0.1 (``workbench serve``
      turns it on for any other address).
    * ``max_upload_bytes``: the largest dataset upload (and inline ``dataset_content``);
      ``None`` reads ``WORKBENCH_MAX_UPLOAD_MB``, default 100 MB.
    * ``executor``: where jobs run (default: :class:`~workbench.jobs.executor.LocalExecutor`,
      detached papermill processes); tests inject ``InProcessExecutor`` or a stub.
    * ``pause_wait_s``: how long ``POST /pause`` waits for the job to reach its checkpoint
      before answering 202.
    """
    settings = Settings(
        auth_required=_env_auth() if auth_required is None else bool(auth_required),
        max_upload_bytes=_env_upload_limit() if max_upload_bytes is None else int(max_upload_bytes),
        pause_wait_s=float(pause_wait_s),
    )
    if settings.max_upload_bytes <= 0:
        raise ValueError("max_upload_bytes must be positive")
    ops = operations()
    spec = build_spec(ops + [_HEALTH, _OPENAPI], title="Fine-Tune Workbench API", version=_version(),
                      auth_required=settings.auth_required)

    async def openapi_json(request: Request) -> ORJSONResponse:
        return ORJSONResponse(spec)

    routes: list[BaseRoute] = [Route("/health", health, methods=["GET"]),
                               Route("/openapi.json", openapi_json, methods=["GET"])]
    routes += [to_route(op) for op in ops]
    app = Starlette(
        debug=debug,
        routes=routes,
        middleware=[Middleware(AuthMiddleware, required=settings.auth_required)],
        exception_handlers={
            WorkbenchError: errors.handle_workbench_error,
            ValidationError: errors.handle_validation_error,
            HTTPException: errors.handle_http_exception,
            Exception: errors.handle_unexpected,
        },
    )
    app.state.settings = settings
    app.state.services = Services(executor or LocalExecutor())
    app.state.openapi = spec
    app.state.literal_paths = frozenset(op.path for op in ops if not op.path_params)
    return app


async def health(request: Request) -> ORJSONResponse:
    """Liveness: no token needed, touches nothing."""
    return ORJSONResponse({"status": "ok"})


def _version() -> str:
    try:
        return metadata.version("workbench")
    except metadata.PackageNotFoundError:
        return "0"


async def _never(request: Request, **_: Any) -> None:  # the two app-level routes, for the document only
    raise AssertionError


_HEALTH = Operation(method="GET", path="/health", handler=_never, summary="Health check", tag="server",
                    operation_id="health",
                    description="Always `{\"status\": \"ok\"}` while the server runs; no token needed.",
                    public=True)
_OPENAPI = Operation(method="GET", path="/openapi.json", handler=_never, summary="This document", tag="server",
                     operation_id="openapi",
                     public=True)
