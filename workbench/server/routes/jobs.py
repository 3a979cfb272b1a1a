"""Training jobs: start/execute, status, control (pause/resume/cancel) and their data (metrics, logs, checkpoints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request

from ...configs import TEMPLATES
from ...errors import InvalidInput
from ...imports import check_import_path, unquoted
from ...job_states import STATUSES
from ...jobs.service import JobService
from ..common import (
    Body,
    Loose,
    Query,
    call,
    call_long,
    model_ref,
    owner,
    services,
    settings,
)
from ..errors import with_field_prefix
from ..openapi import Registry
from ..responses import ORJSONResponse

api = Registry("jobs", "training jobs")


# --- models ----------------------------------------------------------------------------------

class StartBody(Body):
    model: str = Field(min_length=1, max_length=500, description="a model id from /api/models (or a local folder)")
    dataset: str = Field(min_length=1, max_length=200, description="a dataset id from /api/training/dataset")
    config: str | dict[str, Any] | None = Field(
        None, description=f'a saved config id, a template name ({", ".join(TEMPLATES)}) or a config '
                          'object; default "default"')
    name: str | None = Field(None, min_length=1, max_length=200)
    eval_dataset: str | None = Field(None, min_length=1, max_length=200,
                                     description="a dataset id to evaluate on (else the config's eval_split)")
    overrides: dict[str, Any] | list[str] | None = Field(
        None, description='merged over the config: {"training": {"max_steps": 100}} or ["learning_rate=1e-4"]')


class StartResponse(Loose):
    job_id: str
    status: str
    message: str
    estimated_duration: str | None = Field(
        description="null: the workbench does not guess a duration before the job has run a step; "
                    "see estimated_remaining in the status once it runs")


class ExecuteBody(Body):
    execution_id: str | None = Field(None, max_length=200, description="the caller's id for this run (echoed)")
    name: str | None = Field(None, min_length=1, max_length=200)
    dataset_path: str | None = Field(None, min_length=1, max_length=4096,
                                     description="a file on the server, inside the import folder (WORKBENCH_IMPORT_DIR; off by default)")
    dataset_content: str | None = Field(None, min_length=1, description="the dataset inline, as JSONL text")
    config: dict[str, Any] = Field(description="a full config: {model: {...}, training: {...}, lora?: {...}}")


class ExecuteResponse(Loose):
    job_id: str
    status: str
    message: str
    dataset_id: str


class JobStatus(Loose):
    job_id: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    actions: list[Literal["pause", "resume", "cancel"]] = Field(
        description="which controls apply to the job now (panels and the CLI enable exactly these)")
    progress: float
    current_epoch: float | None = None
    total_epochs: float | None = None
    current_step: int | None = None
    total_steps: int | None = None
    world_size: int | None = Field(None, description="data-parallel processes (training.num_processes × machines)")
    loss: float | None = None
    eval_loss: float | None = None
    best_eval_loss: float | None = None
    loss_trend: str | None = None
    learning_rate: float | None = None
    elapsed_time: str | None = None
    estimated_remaining: str | None = None
    elapsed_seconds: float | None = None
    remaining_seconds: float | None = None
    warning: str | None = None
    error: str | None = None


class JobList(Loose):
    jobs: list[dict[str, Any]]


class ResumeBody(Body):
    hyperparameters: dict[str, Any] | None = Field(
        None, description="resume-safe changes applied first, e.g. {\"learning_rate\": 1e-4}")


class ControlResponse(Loose):
    success: Literal[True]
    message: str
    job_id: str
    status: str


class TrainPoint(Loose):
    epoch: float | None = None
    step: int
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    timestamp: str | None = None


class MetricsResponse(Loose):
    job_id: str
    metrics: list[TrainPoint]
    total_points: int


class LocalMetric(Loose):
    id: str
    job_id: str
    step: int
    epoch: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    train_perplexity: float | None = None
    perplexity: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    gpu_memory_allocated_gb: float | None = None
    gpu_memory_reserved_gb: float | None = None
    gpu_utilization_percent: float | None = None
    samples_per_second: float | None = None
    tokens_per_second: float | None = None
    created_at: str | None = None


class LocalMetricsResponse(Loose):
    job_id: str
    metrics: list[LocalMetric]


class LogsQuery(Query):
    tail: int = Field(500, ge=1, le=1_000_000, description="how many of the last lines to return")


class LogsResponse(Loose):
    job_id: str
    logs: list[str]
    total_lines: int = Field(description="lines returned")


class Checkpoint(Loose):
    path: str
    step: int
    epoch: float | None = None
    eval_loss: float | None = None
    train_loss: float | None = None
    size_mb: float
    created_at: str
    is_best: bool


class CheckpointsResponse(Loose):
    job_id: str
    checkpoints: list[Checkpoint]
    best_checkpoint: str | None
    total: int


# --- starting --------------------------------------------------------------------------------

@api.get("/api/training/jobs", summary="List jobs", response=JobList)
async def list_jobs(request: Request) -> dict[str, Any]:
    """The caller's jobs, oldest first (records: status, config, history)."""
    return {"jobs": await call(services(request).jobs.list, owner(request))}


