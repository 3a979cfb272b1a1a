"""Python SDK for the workbench REST API: one method per endpoint, over a pooled httpx client.

    from workbench.client import TrainingClient

    with TrainingClient("http://127.0.0.1:8000", token="wb_...") as wb:
        ds = wb.upload_dataset("chats.jsonl", name="support")
        cfg = wb.create_config("lora-100", {"training": {"max_steps": 100}}, template_type="lora")
        job = wb.start_training("tiny-chat", ds["id"], cfg["id"])
        for status in wb.monitor_training(job["job_id"], progress=True):
            pass
        wb.download_model(job["job_id"], "downloads/")

Return values are the server's JSON. Single-resource wrappers are taken off where the API
wraps one thing (``{"config": ...}``, ``{"dataset": ...}``) and list endpoints return the list,
so ``wb.list_models()[0]["id"]`` reads naturally; job endpoints return the documented object
(``job_id``, ``status``, …) unchanged. Any non-2xx response raises :class:`APIError` carrying
the API's ``code``, ``message`` and ``field``.
"""

from __future__ import annotations

import email.message
import json
import os
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

FINAL_STATES = frozenset({"completed", "failed", "cancelled"})


class APIError(Exception):
    """A non-2xx response. ``code`` is the API's error code (``NOT_FOUND``, ``CONFLICT``…)."""

    def __init__(self, status_code: int, code: str, message: str, field: str | None = None,
                 details: Any = None):
        super().__init__(f"{status_code} {code}: {message}" + (f" (field: {field})" if field else ""))
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field
        self.details = details

    @classmethod
    def from_response(cls, response: httpx.Response) -> APIError:
        """Read ``{"success": false, "error": {...}}``, or whatever the body holds instead."""
        code, message, field, details = f"HTTP_{response.status_code}", response.reason_phrase, None, None
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            text = response.text.strip()
            return cls(response.status_code, code, text[:500] or message)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            code = str(err.get("code") or code)
            message = str(err.get("message") or message)
            field, details = err.get("field"), err.get("details")
        elif isinstance(err, str):  # {"success": false, "error": "Cannot delete global models"}
            message = err
        elif isinstance(body, dict) and isinstance(body.get("detail"), str):  # a bare Starlette HTTPException
            message = body["detail"]
        return cls(response.status_code, code, message, field, details)


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


def _seg(value: str) -> str:
    """An id as one path segment: a ``/`` or ``?`` in it can't reach another route."""
    return quote(str(value), safe="")


def _unwrap(body: Any, key: str) -> Any:
    return body[key] if isinstance(body, dict) and key in body else body


def find_token(base_url: str) -> str | None:
    """The token a client uses when none is given: ``WORKBENCH_TOKEN``, else the home's, for loopback."""
    from urllib.parse import urlsplit

    from .home import read_local_token
    from .settings import LOOPBACK_HOSTS

    env = os.environ.get("WORKBENCH_TOKEN", "").strip()
    if env:
        return env
    host = (urlsplit(base_url).hostname or "").lower()
    return read_local_token() if host in LOOPBACK_HOSTS else None


