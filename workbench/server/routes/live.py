"""Live job events over Server-Sent Events and a WebSocket: the items of :func:`workbench.jobs.watch.watch`.

``watch`` is a blocking generator (it polls the job record and tails ``metrics.jsonl``), so
it runs in a thread of its own per listener, handing items to the event loop through a
queue. A dedicated thread rather than the shared worker pool, because a listener may stay
for hours and must not hold one of the pool's tokens that whole time.

Both streams carry the same items, in the same order:

* ``{"kind": "status", "status": …, "error": …}`` when the job's status changes;
* ``{"kind": "metric", "type": "train"|"eval"|"checkpoint"|"status", …}`` per metrics event.

They end once the job is final (completed, failed, cancelled), with that final status as
the last item — deferred past any metrics still being drained, so "completed" really
comes last, live or replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from ...errors import NotFound, QuotaExceeded, WorkbenchError
from ...job_states import FINAL
from ...jobs.watch import watch
from ...quotas import STREAMS
from ..common import Query, call, services
from ..errors import error_body, json_response
from ..openapi import Registry
from ..responses import dumps

api = Registry("live", "live job events")
log = logging.getLogger("workbench.server")

HEARTBEAT_S = 15.0
QUEUE_ITEMS = 256  # the watcher thread waits when a slow client is this far behind
_END = object()


class EventsQuery(Query):
    from_start: bool = Field(True, description="replay the job's metrics history first (false: only new events)")


class _Stopped(Exception):
    """Raised inside the watcher thread once its listener has gone."""


class _StoppableJobs:
    """The job service as ``watch`` sees it: ``get`` raises once the listener is gone, ending the thread."""

    def __init__(self, jobs: Any, stop: threading.Event):
        self.jobs = jobs
        self.stop = stop

    def get(self, job_id: str, owner: str) -> dict[str, Any]:
        if self.stop.is_set():
            raise _Stopped
        return self.jobs.get(job_id, owner)


async def follow(jobs: Any, job_id: str, owner: str, *, from_start: bool = True,
                 heartbeat: float | None = None) -> AsyncIterator[dict[str, Any] | None]:
    """Watch items as they come; ``None`` after ``heartbeat`` quiet seconds (so a writer can notice
    a client that left). Closing this generator stops the thread within one poll."""
    heartbeat = heartbeat or HEARTBEAT_S
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()
    room = threading.Semaphore(QUEUE_ITEMS)

    def put(item: Any) -> bool:
        while not room.acquire(timeout=0.5):
            if stop.is_set():
                return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone
            return False
        return True

    def produce() -> None:
        final = None
        try:
            for item in watch(_StoppableJobs(jobs, stop), job_id, owner, from_start=from_start):
                if item["kind"] == "status" and item["status"] in FINAL:
                    final = item  # after the metrics still to drain
                elif not put(item):
                    return
            if final is not None:
                put(final)
        except _Stopped:
            return
        except WorkbenchError as exc:  # e.g. the job was deleted while watched
            put(exc)
        except Exception as exc:  # noqa: BLE001 - a bug: logged, and the stream ends
            log.exception("watching job %s failed", job_id)
            put(exc)
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, _END)

    threading.Thread(target=produce, name=f"watch-{job_id}", daemon=True).start()
    getter: asyncio.Future[Any] | None = None
    try:
        while True:
            getter = getter or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter}, timeout=heartbeat)
            if not done:
                yield None
                continue
            item, getter = getter.result(), None
            if item is _END:
                return
            room.release()
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        if getter is not None:
            getter.cancel()


async def _require_job(request_or_ws: Request | WebSocket, job_id: str) -> None:
    await call(services(request_or_ws).jobs.get, job_id, request_or_ws.state.user)  # 404 before streaming


@api.get("/api/training/{jobId}/events", summary="Stream job events (SSE)", query=EventsQuery,
         media_type="text/event-stream", errors=(404,))
async def job_events(request: Request, query: EventsQuery) -> Response:
    """``event: status`` / ``event: metric`` with ``data: <JSON>`` per item, until the job is final.

    A ``: keep-alive`` comment goes out after 15 quiet seconds. The bearer token may also be
    given as ``?token=`` (browsers' EventSource cannot set headers).
    """
    job_id = request.path_params["jobId"]
    await _require_job(request, job_id)
    if request.method == "HEAD":  # the headers only: never follow a job for a body nobody reads
        return Response(media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    user = request.state.user
    STREAMS.acquire(user)  # 429 when the user has too many streams open; released when this one ends
    items = follow(services(request).jobs, job_id, user, from_start=query.from_start)

    async def sse() -> AsyncIterator[bytes]:
        try:
            async for item in items:
                if item is None:
                    yield b": keep-alive\n\n"
                else:
                    yield b"event: " + item["kind"].encode() + b"\ndata: " + dumps(item) + b"\n\n"
        except WorkbenchError as exc:
            yield b"event: error\ndata: " + dumps(error_body(exc)) + b"\n\n"
        except Exception:  # noqa: BLE001 - logged by the watcher; end the stream cleanly
            yield b"event: error\ndata: " + dumps({"success": False, "error": {"code": "INTERNAL_ERROR",
                                                                               "message": "watch failed"}}) + b"\n\n"
        finally:
            await items.aclose()

    return HeldResponse(StreamingResponse(sse(), media_type="text/event-stream",
                                          headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}),
                        lambda: STREAMS.release(user))


class HeldResponse(Response):
    """A response that holds a resource (a stream slot) until it has been sent or the client left."""

    def __init__(self, inner: Response, release: Any):
        super().__init__(status_code=inner.status_code)
        self.inner, self.release = inner, release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.release()


@api.websocket("/ws/training/{jobId}", summary="Stream job events (WebSocket)", errors=(404,))
async def job_events_ws(websocket: WebSocket) -> None:
    """The same items as the SSE stream, one JSON text frame each; the server closes (1000) at the end.

    Authenticate with ``Authorization: Bearer`` or ``?token=``. A refused connection gets an
    HTTP 401/404 answer where the server supports it, else a close with 4401/4404.
    """
    job_id = websocket.path_params["jobId"]
    try:
        await _require_job(websocket, job_id)
    except NotFound as exc:
        await deny(websocket, exc.http_status, error_body(exc))
        return
    user = websocket.state.user
    try:
        STREAMS.acquire(user)
    except QuotaExceeded as exc:
        await deny(websocket, exc.http_status, error_body(exc))
        return
    try:
        await _stream_ws(websocket, job_id, user)
    finally:
        STREAMS.release(user)


async def _stream_ws(websocket: WebSocket, job_id: str, user: str) -> None:
    await websocket.accept()
    gone = asyncio.ensure_future(_until_disconnect(websocket))
    items = follow(services(websocket).jobs, job_id, user)
    try:
        async for item in items:
            if gone.done():
                return
            if item is not None:
                await websocket.send_text(dumps(item).decode())
        await websocket.close(1000)
    except WebSocketDisconnect:
        return
    except WorkbenchError as exc:
        with contextlib.suppress(Exception):
            await websocket.send_text(dumps(error_body(exc)).decode())
            await websocket.close(1011)
    finally:
        gone.cancel()
        await items.aclose()


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def deny(websocket: WebSocket, status: int, body: dict[str, Any]) -> None:
    """Refuse a WebSocket before accepting it: an HTTP answer when the server can send one."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(json_response(body, status))
    else:
        await websocket.close(code=4000 + status)
