"""``/api/models``: the built-in models every user sees, plus the caller's own custom endpoints."""

from __future__ import annotations

from typing import Any, Literal

from starlette.requests import Request

from ... import models
from ...errors import Forbidden
from ..common import Loose, call, owner
from ..errors import json_response
from ..openapi import Registry

api = Registry("models", "the model registry")


class ModelOut(Loose):
    id: str
    name: str
    status: str | None = None
    parameters: str | None = None
    kind: str | None = None
    owner: str | None = None
    has_api_key: bool = False


class ModelList(Loose):
    models: list[ModelOut]


class ModelCreated(Loose):
    success: Literal[True]
    model: ModelOut
    message: str


class ModelDeleted(Loose):
    success: Literal[True]
    message: str


@api.get("/api/models", summary="List available models", response=ModelList, public=True)
async def list_models(request: Request) -> dict[str, Any]:
    """Built-in (global) models first, then the caller's own; API keys are never returned.

    Public, as the reference has it: without a token, only the built-in models."""
    return {"models": await call(models.list_models, owner(request))}


@api.post("/api/models", summary="Create a custom model", body=models.CustomModelInput, response=ModelCreated,
          status=201)
async def create_model(request: Request, body: models.CustomModelInput) -> dict[str, Any]:
    """Register an OpenAI-compatible endpoint; the key is stored encrypted and never returned."""
    record = await call(models.create_custom, body.name, body.provider, body.base_url, body.model_id,
                        body.auth_type, body.api_key, owner(request))
    return {"success": True, "model": record, "message": "Model created successfully"}


@api.delete("/api/models/{id}", summary="Delete a custom model", response=ModelDeleted, errors=(403, 404))
async def delete_model(request: Request) -> Any:
    """Only the caller's own models can be deleted; built-in (global) ones answer 403."""
    try:
        await call(models.delete, request.path_params["id"], owner(request))
    except Forbidden as exc:  # the reference gives this one error as a bare string
        return json_response({"success": False, "error": exc.message, "code": exc.code}, 403)
    return {"success": True, "message": "Model deleted successfully"}