class TrainingClient:
    """A client for one workbench server. Use it as a context manager, or call :meth:`close`."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60,
                 *, transport: httpx.BaseTransport | None = None):
        """``token`` defaults to ``WORKBENCH_TOKEN``, else (for a loopback server only, so it never
        leaves the machine) the local user's token in ``$WORKBENCH_HOME/token``."""
        headers = {"Accept": "application/json"}
        token = token or find_token(base_url)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  transport=transport, follow_redirects=False)

    # ---- plumbing -------------------------------------------------------------------------
    def __enter__(self) -> TrainingClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call; the decoded JSON body (None when empty), or :class:`APIError`."""
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise APIError.from_response(response)
        if not response.content:
            return None
        return response.json()

    def _get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def _post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", path, **kwargs)

    def health(self) -> Any:
        return self._get("/health")

    # ---- models ---------------------------------------------------------------------------
    def list_models(self) -> list[dict[str, Any]]:
        return _unwrap(self._get("/api/models"), "models")

    def create_model(self, name: str, provider: str, base_url: str, model_id: str, auth_type: str = "none",
                     api_key: str | None = None, **extra: Any) -> dict[str, Any]:
        """Register a custom OpenAI-compatible endpoint; the key is stored encrypted, never returned."""
        body = {"name": name, "provider": provider, "base_url": base_url, "model_id": model_id,
                "auth_type": auth_type, **extra}
        if api_key is not None:
            body["api_key"] = api_key
        return _unwrap(self._post("/api/models", body), "model")

    def delete_model(self, model_id: str) -> Any:
        return self.request("DELETE", f"/api/models/{_seg(model_id)}")

    # ---- datasets -------------------------------------------------------------------------
    def upload_dataset(self, path: str | os.PathLike[str], name: str | None = None, format: str = "auto",
                       column_mapping: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Upload a chat/prompt-completion JSONL or CSV file; the server validates it."""
        path = Path(path)
        data: dict[str, str] = {"name": name or path.stem, "format": format}
        if column_mapping is not None:
            data["column_mapping"] = json.dumps(dict(column_mapping))
        with path.open("rb") as fh:
            body = self.request("POST", "/api/training/dataset", data=data,
                                files={"file": (path.name, fh, "application/octet-stream")})
        return _unwrap(body, "dataset")

    def list_datasets(self) -> list[dict[str, Any]]:
        return _unwrap(self._get("/api/training/dataset"), "datasets")

    def get_dataset(self, dataset_id: str, model: str | None = None) -> dict[str, Any]:
        """``{"dataset": record, "stats": ...}``; with ``model``, token counts use its tokenizer."""
        return self._get(f"/api/training/dataset/{_seg(dataset_id)}", params={"model": model} if model else None)

    def split_dataset(self, dataset_id: str, eval_fraction: float = 0.1, seed: int = 42) -> dict[str, Any]:
        """A seeded train/eval split; ``{"train": dataset, "eval": dataset}``."""
        return self._post(f"/api/training/dataset/{_seg(dataset_id)}/split",
                          {"eval_fraction": eval_fraction, "seed": seed})

    def delete_dataset(self, dataset_id: str) -> Any:
        return self.request("DELETE", f"/api/training/dataset/{_seg(dataset_id)}")

    # ---- configs --------------------------------------------------------------------------
    def create_config(self, name: str, config_json: Mapping[str, Any] | None = None, template_type: str = "sft",
                      description: str = "") -> dict[str, Any]:
        """Save a config: ``template_type``'s defaults with ``config_json`` merged over them."""
        body: dict[str, Any] = {"name": name, "description": description, "template_type": template_type}
        if config_json is not None:
            body["config_json"] = dict(config_json)
        return _unwrap(self._post("/api/training", body), "config")

    def list_templates(self) -> dict[str, Any]:
        return _unwrap(self._get("/api/training/templates"), "templates")

    def list_configs(self) -> list[dict[str, Any]]:
        return _unwrap(self._get("/api/training"), "configs")

    def get_config(self, config_id: str) -> dict[str, Any]:
        return _unwrap(self._get(f"/api/training/{_seg(config_id)}"), "config")

    def update_config(self, config_id: str, **fields: Any) -> dict[str, Any]:
        """Change some of ``name``, ``description``, ``template_type``, ``config_json``."""
        return _unwrap(self.request("PUT", f"/api/training/{_seg(config_id)}", json=fields), "config")

    def delete_config(self, config_id: str) -> Any:
        return self.request("DELETE", f"/api/training/{_seg(config_id)}")

    # ---- jobs -----------------------------------------------------------------------------
    def start_training(self, model: str, dataset: str, config: str | Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Queue a job; ``config`` is a config id, a template name or a config object."""
        body: dict[str, Any] = {"model": model, "dataset": dataset}
        if config is not None:
            body["config"] = config if isinstance(config, str) else dict(config)
        return self._post("/api/training/start", body)

    def execute(self, config: Mapping[str, Any], *, name: str | None = None,
                dataset_content: str | Sequence[Mapping[str, Any]] | None = None,
                dataset_path: str | None = None, execution_id: str | None = None) -> dict[str, Any]:
        """The lower-level ``/execute``: a full config plus the data inline (JSONL text or records)."""
        body: dict[str, Any] = {"config": dict(config)}
        if not isinstance(dataset_content, (str, type(None))):
            dataset_content = "".join(json.dumps(dict(r)) + "\n" for r in dataset_content)
        for key, value in (("name", name), ("dataset_content", dataset_content),
                           ("dataset_path", dataset_path), ("execution_id", execution_id)):
            if value is not None:
                body[key] = value
        return self._post("/api/training/execute", body)

    def list_jobs(self) -> list[dict[str, Any]]:
        return _unwrap(self._get("/api/training/jobs"), "jobs")

    def get_status(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/status/{_seg(job_id)}")

    def get_local_status(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/local/{_seg(job_id)}/status")

    def get_metrics(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/metrics/{_seg(job_id)}")

    def get_local_metrics(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/local/{_seg(job_id)}/metrics")

    def get_logs(self, job_id: str, tail: int | None = None) -> dict[str, Any]:
        """The last ``tail`` lines of ``training.log`` (the server's default: 500)."""
        return self._get(f"/api/training/logs/{_seg(job_id)}", params={"tail": tail} if tail else None)

    def list_checkpoints(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/checkpoints/{_seg(job_id)}")

    def pause(self, job_id: str) -> dict[str, Any]:
        """Checkpoint and stop; ``status`` is ``paused``, or still ``running`` (HTTP 202) when the
        job had not reached its next logging step within the server's wait."""
        return self._post(f"/api/training/pause/{_seg(job_id)}")

    def resume(self, job_id: str, hyperparameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Continue a paused job, optionally changing resume-safe hyperparameters first."""
        body = {"hyperparameters": dict(hyperparameters)} if hyperparameters else None
        return self._post(f"/api/training/resume/{_seg(job_id)}", body)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._post(f"/api/training/cancel/{_seg(job_id)}")

    def monitor_training(self, job_id: str, interval: float = 2.0, progress: bool = False,
                         until: Collection[str] = FINAL_STATES) -> Iterator[dict[str, Any]]:
        """Yield the job's status every ``interval`` s until it is completed, failed or cancelled.

        ``progress=True`` also draws a tqdm bar (steps, loss). A paused job keeps being polled
        (it may be resumed); pass ``until={"paused", *FINAL_STATES}`` to stop there too.
        Polling, not streaming, so it works through any proxy; :meth:`events` is the push way.
        """
        bar = None
        try:
            while True:
                status = self.get_status(job_id)
                if progress:
                    bar = bar or _bar(job_id)
                    _draw(bar, job_id, status)
                yield status
                if status.get("status") in until:
                    return
                time.sleep(interval)
        finally:
            if bar is not None:
                bar.close()

    def events(self, job_id: str, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Server-sent events of a job as ``{"event": name, "data": json, "id": id|None}``.

        ``event`` is ``status`` (the job's status changed) or ``metric`` (a ``metrics.jsonl``
        event), or ``error`` if watching failed on the server. Ends when the server closes the
        stream, after the final status. ``timeout`` bounds the wait for each chunk (default:
        none; the server sends a keep-alive comment every 15 s anyway).
        """
        with self._http.stream("GET", f"/api/training/{_seg(job_id)}/events", headers={"Accept": "text/event-stream"},
                               timeout=httpx.Timeout(self.timeout, read=timeout)) as response:
            if response.is_error:
                response.read()
                raise APIError.from_response(response)
            yield from parse_sse(response.iter_lines())

    # ---- results --------------------------------------------------------------------------
    def validate(self, model_path: str, test_dataset_id: str, metrics: Sequence[str] | None = None,
                 job_id: str | None = None, *, max_samples: int | None = None, max_new_tokens: int | None = None,
                 timeout: float | None = 600) -> dict[str, Any]:
        """Score a checkpoint (``final``, ``checkpoint-N`` or ``JOB/checkpoint-N``) on a dataset.

        Runs to completion within the request, hence the long default ``timeout``.
        """
        body: dict[str, Any] = {"model_path": model_path, "test_dataset_id": test_dataset_id}
        for key, value in (("metrics_to_compute", list(metrics) if metrics is not None else None),
                           ("job_id", job_id), ("max_samples", max_samples), ("max_new_tokens", max_new_tokens)):
            if value is not None:
                body[key] = value
        return self._post("/api/training/validate", body, timeout=timeout)

    def download_model(self, job_id: str, dest: str | os.PathLike[str], checkpoint: str | None = None) -> Path:
        """Stream the model (or one checkpoint) zip to ``dest``, a file or an existing folder."""
        params = {"checkpoint": checkpoint} if checkpoint else None
        return self._download(f"/api/training/{_seg(job_id)}/download/model", Path(dest), params,
                              f"{job_id}_{checkpoint or 'model'}.zip")

    def download_link(self, job_id: str, checkpoint: str | None = None, kind: str = "model") -> str:
        """A short-lived signed URL of a download, for a browser (it carries no token)."""
        params = {"kind": kind, **({"checkpoint": checkpoint} if checkpoint else {})}
        return self.request("GET", f"/api/training/{_seg(job_id)}/download/link", params=params)["url"]

    def download_logs(self, job_id: str, dest: str | os.PathLike[str]) -> Path:
        """Stream ``training.log`` + ``progress.json`` as a zip to ``dest`` (file or folder)."""
        return self._download(f"/api/training/{_seg(job_id)}/download/logs", Path(dest), None, f"{job_id}_logs.zip")

    def _download(self, path: str, dest: Path, params: dict[str, str] | None, fallback: str) -> Path:
        """Write to ``<name>.part`` and rename when complete, so a broken transfer leaves no zip."""
        with self._http.stream("GET", path, params=params, timeout=httpx.Timeout(self.timeout, read=None)) as response:
            if response.is_error:
                response.read()
                raise APIError.from_response(response)
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

    def get_analytics(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/{_seg(job_id)}/analytics")

    def analytics_summary(self) -> dict[str, Any]:
        return self._get("/api/training/analytics/summary")

    def compare(self, job_ids: Sequence[str]) -> dict[str, Any]:
        return self._get("/api/training/analytics/compare", params={"job_ids": ",".join(job_ids)})


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Events from SSE lines (WHATWG rules: ``:`` comments, multi-line ``data``, a blank line ends
    an event, ``id`` is the last event id seen so far)."""
    event, data, event_id = None, [], None
    for line in lines:
        if not line:
            if data:
                raw = "\n".join(data)
                try:
                    payload: Any = json.loads(raw)
                except ValueError:
                    payload = raw
                yield {"event": event or "message", "data": payload, "id": event_id}
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


def _bar(job_id: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=None, unit="step", dynamic_ncols=True, desc=job_id)


def _draw(bar: Any, job_id: str, status: Mapping[str, Any]) -> None:
    if status.get("total_steps"):
        bar.total = status["total_steps"]
    if status.get("current_step") is not None:
        bar.n = status["current_step"]
    bar.set_description(f"{job_id} [{status.get('status')}]", refresh=False)
    post = {k: f"{status[k]:.4f}" for k in ("loss", "eval_loss") if isinstance(status.get(k), (int, float))}
    if post:
        bar.set_postfix(post, refresh=False)
    bar.refresh()
