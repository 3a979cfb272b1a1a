"""How failures leave the server: one JSON shape, the core's status codes, never a 500 for bad input.

Every error body is ``{"success": false, "error": {"code", "message", "field"?, "details"?}}``:

* :class:`~workbench.errors.WorkbenchError` subclasses raised by the core keep their own
  ``http_status`` (404 unknown or another user's id, 409 state conflict, 413, 422 …);
* request bodies and query strings are validated with pydantic models; a failure is a 422
  ``INVALID_INPUT`` whose ``message`` starts with the dotted ``field`` it is about;
* the few errors the HTTP layer itself detects (unparsable JSON, a path in a file name,
  a missing token, a wrong media type) are small ``WorkbenchError`` subclasses below;
* anything else is a bug: it is logged with its traceback and answered with a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidInput, WorkbenchError
from .responses import ORJSONResponse

log = logging.getLogger("workbench.server")

_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
          405: "METHOD_NOT_ALLOWED", 413: "TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


class BadRequest(WorkbenchError):
    """Syntactically unusable input, e.g. a body that is not JSON."""

    code = "BAD_REQUEST"
    http_status = 400


class InvalidPath(WorkbenchError):
    """A file or checkpoint name that tries to leave its folder (``../x``, ``/etc``, ``a\\b``)."""

    code = "INVALID_PATH"
    http_status = 400


class Unauthorized(WorkbenchError):
    code = "UNAUTHORIZED"
    http_status = 401


class UnsupportedMediaType(WorkbenchError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class MethodNotAllowed(WorkbenchError):
    code = "METHOD_NOT_ALLOWED"
    http_status = 405


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return ORJSONResponse(payload, status_code=status_code, headers=headers)


def error_body(exc: WorkbenchError) -> dict[str, Any]:
    return {"success": False, "error": exc.to_dict()}


_TYPE_TAGS = {"str", "int", "float", "bool", "bytes", "dict", "list", "none", "function-after", "function-before",
              "function-wrap", "function-plain", "literal", "json-or-python", "union", "tagged-union", "nullable"}


def _dotted(loc: tuple[Any, ...], prefix: str = "") -> str:
    """``("config", "training", "learning_rate")`` → ``config.training.learning_rate``.

    The members pydantic names when a union fails (``str``, ``dict[str,any]``) are not fields: dropped.
    """
    parts = [str(p) for p in loc if not (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p))]
    field = ".".join(parts)
    if prefix:
        return f"{prefix}.{field}" if field else prefix
    return field or "body"


def invalid_from_pydantic(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """A 422 naming the first bad field; ``details`` lists every error (inputs left out: they may be secrets)."""
    details = [{"field": _dotted(e["loc"], prefix), "message": e["msg"].removeprefix("Value error, "),
                "type": e["type"]} for e in exc.errors(include_url=False, include_input=False)]
    if not details:
        return InvalidInput(f"{prefix or 'body'}: invalid input", field=prefix or "body")
    field = details[0]["field"]
    messages = list(dict.fromkeys(d["message"] for d in details if d["field"] == field))  # a union: each option
    return InvalidInput(f"{field}: {' or '.join(messages)}", field=field, details=details)


def with_field_prefix(exc: InvalidInput, prefix: str) -> InvalidInput:
    """The core names config fields from the config's root (``training.learning_rate``); a body
    that nests the config under ``config`` reports ``config.training.learning_rate``."""
    reason = exc.message.split(f"{exc.field}: ", 1)[-1] if exc.field else exc.message
    field = f"{prefix}.{exc.field}" if exc.field else prefix
    return type(exc)(f"{field}: {reason}", field=field, details=exc.details)


# --- exception handlers (registered by create_app) ---------------------------------------------

async def handle_workbench_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WorkbenchError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return json_response(error_body(exc), exc.http_status, headers)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """A pydantic model inside the core rejected its input: still the caller's fault, so 422."""
    assert isinstance(exc, ValidationError)
    return json_response(error_body(invalid_from_pydantic(exc)), 422)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), in the common shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    code = _CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    message = exc.detail if exc.status_code != 404 else f"no route for {request.method} {request.url.path}"
    return json_response({"success": False, "error": {"code": code, "message": message}},
                         exc.status_code, dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A genuine bug: log it with the traceback, tell the caller nothing internal."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"success": False, "error": {"code": "INTERNAL_ERROR",
                                                      "message": "internal server error (logged on the server)"}},
                         500)
