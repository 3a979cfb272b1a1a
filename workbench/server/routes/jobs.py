"""Training jobs: start/execute, status, control (pause/resume/cancel) and their data (metrics, logs, checkpoints)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field
from starlette.requests import Request

from ... import home
from ...jobs import history
from ...errors import InvalidInput
from ..errors import with_field_prefix
from ..openapi import Registry
from ...imports import check_import_path, unquoted
from ._common import Body, Loose, Query, call, call_long, home_root, model_ref, owner, services, settings
from ._json import ORJSONResponse, dumps

api = Registry("jobs", "training jobs")


# --- models ----------------------------------------------------------------------------------

class StartBody(Body):
    model: str = Field(min_length=1, max_length=500, description="a model id from /api/models (or a local folder)")
    dataset: str = Field(min_length=1, max_length=200, description="a dataset id from /api/training/dataset")
    config: str | dict[str, Any] | None = Field(
        None, description='a saved config id, a template name ("default", "sft", "lora", "full") or a config '
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
    status: Literal["queued", "pending", "running", "paused", "completed", "failed", "cancelled"]
    progress: float
    current_epoch: float | None = None
    total_epochs: float | None = None
    current_step: int | None = None
    total_steps: int | None = None
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
    svc, user, limit = services(request), owner(request), settings(request).max_upload_bytes
    if (body.dataset_path is None) == (body.dataset_content is None):
        field = "dataset_content" if body.dataset_path is None else "dataset_path"
        raise InvalidInput(f"{field}: send exactly one of dataset_content and dataset_path", field=field)
    dataset_file = check_import_path(body.dataset_path, "dataset_path") if body.dataset_path is not None else None
    try:  # validate the config before storing anything
        config = await call(svc.configs.resolve, body.config, user)
    except InvalidInput as exc:
        raise with_field_prefix(exc, "config") from None
    model_ref(request, config.model.base_model, "config.model.base_model")
    name = body.name or body.execution_id or "execute"
    source = body.dataset_content.encode() if dataset_file is None else dataset_file
    try:
        dataset = await call_long(svc.datasets.register, source, name=name, filename=_filename(body), owner=user,
                                  max_bytes=limit)
    except InvalidInput as exc:
        if dataset_file is not None:  # never quote back what was read from a server file
            raise unquoted(exc, "dataset_path") from None
        raise
    try:
        job = await call(svc.jobs.start, None, dataset["id"], body.config, name=body.name, owner=user)
    except BaseException:
        await call(svc.datasets.delete, dataset["id"], user)
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
    body = STATUSES.get(job_id, user)  # a few stat() calls: cheap enough for the event loop
    if body is None:
        body = await call(STATUSES.compute, services(request).jobs, job_id, user)
    return ORJSONResponse(body)


class StatusCache:
    """Rendered status objects of jobs that are not pending or running, while their sources are unchanged.

    Such a status is a function of the store (the record), ``summary.json`` and ``metrics.jsonl``
    alone — no clock, no process to check — so an unchanged stat of the three means an unchanged
    answer. Monitors poll finished and queued jobs too; this serves them without the store's
    file lock. Pending and running jobs always go to the core (liveness, elapsed time, ETA).
    An entry is only made from the core's own answer for that owner, so it never widens access.
    """

    SETTLED = frozenset({"queued", "paused", "completed", "failed", "cancelled"})

    def __init__(self, max_items: int = 4096):
        self.max_items = max_items
        self.items: dict[tuple[str, str, str], tuple[tuple[Any, ...], bytes]] = {}
        self.lock = threading.Lock()

    @staticmethod
    def _stamp(root: Path, job_id: str) -> tuple[Any, ...]:
        jd = root / "jobs" / job_id
        out: list[Any] = []
        for path in (root / "store.json", jd / "summary.json", jd / "metrics.jsonl"):
            try:
                st = os.stat(path)
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except (FileNotFoundError, NotADirectoryError, ValueError):
                out.append(None)
        return tuple(out)

    def get(self, job_id: str, user: str) -> bytes | None:
        root = home_root()
        hit = self.items.get((str(root), job_id, user))
        if hit is not None and hit[0] == self._stamp(root, job_id):
            return hit[1]
        return None

    def compute(self, jobs: Any, job_id: str, user: str) -> bytes:
        root = home_root()
        stamp = self._stamp(root, job_id)
        status = jobs.status(job_id, user)
        body = dumps(status)
        if status["status"] in self.SETTLED and self._stamp(root, job_id) == stamp:
            with self.lock:
                if len(self.items) >= self.max_items:
                    self.items.clear()
                self.items[(str(root), job_id, user)] = (stamp, body)
        return body


STATUSES = StatusCache()


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
    job_id = request.path_params["jobId"]
    path = await call(_metrics_path, request, job_id)
    return ORJSONResponse(await call(VIEWS.body, "train", job_id, path))


@api.get("/api/training/local/{jobId}/metrics", summary="Get training metrics history",
         response=LocalMetricsResponse, errors=(404,))
async def local_job_metrics(request: Request) -> ORJSONResponse:
    """One row per logged step, ordered by step: the train values with the eval of the same step merged in
    (``eval_loss``, ``perplexity``); an eval at a step without a train row gets a row of its own."""
    job_id = request.path_params["jobId"]
    path = await call(_metrics_path, request, job_id)
    return ORJSONResponse(await call(VIEWS.body, "local", job_id, path))


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


def _metrics_path(request: Request, job_id: str) -> Path:
    services(request).jobs.get(job_id, owner(request))  # 404 for an unknown job or another user's
    return home.job_dir(job_id) / "metrics.jsonl"


# --- rendering the metrics history ----------------------------------------------------------------

def _events(data: bytes) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Each complete line's event, one at a time: holding 100k parsed events (or tuples of them) at
    once would make the cyclic GC scan them again and again, doubling the time of a long history."""
    loads = orjson.loads
    for line in data.splitlines():
        if len(line) > 2:
            try:
                ev = loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(ev, dict):
                yield line, ev


