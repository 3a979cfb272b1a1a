"""``TrainingClient``: one method per operation of the server's ``/openapi.json``, grouped by area.

Each group is a small mixin over :class:`_Base` (the transport); :data:`OPERATIONS
<workbench.client.OPERATIONS>` names the method of every ``operationId``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from ..job_states import FINAL
from ._errors import APIError
from ._sse import parse_sse
from ._transport import Transport, drop_none, seg, unwrap

FINAL_STATES = FINAL  # the core's final states, named once in workbench.job_states


class _Base:
    """The transport and the request helpers every group uses."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60,
                 *, transport: httpx.BaseTransport | None = None):
        """``token`` defaults to ``WORKBENCH_TOKEN``, else (for a loopback server only, so it never
        leaves the machine) the local user's token in ``$WORKBENCH_HOME/token``."""
        self._transport = Transport(base_url, token, timeout, transport)
        self.base_url = self._transport.base_url
        self.timeout = timeout

    @property
    def _http(self) -> httpx.Client:
        return self._transport.http

    def __enter__(self) -> TrainingClient:
        return self  # type: ignore[return-value]

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One raw call; the decoded JSON body (None when empty), or :class:`APIError`.

        Every operation has its own method; this is for what the SDK does not know yet.
        """
        return self._transport.request(method, path, **kwargs)

    def _get(self, path: str, **kwargs: Any) -> Any:
        return self._transport.request("GET", path, **kwargs)

    def _post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self._transport.request("POST", path, **kwargs)

    def _put(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self._transport.request("PUT", path, json=body, **kwargs)

    def _delete(self, path: str, **kwargs: Any) -> Any:
        return self._transport.request("DELETE", path, **kwargs)


class _Server(_Base):
    def health(self) -> Any:
        """``{"status": "ok"}`` while the server runs (no token needed)."""
        return self._get("/health")

    def openapi(self) -> dict[str, Any]:
        """The server's OpenAPI 3.1 document."""
        return self._get("/openapi.json")


class _Models(_Base):
    def list_models(self) -> list[dict[str, Any]]:
        return unwrap(self._get("/api/models"), "models")

    def create_model(self, name: str, provider: str, base_url: str, model_id: str, auth_type: str = "none",
                     api_key: str | None = None, **extra: Any) -> dict[str, Any]:
        """Register a custom OpenAI-compatible endpoint; the key is stored encrypted, never returned."""
        body = {"name": name, "provider": provider, "base_url": base_url, "model_id": model_id,
                "auth_type": auth_type, **extra}
        if api_key is not None:
            body["api_key"] = api_key
        return unwrap(self._post("/api/models", body), "model")

    def delete_model(self, model_id: str) -> Any:
        return self._delete(f"/api/models/{seg(model_id)}")


class _Datasets(_Base):
    def upload_dataset(self, path: str | os.PathLike[str] | bytes | IO[bytes], name: str | None = None,
                       format: str = "auto", column_mapping: Mapping[str, Any] | None = None, *,
                       filename: str | None = None) -> dict[str, Any]:
        """Upload a chat/prompt-completion JSONL or CSV file; the server validates it.

        ``path`` is a file, or its content (bytes or a binary file object) named by ``filename``.
        """
        if isinstance(path, (str, os.PathLike)):
            p = Path(path)
            with p.open("rb") as fh:
                return self._upload(fh, filename or p.name, name or p.stem, format, column_mapping)
        fname = filename or getattr(path, "name", None) or "upload.jsonl"
        fname = Path(str(fname)).name
        return self._upload(path, fname, name or Path(fname).stem, format, column_mapping)

    def _upload(self, content: bytes | IO[bytes], filename: str, name: str, format: str,
                column_mapping: Mapping[str, Any] | None) -> dict[str, Any]:
        data: dict[str, str] = {"name": name, "format": format}
        if column_mapping is not None:
            data["column_mapping"] = json.dumps(dict(column_mapping))
        body = self._post("/api/training/dataset", data=data,
                          files={"file": (filename, content, "application/octet-stream")})
        return unwrap(body, "dataset")

    def register_sample(self) -> dict[str, Any]:
        """The bundled sample dataset, registered for the caller on first use (the same record after)."""
        return unwrap(self._post("/api/training/dataset/sample"), "dataset")

    def list_datasets(self) -> list[dict[str, Any]]:
        """Every dataset of the caller; ``is_sample`` marks the bundled sample."""
        return unwrap(self._get("/api/training/dataset"), "datasets")

    def get_dataset(self, dataset_id: str, model: str | None = None) -> dict[str, Any]:
        """``{"dataset": record, "stats": ...}``; with ``model``, token counts use its tokenizer."""
        return self._get(f"/api/training/dataset/{seg(dataset_id)}", params=drop_none(model=model) or None)

    def preview_dataset(self, dataset_id: str, model: str | None = None, index: int = 0) -> dict[str, Any]:
        """Sample ``index`` rendered with ``model``'s template (server default ``tiny-chat``), as
        tokens marked trained or masked exactly as training masks them."""
        return self._get(f"/api/training/dataset/{seg(dataset_id)}/preview",
                         params=drop_none(model=model, index=index))

    def split_dataset(self, dataset_id: str, eval_fraction: float = 0.1, seed: int = 42) -> dict[str, Any]:
        """A seeded train/eval split; ``{"train": dataset, "eval": dataset}``."""
        return self._post(f"/api/training/dataset/{seg(dataset_id)}/split",
                          {"eval_fraction": eval_fraction, "seed": seed})

    def delete_dataset(self, dataset_id: str) -> Any:
        return self._delete(f"/api/training/dataset/{seg(dataset_id)}")


