"""``create_app``: the Starlette application over the core services.

The server has no business logic of its own: routes turn HTTP into core calls made as the
authenticated user (``owner=``) and map :mod:`workbench.errors` to status codes.

    uvicorn --factory workbench.server.app:create_app      # or: workbench serve
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator, Iterable
from importlib import metadata
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from .. import settings as core_settings
from ..errors import WorkbenchError
from ..jobs.executor import Executor, get_executor
from . import errors
from .auth import AuthMiddleware
from .common import Services, Settings
from .guard import HostOriginGuard
from .openapi import Operation, build_spec, specificity, to_route
from .responses import ORJSONResponse
from .routes import (
    analytics,
    configs,
    datasets,
    deployments,
    experiments,
    graphrag,
    jobs,
    live,
    models,
    openai,
    results,
    usage_analytics,
)

SWITCH_INTERVAL_S = 0.001
AREAS = (models, datasets, configs, jobs, results, analytics, live, deployments, openai, graphrag, usage_analytics,
         experiments)


def operations() -> list[Operation]:
    """Every declared operation, most specific path first (the order routes are matched in)."""
    ops = [op for area in AREAS for op in area.api.operations]
    return sorted(ops, key=lambda op: specificity(op.path))


def create_app(*, multi_user: bool | None = None, max_upload_bytes: int | None = None,
               executor: Executor | None = None, allowed_hosts: Iterable[str] = (),
               allowed_origins: Iterable[str] = (), debug: bool = False) -> Starlette:
    """The REST application, secure by default.

    * A bearer token on every route but ``/health``, ``/openapi.json`` and ``GET /api/models``,
      loopback included; the local user's token is created in ``$WORKBENCH_HOME/token`` here.
    * Only the loopback names, ``allowed_hosts`` and ``WORKBENCH_ALLOWED_HOSTS`` are answered
      (400 otherwise); a browser Origin other than the server's own, ``allowed_origins`` or
      ``WORKBENCH_ALLOWED_ORIGINS`` is a 403 (:mod:`workbench.server.guard`).
    * ``multi_user``: several people share the server, so responses never show absolute server
      paths. ``None`` reads ``WORKBENCH_AUTH`` (``1`` = on); ``workbench serve`` turns it on for
      any non-loopback address.
    * ``max_upload_bytes``: the largest dataset upload (and inline ``dataset_content``);
      ``None`` reads ``WORKBENCH_MAX_UPLOAD_MB``, default 100 MB.
    * ``executor``: where jobs run (default: :class:`~workbench.jobs.executor.LocalExecutor`,
      detached papermill processes); tests inject ``InProcessExecutor`` or a stub.
    """
    from ..users import local_token

    env = core_settings.current()
    # Long calls are CPU-bound Python threads (JSON, zips) that hold the GIL for a switch interval
    # at a time; a shorter one lets the event loop answer short calls between their slices.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    settings = Settings(
        multi_user=env.multi_user if multi_user is None else bool(multi_user),
        max_upload_bytes=env.max_upload_bytes if max_upload_bytes is None else int(max_upload_bytes),
    )
    if settings.max_upload_bytes <= 0:
        raise ValueError("max_upload_bytes must be positive")
    local_token()  # single-user use stays zero-configuration: clients find it in the home
    ops = operations()
    spec = build_spec(ops + [_HEALTH, _OPENAPI], title="Fine-Tune Workbench API", version=_version())

    async def openapi_json(request: Request) -> ORJSONResponse:
        return ORJSONResponse(spec)

    routes: list[BaseRoute] = [Route("/health", health, methods=["GET"]),
                               Route("/openapi.json", openapi_json, methods=["GET"])]
    routes += [to_route(op) for op in ops]
    public = frozenset({("GET", "/health"), ("GET", "/openapi.json")}
                       | {(op.method, op.path) for op in ops if op.public and not op.path_params})
    app = Starlette(
        debug=debug,
        routes=routes,
        lifespan=_lifespan,
        middleware=[
            Middleware(HostOriginGuard, hosts=[*env.allowed_hosts, *allowed_hosts],
                       origins=[*env.allowed_origins, *allowed_origins]),
            Middleware(AuthMiddleware, public=public),
        ],
        exception_handlers={
            WorkbenchError: errors.handle_workbench_error,
            ValidationError: errors.handle_validation_error,
            HTTPException: errors.handle_http_exception,
            Exception: errors.handle_unexpected,
        },
    )
    app.state.settings = settings
    app.state.services = Services(executor or get_executor())
    app.state.openapi = spec
    app.state.literal_paths = frozenset(op.path for op in ops if not op.path_params)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """A starting server loads the live local deployments in the background (it answers at once;
    a request that comes first loads its own), so deployments survive a restart."""
    thread = threading.Thread(target=_restore_deployments, name="wb-restore-deployments", daemon=True)
    thread.start()
    yield


def _resume(what: str, fn: Any) -> None:
    """Resume what an earlier process left unfinished; never take the server down over it."""
    try:
        ids = fn()
        if ids:
            logging.getLogger("workbench.server").info("resumed %s: %s", what, ", ".join(ids))
    except Exception:
        logging.getLogger("workbench.server").exception("resuming %s failed", what)


def _restore_deployments() -> None:
    from ..experiments.sweeps import SweepService
    from ..graphrag.service import KnowledgeBaseService
    from ..serving.providers.local import restore

    _resume("documents", lambda: KnowledgeBaseService().resume())  # documents left unprocessed
    _resume("sweeps", lambda: SweepService().resume())  # sweeps an earlier process was driving

    try:
        restored = restore()
    except Exception:  # never take the server down over it; the requests load what they need
        logging.getLogger("workbench.server").exception("reloading deployments failed")
        return
    if restored:
        logging.getLogger("workbench.server").info("reloaded deployments: %s", ", ".join(restored))


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
