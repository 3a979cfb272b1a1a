"""The plumbing under :class:`~workbench.client.TrainingClient`: one pooled httpx client with the
bearer token, JSON calls, streamed responses, downloads through ``.part`` files, the token lookup."""

from __future__ import annotations

import email.message
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ._errors import APIError


def find_token(base_url: str) -> str | None:
    """The token a client uses when none is given: ``WORKBENCH_TOKEN``, else the home's, for loopback."""
    from ..home import read_local_token
    from ..settings import LOOPBACK_HOSTS

    env = os.environ.get("WORKBENCH_TOKEN", "").strip()
    if env:
        return env
    host = (urlsplit(base_url).hostname or "").lower()
    return read_local_token() if host in LOOPBACK_HOSTS else None


def filename_from_disposition(header: str | None) -> str | None:
    """The file name of a ``Content-Disposition`` header (plain, quoted or RFC 2231), made safe.

    Only the last path component is kept, so a hostile header can't write outside the folder.
    """
    if not header:
        return None
    msg = email.message.Message()
    msg["content-disposition"] = header
    name = msg.get_filename()
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name if name not in ("", ".", "..") else None


def seg(value: str) -> str:
    """An id as one path segment: a ``/`` or ``?`` in it can't reach another route."""
    return quote(str(value), safe="")


def unwrap(body: Any, key: str) -> Any:
    """``body[key]`` where the API wraps one thing (``{"config": ...}``), else the body."""
    return body[key] if isinstance(body, dict) and key in body else body


def drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class Transport:
    """A pooled ``httpx.Client`` for one server, sending ``Authorization: Bearer`` on every call.

    ``token`` defaults to :func:`find_token` (``WORKBENCH_TOKEN``, else the local user's token
    for a loopback server only, so it never leaves the machine).
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60,
                 transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token or find_token(self.base_url)
        self.timeout = timeout
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                 transport=transport, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call; the decoded JSON body (None when empty), or :class:`APIError`."""
        response = self.http.request(method, path, **kwargs)
        if response.is_error:
            raise APIError.from_response(response)
        if not response.content:
            return None
        return response.json()

    @contextmanager
    def stream(self, path: str, *, params: Any = None, headers: dict[str, str] | None = None,
               read_timeout: float | None = None) -> Iterator[httpx.Response]:
        """A streamed GET whose status was checked (an error body is read and raised)."""
        with self.http.stream("GET", path, params=params, headers=headers,
                              timeout=httpx.Timeout(self.timeout, read=read_timeout)) as response:
            if response.is_error:
                response.read()
                raise APIError.from_response(response)
            yield response

    def download(self, path: str, dest: Path, params: dict[str, str] | None, fallback: str) -> Path:
        """Stream to ``dest`` (a file, or an existing folder: the server's file name in it).

        Written to ``<name>.part`` and renamed when complete, so a broken transfer leaves no file.
        """
        with self.stream(path, params=params) as response:
            if dest.is_dir():
                name = filename_from_disposition(response.headers.get("content-disposition"))
                dest = dest / (name or fallback.replace("/", "_").replace("\\", "_"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            try:
                with part.open("wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
                os.replace(part, dest)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
        return dest

    def ws_url(self, path: str) -> str:
        """``path`` on this server as a ``ws://`` (``wss://`` for https) URL."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{path}"