class _Configs(_Base):
    def create_config(self, name: str, config_json: Mapping[str, Any] | None = None, template_type: str = "sft",
                      description: str = "") -> dict[str, Any]:
        """Save a config: ``template_type``'s defaults with ``config_json`` merged over them."""
        body: dict[str, Any] = {"name": name, "description": description, "template_type": template_type}
        if config_json is not None:
            body["config_json"] = dict(config_json)
        return unwrap(self._post("/api/training", body), "config")

    def list_templates(self) -> dict[str, Any]:
        return unwrap(self._get("/api/training/templates"), "templates")

    def list_configs(self) -> list[dict[str, Any]]:
        return unwrap(self._get("/api/training"), "configs")

    def get_config(self, config_id: str) -> dict[str, Any]:
        return unwrap(self._get(f"/api/training/{seg(config_id)}"), "config")

    def update_config(self, config_id: str, *, name: str | None = None, description: str | None = None,
                      template_type: str | None = None,
                      config_json: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Change the fields given (None: unchanged); ``config_json`` is validated again."""
        body = drop_none(name=name, description=description, template_type=template_type,
                         config_json=dict(config_json) if config_json is not None else None)
        return unwrap(self._put(f"/api/training/{seg(config_id)}", body), "config")

    def delete_config(self, config_id: str) -> Any:
        return self._delete(f"/api/training/{seg(config_id)}")


class _Jobs(_Base):
    def start_training(self, model: str, dataset: str, config: str | Mapping[str, Any] | None = None, *,
                       name: str | None = None, eval_dataset: str | None = None,
                       overrides: Mapping[str, Any] | Sequence[str] | None = None) -> dict[str, Any]:
        """Queue a job; ``config`` is a config id, a template name or a config object.

        ``eval_dataset``: a dataset id to evaluate on (else the config's ``eval_split``);
        ``overrides`` are merged over the config: ``{"training": {"max_steps": 100}}`` or
        ``["learning_rate=1e-4"]``.
        """
        if config is not None and not isinstance(config, str):
            config = dict(config)
        if overrides is not None:
            overrides = dict(overrides) if isinstance(overrides, Mapping) else list(overrides)
        return self._post("/api/training/start", drop_none(model=model, dataset=dataset, config=config, name=name,
                                                           eval_dataset=eval_dataset, overrides=overrides))

    def execute(self, config: Mapping[str, Any], *, name: str | None = None,
                dataset_content: str | Sequence[Mapping[str, Any]] | None = None,
                dataset_path: str | None = None, execution_id: str | None = None) -> dict[str, Any]:
        """The lower-level ``/execute``: a full config plus the data inline (JSONL text or records)."""
        if not isinstance(dataset_content, (str, type(None))):
            dataset_content = "".join(json.dumps(dict(r)) + "\n" for r in dataset_content)
        return self._post("/api/training/execute", {"config": dict(config), **drop_none(
            name=name, dataset_content=dataset_content, dataset_path=dataset_path, execution_id=execution_id)})

    def list_jobs(self) -> list[dict[str, Any]]:
        return unwrap(self._get("/api/training/jobs"), "jobs")

    def get_status(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/status/{seg(job_id)}")

    def get_local_status(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/local/{seg(job_id)}/status")

    def get_metrics(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/metrics/{seg(job_id)}")

    def get_local_metrics(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/local/{seg(job_id)}/metrics")

    def get_logs(self, job_id: str, tail: int | None = None) -> dict[str, Any]:
        """The last ``tail`` lines of ``training.log`` (the server's default: 500)."""
        return self._get(f"/api/training/logs/{seg(job_id)}", params={"tail": tail} if tail else None)

    def list_checkpoints(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/checkpoints/{seg(job_id)}")

    def pause(self, job_id: str) -> dict[str, Any]:
        """Checkpoint and stop; ``status`` is ``paused``, or still ``running`` (HTTP 202) when the
        job had not reached its next logging step within the server's wait."""
        return self._post(f"/api/training/pause/{seg(job_id)}")

    def resume(self, job_id: str, hyperparameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Continue a paused job, optionally changing resume-safe hyperparameters first."""
        body = {"hyperparameters": dict(hyperparameters)} if hyperparameters else None
        return self._post(f"/api/training/resume/{seg(job_id)}", body)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._post(f"/api/training/cancel/{seg(job_id)}")

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
                    if bar is None:  # not `bar or …`: a tqdm bar without a total yet refuses bool()
                        bar = _bar(job_id)
                    _draw(bar, job_id, status)
                yield status
                if status.get("status") in until:
                    return
                time.sleep(interval)
        finally:
            if bar is not None:
                bar.close()


class _Live(_Base):
    def events(self, job_id: str, *, from_start: bool = True,
               timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Server-sent events of a job as ``{"event": name, "data": json, "id": id|None}``.

        ``event`` is ``status`` (the job's status changed) or ``metric`` (a ``metrics.jsonl``
        event), or ``error`` if watching failed on the server. Ends when the server closes the
        stream, after the final status. ``from_start=False`` skips the metrics history.
        ``timeout`` bounds the wait for each chunk (default: none; the server sends a
        keep-alive comment every 15 s anyway).
        """
        params = None if from_start else {"from_start": "false"}
        with self._transport.stream(f"/api/training/{seg(job_id)}/events", params=params,
                                    headers={"Accept": "text/event-stream"}, read_timeout=timeout) as response:
            yield from parse_sse(response.iter_lines())

    def ws_events(self, job_id: str, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """The same events over the WebSocket (``/ws/training/{jobId}``), in the :meth:`events`
        shape. Needs the ``websockets`` package. A refused connection raises :class:`APIError`;
        ``timeout`` bounds the wait for each frame."""
        try:
            from websockets.exceptions import (
                ConnectionClosed,
                ConnectionClosedOK,
                InvalidStatus,
            )
            from websockets.sync.client import connect
        except ImportError as exc:  # pragma: no cover - part of the server extra
            raise ImportError("ws_events needs the websockets package: pip install 'workbench[server]'") from exc

        token = self._transport.token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            ws = connect(self._transport.ws_url(f"/ws/training/{seg(job_id)}"), additional_headers=headers,
                         open_timeout=self.timeout, close_timeout=5)
        except InvalidStatus as exc:
            raise APIError.from_status(exc.response.status_code, exc.response.body) from None
        failed = False
        with ws:
            while True:
                try:
                    frame = ws.recv(timeout=timeout)
                except ConnectionClosedOK:
                    return
                except ConnectionClosed:
                    if failed:  # the server sent its error, then closed with 1011
                        return
                    raise
                try:
                    item: Any = json.loads(frame)
                except ValueError:
                    yield {"event": "message", "data": frame, "id": None}
                    continue
                if isinstance(item, dict) and item.get("success") is False:
                    failed = True
                    yield {"event": "error", "data": item, "id": None}
                elif isinstance(item, dict):
                    yield {"event": str(item.get("kind") or "message"), "data": item, "id": None}
                else:
                    yield {"event": "message", "data": item, "id": None}


class _Results(_Base):
    def validate(self, model_path: str, test_dataset_id: str, metrics: Sequence[str] | None = None,
                 job_id: str | None = None, *, max_samples: int | None = None, max_new_tokens: int | None = None,
                 timeout: float | None = 600) -> dict[str, Any]:
        """Score a checkpoint (``final``, ``checkpoint-N`` or ``JOB/checkpoint-N``) on a dataset.

        ``metrics`` is the API's ``metrics_to_compute``. Runs to completion within the request,
        hence the long default ``timeout``.
        """
        body = {"model_path": model_path, "test_dataset_id": test_dataset_id, **drop_none(
            metrics_to_compute=list(metrics) if metrics is not None else None, job_id=job_id,
            max_samples=max_samples, max_new_tokens=max_new_tokens)}
        return self._post("/api/training/validate", body, timeout=timeout)

    def download_model(self, job_id: str, dest: str | os.PathLike[str], checkpoint: str | None = None) -> Path:
        """Stream the model (or one checkpoint) zip to ``dest``, a file or an existing folder."""
        return self._transport.download(f"/api/training/{seg(job_id)}/download/model", Path(dest),
                                        drop_none(checkpoint=checkpoint) or None,
                                        f"{job_id}_{checkpoint or 'model'}.zip")

    def download_link(self, job_id: str, checkpoint: str | None = None, kind: str = "model") -> str:
        """A short-lived signed URL of a download, for a browser (it carries no token)."""
        params = {"kind": kind, **drop_none(checkpoint=checkpoint)}
        return self._get(f"/api/training/{seg(job_id)}/download/link", params=params)["url"]

    def download_logs(self, job_id: str, dest: str | os.PathLike[str]) -> Path:
        """Stream ``training.log`` + ``progress.json`` as a zip to ``dest`` (file or folder)."""
        return self._transport.download(f"/api/training/{seg(job_id)}/download/logs", Path(dest), None,
                                        f"{job_id}_logs.zip")


class _Analytics(_Base):
    def get_analytics(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/{seg(job_id)}/analytics")

    def analytics_summary(self) -> dict[str, Any]:
        return self._get("/api/training/analytics/summary")

    def compare(self, job_ids: Sequence[str]) -> dict[str, Any]:
        return self._get("/api/training/analytics/compare", params={"job_ids": ",".join(job_ids)})


class _UsageAnalytics(_Base):
    def analytics_data(self, start_date: str, end_date: str, *, metrics: str | Sequence[str] | None = None,
                       granularity: str | None = None, timezone: str | None = None, cohort_id: str | None = None,
                       model: str | None = None, job_id: str | None = None) -> dict[str, Any]:
        """Usage per bucket (tokens, quality, tools, conversations, errors, latency) and the totals."""
        if metrics is not None and not isinstance(metrics, str):
            metrics = ",".join(metrics)
        params = {"startDate": start_date, "endDate": end_date,
                  **drop_none(metrics=metrics, granularity=granularity, timezone=timezone, cohort_id=cohort_id,
                              model=model, job_id=job_id)}
        return self._get("/api/analytics/data", params=params)

    def rate_reply(self, message_id: str, rating: int | None = None, success: bool | None = None,
                   comment: str | None = None) -> dict[str, Any]:
        """Feedback on a reply (its completion ``id``): a 1-5 rating and/or a success verdict."""
        return self._post("/api/analytics/feedback",
                          {"message_id": message_id, **drop_none(rating=rating, success=success, comment=comment)})

    def compare_models_in_use(self, start_date: str, end_date: str) -> dict[str, Any]:
        """Quality, cost and latency per served model, training job and checkpoint."""
        return self._get("/api/analytics/models", params={"startDate": start_date, "endDate": end_date})

    def export_usage(self, start_date: str, end_date: str, dest: str | os.PathLike[str], format: str = "csv") -> Path:
        """The range's usage records with their feedback, as CSV or JSONL, streamed to ``dest`` (file or folder)."""
        return self._transport.download("/api/analytics/export", Path(dest),
                                        {"startDate": start_date, "endDate": end_date, "format": format},
                                        f"usage.{format}")

    def sentiment_insights(self, lookback_days: int | None = None) -> dict[str, Any]:
        return self._get("/api/analytics/sentiment/insights", params=drop_none(lookback_days=lookback_days))

    def list_cohorts(self, cohort_id: str | None = None, cohort_type: str | None = None,
                     is_active: bool | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The cohorts (current ``member_count``); with ``cohort_id``, that one with its ``members``."""
        params = drop_none(cohort_id=cohort_id, cohort_type=cohort_type, limit=limit,
                           is_active=None if is_active is None else str(is_active).lower())
        return unwrap(self._get("/api/analytics/cohorts", params=params), "cohorts")

    def create_cohort(self, name: str, cohort_type: str, criteria: Mapping[str, Any] | None = None,
                      description: str | None = None, is_active: bool | None = None) -> dict[str, Any]:
        body = {"name": name, "cohort_type": cohort_type, "criteria": dict(criteria or {}),
                **drop_none(description=description, is_active=is_active)}
        return unwrap(self._post("/api/analytics/cohorts", body), "cohort")

    def update_cohort(self, cohort_id: str, *, name: str | None = None, description: str | None = None,
                      criteria: Mapping[str, Any] | None = None, is_active: bool | None = None,
                      add_members: Sequence[str] | None = None,
                      remove_members: Sequence[str] | None = None) -> dict[str, Any]:
        body = {"cohort_id": cohort_id, **drop_none(
            name=name, description=description, criteria=dict(criteria) if criteria is not None else None,
            is_active=is_active, add_members=list(add_members) if add_members else None,
            remove_members=list(remove_members) if remove_members else None)}
        return unwrap(self._transport.request("PATCH", "/api/analytics/cohorts", json=body), "cohort")

    def delete_cohort(self, cohort_id: str | None = None, cohort_type: str | None = None,
                      is_active: bool | None = None, limit: int | None = None) -> dict[str, Any]:
        """Delete ``cohort_id`` (the other filters are the list's, and ignored here)."""
        return self._delete("/api/analytics/cohorts", params=drop_none(cohort_id=cohort_id))

    def analytics_chat(self, messages: Sequence[Mapping[str, Any]], *, sessionId: str | None = None,
                       experimentName: str | None = None, conversationIds: Sequence[str] | None = None,
                       model: str | None = None) -> Iterator[dict[str, Any]]:
        """The assistant's SSE events: ``token_usage``, ``tools_metadata``, then ``content`` pieces."""
        body = {"messages": [dict(m) for m in messages], **drop_none(
            sessionId=sessionId, experimentName=experimentName, model=model,
            conversationIds=list(conversationIds) if conversationIds else None)}
        with self._transport.http.stream("POST", "/api/analytics/chat", json=body,
                                         timeout=httpx.Timeout(self._transport.timeout, read=300)) as response:
            if response.is_error:
                response.read()
                raise APIError.from_response(response)
            for event in parse_sse(response.iter_lines()):
                if event["data"] == "[DONE]":
                    return
                yield event["data"]

    def run_analytics_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One of the assistant's tools, directly (no LLM): ``calculator``, ``evaluation_metrics`` …"""
        return self._post(f"/api/analytics/tools/{seg(name)}", {"arguments": dict(arguments or {})})


class _Experiments(_Base):
    def create_sweep(self, dataset: str, parameters: Mapping[str, Any], *, model: str | None = None,
                     config: str | Mapping[str, Any] | None = None, strategy: str = "grid",
                     metric: str | None = None, max_trials: int | None = None, max_concurrent: int | None = None,
                     seed: int | None = None, name: str | None = None,
                     eval_dataset: str | None = None) -> dict[str, Any]:
        """Start a sweep: ``parameters`` maps dotted config keys to lists or ``{low, high, log}``."""
        body = {"dataset": dataset, "parameters": dict(parameters), "strategy": strategy, **drop_none(
            model=model, config=dict(config) if isinstance(config, Mapping) else config, metric=metric,
            max_trials=max_trials, max_concurrent=max_concurrent, seed=seed, name=name, eval_dataset=eval_dataset)}
        return self._post("/api/training/sweeps", body)

    def list_sweeps(self) -> list[dict[str, Any]]:
        return unwrap(self._get("/api/training/sweeps"), "sweeps")

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/sweeps/{seg(sweep_id)}")

    def suggestions(self, model: str | None = None, dataset: str | None = None) -> dict[str, Any]:
        return self._get("/api/training/suggestions", params=drop_none(model=model, dataset=dataset))

    def lineage(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/api/training/{seg(job_id)}/lineage")

    def duplicate_job(self, job_id: str, overrides: Mapping[str, Any] | None = None,
                      name: str | None = None) -> dict[str, Any]:
        return self._post(f"/api/training/{seg(job_id)}/duplicate",
                          drop_none(overrides=dict(overrides) if overrides else None, name=name))

    def dataset_versions(self, dataset_id: str) -> list[dict[str, Any]]:
        return unwrap(self._get(f"/api/training/dataset/{seg(dataset_id)}/versions"), "versions")


class _Deployments(_Base):
    def deploy_training(self, job_id: str, checkpoint: str | None = None, *, deployment_name: str | None = None,
                        provider: str | None = None, budget_limit: float | None = None,
                        cost_per_request: float | None = None, port: int | None = None) -> dict[str, Any]:
        """Serve a job's checkpoint (``checkpoint-final``, ``checkpoint-best``, a name); ``provider`` local by default."""
        body = {"job_id": job_id, **drop_none(checkpoint=checkpoint, deployment_name=deployment_name,
                                              provider=provider, budget_limit=budget_limit,
                                              cost_per_request=cost_per_request, port=port)}
        return self._post("/api/training/deploy", body, timeout=600)

    def deploy(self, training_job_id: str, deployment_name: str, *, checkpoint_selection: str = "best",
               provider: str = "local", budget_limit: float | None = None, gpu_type: str | None = None,
               min_workers: int | None = None, max_workers: int | None = None,
               auto_stop_on_budget: bool | None = None, cost_per_request: float | None = None,
               merged: bool | None = None, adapter_uri: str | None = None) -> dict[str, Any]:
        """``POST /api/inference/deploy``: a deployment with a budget; the reply names its ``model_name``."""
        body = {"provider": provider, "deployment_name": deployment_name, "training_job_id": training_job_id,
                "checkpoint_selection": checkpoint_selection, **drop_none(
                    budget_limit=budget_limit, gpu_type=gpu_type, min_workers=min_workers, max_workers=max_workers,
                    auto_stop_on_budget=auto_stop_on_budget, cost_per_request=cost_per_request, merged=merged,
                    adapter_uri=adapter_uri)}
        return self._post("/api/inference/deploy", body, timeout=600)

    def list_deployments(self) -> list[dict[str, Any]]:
        return self._get("/api/inference/deployments")["deployments"]

    def deployment_status(self, deployment_id: str) -> dict[str, Any]:
        return self._get(f"/api/inference/deployments/{seg(deployment_id)}/status")["deployment"]

    def stop_deployment(self, deployment_id: str) -> dict[str, Any]:
        return self._delete(f"/api/inference/deployments/{seg(deployment_id)}/stop")

    def download_merged(self, job_id: str, dest: str | os.PathLike[str], checkpoint: str | None = None) -> Path:
        """The checkpoint merged into its base (full weights) as a zip, streamed to ``dest`` (file or folder)."""
        return self._transport.download(f"/api/training/{seg(job_id)}/download/merged", Path(dest),
                                        drop_none(checkpoint=checkpoint) or None, f"{job_id}_merged.zip")

    def download_gguf(self, job_id: str, dest: str | os.PathLike[str], checkpoint: str | None = None,
                      quantization: str = "q8_0") -> Path:
        """A zip of the GGUF file (``f16`` or ``q8_0``) and its Ollama ``Modelfile``, streamed to ``dest``."""
        return self._transport.download(f"/api/training/{seg(job_id)}/download/gguf", Path(dest),
                                        {"quantization": quantization, **drop_none(checkpoint=checkpoint)},
                                        f"{job_id}_{quantization}.zip")

    def list_secrets(self) -> list[dict[str, Any]]:
        return self._get("/api/secrets")["secrets"]

    def set_secret(self, name: str, value: str) -> dict[str, Any]:
        """Store a secret (``RUNPOD_API_KEY``) encrypted on the server; it is never returned."""
        return self._put(f"/api/secrets/{seg(name)}", {"value": value})

    def delete_secret(self, name: str) -> dict[str, Any]:
        return self._delete(f"/api/secrets/{seg(name)}")

    # The OpenAI-compatible routes: for real use, point the ``openai`` SDK at ``base_url + "/v1"``
    # (see :meth:`openai_client`); these are plain calls for scripts and tests.
    def chat_completions(self, model: str, messages: Sequence[Mapping[str, Any]], *, max_tokens: int | None = None,
                         max_completion_tokens: int | None = None, temperature: float | None = None,
                         top_p: float | None = None, n: int | None = None, stop: str | list[str] | None = None,
                         stream: bool | None = None, stream_options: dict[str, Any] | None = None,
                         user: str | None = None, metadata: dict[str, Any] | None = None,
                         ignore_eos: bool | None = None,
                         knowledge_base: dict[str, Any] | None = None) -> dict[str, Any]:
        """One chat reply as a dict (``stream`` is for the ``openai`` SDK: see :meth:`openai_client`)."""
        if stream:
            raise ValueError("stream with the openai SDK: client.openai_client().chat.completions.create(stream=True)")
        return self._post("/v1/chat/completions", {"model": model, "messages": list(messages), **drop_none(
            max_tokens=max_tokens, max_completion_tokens=max_completion_tokens, temperature=temperature, top_p=top_p,
            n=n, stop=stop, stream_options=stream_options, user=user, metadata=metadata, ignore_eos=ignore_eos,
            knowledge_base=knowledge_base)})

    def completions(self, model: str, prompt: str, *, max_tokens: int | None = None, temperature: float | None = None,
                    top_p: float | None = None, n: int | None = None, stop: str | list[str] | None = None,
                    stream: bool | None = None, stream_options: dict[str, Any] | None = None,
                    user: str | None = None, metadata: dict[str, Any] | None = None,
                    ignore_eos: bool | None = None) -> dict[str, Any]:
        if stream:
            raise ValueError("stream with the openai SDK: client.openai_client().completions.create(stream=True)")
        return self._post("/v1/completions", {"model": model, "prompt": prompt, **drop_none(
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, n=n, stop=stop,
            stream_options=stream_options, user=user, metadata=metadata, ignore_eos=ignore_eos)})

    def list_v1_models(self) -> list[dict[str, Any]]:
        return self._get("/v1/models")["data"]

    def metrics(self) -> str:
        """The Prometheus text exposition of ``/metrics``."""
        with self._transport.stream("/metrics") as response:
            return response.read().decode()

    def openai_client(self) -> Any:
        """The official ``openai`` SDK's client for this server's ``/v1``, with this client's token."""
        from openai import OpenAI

        return OpenAI(base_url=f"{self._transport.base_url}/v1", api_key=self._transport.token or "none")


class _GraphRAG(_Base):
    def upload_document(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None, *,
                        file: bytes | None = None) -> dict[str, Any]:
        """Upload a PDF, DOCX, TXT or MD file to the knowledge base; the document (``processed`` turns true
        later), unwrapped from the reply's ``document`` as :meth:`list_documents` unwraps ``documents``."""
        p = Path(path)
        content = file if file is not None else p.read_bytes()
        data = {"metadata": json.dumps(dict(metadata))} if metadata else {}
        return self._post("/api/graphrag/upload", files={"file": (p.name, content)}, data=data, timeout=600)["document"]

    def list_documents(self) -> list[dict[str, Any]]:
        return self._get("/api/graphrag/documents")["documents"]

    def search_knowledge(self, query: str, limit: int = 5, method: str = "hybrid",
                         document_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """``context`` (for a prompt), ranked ``sources`` and ``metadata.searchMethod``."""
        body = {"query": query, "limit": limit, "method": method,
                **drop_none(document_ids=list(document_ids) if document_ids else None)}
        return self._post("/api/graphrag/search", body)

    def chunk_neighbourhood(self, chunk_id: str) -> dict[str, Any]:
        return self._get(f"/api/graphrag/chunks/{seg(chunk_id)}/neighbourhood")

    def delete_document(self, document_id: str) -> dict[str, Any]:
        return self._delete(f"/api/graphrag/delete/{seg(document_id)}")


class TrainingClient(_Server, _Models, _Datasets, _Configs, _Jobs, _Live, _Results, _Analytics, _UsageAnalytics,
                     _Experiments, _Deployments, _GraphRAG):
    """A client for one workbench server. Use it as a context manager, or call :meth:`close`.

    One method per API operation (:data:`~workbench.client.OPERATIONS` maps each ``operationId``
    to its method); :meth:`request` is the raw escape hatch.
    """


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
