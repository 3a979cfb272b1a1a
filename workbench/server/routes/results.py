"""Results of a job: checkpoint validation and streamed ZIP downloads of the model and the logs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from ... import signing
from ...jobs.service import JobService
from ...results import downloads, evaluate
from ...results.downloads import download_path
from ..common import (
    Body,
    Loose,
    Query,
    call,
    call_in,
    call_long,
    owner,
    plain_name,
    pool,
    zip_response,
)
from ..openapi import Registry

api = Registry("results", "validation and downloads")



class ValidateBody(Body):
    model_path: str = Field(min_length=1, max_length=500, description=(
        "'JOB_ID/checkpoint-N', or a checkpoint name ('checkpoint-N', 'final', 'latest', 'base') with job_id"))
    test_dataset_id: str = Field(min_length=1, max_length=200)
    metrics_to_compute: list[Literal["perplexity", "accuracy", "bleu"]] | None = Field(
        None, min_length=1, description="default: all three")
    job_id: str | None = Field(None, min_length=1, max_length=200)
    max_samples: int = Field(200, ge=1, le=10_000, description="samples scored (the first ones with a reply)")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="generation length for BLEU")


class ValidationResult(Loose):
    job_id: str = Field(description="an id for this validation run (val-...)")
    status: Literal["completed"]
    metrics: dict[str, float]
    message: str
    model_path: str
    test_dataset_id: str


class DownloadQuery(Query):
    checkpoint: str | None = Field(None, max_length=255, description=(
        "a checkpoint folder name (checkpoint-2000, final, latest); default: the whole output folder"))


class LinkQuery(DownloadQuery):
    kind: Literal["model", "logs"] = Field("model", description="which download the link fetches")


class LinkResponse(Loose):
    url: str
    expires_in: int


@api.get("/api/training/{jobId}/download/link", summary="A short-lived download link", query=LinkQuery,
         response=LinkResponse, errors=(404,))
async def download_link(request: Request, query: LinkQuery) -> dict[str, Any]:
    """A signed URL for a browser: it fetches this one download as the caller for 5 minutes,
    with no token in it (``<a href>`` cannot send an Authorization header)."""
    job_id, user = request.path_params["jobId"], owner(request)
    await call(JobService().get, job_id, user)  # 404 for an unknown or another user's job
    checkpoint = plain_name(query.checkpoint, "checkpoint") if query.checkpoint is not None else None
    url = download_path(job_id, user, query.kind, checkpoint)
    return {"url": str(request.base_url).rstrip("/") + url, "expires_in": int(signing.DEFAULT_TTL)}


@api.post("/api/training/validate", summary="Validate a model checkpoint", body=ValidateBody,
          response=ValidationResult, errors=(400, 404))
async def validate(request: Request, body: ValidateBody) -> dict[str, Any]:
    """Perplexity, token accuracy and BLEU of a job's checkpoint on a dataset (runs to completion).

    One validation runs at a time per server: each loads a model, and several at once would
    only compete for the same memory and cores.
    """
    for segment in body.model_path.split("/"):
        plain_name(segment, "model_path")
    # Its own pool of one: validations queue for each other, holding no thread meanwhile.
    return await call_in(pool("validation", 1), _validate, body, owner(request))


def _validate(body: ValidateBody, user: str) -> dict[str, Any]:
    return evaluate.validate(body.job_id, body.model_path, body.test_dataset_id, body.metrics_to_compute,
                             owner=user, max_samples=body.max_samples, max_new_tokens=body.max_new_tokens)


@api.get("/api/training/{jobId}/download/model", summary="Download the trained model", query=DownloadQuery,
         media_type="application/zip", errors=(400, 404))
async def download_model(request: Request, query: DownloadQuery) -> Response:
    """A ZIP of one checkpoint (its files at the top), or of the job's whole output folder."""
    checkpoint = plain_name(query.checkpoint, "checkpoint") if query.checkpoint is not None else None
    filename, chunks = await call_long(downloads.model_zip, request.path_params["jobId"], checkpoint, owner(request))
    return zip_response(request, filename, chunks)


@api.get("/api/training/{jobId}/download/logs", summary="Download the training logs",
         media_type="application/zip", errors=(404,))
async def download_logs(request: Request) -> Response:
    """A ZIP of ``training.log`` and ``progress.json`` (the metrics history as a JSON array)."""
    filename, chunks = await call_long(downloads.logs_zip, request.path_params["jobId"], owner(request))
    return zip_response(request, filename, chunks)
