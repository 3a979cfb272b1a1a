"""Deployments: records, the deploy/status/stop verbs of the reference, and what a request may call.

A deployment is a TinyDB record (few, small, edited rarely); its money and its request rows
live in SQLite (:mod:`workbench.serving.budget`, :mod:`workbench.usage`), which is built for one
write per request. The reference's two deploy bodies both land in :meth:`DeploymentService.deploy`:

* ``POST /api/training/deploy`` — ``job_id`` and ``checkpoint`` (a name, ``checkpoint-final``
  or ``checkpoint-best``);
* ``POST /api/inference/deploy`` — ``training_job_id`` and ``checkpoint_selection`` (``best``,
  ``final`` or ``step-N``), a provider, GPU, workers and a budget.

``provider`` defaults to ``local``. A stopped deployment never runs again (the reference:
"stopping is permanent"); its counters stay readable.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import settings as core_settings
from .. import usage
from ..errors import Conflict, InvalidInput, NotFound, PaymentRequired, WorkbenchError
from ..jobfiles.checkpoints import find_checkpoint
from ..records import LOCAL_USER, new_id, now_iso
from ..store import Store, get_store
from . import budget
from .providers import get_provider
from .providers.runpod import DEFAULT_GPU, GPU_PRICES

TABLE = "deployments"
STATUSES = ("deploying", "active", "scaling", "stopped", "failed", "error")
LIVE = ("deploying", "active", "scaling")
MIN_BUDGET = 1.0
MODEL_NAME = re.compile(r"[^a-z0-9._-]+")


class InvalidConfig(InvalidInput):
    """The reference's 400 for a deploy body it cannot use."""

    code = "INVALID_CONFIG"
    http_status = 400


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"


class DeploymentStopped(Conflict):
    code = "DEPLOYMENT_STOPPED"


class DeployInput(BaseModel):
    """``POST /api/inference/deploy``, with ``provider: local`` added and made the default."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["local", "runpod-serverless"] = "local"
    deployment_name: str = Field(min_length=1, max_length=100)
    training_job_id: str = Field(min_length=1, max_length=128)
    checkpoint_selection: str = Field("best", max_length=100, description='"best", "final" or "step-N"')
    gpu_type: str = Field(DEFAULT_GPU, description="RunPod GPU type (see the price table)")
    min_workers: int = Field(0, ge=0, le=100)
    max_workers: int = Field(3, ge=1, le=100)
    budget_limit: float | None = Field(None, description="USD, at least $1.00 (required for runpod-serverless)")
    auto_stop_on_budget: bool = True
    cost_per_request: float | None = Field(None, ge=0, le=100, description="local only: USD per request")
    merged: bool = Field(False, description="serve a merged model (full weights) instead of base + adapter")
    adapter_uri: str | None = Field(None, max_length=1000,
                                    description="runpod only: where the worker finds the adapter (image or volume)")

    @field_validator("gpu_type")
    @classmethod
    def _gpu(cls, value: str) -> str:
        if value not in GPU_PRICES:
            raise ValueError(f"gpu_type must be one of {', '.join(GPU_PRICES)}")
        return value

    @field_validator("budget_limit")
    @classmethod
    def _budget(cls, value: float | None) -> float | None:
        if value is not None and not value >= MIN_BUDGET:
            raise ValueError(f"budget_limit must be at least ${MIN_BUDGET:.2f}")
        if value is not None and value > 1_000_000:
            raise ValueError("budget_limit must be at most $1,000,000")
        return value


class TrainingDeployInput(BaseModel):
    """``POST /api/training/deploy``: the reference's short form (``port`` is accepted and unused)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(min_length=1, max_length=128)
    checkpoint: str | None = Field(None, max_length=100, description="a checkpoint name, checkpoint-final or "
                                   "checkpoint-best (default: the latest)")
    deployment_name: str | None = Field(None, max_length=100)
    provider: Literal["local", "runpod-serverless"] = "local"
    budget_limit: float | None = None
    cost_per_request: float | None = Field(None, ge=0, le=100)
    port: int | None = Field(None, ge=1, le=65535)

    def as_deploy(self) -> dict[str, Any]:
        return {"provider": self.provider, "deployment_name": self.deployment_name or self.job_id,
                "training_job_id": self.job_id, "checkpoint_selection": self.checkpoint or "latest",
                "budget_limit": self.budget_limit, "cost_per_request": self.cost_per_request}


