"""Deployments (``/api/training/deploy``, ``/api/inference/…``) and the user's secrets (``/api/secrets``).

Thin: the bodies are validated by the core (:mod:`workbench.serving.deployments`) so a bad one
is the reference's ``400 INVALID_CONFIG`` naming the field, whichever front-end sent it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from ... import user_secrets
from ...serving.deployments import (
    DeployInput,
    DeploymentService,
    InvalidConfig,
    TrainingDeployInput,
)
from ..common import (
    Body,
    Loose,
    Query,
    call,
    call_long,
    owner,
    plain_name,
    zip_response,
)
from ..openapi import Registry

api = Registry("deployments", "deployments, inference budgets and secrets")


class DeployResponse(Loose):
    success: Literal[True]
    deployment_id: str
    model_name: str
    status: str
    endpoint_url: str | None = None
    cost_per_request: float
    budget_limit: float | None = None


class StatusResponse(Loose):
    success: Literal[True]
    deployment: dict[str, Any]


class DeploymentList(Loose):
    deployments: list[dict[str, Any]]


class StopResponse(Loose):
    success: Literal[True]
    deployment_id: str
    final_status: dict[str, Any]


class SecretBody(Body):
    value: str = Field(min_length=1, max_length=user_secrets.MAX_VALUE_CHARS)


class SecretOut(Loose):
    name: str
    has_value: bool


class SecretList(Loose):
    secrets: list[SecretOut]


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@api.post("/api/training/deploy", summary="Deploy a trained model", body=TrainingDeployInput, response=DeployResponse,
          errors=(400, 401, 404), invalid=InvalidConfig)
async def deploy_training(request: Request, body: TrainingDeployInput) -> dict[str, Any]:
    """Serve a job's checkpoint (``checkpoint-final``, ``checkpoint-best`` or a name; default the latest).

    ``provider`` defaults to ``local``: the model answers at ``/v1`` of this server under ``model_name``."""
    return await call_long(DeploymentService().deploy, body.as_deploy(), owner(request), base_url=_base_url(request))


@api.post("/api/inference/deploy", summary="Deploy to an inference provider", body=DeployInput,
          response=DeployResponse, errors=(400, 401, 404), invalid=InvalidConfig)
async def deploy_inference(request: Request, body: DeployInput) -> dict[str, Any]:
    """Create a deployment with a budget: ``local`` (default) or ``runpod-serverless``.

    ``checkpoint_selection``: ``best``, ``final`` or ``step-N``. The budget is enforced per
    request; alerts fire at 50, 80 and 100 %, and ``auto_stop_on_budget`` stops it at the limit."""
    return await call_long(DeploymentService().deploy, body, owner(request), base_url=_base_url(request))


@api.get("/api/inference/deployments", summary="List deployments", response=DeploymentList)
async def list_deployments(request: Request) -> dict[str, Any]:
    """The caller's deployments, oldest first, each as its status object."""
    svc = DeploymentService()
    deps = await call(svc.list, owner(request))
    return {"deployments": [await call(svc._status_body, d) for d in deps]}


@api.get("/api/inference/deployments/{id}/status", summary="Get deployment status", response=StatusResponse,
         errors=(404,))
async def deployment_status(request: Request) -> dict[str, Any]:
    """Status, spend against the budget, alerts and request metrics (avg and p95 latency, TTFT)."""
    return await call(DeploymentService().status, request.path_params["id"], owner(request))


@api.delete("/api/inference/deployments/{id}/stop", summary="Stop a deployment", response=StopResponse,
            errors=(404, 409))
async def stop_deployment(request: Request) -> dict[str, Any]:
    """Stop for good (the reference: it cannot restart); the answer carries ``final_status``."""
    return await call_long(DeploymentService().stop, request.path_params["id"], owner(request))


@api.get("/api/secrets", summary="List secrets", response=SecretList)
async def list_secrets(request: Request) -> dict[str, Any]:
    """Names and dates only: a value is never shown again once set."""
    return {"secrets": await call(user_secrets.list_secrets, owner(request))}


@api.put("/api/secrets/{name}", summary="Set a secret", body=SecretBody, response=SecretOut, errors=(422,))
async def set_secret(request: Request, body: SecretBody) -> dict[str, Any]:
    """Store a secret (e.g. ``RUNPOD_API_KEY``), encrypted at rest; the reply has no value."""
    return await call(user_secrets.set_secret, request.path_params["name"], body.value, owner(request))


@api.delete("/api/secrets/{name}", summary="Delete a secret", response=SecretOut, errors=(404,))
async def delete_secret(request: Request) -> dict[str, Any]:
    name = request.path_params["name"]
    await call(user_secrets.delete_secret, name, owner(request))
    return {"name": name, "has_value": False}


class ExportQuery(Query):
    checkpoint: str | None = Field(None, max_length=255, description="checkpoint-N, final, best, step-N (default: "
                                   "the latest)")


class GGUFQuery(ExportQuery):
    quantization: Literal["f16", "q8_0"] = "q8_0"


@api.get("/api/training/{jobId}/download/merged", summary="Download the merged model", query=ExportQuery,
         media_type="application/zip", errors=(400, 404))
async def download_merged(request: Request, query: ExportQuery) -> Response:
    """A ZIP of the checkpoint merged into its base: full weights (safetensors) and the tokenizer."""
    from ...serving.exports import merged_zip

    checkpoint = plain_name(query.checkpoint, "checkpoint") if query.checkpoint is not None else None
    filename, chunks = await call_long(merged_zip, request.path_params["jobId"], checkpoint, owner(request))
    return zip_response(request, filename, chunks)


@api.get("/api/training/{jobId}/download/gguf", summary="Download as GGUF (with an Ollama Modelfile)",
         query=GGUFQuery, media_type="application/zip", errors=(400, 404))
async def download_gguf(request: Request, query: GGUFQuery) -> Response:
    """A ZIP of the merged model as one GGUF file (``f16`` or ``q8_0``) and a ``Modelfile`` for ``ollama create``."""
    from ...serving.exports import gguf_zip

    checkpoint = plain_name(query.checkpoint, "checkpoint") if query.checkpoint is not None else None
    filename, chunks = await call_long(gguf_zip, request.path_params["jobId"], checkpoint, query.quantization,
                                       owner(request))
    return zip_response(request, filename, chunks)
