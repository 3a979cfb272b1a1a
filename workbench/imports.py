"""Which server paths a request may name: only files inside the import folder, and only when one is set.

A path in a request (``dataset_path``, a local model folder) is read by the server with the
server's rights. Without a rule, any caller could read any file it can name (the key file
included), so paths are off unless ``WORKBENCH_IMPORT_DIR`` names a folder, and then only
what resolves inside it (symlinks followed) is accepted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import settings
from .errors import Forbidden, InvalidInput

ENV = "WORKBENCH_IMPORT_DIR"


def looks_like_path(ref: str) -> bool:
    """True when ``ref`` names a file or folder rather than an id (``tiny-chat``, ``org/name``)."""
    return (os.path.isabs(ref) or ref.startswith(("~", ".")) or "\\" in ref
            or (os.sep in ref and os.path.exists(ref)) or os.path.exists(ref))


def check_import_path(raw: str, field: str) -> Path:
    """The resolved path if it lies inside the import folder; Forbidden otherwise.

    The message never says whether the file exists or what it holds: it only names the rule.
    """
    root = settings.current().import_dir
    if root is None:
        raise Forbidden(f"{field}: server paths are disabled; set {ENV} to a folder to import from, "
                        "or send the data in the request", field=field)
    path = Path(os.path.expanduser(raw))
    if not path.is_absolute():
        path = root / path
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise Forbidden(f"{field}: only paths inside the import folder ({ENV}) are accepted", field=field)
    return resolved


_QUOTED = re.compile(r" \(got .*?\)(?=$|;|,| \()", re.S)


def _strip(message: str) -> str:
    return _QUOTED.sub("", message)


def unquoted(exc: InvalidInput, field: str) -> InvalidInput:
    """``exc`` about a file read from a server path, with every quoted value taken out.

    Validation errors quote short offending values (``got 'root:x:0:0'``), which is helpful for
    one's own upload and a leak for a file that the server read: only line numbers, field names
    and the rule broken are kept.
    """
    details = exc.details
    if isinstance(details, dict) and isinstance(details.get("errors"), list):
        details = {**details, "errors": [{"line": e.get("line"), "field": e.get("field"),
                                          "message": _strip(str(e.get("message", "")))}
                                         for e in details["errors"] if isinstance(e, dict)]}
    else:
        details = None
    message = _strip(exc.message)
    return type(exc)(message if message.startswith(f"{field}:") else f"{field}: {message}",
                     field=field, details=details)
