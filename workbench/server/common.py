"""What every route module shares: the services, the caller, input parsing and path safety.

Handlers stay thin: they read the caller's id (``owner``), parse inputs through pydantic
models, run the blocking core call in a worker thread (``call``) and return a dict. The
core owns every rule; the helpers here only turn HTTP into arguments and back.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import home
from .. import settings as core_settings
from ..configs import ConfigService
from ..datasets import DatasetService
from ..errors import InvalidInput, TooLarge
from ..jobs.executor import Executor, get_executor
from ..jobs.service import JobService
from .errors import BadRequest, InvalidPath, UnsupportedMediaType, invalid_from_pydantic
from .responses import ORJSONResponse  # noqa: F401  (re-exported for the route modules)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_UPLOAD_BYTES = 100 * 2**20
JSON_BODY_LIMIT = 4 * 2**20  # configs, model entries, job requests: a few KB in practice


# --- settings and services -----------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    multi_user: bool
    max_upload_bytes: int


@dataclass
class Services:
    """Core services for one request.

    Built per call, not once per app: the core finds its store through ``WORKBENCH_HOME``
    on every call, and so should the server (tests and notebooks repoint it). Only the
    executor is shared, because it is what a deployment chooses (local processes,
    in-process, a cloud backend).
    """

    executor: Executor = field(default_factory=get_executor)

    @property
    def jobs(self) -> JobService:
        return JobService(executor=self.executor)

    @property
    def datasets(self) -> DatasetService:
        return DatasetService()

    @property
    def configs(self) -> ConfigService:
        return ConfigService()


_roots: dict[str | None, Path] = {}


def home_root() -> Path:
    """``workbench.home.home()``, memoised per ``WORKBENCH_HOME`` value: the per-request caches stat a
    few files under it, and the core's version resolves and creates the folder on every call."""
    raw = os.environ.get("WORKBENCH_HOME")
    root = _roots.get(raw)
    if root is None:
        root = _roots[raw] = home.home()
    return root


def services(request: Request) -> Services:
    return request.app.state.services


def settings(request: Request) -> Settings:
    return request.app.state.settings


def owner(request: Request) -> str:
    """The authenticated user id the auth middleware put on the request; every core call passes it."""
    return request.state.user


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a short blocking core call (a store read or write) in a worker thread, off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


