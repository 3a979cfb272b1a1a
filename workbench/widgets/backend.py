"""The one interface every panel talks to, with two implementations.

* :class:`LocalBackend` calls the core services in this kernel — next to the data.
* :class:`RemoteBackend` calls a workbench server through the SDK client.

A panel takes either, so the same panel works in a notebook or against a remote workbench.
Live job events come from ``events()``: the metrics file in-process, the SSE stream remotely.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ..records import LOCAL_USER


class Backend(Protocol):
    remote: bool

    def list_models(self) -> list[dict[str, Any]]: ...
    def list_datasets(self) -> list[dict[str, Any]]: ...
    def upload_dataset(self, content: bytes, filename: str, name: str) -> dict[str, Any]: ...
    def register_path(self, path: str, name: str) -> dict[str, Any]: ...
    def register_sample(self) -> dict[str, Any]: ...
    def dataset(self, dataset_id: str, model: str | None = None) -> dict[str, Any]: ...
    def preview(self, dataset_id: str, model: str, index: int = 0) -> dict[str, Any]: ...
    def split_dataset(self, dataset_id: str, eval_fraction: float, seed: int) -> dict[str, Any]: ...
    def templates(self) -> dict[str, Any]: ...
    def list_configs(self) -> list[dict[str, Any]]: ...
    def get_config(self, config_id: str) -> dict[str, Any]: ...
    def create_config(self, name: str, config_json: dict[str, Any], template_type: str,
                      description: str = "") -> dict[str, Any]: ...
    def update_config(self, config_id: str, **fields: Any) -> dict[str, Any]: ...
    def delete_config(self, config_id: str) -> None: ...
    def list_jobs(self) -> list[dict[str, Any]]: ...
    def start_job(self, model: str, dataset: str, config: str | None, *, eval_dataset: str | None = None,
                  overrides: dict[str, Any] | None = None, name: str | None = None) -> dict[str, Any]: ...
    def status(self, job_id: str) -> dict[str, Any]: ...
    def pause(self, job_id: str) -> dict[str, Any]: ...
    def resume(self, job_id: str) -> dict[str, Any]: ...
    def cancel(self, job_id: str) -> dict[str, Any]: ...
    def rows(self, job_id: str) -> list[dict[str, Any]]:
        """The job's history: one row per logged step (``train_loss``, ``eval_loss``, ``learning_rate`` …)."""
        ...
    def logs(self, job_id: str, tail: int = 200) -> list[str]: ...
    def checkpoints(self, job_id: str) -> dict[str, Any]: ...
    def validate(self, job_id: str, checkpoint: str, dataset_id: str) -> dict[str, Any]: ...
    def compare(self, job_ids: list[str]) -> dict[str, Any]: ...
    def events(self, job_id: str) -> Iterator[dict[str, Any]]: ...
    def download_url(self, job_id: str, checkpoint: str | None = None) -> str | None: ...
    def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/inference/deploy``'s body; the deploy response (``model_name`` …)."""
        ...
    def deployments(self) -> list[dict[str, Any]]: ...
    def deployment_status(self, deployment_id: str) -> dict[str, Any]: ...
    def stop_deployment(self, deployment_id: str) -> dict[str, Any]: ...
    def chat(self, model: str, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> dict[str, Any]:
        """One OpenAI-shaped chat reply from a deployed model (metered like any /v1 request)."""
        ...
    def secrets(self) -> list[dict[str, Any]]: ...
    def set_secret(self, name: str, value: str) -> dict[str, Any]: ...
    def upload_document(self, content: bytes, filename: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        ...
    def documents(self) -> list[dict[str, Any]]: ...
    def search_knowledge(self, query: str, method: str, limit: int) -> dict[str, Any]: ...
    def neighbourhood(self, chunk_id: str) -> dict[str, Any]: ...
    def delete_document(self, document_id: str) -> dict[str, Any]: ...
    def analytics_data(self, start: str, end: str, granularity: str, timezone: str | None = None,
                       cohort_id: str | None = None) -> dict[str, Any]: ...
    def models_in_use(self, start: str, end: str) -> dict[str, Any]: ...
    def rate_reply(self, message_id: str, rating: int | None = None, success: bool | None = None,
                   comment: str | None = None) -> dict[str, Any]: ...
    def sentiment_insights(self, lookback_days: int) -> dict[str, Any]: ...
    def cohorts(self) -> list[dict[str, Any]]: ...
    def create_cohort(self, name: str, cohort_type: str, criteria: dict[str, Any],
                      description: str | None = None) -> dict[str, Any]: ...
    def delete_cohort(self, cohort_id: str) -> dict[str, Any]: ...
    def analytics_chat(self, messages: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The assistant's events (``token_usage``, ``tools_metadata``, ``content`` …), collected."""
        ...
    def sweeps(self) -> list[dict[str, Any]]: ...
    def sweep(self, sweep_id: str) -> dict[str, Any]: ...
    def start_sweep(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/training/sweeps``'s body; the sweep (``sweep_id``, ``trials`` …)."""
        ...
    def suggestions(self, model: str | None, dataset: str | None) -> dict[str, Any]: ...


class LocalBackend:
    """The core services of this process's ``WORKBENCH_HOME``, as ``owner``."""

    remote = False

    def __init__(self, owner: str = LOCAL_USER, api_url: str | None = None):
        from ..configs import ConfigService
        from ..datasets import DatasetService
        from ..jobs.service import JobService

        self.owner = owner
        self.datasets = DatasetService()
        self.configs = ConfigService()
        self.jobs = JobService()
        # Where download links point: a server over the same home, when one runs (make run).
        self.api_url = (api_url or os.environ.get("WORKBENCH_API_URL") or "").rstrip("/") or None

    def list_models(self) -> list[dict[str, Any]]:
        from .. import models

        return models.list_models(self.owner)

    def list_datasets(self) -> list[dict[str, Any]]:
        return self.datasets.list(self.owner)

    def upload_dataset(self, content: bytes, filename: str, name: str) -> dict[str, Any]:
        return self.datasets.register(content, name=name, filename=filename, owner=self.owner)

    def register_path(self, path: str, name: str) -> dict[str, Any]:
        return self.datasets.register(Path(path).expanduser(), name=name, owner=self.owner)

    def register_sample(self) -> dict[str, Any]:
        return self.datasets.register_sample(self.owner)

    def dataset(self, dataset_id: str, model: str | None = None) -> dict[str, Any]:
        rec = self.datasets.get(dataset_id, self.owner)
        if model:
            rec["stats"] = self.datasets.stats(dataset_id, self.owner, model=model)
        return rec

    def preview(self, dataset_id: str, model: str, index: int = 0) -> dict[str, Any]:
        return self.datasets.preview(dataset_id, self.owner, model=model, index=index)

    def split_dataset(self, dataset_id: str, eval_fraction: float, seed: int) -> dict[str, Any]:
        return self.datasets.split(dataset_id, eval_fraction=eval_fraction, seed=seed, owner=self.owner)

    def templates(self) -> dict[str, Any]:
        from ..configs import TEMPLATES, template

        return {name: template(name) for name in TEMPLATES}

    def list_configs(self) -> list[dict[str, Any]]:
        return self.configs.list(self.owner)

    def get_config(self, config_id: str) -> dict[str, Any]:
        return self.configs.get(config_id, self.owner)

    def create_config(self, name: str, config_json: dict[str, Any], template_type: str,
                      description: str = "") -> dict[str, Any]:
        return self.configs.create(name, config_json, template_type=template_type, description=description,
                                   owner=self.owner)

    def update_config(self, config_id: str, **fields: Any) -> dict[str, Any]:
        return self.configs.update(config_id, fields, self.owner)

    def delete_config(self, config_id: str) -> None:
        self.configs.delete(config_id, self.owner)

    def list_jobs(self) -> list[dict[str, Any]]:
        return self.jobs.list(self.owner)

    def start_job(self, model: str, dataset: str, config: str | None, *, eval_dataset: str | None = None,
                  overrides: dict[str, Any] | None = None, name: str | None = None) -> dict[str, Any]:
        return self.jobs.start(model, dataset, config, overrides=overrides, name=name,
                               eval_dataset=eval_dataset, owner=self.owner)

    def status(self, job_id: str) -> dict[str, Any]:
        return self.jobs.status(job_id, self.owner)

    def pause(self, job_id: str) -> dict[str, Any]:
        self.jobs.pause(job_id, self.owner, wait=0)
        return self.status(job_id)

    def resume(self, job_id: str) -> dict[str, Any]:
        self.jobs.resume(job_id, self.owner)
        return self.status(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        self.jobs.cancel(job_id, self.owner)
        return self.status(job_id)

    def rows(self, job_id: str) -> list[dict[str, Any]]:
        return self.jobs.rows(job_id, self.owner)

    def logs(self, job_id: str, tail: int = 200) -> list[str]:
        return self.jobs.logs(job_id, self.owner, tail=tail)

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        return self.jobs.checkpoints(job_id, self.owner)

    def validate(self, job_id: str, checkpoint: str, dataset_id: str) -> dict[str, Any]:
        from ..results.evaluate import validate

        return validate(job_id, checkpoint, dataset_id, owner=self.owner, max_samples=50)

    def compare(self, job_ids: list[str]) -> dict[str, Any]:
        from ..results.analytics import compare

        return compare(job_ids, self.owner)

    def events(self, job_id: str) -> Iterator[dict[str, Any]]:
        from ..jobs.watch import watch

        return watch(self.jobs, job_id, self.owner)

    def download_url(self, job_id: str, checkpoint: str | None = None) -> str | None:
        """A short-lived signed link to the server over this home (no token in it), or None without one."""
        if not self.api_url:
            return None
        from ..results.downloads import download_path

        self.jobs.get(job_id, self.owner)
        return self.api_url + download_path(job_id, self.owner, "model", checkpoint)


    # ---- deployments: the same core the server's routes call -------------------------------
    def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
        from ..serving.deployments import DeploymentService

        return DeploymentService().deploy(body, self.owner, base_url=self.api_url)

    def deployments(self) -> list[dict[str, Any]]:
        from ..serving.deployments import DeploymentService

        svc = DeploymentService()
        return [svc.status(d["id"], self.owner)["deployment"] for d in svc.list(self.owner)]

    def deployment_status(self, deployment_id: str) -> dict[str, Any]:
        from ..serving.deployments import DeploymentService

        return DeploymentService().status(deployment_id, self.owner)["deployment"]

    def stop_deployment(self, deployment_id: str) -> dict[str, Any]:
        from ..serving.deployments import DeploymentService

        return DeploymentService().stop(deployment_id, self.owner)

    def chat(self, model: str, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> dict[str, Any]:
        """Through :func:`workbench.serving.gateway.complete`, on an event loop of its own thread
        (the kernel's loop is busy running this callback)."""
        import asyncio
        import concurrent.futures

        from ..serving import gateway
        from ..serving.inference import ChatRequest

        body = ChatRequest(model=model, messages=messages, max_tokens=max_tokens, temperature=temperature)
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            return ex.submit(asyncio.run, gateway.complete("chat", body, self.owner)).result()  # type: ignore[arg-type]

    def secrets(self) -> list[dict[str, Any]]:
        from .. import user_secrets

        return user_secrets.list_secrets(self.owner)

    def set_secret(self, name: str, value: str) -> dict[str, Any]:
        from .. import user_secrets

        return user_secrets.set_secret(name, value, self.owner)


    # ---- the knowledge base -----------------------------------------------------------------
    def upload_document(self, content: bytes, filename: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        from ..graphrag.service import KnowledgeBaseService

        return KnowledgeBaseService().upload(filename, content, self.owner, metadata)

    def documents(self) -> list[dict[str, Any]]:
        from ..graphrag.service import KnowledgeBaseService

        return KnowledgeBaseService().list(self.owner)

    def search_knowledge(self, query: str, method: str, limit: int) -> dict[str, Any]:
        from ..graphrag.service import KnowledgeBaseService

        return KnowledgeBaseService().search(query, self.owner, method=method, limit=limit)

    def neighbourhood(self, chunk_id: str) -> dict[str, Any]:
        from ..graphrag.service import KnowledgeBaseService

        return KnowledgeBaseService().neighbourhood(chunk_id, self.owner)

    def delete_document(self, document_id: str) -> dict[str, Any]:
        from ..graphrag.service import KnowledgeBaseService

        return KnowledgeBaseService().delete(document_id, self.owner)

    # ---- usage analytics --------------------------------------------------------------------
    def analytics_data(self, start: str, end: str, granularity: str, timezone: str | None = None,
                       cohort_id: str | None = None) -> dict[str, Any]:
        from ..analytics import cohorts, data

        members = cohorts.member_filter(cohort_id, self.owner)
        return data.query(self.owner, start=start, end=end, granularity=granularity, timezone=timezone,
                          members=members)["data"]

    def models_in_use(self, start: str, end: str) -> dict[str, Any]:
        from ..analytics import compare

        return compare.by_model(self.owner, start, end)

    def rate_reply(self, message_id: str, rating: int | None = None, success: bool | None = None,
                   comment: str | None = None) -> dict[str, Any]:
        from ..analytics import records

        fb = _checked(records.Feedback, message_id=message_id, rating=rating, success=success, comment=comment)
        return records.add_feedback(fb, self.owner)

    def sentiment_insights(self, lookback_days: int) -> dict[str, Any]:
        from ..analytics import insights

        return insights.insights(self.owner, lookback_days)

    def cohorts(self) -> list[dict[str, Any]]:
        from ..analytics import cohorts

        return cohorts.listing(self.owner)

    def create_cohort(self, name: str, cohort_type: str, criteria: dict[str, Any],
                      description: str | None = None) -> dict[str, Any]:
        from ..analytics import cohorts

        body = _checked(cohorts.CohortCreate, name=name, cohort_type=cohort_type, criteria=criteria,
                        description=description)
        return cohorts.create(body, self.owner)

    def delete_cohort(self, cohort_id: str) -> dict[str, Any]:
        from ..analytics import cohorts

        return cohorts.delete(cohort_id, self.owner)

    def analytics_chat(self, messages: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The assistant on an event loop of its own thread (the kernel's loop runs this callback)."""
        import asyncio
        import concurrent.futures

        from ..analytics import assistant

        body = assistant.AnalyticsChat(messages=messages)  # type: ignore[arg-type]
        llm = assistant.llm_for(body, self.owner, self.api_url, None)

        async def collect() -> list[dict[str, Any]]:
            return [e async for e in assistant.chat(body, self.owner, llm)]

        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            return ex.submit(asyncio.run, collect()).result()

    # ---- sweeps and suggestions -------------------------------------------------------------
    def sweeps(self) -> list[dict[str, Any]]:
        from ..experiments.sweeps import SweepService

        return SweepService().list(self.owner)

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        from ..experiments.sweeps import SweepService

        return SweepService().get(sweep_id, self.owner)

    def start_sweep(self, body: dict[str, Any]) -> dict[str, Any]:
        """Driven by a thread of this kernel (a server over the same home resumes it if the kernel stops)."""
        from ..experiments.space import SweepSpec
        from ..experiments.sweeps import SweepService

        return SweepService().create(_checked(SweepSpec, **body), self.owner)

    def suggestions(self, model: str | None, dataset: str | None) -> dict[str, Any]:
        from ..experiments.suggestions import suggest

        return suggest(model, dataset, self.owner)


def _checked(shape: Any, **fields: Any) -> Any:
    """``shape(**fields)``, its first validation error as the core's InvalidInput (what the panels show)."""
    from pydantic import ValidationError

    from ..errors import InvalidInput

    try:
        return shape(**fields)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "input"
        raise InvalidInput(f"{where}: {e['msg'].removeprefix('Value error, ')}", field=where) from None


class RemoteBackend:
    """A workbench server, through :class:`workbench.client.TrainingClient`."""

    remote = True

    def __init__(self, base_url: str, token: str | None = None):
        from ..client import TrainingClient

        self.base_url = base_url.rstrip("/")
        self.token = token
        self.client = TrainingClient(self.base_url, token=token)

    def list_models(self) -> list[dict[str, Any]]:
        return self.client.list_models()

    def list_datasets(self) -> list[dict[str, Any]]:
        return self.client.list_datasets()

    def upload_dataset(self, content: bytes, filename: str, name: str) -> dict[str, Any]:
        return self.client.upload_dataset(content, name=name, filename=filename)

    def register_path(self, path: str, name: str) -> dict[str, Any]:
        return self.client.upload_dataset(Path(path).expanduser(), name=name)

    def register_sample(self) -> dict[str, Any]:
        return self.client.register_sample()

    def dataset(self, dataset_id: str, model: str | None = None) -> dict[str, Any]:
        body = self.client.get_dataset(dataset_id, model=model)
        return {**body["dataset"], "stats": body["stats"]}

    def preview(self, dataset_id: str, model: str, index: int = 0) -> dict[str, Any]:
        return self.client.preview_dataset(dataset_id, model=model, index=index)

    def split_dataset(self, dataset_id: str, eval_fraction: float, seed: int) -> dict[str, Any]:
        return self.client.split_dataset(dataset_id, eval_fraction=eval_fraction, seed=seed)

    def templates(self) -> dict[str, Any]:
        return self.client.list_templates()

    def list_configs(self) -> list[dict[str, Any]]:
        return self.client.list_configs()

    def get_config(self, config_id: str) -> dict[str, Any]:
        return self.client.get_config(config_id)

    def create_config(self, name: str, config_json: dict[str, Any], template_type: str,
                      description: str = "") -> dict[str, Any]:
        return self.client.create_config(name, config_json, template_type=template_type, description=description)

    def update_config(self, config_id: str, **fields: Any) -> dict[str, Any]:
        return self.client.update_config(config_id, **fields)

    def delete_config(self, config_id: str) -> None:
        self.client.delete_config(config_id)

    def list_jobs(self) -> list[dict[str, Any]]:
        return self.client.list_jobs()

    def start_job(self, model: str, dataset: str, config: str | None, *, eval_dataset: str | None = None,
                  overrides: dict[str, Any] | None = None, name: str | None = None) -> dict[str, Any]:
        out = self.client.start_training(model, dataset, config, name=name, eval_dataset=eval_dataset,
                                         overrides=overrides)
        return {"id": out["job_id"], **out}

    def status(self, job_id: str) -> dict[str, Any]:
        return self.client.get_status(job_id)

    def pause(self, job_id: str) -> dict[str, Any]:
        self.client.pause(job_id)
        return self.status(job_id)

    def resume(self, job_id: str) -> dict[str, Any]:
        self.client.resume(job_id)
        return self.status(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        self.client.cancel(job_id)
        return self.status(job_id)

    def rows(self, job_id: str) -> list[dict[str, Any]]:
        """The same rows, as the server's one reader of them gives them."""
        return self.client.get_local_metrics(job_id)["metrics"]

    def logs(self, job_id: str, tail: int = 200) -> list[str]:
        return self.client.get_logs(job_id, tail=tail)["logs"]

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        return self.client.list_checkpoints(job_id)

    def validate(self, job_id: str, checkpoint: str, dataset_id: str) -> dict[str, Any]:
        return self.client.validate(checkpoint, dataset_id, job_id=job_id, max_samples=50)

    def compare(self, job_ids: list[str]) -> dict[str, Any]:
        return self.client.compare(job_ids)

    def events(self, job_id: str) -> Iterator[dict[str, Any]]:
        for e in self.client.events(job_id):
            if e["event"] in ("status", "metric") and isinstance(e.get("data"), dict):
                yield {"kind": e["event"], **e["data"]}

    def download_url(self, job_id: str, checkpoint: str | None = None) -> str | None:
        """A short-lived signed link made by the server (the token never goes into a URL)."""
        return self.client.download_link(job_id, checkpoint)


    # ---- deployments -------------------------------------------------------------------------
    def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.client.request("POST", "/api/inference/deploy", json=body, timeout=600)

    def deployments(self) -> list[dict[str, Any]]:
        return self.client.list_deployments()

    def deployment_status(self, deployment_id: str) -> dict[str, Any]:
        return self.client.deployment_status(deployment_id)

    def stop_deployment(self, deployment_id: str) -> dict[str, Any]:
        return self.client.stop_deployment(deployment_id)

    def chat(self, model: str, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> dict[str, Any]:
        return self.client.chat_completions(model, messages, max_tokens=max_tokens, temperature=temperature)

    def secrets(self) -> list[dict[str, Any]]:
        return self.client.list_secrets()

    def set_secret(self, name: str, value: str) -> dict[str, Any]:
        return self.client.set_secret(name, value)


    # ---- the knowledge base -----------------------------------------------------------------
    def upload_document(self, content: bytes, filename: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.client.upload_document(filename, metadata, file=content)

    def documents(self) -> list[dict[str, Any]]:
        return self.client.list_documents()

    def search_knowledge(self, query: str, method: str, limit: int) -> dict[str, Any]:
        return self.client.search_knowledge(query, limit=limit, method=method)

    def neighbourhood(self, chunk_id: str) -> dict[str, Any]:
        return self.client.chunk_neighbourhood(chunk_id)

    def delete_document(self, document_id: str) -> dict[str, Any]:
        return self.client.delete_document(document_id)

    # ---- usage analytics --------------------------------------------------------------------
    def analytics_data(self, start: str, end: str, granularity: str, timezone: str | None = None,
                       cohort_id: str | None = None) -> dict[str, Any]:
        return self.client.analytics_data(start, end, granularity=granularity, timezone=timezone,
                                          cohort_id=cohort_id)["data"]

    def models_in_use(self, start: str, end: str) -> dict[str, Any]:
        return self.client.compare_models_in_use(start, end)

    def rate_reply(self, message_id: str, rating: int | None = None, success: bool | None = None,
                   comment: str | None = None) -> dict[str, Any]:
        return self.client.rate_reply(message_id, rating=rating, success=success, comment=comment)

    def sentiment_insights(self, lookback_days: int) -> dict[str, Any]:
        return self.client.sentiment_insights(lookback_days)

    def cohorts(self) -> list[dict[str, Any]]:
        return self.client.list_cohorts()

    def create_cohort(self, name: str, cohort_type: str, criteria: dict[str, Any],
                      description: str | None = None) -> dict[str, Any]:
        return self.client.create_cohort(name, cohort_type, criteria, description=description)

    def delete_cohort(self, cohort_id: str) -> dict[str, Any]:
        return self.client.delete_cohort(cohort_id)

    def analytics_chat(self, messages: list[dict[str, str]]) -> list[dict[str, Any]]:
        return list(self.client.analytics_chat(messages))

    # ---- sweeps and suggestions -------------------------------------------------------------
    def sweeps(self) -> list[dict[str, Any]]:
        return self.client.list_sweeps()

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        return self.client.get_sweep(sweep_id)

    def start_sweep(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        return self.client.create_sweep(body.pop("dataset"), body.pop("parameters"), **body)

    def suggestions(self, model: str | None, dataset: str | None) -> dict[str, Any]:
        return self.client.suggestions(model, dataset)


def default_backend() -> Backend:
    """Remote when ``WORKBENCH_REMOTE_URL`` is set, else in-process. The remote token is
    ``WORKBENCH_TOKEN``, else (loopback servers) the home's own, found by the client."""
    url = os.environ.get("WORKBENCH_REMOTE_URL")
    return RemoteBackend(url, os.environ.get("WORKBENCH_TOKEN")) if url else LocalBackend()