@api.post("/api/training/start", summary="Start a training job", body=StartBody, response=StartResponse,
          errors=(400, 404))
async def start_job(request: Request, body: StartBody) -> dict[str, Any]:
    """Queue a job on a registered dataset; it starts when a slot is free (``WORKBENCH_MAX_CONCURRENT_JOBS``)."""
    model_ref(request, body.model, "model")
    job = await call(services(request).jobs.start, body.model, body.dataset, body.config, overrides=body.overrides,
                     name=body.name, eval_dataset=body.eval_dataset, owner=owner(request))
    return {"job_id": job["id"], "status": job["status"], "message": "Training job started successfully",
            "estimated_duration": None, "name": job["name"]}


def _execute_body_limit(request: Request) -> int:
    return settings(request).max_upload_bytes + 2**20  # the inline dataset plus the config around it


@api.post("/api/training/execute", summary="Execute a training job with an inline dataset", body=ExecuteBody,
          body_limit=_execute_body_limit, response=ExecuteResponse, errors=(400, 404, 413))
async def execute_job(request: Request, body: ExecuteBody) -> dict[str, Any]:
    """Register ``dataset_content`` (JSONL) as a dataset, then start a job with ``config``.

    ``dataset_path`` (a file on the server) is accepted only inside the import folder
    (``WORKBENCH_IMPORT_DIR``, off by default), and errors about it never quote its content.
    Exactly one of the two is needed. A failure leaves nothing behind.
    """
    svc, user = services(request), owner(request)
    if (body.dataset_path is None) == (body.dataset_content is None):
        field = "dataset_content" if body.dataset_path is None else "dataset_path"
        raise InvalidInput(f"{field}: send exactly one of dataset_content and dataset_path", field=field)
    dataset_file = check_import_path(body.dataset_path, "dataset_path") if body.dataset_path is not None else None
    try:  # validate the config before storing anything
        config = await call(svc.configs.resolve, body.config, user)
    except InvalidInput as exc:
        raise with_field_prefix(exc, "config") from None
    model_ref(request, config.model.base_model, "config.model.base_model")
    source = body.dataset_content.encode() if dataset_file is None else dataset_file
    try:
        job, dataset = await call_long(svc.jobs.execute, body.config, source, name=body.name,
                                       dataset_name=body.name or body.execution_id or "execute",
                                       filename=_filename(body), owner=user,
                                       max_bytes=settings(request).max_upload_bytes)
    except InvalidInput as exc:
        if dataset_file is not None:
            raise unquoted(exc, "dataset_path") from None  # never quote back what was read from a server file
        raise
    return {"job_id": job["id"], "status": job["status"], "message": "Training job queued successfully",
            "dataset_id": dataset["id"], "execution_id": body.execution_id}


def _filename(body: ExecuteBody) -> str:
    return Path(body.dataset_path).name if body.dataset_path else "dataset_content.jsonl"


# --- status ----------------------------------------------------------------------------------

@api.get("/api/training/status/{jobId}", summary="Get training status", response=JobStatus, errors=(404,))
async def job_status(request: Request) -> ORJSONResponse:
    """Progress, losses (best, trend, perplexities), throughput, timing and any stale-job warning."""
    return await _status(request)


@api.get("/api/training/local/{jobId}/status", summary="Get training job status & metrics", response=JobStatus,
         errors=(404,))
