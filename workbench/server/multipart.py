"""Streamed ``multipart/form-data`` uploads: the file part goes to a temporary file as it arrives.

A dataset upload may be hundreds of MB, so it is never held in memory: python-multipart
parses the stream, small text fields are kept (bounded), and the one file part is written to
``$WORKBENCH_HOME/tmp/.upload-*`` with the size limit checked on every chunk. Any refusal
removes the partial file; the caller removes the finished one when it is done with it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.multipart import (
    MultipartParser,
    MultipartState,
    parse_options_header,
)
from starlette.requests import Request

from .. import home
from ..errors import InvalidInput, TooLarge
from .common import call, content_length, plain_name
from .errors import BadRequest, InvalidPath, UnsupportedMediaType

MULTIPART_SLACK = 64 * 1024  # boundaries, part headers and the small text fields around the file
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16


@dataclass
class Upload:
    path: Path
    filename: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None
    disposition: bytes = b""
    header_name: bytes = b""
    header_value: bytes = b""
    data: bytearray = field(default_factory=bytearray)
    is_file: bool = False


class _Receiver:
    """python-multipart callbacks: text fields kept in memory (small), the file part written to disk.

    Callbacks only record (a failure is kept in ``error``); :meth:`drain`, awaited after each
    ``parser.write``, raises it or writes the file bytes that chunk carried.
    """

    def __init__(self, limit: int, folder: Path):
        self.limit = limit
        self.folder = folder
        self.part = _Part()
        self.parts = 0
        self.fields: dict[str, str] = {}
        self.file: Any = None
        self.path: Path | None = None
        self.filename: str | None = None
        self.size = 0
        self.pending: list[bytes] = []
        self.error: Exception | None = None

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished}

    def fail(self, exc: Exception) -> None:
        self.error = self.error or exc

    def on_part_begin(self) -> None:
        self.part = _Part()
        self.parts += 1
        if self.parts > MAX_PARTS:
            self.fail(InvalidInput(f"body: at most {MAX_PARTS} form parts", field="body"))

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.part.header_name.strip().lower() == b"content-disposition":
            self.part.disposition = self.part.header_value
        self.part.header_name, self.part.header_value = b"", b""

    def on_headers_finished(self) -> None:
        part = self.part
        _, options = parse_options_header(part.disposition)
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            return
        part.filename = options[b"filename"].decode("utf-8", "replace")
        if part.name != "file":
            self.fail(InvalidInput(f"{part.name}: only the 'file' part may carry a file", field="file"))
        elif self.path is not None:
            self.fail(InvalidInput("file: send exactly one file", field="file"))
        elif b"\\" in part.disposition:  # python-multipart keeps only the tail of "C:\\dir\\x": judge the raw header
            self.fail(InvalidPath(f"filename: '{part.filename}' is not a plain name (no folders, no '..')",
                                  field="filename"))
        else:
            try:
                self.filename = plain_name(part.filename, "filename")
            except InvalidPath as exc:
                self.fail(exc)
                return
            suffix = Path(self.filename).suffix.lower()
            fd, name = tempfile.mkstemp(dir=self.folder, prefix=".upload-",
                                        suffix=suffix if suffix.isascii() and len(suffix) <= 8 else "")
            self.file, self.path = os.fdopen(fd, "wb"), Path(name)
            part.is_file = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.is_file:
            self.pending.append(data[start:end])
        elif self.part.filename is None:
            self.part.data += data[start:end]
            if len(self.part.data) > MAX_FIELD_BYTES:
                self.fail(TooLarge(f"form field '{self.part.name}' is larger than {MAX_FIELD_BYTES} bytes",
                                   field=self.part.name or "body"))

    def on_part_end(self) -> None:
        if self.part.filename is None and self.part.name:
            self.fields[self.part.name] = self.part.data.decode("utf-8", "replace")

    async def drain(self) -> None:
        """Raise what the callbacks recorded, or write the file bytes this chunk carried (in a worker
        thread: a slow disk must not stall the event loop)."""
        if self.error is not None:
            raise self.error
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"file is larger than the upload limit of {self.limit / 2**20:.1f} MB", field="file")
        await call(self.file.write, data)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


async def receive_upload(request: Request, limit: int) -> Upload:
    """Stream a ``multipart/form-data`` body: the ``file`` part to a temp file, counted as it arrives.

    413 when ``Content-Length`` already says the body is too big (before reading a byte),
    or as soon as the bytes received pass the limit (a chunked or lying client).
    """
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise UnsupportedMediaType("upload the file as multipart/form-data with a 'file' part", field="file")
    declared = content_length(request)
    if declared is not None and declared > limit + MULTIPART_SLACK:
        raise TooLarge(f"upload is larger than the limit of {limit / 2**20:.1f} MB", field="file")
    receiver = _Receiver(limit, home.subdir("tmp"))
    parser = MultipartParser(options[b"boundary"], receiver.callbacks())
    received = 0
    try:
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit + MULTIPART_SLACK:
                    raise TooLarge(f"upload is larger than the limit of {limit / 2**20:.1f} MB", field="file")
                parser.write(chunk)
                await receiver.drain()
            parser.finalize()
            if parser.state not in (MultipartState.END, MultipartState.BOUNDARY_PADDING):
                raise ValueError("the body ends before the closing boundary")
        except ValueError as exc:  # python-multipart's parse errors
            raise BadRequest(f"body: malformed multipart data ({exc})", field="body") from None
        await receiver.drain()
        if receiver.path is None or receiver.filename is None:
            raise InvalidInput("file: a 'file' part with a filename is required", field="file")
    except BaseException:
        receiver.close()
        if receiver.path is not None:
            receiver.path.unlink(missing_ok=True)
        raise
    receiver.close()
    return Upload(receiver.path, receiver.filename, receiver.size, receiver.fields)