def _body_head(job_id: str) -> bytes:
    return b'{"job_id":' + orjson.dumps(job_id) + b',"metrics":['


class _View:
    """One job's rendered history, kept current by reading only what was appended since last time.

    ``metrics.jsonl`` only grows, so bytes once read never change. The rows are held rendered
    (``done``: JSON objects joined by commas, rendered in one ``orjson.dumps`` per request that
    brings new lines) plus the last row as a dict, since the eval of its step may still come.
    A line still being written waits for the next request. Should an event go back to an
    earlier step (a resumed run logging a step again), the view is rebuilt from the start.
    """

    def __init__(self, kind: str, job_id: str, inode: int):
        self.kind = kind
        self.job_id = job_id
        self.inode = inode
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.done: list[bytes | memoryview] = []  # rendered rows, comma-joined within each chunk
        self.count = 0
        self.last: dict[str, Any] | None = None
        self.body: bytes | None = None

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.done) + (len(self.body) if self.body else 0)

    def update(self, path: Path, size: int) -> bytes:
        if size > self.offset:
            with open(path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(size - self.offset)
            end = data.rfind(b"\n") + 1
            if end:
                read_to = self.offset + end
                chunk = memoryview(data)[:end].tobytes() if end < len(data) else data
                self.body = None
                if self.kind == "train":
                    self._append_train(chunk)
                elif not self._append_rows(chunk):
                    self._rebuild(path, read_to)
                self.offset = read_to
        if self.body is None:
            self.body = self._render()
        return self.body

    def _extend(self, rendered: bytes | memoryview, n: int) -> None:
        if n:
            self.done.append(rendered)
            self.count += n

    def _append_train(self, data: bytes) -> None:
        """Train events as they are in the file: a line that parsed is valid JSON, no need to re-render it."""
        lines = [line.strip() for line, ev in _events(data) if ev.get("type") == "train"]
        self._extend(b",".join(lines), len(lines))

    def _append_rows(self, data: bytes) -> bool:
        """Fold new events into rows; False when one goes back before the last row (rebuild needed)."""
        rows: dict[int, dict[str, Any]] = {}
        top = None
        if self.last is not None:
            top = self.last["step"]
            rows[top] = self.last
        for _, ev in _events(data):
            step = history.step_of(ev)
            if step is None:
                continue
            if top is not None and step < top and step not in rows:
                return False
            history.merge(rows, ev, step, self.job_id)
            if top is None or step > top:
                top = step
        self._settle(list(rows.values()))
        return True

    def _settle(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._extend(memoryview(orjson.dumps(rows[:-1]))[1:-1], len(rows) - 1)  # no copy: drop the brackets
            self.last = rows[-1]

    def _rebuild(self, path: Path, size: int) -> None:
        with open(path, "rb") as fh:
            data = fh.read(size)
        self._reset()
        self._settle(history.fold_rows((ev for _, ev in _events(data)), self.job_id))

    def _render(self) -> bytes:
        """One copy of the rows into the body (``join``), however many chunks they arrived in."""
        rows = list(self.done)
        if self.last is not None:
            rows.append(orjson.dumps(self.last))
        parts: list[bytes | memoryview] = [_body_head(self.job_id)]
        for i, chunk in enumerate(rows):
            if i:
                parts.append(b",")
            parts.append(chunk)
        if self.kind == "train":
            parts.append(b'],"total_points":' + str(self.count).encode() + b"}")
        else:
            parts.append(b"]}")
        return b"".join(parts)


class _HistoryView:
    """The local history of a job that writes ``history.jsonl``: its rows are already rendered.

    The file only grows (a rewrite is a new inode), so each request reads just its new bytes,
    turns newlines into commas, and adds the rows of the events logged since its last row.
    """

    def __init__(self, kind: str, job_id: str, inode: int):
        self.kind = kind
        self.job_id = job_id
        self.inode = inode
        self.lock = threading.Lock()
        self.offset = 0
        self.done: list[bytes] = []
        self.last_step: int | None = None
        self.seal = b""
        self.key: tuple[int, int] | None = None
        self.body: bytes | None = None

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.done) + (len(self.body) if self.body else 0)

    def update(self, path: Path, size: int) -> bytes:
        metrics = path.parent / "metrics.jsonl"
        try:
            msize = os.stat(metrics).st_size
        except FileNotFoundError:
            msize = 0
        if self.body is not None and self.key == (size, msize):
            return self.body
        with open(path, "rb") as fh:
            if self.offset and os.pread(fh.fileno(), len(self.seal), self.offset - len(self.seal)) != self.seal:
                self.offset, self.done, self.last_step = 0, [], None  # rewritten under a recycled inode
            if size > self.offset:
                fh.seek(self.offset)
                data = fh.read(size - self.offset)
                end = data.rfind(b"\n")
                if end >= 0:
                    self.offset += end + 1
                    self.done.append(data[:end].replace(b"\n", b","))
                    self.seal = data[data.rfind(b"\n", 0, end) + 1:end + 1]  # the last row, as read
                    self.last_step = orjson.loads(self.seal)["step"]
        tail = history.tail_rows(metrics, self.last_step, self.job_id)
        parts = [_body_head(self.job_id), b",".join(self.done)]
        if tail:
            parts.append((b"," if self.done else b"") + orjson.dumps(tail)[1:-1])
        parts.append(b"]}")
        self.body, self.key = b"".join(parts), (size, msize)
        return self.body


class MetricsViews:
    """The rendered metrics histories of recently asked-for jobs, bounded by memory (LRU).

    A finished job's 100k-point history is parsed once and then served from memory; a running
    job's costs only its new lines per request.
    """

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self.views: OrderedDict[tuple[str, str], _View] = OrderedDict()
        self.lock = threading.Lock()

    def body(self, kind: str, job_id: str, path: Path) -> bytes:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return _View(kind, job_id, 0).update(path, 0)
        factory: Any = _View
        if kind == "local":
            try:
                hpath = path.parent / history.HISTORY
                st, path, factory = os.stat(hpath), hpath, _HistoryView
            except FileNotFoundError:
                pass  # a job from before history.jsonl: fold its events here
        key = (kind, str(path))
        with self.lock:
            view = self.views.get(key)
            if view is None or view.inode != st.st_ino or st.st_size < view.offset:  # a new or replaced file
                view = self.views[key] = factory(kind, job_id, st.st_ino)
            self.views.move_to_end(key)
        with view.lock:
            body = view.update(path, st.st_size)
        self._evict()
        return body

    def _evict(self) -> None:
        with self.lock:
            total = sum(v.size for v in self.views.values())
            while total > self.max_bytes and len(self.views) > 1:
                _, view = self.views.popitem(last=False)
                total -= view.size


VIEWS = MetricsViews()
