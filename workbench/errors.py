"""Domain errors shared by every front-end.

Core services raise these; the REST server maps them to HTTP status codes and the
widgets show their message. ``field`` names the offending input so both can point at it.
"""

from __future__ import annotations

from typing import Any


class WorkbenchError(Exception):
    code = "ERROR"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, details: Any = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        if self.details is not None:
            out["details"] = self.details
        return out


class InvalidInput(WorkbenchError):
    code = "INVALID_INPUT"
    http_status = 422


class ValidationFailed(InvalidInput):
    """Input was read but failed validation; ``details`` lists every error found."""

    code = "VALIDATION_FAILED"


class BadQuery(WorkbenchError):
    """A query parameter that cannot be read (a date that is not a date, an unknown granularity)."""

    code = "BAD_REQUEST"
    http_status = 400


class NotFound(WorkbenchError):
    code = "NOT_FOUND"
    http_status = 404


class Conflict(WorkbenchError):
    code = "CONFLICT"
    http_status = 409


class Forbidden(WorkbenchError):
    code = "FORBIDDEN"
    http_status = 403


class TooLarge(WorkbenchError):
    code = "TOO_LARGE"
    http_status = 413


class ModelUnavailable(WorkbenchError):
    """A model could not be loaded (e.g. the hub is unreachable and it is not cached)."""

    code = "MODEL_UNAVAILABLE"
    http_status = 400


class QuotaExceeded(WorkbenchError):
    """A per-user limit (active jobs, live streams) is reached; the message names the limit and its setting."""

    code = "QUOTA_EXCEEDED"
    http_status = 429


class PaymentRequired(WorkbenchError):
    """A deployment's budget is spent: the request is refused, neither billed nor counted."""

    code = "BUDGET_EXCEEDED"
    http_status = 402


class Unauthenticated(WorkbenchError):
    """A credential the call needs is missing (e.g. no RunPod API key among the user's secrets)."""

    code = "UNAUTHENTICATED"
    http_status = 401


class Unavailable(WorkbenchError):
    """A backend is busy or unreachable right now (a full generation queue, a provider down); retry later."""

    code = "UNAVAILABLE"
    http_status = 503


class BadDocument(WorkbenchError):
    """An upload that cannot be read as what it claims to be (a corrupt PDF, a broken DOCX)."""

    code = "BAD_DOCUMENT"
    http_status = 400


class UnsupportedType(WorkbenchError):
    """An upload of a kind the workbench does not read (only PDF, DOCX, TXT and MD are)."""

    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415
