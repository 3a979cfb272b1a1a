"""Short-lived signed URLs: a download link that works in a browser without a long-lived token in it.

A link is ``path?<its own params>&wb_user=U&wb_exp=T&wb_sig=S`` where ``S`` is an HMAC-SHA256,
under a key derived from the home's secret key, of the path, the other parameters, the user
and the expiry. Anyone holding the link may fetch that one resource as that user until it
expires (5 minutes by default); changing any part of it breaks the signature.

The widgets (in the Voila kernel) sign; the server verifies. Both read the same home.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qsl, urlencode

from .crypto import load_key

DEFAULT_TTL = 300.0
PARAMS = ("wb_user", "wb_exp", "wb_sig")


def _key() -> bytes:
    return hashlib.sha256(b"workbench url signing\0" + load_key()).digest()


def _message(path: str, params: list[tuple[str, str]], user: str, exp: int) -> bytes:
    rest = urlencode(sorted((k, v) for k, v in params if k not in PARAMS))
    return f"GET\n{path}\n{rest}\n{user}\n{exp}".encode()


def sign(path: str, user: str, params: dict[str, str] | None = None, *, ttl: float = DEFAULT_TTL,
         now: float | None = None) -> str:
    """``path?query`` with the signature appended; ``path`` is the URL path (``/api/...``)."""
    items = [(k, str(v)) for k, v in (params or {}).items() if v is not None]
    exp = int((time.time() if now is None else now) + ttl)
    sig = hmac.new(_key(), _message(path, items, user, exp), hashlib.sha256).hexdigest()
    return f"{path}?{urlencode(items + [('wb_user', user), ('wb_exp', str(exp)), ('wb_sig', sig)])}"


def verify(path: str, query: str, *, now: float | None = None) -> str | None:
    """The user a valid, unexpired signature was made for; None otherwise."""
    items = parse_qsl(query, keep_blank_values=True)
    got = dict(items)
    user, exp, sig = got.get("wb_user"), got.get("wb_exp"), got.get("wb_sig")
    if not (user and exp and sig and exp.isdigit()):
        return None
    if int(exp) < (time.time() if now is None else now):
        return None
    want = hmac.new(_key(), _message(path, items, user, int(exp)), hashlib.sha256).hexdigest()
    return user if hmac.compare_digest(want, sig) else None


def is_signed(query: str) -> bool:
    return "wb_sig=" in query
