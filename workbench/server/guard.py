"""Host and Origin checks: the server answers only to its own names and its own pages.

* **Host** (DNS rebinding): a page on ``evil.example`` that re-points its name at 127.0.0.1
  reaches the port with ``Host: evil.example``. Only the loopback names, the address the
  server was bound to and ``WORKBENCH_ALLOWED_HOSTS`` are answered; anything else is a 400.
* **Origin** (CSRF, cross-site WebSockets): a browser names the page that sent a request.
  A request from a page that is not this server's own origin (scheme, host and port), or one
  of ``WORKBENCH_ALLOWED_ORIGINS``, is a 403, on HTTP and on the WebSocket handshake. Clients
  that are not browsers send no Origin and are judged by their token alone.

A pure ASGI middleware, outermost, so nothing else runs for a refused request.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..errors import Forbidden, WorkbenchError
from ..settings import LOOPBACK_HOSTS
from .errors import BadRequest, error_body, json_response


def split_host(value: str) -> str:
    """``"[::1]:8000"`` → ``"::1"``, ``"Example.org:80"`` → ``"example.org"``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class HostOriginGuard:
    def __init__(self, app: ASGIApp, *, hosts: Iterable[str] = (), origins: Iterable[str] = ()):
        self.app = app
        names = {split_host(h) for h in hosts if h}
        self.any_host = "*" in names
        self.hosts = frozenset(names | {split_host(h) for h in LOOPBACK_HOSTS})
        self.origins = frozenset(o.strip().lower().rstrip("/") for o in origins if o)

    def problem(self, scope: Scope) -> WorkbenchError | None:
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not host:
            return BadRequest("a Host header is required", field="host")
        if not self.any_host and split_host(host) not in self.hosts:
            return BadRequest(f"Host '{host[:100]}' is not one of this server's names; "
                              "add it to WORKBENCH_ALLOWED_HOSTS to serve it", field="host")
        origin = headers.get(b"origin")
        if origin is None:
            return None
        origin_s = origin.decode("latin-1").strip().lower().rstrip("/")
        if origin_s in self.origins:
            return None
        parts = urlsplit(origin_s)
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
        if parts.scheme == scheme and parts.netloc == host.strip().lower():
            return None  # same origin: the page was served by this server
        return Forbidden(f"requests from the page at '{origin_s[:100]}' are not allowed (cross-origin); "
                         "add it to WORKBENCH_ALLOWED_ORIGINS to allow it", field="origin")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self.problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        response = json_response(error_body(problem), problem.http_status)
        if scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            if "websocket.http.response" in scope.get("extensions", {}):
                await websocket.send_denial_response(response)
            else:
                await websocket.close(code=4403 if problem.http_status == 403 else 4400, reason=problem.code.lower())
            return
        await response(scope, receive, send)
