"""Bearer-token authentication: who is calling, put on ``request.state.user`` for every core call.

A token is always required, on loopback too (as Jupyter does): a missing, unknown or revoked
token is a 401. Single-user use needs no set-up all the same: the local user's token is
created on first start in ``$WORKBENCH_HOME/token`` (mode 600), and the SDK, the CLI and the
widgets read it from there.

Public: ``/health``, ``/openapi.json`` and ``GET /api/models`` (the reference lists models
without auth; an anonymous caller sees the built-in ones). WebSockets and the SSE stream
(browsers' ``EventSource`` cannot set headers) may pass the token as ``?token=``; a header
wins over it. A GET with a valid short-lived signature (:mod:`workbench.signing`) is its
signer's user: that is how the web app's download links work without a token in the URL.

A pure ASGI middleware (not ``BaseHTTPMiddleware``), so streamed responses pass untouched.
Token lookups hit the store's lock-free snapshot index, never its lock.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..signing import is_signed, verify
from .errors import Unauthorized, error_body, json_response

PUBLIC = frozenset({("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/api/models")})
ANONYMOUS = ""  # the owner of nothing: a public route called without a token sees only global records


def _authenticate(token: str) -> str | None:
    from ..users import (
        authenticate,  # imported on first use: the module reads the store
    )

    return authenticate(token)


def bearer_token(scope: Scope) -> tuple[str | None, str | None]:
    """``(token, problem)`` from the Authorization header, else (WebSocket, SSE) from ``?token=``."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                return None, "the Authorization header must be 'Bearer <token>'"
            return credentials.strip(), None
    if scope["type"] == "websocket" or scope.get("path", "").endswith("/events"):
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if values and values[-1]:
            return values[-1], None
    return None, None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, public: frozenset[tuple[str, str]] = PUBLIC,
                 lookup: Callable[[str], str | None] = _authenticate):
        self.app = app
        self.public = public
        self.lookup = lookup

    def _public(self, scope: Scope) -> bool:
        method = "GET" if scope["type"] == "websocket" else scope.get("method", "GET")
        return (("GET" if method == "HEAD" else method), scope.get("path", "")) in self.public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        token, problem = bearer_token(scope)
        user = None
        if token is not None:
            user = self.lookup(token)  # a dict lookup in the store's snapshot: fine on the event loop
            if user is None:
                problem = "invalid or revoked token"
        elif problem is None and scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            query = scope.get("query_string", b"").decode("latin-1")
            if is_signed(query):
                user = verify(scope.get("path", ""), query)
                if user is None:
                    problem = "this link has expired or was altered; open it again from the app"
        if user is None and problem is None:
            if self._public(scope):
                state["user"] = ANONYMOUS
                await self.app(scope, receive, send)
                return
            problem = "a bearer token is required (Authorization: Bearer <token>; `workbench token` prints yours)"
        if problem is not None:
            await self._refuse(scope, receive, send, problem)
            return
        state["user"] = user
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, message: str) -> None:
        body = error_body(Unauthorized(message))
        if scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            if "websocket.http.response" in scope.get("extensions", {}):
                await websocket.send_denial_response(json_response(body, 401, {"WWW-Authenticate": "Bearer"}))
            else:
                await websocket.close(code=4401, reason="unauthorized")
            return
        await json_response(body, 401, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
