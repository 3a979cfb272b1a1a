"""``/api/training/dataset``: upload (streamed to disk, then validated by the core), list, stats, split."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, Json, ValidationError
from starlette.requests import Request

from ..common import (
    Body,
    Loose,
    Query,
    Success,
    call,
    call_long,
    model_ref,
    owner,
    services,
    settings,
)
from ..errors import invalid_from_pydantic
from ..multipart import receive_upload
from ..openapi import Registry

api = Registry("datasets", "training datasets")



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


@api.post("/api/training/dataset/sample", summary="Register the sample dataset", response=DatasetCreated,
          status=201)
async def register_sample(request: Request) -> dict[str, Any]:
    """The bundled sample (400 synthetic customer-support chats) as the caller's dataset, marked
    ``is_sample``; registered on the first call, the same record after (idempotent)."""
    return {"success": True, "dataset": await call_long(services(request).datasets.register_sample, owner(request))}


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


@api.get("/api/training/dataset/{id}/versions", summary="Every version of a dataset's name", errors=(404,))
async def dataset_versions(request: Request) -> dict[str, Any]:
    """Registering under a name that exists makes a new version pointing to the previous one; oldest first."""
    rows = await call(services(request).datasets.versions, request.path_params["id"], owner(request))
    return {"versions": rows}