_pools: dict[tuple[str, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _lower_priority() -> None:
    """Long-call threads run at a lower CPU priority (Linux: per thread), so on a busy machine
    the event loop thread, which answers the short calls, is scheduled first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LONG_CALL_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: same priority, still bounded
        pass


LONG_CALL_NICENESS = 10


def pool(name: str = "long", size: int | None = None) -> ThreadPoolExecutor:
    """A named pool of dedicated threads for long calls: ``long`` has ``WORKBENCH_LONG_CALLS`` threads.

    Dedicated, not the event loop's shared worker threads: work queued here waits in the pool's
    queue holding no thread, and the threads can run at a lower priority for good.
    """
    size = size or core_settings.current().long_call_threads
    with _pools_lock:
        found = _pools.get((name, size))
        if found is None:
            found = _pools[(name, size)] = ThreadPoolExecutor(size, thread_name_prefix=f"wb-{name}",
                                                              initializer=_lower_priority)
        return found


async def call_long(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run work that may take seconds (validation, zips, uploads) on its own bounded pool.

    Short calls have the default pool to themselves, so a burst of long work never makes a
    status read or a model list wait: the long calls queue behind each other instead.
    """
    return await call_in(pool(), fn, *args, **kwargs)


async def call_in(executor: ThreadPoolExecutor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.wrap_future(executor.submit(functools.partial(fn, *args, **kwargs)))


async def stream_long(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking chunk iterator (a zip being built) read on the long pool while it streams."""
    done = object()
    while True:
        chunk = await call_long(next, chunks, done)
        if chunk is done:
            return
        yield chunk  # type: ignore[misc]


_FILENAME = re.compile(r"^[A-Za-z0-9._-]+$")


def zip_response(request: Request, filename: str, chunks: Any) -> Response:
    """The core's ZIP chunk iterator, read on the long pool while the response streams (HEAD: headers
    only, the archive is never built)."""
    disposition = f"attachment; filename={filename}" if _FILENAME.match(filename) else \
        f"attachment; filename=\"{_ascii(filename)}\""
    headers = {"Content-Disposition": disposition, "Cache-Control": "no-store"}
    if request.method == "HEAD":
        return Response(media_type="application/zip", headers=headers)
    return StreamingResponse(stream_long(iter(chunks)), media_type="application/zip", headers=headers)


def _ascii(name: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)


# --- models at the boundary ------------------------------------------------------------------

class Body(BaseModel):
    """Request bodies: unknown fields are refused, so a typo is a 422 naming it, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Query strings: unknown parameters are ignored (caches, cache-busters, tracking)."""

    model_config = ConfigDict(extra="ignore")


class Loose(BaseModel):
    """Response schemas: the documented fields; the core may add more."""

    model_config = ConfigDict(extra="allow")


class Success(Loose):
    success: Literal[True]


# --- reading inputs --------------------------------------------------------------------------

def content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("Content-Length is not a number", field="content-length") from None
    return value if value >= 0 else None


def too_large(limit: int, what: str = "request body") -> TooLarge:
    return TooLarge(f"{what} is larger than the limit of {limit / 2**20:.1f} MB", field="body")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` (header, then bytes read)."""
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise too_large(limit)
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise too_large(limit)
    return bytes(chunks)


async def parse_body(request: Request, model: type[BaseModel], *, limit: int = JSON_BODY_LIMIT,
                     optional: bool = False) -> BaseModel:
    """A JSON object body validated by ``model``; 400 when it is not JSON, 422 naming the bad field.

    The body must be sent as ``application/json`` (415 otherwise): a browser sends
    ``text/plain`` or a form cross-site without asking first, but never JSON.
    """
    raw = await read_body(request, limit)
    if not raw.strip() and optional:
        return model.model_validate({})
    require_json(request)
    if not raw.strip():
        raise InvalidInput("body: a JSON object is required", field="body")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body: not valid JSON ({exc})", field="body") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"body: must be a JSON object, not {_json_type(data)}", field="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


def require_json(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(f"content-type: send the body as application/json, not {media[:80] or 'nothing'}",
                                   field="content-type")


def parse_query(request: Request, model: type[BaseModel]) -> BaseModel:
    params = dict(request.query_params)  # a repeated parameter: the last one wins
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


# --- path safety -----------------------------------------------------------------------------

def model_ref(request: Request, ref: str | None, field: str) -> str | None:
    """``ref`` unless it names a file or folder on the server outside the import folder.

    The core loads a model from any local folder it is given; over HTTP that would let any
    caller read weights (or probe the disk) by path, so a path is accepted only inside
    ``WORKBENCH_IMPORT_DIR``, as for ``dataset_path``. Built-in, registered and hub ids pass.
    """
    if ref:
        from ..imports import check_import_path, looks_like_path
        from ..models import BUILTINS

        if ref not in BUILTINS and looks_like_path(ref):
            return str(check_import_path(ref, field))
    return ref


def plain_name(value: str, field: str) -> str:
    """``value`` if it is a single plain file or folder name; 400 for anything that could leave a folder.

    The core checks too (and answers 404/422); this makes every such attempt the same 400.
    """
    bad = (not value or value in (".", "..") or "/" in value or "\\" in value or value.startswith("..")
           or os.path.isabs(value) or any(ord(c) < 32 for c in value) or len(value) > 255)
    if bad:
        raise InvalidPath(f"{field}: '{value[:100]}' is not a plain name (no folders, no '..')", field=field)
    return value
