"""Small helpers shared by the panels: CSS classes, escaped messages, error display."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from typing import Any, TypeVar

import ipywidgets as w

W = TypeVar("W", bound=w.DOMWidget)

ERROR_CLASS = "wb-error"
OK_CLASS = "wb-ok"
MAX_LISTED_ERRORS = 50


def css(widget: W, *classes: str) -> W:
    """Add stable CSS classes (browser tests and styles rely on them); returns the widget."""
    for cls in classes:
        widget.add_class(cls)
    return widget


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A table cell: ``—`` for missing, 6 significant digits for floats, escaped text otherwise."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return esc(value)


def inline_error_html(exc: BaseException | str) -> str:
    """A one-line error for a panel's error slot."""
    msg = exc if isinstance(exc, str) else (getattr(exc, "message", None) or str(exc))
    return f'<div class="wb-error-text">⚠️ {esc(msg)}</div>'


def ok_html(message: str) -> str:
    return f'<div class="{OK_CLASS}" style="color:#1a7f37">{esc(message)}</div>'


def info_html(message: str) -> str:
    return f'<div class="wb-info" style="color:#555">{esc(message)}</div>'


def error_message(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc)


def line_errors_html(errors: list[dict[str, Any]], total: int | None = None, cap: int = MAX_LISTED_ERRORS) -> str:
    """Line-numbered validation errors as a list (the first ``cap``, with the total)."""
    total = len(errors) if total is None else total
    items = "".join(
        f'<li class="wb-line-error"><b>line {esc(e.get("line", "?"))}</b> '
        f'<code>{esc(e.get("field", ""))}</code>: {esc(e.get("message", ""))}</li>'
        for e in errors[:cap]
    )
    shown = min(len(errors), cap)
    more = f"<div>showing {shown} of {total} errors</div>" if total > shown else f"<div>{total} error(s)</div>"
    return f"{more}<ul>{items}</ul>"


def error_html(exc_or_message: BaseException | str) -> str:
    """An error box with the message, plus line-numbered errors when ``details["errors"]`` has them."""
    if isinstance(exc_or_message, BaseException):
        message = error_message(exc_or_message)
        details = getattr(exc_or_message, "details", None)
    else:
        message, details = exc_or_message, None
    body = f"<b>Error:</b> {esc(message)}"
    if isinstance(details, dict) and isinstance(details.get("errors"), list):
        body += line_errors_html(details["errors"], details.get("total_errors"))
    return f'<div class="{ERROR_CLASS}" style="color:#b00020">{body}</div>'


@functools.cache
def backend_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a backend call can raise that a panel shows instead of raising: the core's
    :class:`~workbench.errors.WorkbenchError`, the SDK's ``APIError`` and ``httpx.HTTPError`` (a
    refused or dropped connection to a remote workbench), the last two where installed."""
    from ..errors import WorkbenchError

    errors: list[type[BaseException]] = [WorkbenchError]
    try:
        from ..client import APIError

        errors.append(APIError)
    except ImportError:  # pragma: no cover - the client (httpx) is optional for local use
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def guarded(target: w.HTML, fn: Callable[..., Any], *args: Any,
            render: Callable[[BaseException], str] = error_html) -> tuple[bool, Any]:
    """The one error guard of the panels' handlers: run ``fn(*args)``; on a backend error show it
    in ``target`` (with ``render``: the error box by default) and return ``(False, None)``."""
    try:
        return True, fn(*args)
    except backend_errors() as exc:
        target.value = render(exc)
        return False, None


def append(out: w.Output, text: str) -> None:
    """Write to an Output widget without ``print`` (safe from callbacks and threads)."""
    out.append_stdout(text if text.endswith("\n") else text + "\n")