async def local_job_status(request: Request) -> ORJSONResponse:
    """The same status object as ``/api/training/status/{jobId}``."""
    return await _status(request)


async def _status(request: Request) -> ORJSONResponse:
    job_id, user = request.path_params["jobId"], owner(request)
    body = JobService.cached_status_json(job_id, user)  # a few stat() calls: cheap enough for the event loop
    if body is None:
        body = await call(services(request).jobs.status_json, job_id, user)
    return ORJSONResponse(body)


# --- control ---------------------------------------------------------------------------------

def _control(job: dict[str, Any], message: str) -> dict[str, Any]:
    return {"success": True, "message": message, "job_id": job["id"], "status": job["status"]}


@api.post("/api/training/pause/{jobId}", summary="Pause a training job", response=ControlResponse,
          errors=(404, 409))
async def pause_job(request: Request) -> Any:
    """Ask the job to checkpoint and stop after its current optimizer step; answers at once.

    ``status`` is the job's as it stands (``running`` until the checkpoint is written; ``paused``
    moments later): watch the status or the event stream for it."""
    job = await call(services(request).jobs.pause, request.path_params["jobId"], owner(request))
    if job["status"] == "paused":
        return _control(job, "Training job paused successfully")
    return _control(job, "Pause requested: the job saves a checkpoint after its current step, then pauses")


@api.post("/api/training/resume/{jobId}", summary="Resume a paused training job", body=ResumeBody,
          body_optional=True, response=ControlResponse, errors=(404, 409))
async def resume_job(request: Request, body: ResumeBody) -> dict[str, Any]:
    """Continue from the latest checkpoint (optionally with resume-safe hyperparameter changes)."""
    job = await call(services(request).jobs.resume, request.path_params["jobId"], owner(request),
                     changes=body.hyperparameters)
    return _control(job, "Training job resumed successfully")


@api.post("/api/training/cancel/{jobId}", summary="Cancel a training job", response=ControlResponse,
          errors=(404, 409))
async def cancel_job(request: Request) -> dict[str, Any]:
    """Stop the job for good (interrupt, grace period, kill); cancelled jobs cannot be resumed.

    Answers at once: the job is ``cancelled`` from now on and its processes stop moments later."""
    job = await call(services(request).jobs.cancel, request.path_params["jobId"], owner(request), wait=False)
    return _control(job, "Training job cancelled successfully")


# --- metrics, logs, checkpoints ------------------------------------------------------------------

@api.get("/api/training/metrics/{jobId}", summary="Get training metrics", response=MetricsResponse, errors=(404,))
async def job_metrics(request: Request) -> ORJSONResponse:
    """Every ``train`` event of the job, in order (the ``metrics.jsonl`` format)."""
    return ORJSONResponse(await call(services(request).jobs.metrics_json, request.path_params["jobId"],
                                     owner(request), "train"))


@api.get("/api/training/local/{jobId}/metrics", summary="Get training metrics history",
         response=LocalMetricsResponse, errors=(404,))
async def local_job_metrics(request: Request) -> ORJSONResponse:
    """One row per logged step, ordered by step: the train values with the eval of the same step merged in
    (``eval_loss``, ``perplexity``); an eval at a step without a train row gets a row of its own."""
    return ORJSONResponse(await call(services(request).jobs.metrics_json, request.path_params["jobId"],
                                     owner(request), "local"))


@api.get("/api/training/logs/{jobId}", summary="Get training logs", query=LogsQuery, response=LogsResponse,
         errors=(404,))
async def job_logs(request: Request, query: LogsQuery) -> dict[str, Any]:
    job_id = request.path_params["jobId"]
    lines = await call(services(request).jobs.logs, job_id, owner(request), query.tail)
    return {"job_id": job_id, "logs": lines, "total_lines": len(lines)}


@api.get("/api/training/checkpoints/{jobId}", summary="List training checkpoints", response=CheckpointsResponse,
         errors=(404,))
async def job_checkpoints(request: Request) -> dict[str, Any]:
    """Saved checkpoints with eval/train loss and size; ``best_checkpoint`` has the lowest eval loss."""
    return await call(services(request).jobs.checkpoints, request.path_params["jobId"], owner(request))
