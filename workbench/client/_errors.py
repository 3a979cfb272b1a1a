"""The one exception the SDK raises for an answer the server refused."""

from __future__ import annotations

from typing import Any

import httpx


class APIError(Exception):
    """A non-2xx response. ``code`` is the API's error code (``NOT_FOUND``, ``CONFLICT``…)."""

    def __init__(self, status_code: int, code: str, message: str, field: str | None = None,
                 details: Any = None):
        super().__init__(f"{status_code} {code}: {message}" + (f" (field: {field})" if field else ""))
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field
        self.details = details

    @classmethod
    def from_response(cls, response: httpx.Response) -> APIError:
        """Read ``{"success": false, "error": {...}}``, or whatever the body holds instead."""
        code, message, field, details = f"HTTP_{response.status_code}", response.reason_phrase, None, None
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            text = response.text.strip()
            return cls(response.status_code, code, text[:500] or message)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            code = str(err.get("code") or code)
            message = str(err.get("message") or message)
            field, details = err.get("field"), err.get("details")
        elif isinstance(err, str):  # {"success": false, "error": "Cannot delete global models"}
            message = err
        elif isinstance(body, dict) and isinstance(body.get("detail"), str):  # a bare Starlette HTTPException
            message = body["detail"]
        return cls(response.status_code, code, message, field, details)

    @classmethod
    def from_status(cls, status_code: int, body: bytes | bytearray | None) -> APIError:
        """The same reading for an answer that did not come through httpx (a refused WebSocket)."""
        response = httpx.Response(status_code, content=bytes(body or b""))
        response.read()
        return cls.from_response(response)
