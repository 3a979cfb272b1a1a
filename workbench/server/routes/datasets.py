"""``/api/training/dataset``: upload (streamed to disk, then validated by the core), list, stats, split."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, Json, ValidationError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request

from ... import home
from ...errors import InvalidInput, TooLarge
from ..errors import BadRequest, InvalidPath, UnsupportedMediaType, invalid_from_pydantic
from ..openapi import Registry
from ._common import Body, Loose, Query, Success, call, call_long, content_length, model_ref, owner, plain_name, services, settings

api = Registry("datasets", "training datasets")

MULTIPART_SLACK = 64 * 1024  # boundaries, part headers and the small text fields around the file
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16


class DatasetFields(Body):
    """The text fields of an upload."""

    name: str | None = Field(None, min_length=1, max_length=200, description="default: the file name's stem")
    format: Literal["auto", "chat", "prompt_completion", "csv"] = "auto"
    column_mapping: Json[dict[str, Any]] | None = Field(
        None, description='CSV only, a JSON object: {"prompt": COL, "completion": COL} or {"messages": COL}')


class DatasetUploadForm(DatasetFields):
    """``multipart/form-data``: the file plus the text fields."""

    file: bytes = Field(description="chat JSONL, prompt/completion JSONL or CSV")


class DatasetOut(Loose):
    id: str
    name: str
    samples: int
    format: str
    size_mb: float
    created_at: str


class DatasetList(Loose):
    datasets: list[DatasetOut]


class DatasetCreated(Loose):
    success: Literal[True]
    dataset: DatasetOut


class DatasetDetail(Loose):
    dataset: DatasetOut
    stats: dict[str, Any]


class StatsQuery(Query):
    model: str | None = Field(None, min_length=1, max_length=500,
                              description="count tokens with this model's tokenizer (slower)")


class SplitBody(Body):
    eval_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = Field(42, ge=0, le=2**32 - 1)


class SplitResult(Loose):
    success: Literal[True]
    train: DatasetOut
    eval: DatasetOut


@api.get("/api/training/dataset", summary="List datasets", response=DatasetList)
async def list_datasets(request: Request) -> dict[str, Any]:
    return {"datasets": await call(services(request).datasets.list, owner(request))}


@api.post("/api/training/dataset", summary="Upload a dataset", form=DatasetUploadForm, response=DatasetCreated,
          status=201, errors=(400, 413, 415))
async def upload_dataset(request: Request) -> dict[str, Any]:
    """Streamed to a temporary file, then validated and normalised by the core.

    A file with bad records is refused with 422 and every error found, each with its
    ``line`` and ``field`` (``error.details.errors``); nothing is stored then.
    """
    limit = settings(request).max_upload_bytes
    upload = await receive_upload(request, limit)
    try:
        try:
            fields = DatasetFields.model_validate(upload.fields)
        except ValidationError as exc:
            raise invalid_from_pydantic(exc) from None
        name = fields.name or Path(upload.filename).stem or "dataset"
        record = await call_long(services(request).datasets.register, upload.path, name=name, format=fields.format,
                            column_mapping=fields.column_mapping, filename=upload.filename,
                            owner=owner(request), max_bytes=limit)
    finally:
        upload.path.unlink(missing_ok=True)
    return {"success": True, "dataset": record}


@api.get("/api/training/dataset/{id}", summary="Get a dataset with its stats", query=StatsQuery,
         response=DatasetDetail, errors=(404,))
async def get_dataset(request: Request, query: StatsQuery) -> dict[str, Any]:
    """Stored character stats, or token stats with ``?model=`` (loads that model's tokenizer)."""
    svc, dataset_id, user = services(request).datasets, request.path_params["id"], owner(request)
    record = await call(svc.get, dataset_id, user)
    model = model_ref(request, query.model, "model")
    stats = await call_long(svc.stats, dataset_id, user, model) if model else record["stats"]
    return {"dataset": record, "stats": stats}


class PreviewQuery(Query):
    model: str = Field("tiny-chat", min_length=1, max_length=500, description="render with this model's template")
    index: int = Field(0, ge=0, le=10_000_000, description="which sample")


@api.get("/api/training/dataset/{id}/preview", summary="Preview one sample with its trained tokens",
         query=PreviewQuery, response=Loose, errors=(404, 422))
async def preview_dataset(request: Request, query: PreviewQuery) -> dict[str, Any]:
    """One rendered sample as tokens, each marked trained or masked, exactly as training masks it."""
    model = model_ref(request, query.model, "model")
    return await call_long(services(request).datasets.preview, request.path_params["id"], owner(request),
                      model=model, index=query.index)


@api.delete("/api/training/dataset/{id}", summary="Delete a dataset", response=Success, errors=(404,))
async def delete_dataset(request: Request) -> dict[str, Any]:
    await call(services(request).datasets.delete, request.path_params["id"], owner(request))
    return {"success": True}


@api.post("/api/training/dataset/{id}/split", summary="Split a dataset into train and eval", body=SplitBody,
          body_optional=True, response=SplitResult, status=201, errors=(404,))
async def split_dataset(request: Request, body: SplitBody) -> dict[str, Any]:
    """Two new datasets, ``<name> (train)`` and ``<name> (eval)``, by a seeded shuffle."""
    parts = await call_long(services(request).datasets.split, request.path_params["id"], body.eval_fraction,
                       body.seed, owner(request))
    return {"success": True, **parts}


# --- streaming multipart -----------------------------------------------------------------------

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
        raise UnsupportedMediaType("upload the dataset as multipart/form-data with a 'file' part", field="file")
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