def parse_deploy(body: dict[str, Any] | BaseModel) -> DeployInput:
    """Validate a deploy body; a bad one is the reference's ``INVALID_CONFIG`` naming the field."""
    if isinstance(body, DeployInput):
        dep = body
    else:
        raw = body.model_dump() if isinstance(body, BaseModel) else body
        try:
            dep = DeployInput.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            raise InvalidConfig(f"{where}: {err['msg'].removeprefix('Value error, ')}", field=where) from None
    if dep.provider == "runpod-serverless" and dep.budget_limit is None:
        raise InvalidConfig("budget_limit must be at least $1.00", field="budget_limit")
    if dep.min_workers > dep.max_workers:
        raise InvalidConfig("min_workers must not exceed max_workers", field="min_workers")
    return dep


def model_name_for(name: str) -> str:
    """The name clients put in ``model``: the deployment name, lower-case, URL- and label-safe."""
    slug = MODEL_NAME.sub("-", name.strip().lower()).strip("-.") or "model"
    return slug[:64]


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


class DeploymentService:
    def __init__(self, store: Store | None = None):
        self.store = store or get_store()

    # ---- deploy -----------------------------------------------------------------------------
    def deploy(self, body: dict[str, Any] | BaseModel, owner: str = LOCAL_USER, *,
               base_url: str | None = None, activate: bool = True) -> dict[str, Any]:
        """Create a deployment from a job's checkpoint and make it callable; the reference's response.

        ``activate=False`` (a process that will not serve it, like the CLI without a server): a local
        deployment is recorded as ``deploying`` and loaded by the server that first serves it."""
        from ..jobs.service import JobService

        req = parse_deploy(body)
        provider = get_provider(req.provider)
        if req.provider == "runpod-serverless":
            provider.check_key(owner)  # type: ignore[attr-defined]  # NO_RUNPOD_KEY before any other work
        try:
            job = JobService(self.store).get(req.training_job_id, owner)
        except NotFound:
            raise JobNotFound("Training job not found or no checkpoints available", field="training_job_id") from None
        jd = JobService(self.store).job_dir(job["id"], owner)
        try:
            ckpt = find_checkpoint(jd, _selection(req.checkpoint_selection))
        except NotFound:
            raise JobNotFound("Training job not found or no checkpoints available",
                              field="checkpoint_selection") from None
        except InvalidInput as exc:
            raise InvalidConfig(exc.message, field="checkpoint_selection") from None
        name = model_name_for(req.deployment_name)
        self._check_name(name, owner)  # early, before a merge that may take a while; again at the insert
        base_model = job["model"]
        is_adapter = (ckpt / "adapter_config.json").is_file()
        base_path, adapter_path = self._artifacts(job, ckpt, is_adapter, req.merged, owner)
        cost = (GPU_PRICES[req.gpu_type] if req.provider == "runpod-serverless"
                else req.cost_per_request if req.cost_per_request is not None
                else core_settings.current().cost_per_request)
        dep_id = new_id("dep")
        now = now_iso()
        record = {
            "id": dep_id, "owner": owner, "deployment_name": req.deployment_name, "model_name": name,
            "provider": req.provider, "training_job_id": job["id"], "checkpoint": ckpt.name,
            "checkpoint_selection": req.checkpoint_selection, "base_model": base_model, "base_path": base_path,
            "adapter_path": adapter_path, "merged": bool(req.merged and is_adapter),
            "config": {"gpu_type": req.gpu_type, "min_workers": req.min_workers, "max_workers": req.max_workers,
                       "auto_stop_enabled": req.auto_stop_on_budget, "adapter_uri": req.adapter_uri},
            "cost_per_request": cost, "budget_limit": req.budget_limit, "status": "deploying",
            "endpoint_id": None, "endpoint_url": None, "created_at": now, "deployed_at": None,
            "last_updated": now, "stopped_at": None, "stop_reason": None, "error": None,
            "created_ts": time.time(),
        }
        budget.open_ledger(dep_id, budget_usd=req.budget_limit if req.budget_limit is not None else 1e12,
                           cost_usd=cost, auto_stop=req.auto_stop_on_budget)
        try:
            with self.store.transaction() as tx:  # the name check and the insert, atomically
                self._check_name(name, owner, tx.all(TABLE, owner))
                tx.insert(TABLE, record)
        except BaseException:
            budget.drop(dep_id)
            raise
        try:
            fields = provider.deploy(record) if activate or req.provider != "local" else {}
        except BaseException:  # the provider refused (a rejected key, RunPod down): leave nothing behind
            self.store.delete(TABLE, dep_id)
            budget.drop(dep_id)
            raise
        if req.provider == "local" and base_url:
            fields["endpoint_url"] = f"{base_url.rstrip('/')}/v1"
        if fields.get("status") == "active":
            fields["deployed_at"] = now_iso()
        record = self._update(dep_id, fields)
        return self.deploy_response(record)

    def _check_name(self, name: str, owner: str, deps: list[dict[str, Any]] | None = None) -> None:
        deps = self.store.all(TABLE, owner) if deps is None else deps
        if any(d["model_name"] == name and d["status"] in LIVE for d in deps):
            raise InvalidConfig(f"deployment_name: a live deployment is already called '{name}'; stop it or "
                                "choose another name", field="deployment_name")

    def deploy_response(self, dep: dict[str, Any]) -> dict[str, Any]:
        budget_limit = dep["budget_limit"]
        cost = dep["cost_per_request"]
        return {
            "success": True, "message": "Model deployed successfully", "deployment_id": dep["id"],
            "endpoint_id": dep["endpoint_id"], "endpoint_url": dep["endpoint_url"],
            "endpoint": f"{dep['endpoint_url']}/completions" if dep["provider"] == "local" and dep["endpoint_url"]
            else dep["endpoint_url"],
            "model_name": dep["model_name"], "provider": dep["provider"], "status": dep["status"],
            "checkpoint": dep["checkpoint"], "gpu_type": dep["config"]["gpu_type"], "cost_per_request": cost,
            "budget_limit": budget_limit,
            "estimated_requests": (usage.to_micro(budget_limit) // usage.to_micro(cost)
                                   if budget_limit and usage.to_micro(cost) else None),
            "created_at": dep["created_at"],
            "adapter_load_seconds": dep.get("adapter_load_seconds"),
        }

    def _artifacts(self, job: dict[str, Any], ckpt: Path, is_adapter: bool, merged: bool,
                   owner: str) -> tuple[str, str | None]:
        """(engine key, adapter folder): base + adapter, a merged folder, or a fully trained model."""
        from ..models import resolve

        if not is_adapter:
            return str(ckpt), None
        base = resolve(job["model"], owner).name_or_path
        if merged:
            from .exports import merged_folder

            return str(merged_folder(job["id"], ckpt, owner)), None
        return base, str(ckpt)

    # ---- read -------------------------------------------------------------------------------
    def get(self, dep_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        try:
            return self.store.require(TABLE, dep_id, owner)
        except NotFound:
            raise NotFound(f"deployment '{dep_id}' not found", field="id") from None

    def list(self, owner: str = LOCAL_USER) -> list[dict[str, Any]]:
        return sorted(self.store.all(TABLE, owner), key=lambda d: d["created_at"])

    def status(self, dep_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        """The reference's status object: spend, budget, alerts, request metrics, provider state."""
        dep = self.get(dep_id, owner)
        live = get_provider(dep["provider"]).status(dep) if dep["status"] in LIVE else {}
        new = live.get("status")
        if new and new != dep["status"] and new in LIVE:
            dep = self._set_if_live(dep_id, {"status": new, **(
                {"deployed_at": now_iso()} if new == "active" and not dep["deployed_at"] else {})})
        return {"success": True, "deployment": self._status_body(dep, live)}

    def _status_body(self, dep: dict[str, Any], live: dict[str, Any] | None = None) -> dict[str, Any]:
        led = budget.ledger(dep["id"]) or {}
        spend = usage.dollars(led.get("spend_micro", 0))
        count = led.get("request_count", 0)
        limit = dep["budget_limit"]
        alerts = [e for e in budget.events(dep["id"]) if e["kind"] in ("budget_alert", "auto_stop")]
        last_alert = next((a for a in reversed(alerts) if a["kind"] == "budget_alert"), None)
        cost = dep["cost_per_request"]
        t = usage.totals(deployment_id=dep["id"])
        now = time.time()
        recent = len(usage.rows(deployment_id=dep["id"], start=now - 60))
        return {
            "id": dep["id"], "deployment_name": dep["deployment_name"], "model_name": dep["model_name"],
            "provider": dep["provider"], "endpoint_id": dep["endpoint_id"], "endpoint_url": dep["endpoint_url"],
            "status": dep["status"], "training_job_id": dep["training_job_id"], "checkpoint": dep["checkpoint"],
            "base_model": dep["base_model"], "merged": dep.get("merged", False),
            "config": {k: v for k, v in dep["config"].items() if k != "adapter_uri"},
            "cost_per_request": cost, "budget_limit": limit, "current_spend": spend, "request_count": count,
            "budget_utilization_percent": round(100 * spend / limit, 2) if limit else None,
            "budget_alert": last_alert and f"{last_alert['threshold']}%",
            "alerts": alerts,
            "estimated_requests_remaining": (max(0, (usage.to_micro(limit) - led.get("spend_micro", 0))
                                                 // usage.to_micro(cost)) if limit and usage.to_micro(cost) else None),
            "metrics": {
                "total_requests": t["requests"], "successful_requests": t["successes"],
                "failed_requests": t["failures"],
                "avg_latency_ms": _round(t["avg_latency_ms"]), "p95_latency_ms": _round(t["p95_latency_ms"]),
                "avg_ttft_ms": _round(t["avg_ttft_ms"]), "p95_ttft_ms": _round(t["p95_ttft_ms"]),
                "input_tokens": t["input_tokens"], "output_tokens": t["output_tokens"],
                "requests_per_minute": recent, "gpu_utilization_percent": _gpu_utilization(dep),
                "last_request_at": _iso(t["last_ts"]), "uptime_seconds": _uptime(dep),
            },
            "provider_status": live or {},
            "stop_reason": dep.get("stop_reason"),
            "created_at": dep["created_at"], "deployed_at": dep["deployed_at"], "last_updated": dep["last_updated"],
            "stopped_at": dep.get("stopped_at"),
        }

    # ---- stop -------------------------------------------------------------------------------
    def stop(self, dep_id: str, owner: str = LOCAL_USER, *, reason: str = "manual") -> dict[str, Any]:
        """Stop for good: requests are refused at once, the provider tears down, ``final_status`` sums up.

        A teardown that failed (RunPod unreachable) is retried by calling stop again."""
        self.get(dep_id, owner)
        with self.store.transaction() as tx:  # one stop wins; a second one is a 409
            dep = tx.get(TABLE, dep_id)
            if dep["status"] == "stopped" and not dep.get("teardown_pending"):
                raise DeploymentStopped(f"deployment '{dep_id}' is already stopped; stopping is permanent — "
                                        "deploy again to serve it", field="id")
            dep = tx.update(TABLE, dep_id, {"status": "stopped", "stopped_at": dep.get("stopped_at") or now_iso(),
                                            "stop_reason": dep.get("stop_reason") or reason,
                                            "teardown_pending": True, "last_updated": now_iso()})
        budget.mark_stopped(dep_id, reason)
        try:
            get_provider(dep["provider"]).stop(dep)
        except WorkbenchError as exc:
            self._update(dep_id, {"error": f"teardown failed, call stop again: {exc.message}"})
            raise
        dep = self._update(dep_id, {"teardown_pending": False, "error": None})
        return {"success": True, "message": "Deployment stopped successfully", "deployment_id": dep_id,
                "final_status": self.final_status(dep)}

    def final_status(self, dep: dict[str, Any]) -> dict[str, Any]:
        led = budget.ledger(dep["id"]) or {}
        return {"status": dep["status"], "stop_reason": dep.get("stop_reason"),
                "total_requests": led.get("request_count", 0),
                "final_spend": usage.dollars(led.get("spend_micro", 0)), "budget_limit": dep["budget_limit"],
                "stopped_at": dep.get("stopped_at"), "uptime_hours": round(_uptime(dep) / 3600, 4)}

    def stopped_by_budget(self, dep: dict[str, Any]) -> dict[str, Any]:
        """The auto-stop's side of a refused charge: the record says stopped, the provider tears down."""
        dep = self._set_if_live(dep["id"], {"status": "stopped", "stopped_at": now_iso(), "stop_reason": "budget",
                                             "teardown_pending": True})
        try:
            get_provider(dep["provider"]).stop(dep)
        except WorkbenchError as exc:  # the ledger already refuses everything; keep the reason visible
            return self._update(dep["id"], {"error": f"auto-stop teardown failed, call stop: {exc.message}"})
        return self._update(dep["id"], {"teardown_pending": False})

    # ---- what a request may call ------------------------------------------------------------
    def for_model(self, model: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        """The caller's deployment named ``model`` (the newest when names were reused after a stop)."""
        found = [d for d in self.store.all(TABLE, owner) if d["model_name"] == model or d["id"] == model]
        if not found:
            raise NotFound(f"model '{model}' is not deployed; GET /v1/models lists yours", field="model")
        live = [d for d in found if d["status"] in LIVE]
        return max(live or found, key=lambda d: d["created_at"])

    def refuse_unless_live(self, dep: dict[str, Any]) -> None:
        if dep["status"] in LIVE:
            return
        if dep.get("stop_reason") == "budget":
            raise budget_error(dep)
        raise DeploymentStopped(f"deployment '{dep['model_name']}' is {dep['status']}; deploy again to serve it",
                                field="model")

    def active_local(self) -> list[dict[str, Any]]:
        """Every user's live local deployments (a starting server loads them)."""
        return [d for d in self.store.all(TABLE) if d["provider"] == "local" and d["status"] in LIVE]

    def mark_active(self, dep_id: str) -> dict[str, Any]:
        """``deploying`` → ``active`` (loaded in a server), unless it was stopped meanwhile."""
        return self._set_if_live(dep_id, {"status": "active"}, when=("deploying", "active"),
                                 first={"deployed_at": now_iso()})

    def mark_error(self, dep_id: str, message: str) -> dict[str, Any]:
        return self._set_if_live(dep_id, {"status": "error", "error": message})

    def _set_if_live(self, dep_id: str, fields: dict[str, Any], *, when: tuple[str, ...] = LIVE,
                     first: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check-and-set in one transaction: a status read seconds ago never overwrites a stop."""
        with self.store.transaction() as tx:
            dep = tx.get(TABLE, dep_id)
            if dep is None or dep["status"] not in when:
                return dep or {}
            extra = {k: v for k, v in (first or {}).items() if not dep.get(k)}
            return tx.update(TABLE, dep_id, {**fields, **extra, "last_updated": now_iso()})

    def _update(self, dep_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        return self.store.update(TABLE, dep_id, {**fields, "last_updated": now_iso()})


def budget_error(dep: dict[str, Any]) -> PaymentRequired:
    limit = dep.get("budget_limit")
    return PaymentRequired(f"budget_limit: the deployment '{dep['model_name']}' has spent its budget of "
                           f"${limit:.2f} and was stopped; deploy again with a new budget_limit", field="budget_limit")


def _selection(value: str) -> str:
    """``best``, ``final``, ``step-N``, a checkpoint name, or ``latest``: what ``find_checkpoint`` reads."""
    value = (value or "").strip()
    if not value:
        return "best"
    return value


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _uptime(dep: dict[str, Any]) -> float:
    start = dep.get("deployed_at") or dep["created_at"]
    end = dep.get("stopped_at")
    t0 = datetime.fromisoformat(start).timestamp()
    t1 = datetime.fromisoformat(end).timestamp() if end else time.time()
    return round(max(0.0, t1 - t0), 1)


def _gpu_utilization(dep: dict[str, Any]) -> float | None:
    if dep["provider"] != "local":
        return None
    try:
        import torch

        if torch.cuda.is_available():
            return float(torch.cuda.utilization())
    except (ImportError, RuntimeError, OSError):  # no torch, no NVML: unknown, never a failure
        return None
    return None
