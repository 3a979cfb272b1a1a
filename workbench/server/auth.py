"""Bearer-token authentication: who is calling, put on ``request.state.user`` for every core call.

Two modes:

* **local single-user** (``required=False``): no token needed, the caller is ``LOCAL_USER``;
  a token that is sent must still be valid, and then it is that token's user;
* **multi-user** (``required=True``): a missing, unknown or revoked token is a 401.

``/health`` and ``/openapi.json`` are public. WebSockets (and the SSE stream, since browsers'
``EventSource`` cannot set headers) may pass the token as ``?token=``; a header wins over it.

A pure ASGI middleware (not ``BaseHTTPMiddleware``), so streamed responses pass untouched.
Lookups are cached against the store file's identity: any write to the store (a revoked
token, a new user) changes it, so a cached answer is never older than the store itself.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..records import LOCAL_USER
from .errors import Unauthorized, error_body, json_response
from .routes._common import home_root

PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
CACHE_SIZE = 1024


def _authenticate(token: str) -> str | None:
    from ..users import authenticate  # imported on first use: the module reads the store

    return authenticate(token)


class TokenCache:
    """``token digest → user id`` answers, valid while the store file is the one they were read from."""

    def __init__(self, lookup: Callable[[str], str | None] = _authenticate):
        self.lookup = lookup
        self.items: dict[tuple[str, str], tuple[tuple[int, int, int] | None, str | None]] = {}
        self.lock = threading.Lock()

    @staticmethod
    def _stamp(path: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    @staticmethod
    def _key(token: str) -> tuple[str, str]:
        return str(home_root() / "store.json"), hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()

    def cached(self, token: str) -> str | None | bool:
        """The user id (or None) if the answer is known for the store as it is now, else False.

        Only a stat and a dict lookup: cheap enough to run on the event loop."""
        key = self._key(token)
        hit = self.items.get(key)
        if hit is not None and hit[0] is not None and hit[0] == self._stamp(key[0]):
            return hit[1]
        return False

    def user(self, token: str) -> str | None:
        """The user id of ``token`` (None if unknown or revoked), from the store when not cached."""
        key = self._key(token)
        path = key[0]
        stamp = self._stamp(path)
        with self.lock:
            hit = self.items.get(key)
        if hit is not None and stamp is not None and hit[0] == stamp:
            return hit[1]
        user = self.lookup(token)
        if self._stamp(path) == stamp:  # nothing wrote the store meanwhile: the answer matches the stamp
            with self.lock:
                if len(self.items) >= CACHE_SIZE:
                    self.items.clear()
                self.items[key] = (stamp, user)
        return user


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
    def __init__(self, app: ASGIApp, *, required: bool, cache: TokenCache | None = None):
        self.app = app
        self.required = required
        self.cache = cache or TokenCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if scope.get("path") in PUBLIC_PATHS:
            state["user"] = None
            await self.app(scope, receive, send)
            return
        token, problem = bearer_token(scope)
        user = None
        if token is not None:
            user = self.cache.cached(token)
            if user is False:
                user = await run_in_threadpool(self.cache.user, token)
            if user is None:
                problem = "invalid or revoked token"
        elif problem is None and self.required:
            problem = "a bearer token is required (Authorization: Bearer <token>)"
        if problem is not None:
            await self._refuse(scope, receive, send, problem)
            return
        state["user"] = user or LOCAL_USER
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
