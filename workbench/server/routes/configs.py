"""``/api/training`` and ``/api/training/{id}``: saved training configs (CRUD, validated on save).

``/api/training/{id}`` shares its prefix with every other ``/api/training/<word>`` route;
literal paths are matched first (see :func:`workbench.server.openapi.specificity`), and a
word that names another route (``GET /api/training/start``) answers 405, not "no config 'start'".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request

from ...configs import TEMPLATES, template
from ..common import Body, Loose, Success, call, owner, services
from ..errors import MethodNotAllowed
from ..openapi import Registry

api = Registry("configs", "saved training configurations")

TemplateName = Literal[tuple(TEMPLATES)]  # type: ignore[valid-type]  # the core's templates, named once


class ConfigCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    template_type: TemplateName = Field("sft", description="the defaults config_json is merged over")
    config_json: dict[str, Any] | None = Field(None, description="model / training / lora sections (HF names)")


class ConfigUpdate(Body):
    """Only the fields sent change; ``config_json`` is validated again."""

    name: str = Field(None, min_length=1, max_length=200)  # type: ignore[assignment]
    description: str = Field(None, max_length=5000)  # type: ignore[assignment]
    template_type: TemplateName = None  # type: ignore[assignment]
    config_json: dict[str, Any] = None  # type: ignore[assignment]


class ConfigOut(Loose):
    id: str
    name: str
    description: str | None = None
    template_type: str
    is_validated: bool
    validation_errors: dict[str, str] | None = None
    created_at: str
    updated_at: str | None = None
    config_json: Any


class ConfigEnvelope(Loose):
    config: ConfigOut


class ConfigList(Loose):
    configs: list[ConfigOut]


class Templates(Loose):
    templates: dict[str, dict[str, Any]]


def _config_id(request: Request) -> str:
    """The ``{id}``, unless it is the literal word of another route reached with the wrong method."""
    config_id = request.path_params["id"]
    if f"/api/training/{config_id}" in request.app.state.literal_paths:
        raise MethodNotAllowed(f"{request.method} is not allowed on /api/training/{config_id}", field="method")
    return config_id


@api.get("/api/training/templates", summary="List config templates", response=Templates)
async def list_templates(request: Request) -> dict[str, Any]:
    """Each template's complete config (what ``template_type`` starts from)."""
    return {"templates": {name: template(name) for name in TEMPLATES}}


@api.get("/api/training", summary="List training configs", response=ConfigList)
async def list_configs(request: Request) -> dict[str, Any]:
    return {"configs": await call(services(request).configs.list, owner(request))}


@api.post("/api/training", summary="Create a training config", body=ConfigCreate, response=ConfigEnvelope,
          status=201)
async def create_config(request: Request, body: ConfigCreate) -> dict[str, Any]:
    """Saved even when ``config_json`` fails the schema: ``is_validated`` is then false and
    ``validation_errors`` maps each bad field (``training.learning_rate``) to its message."""
    record = await call(services(request).configs.create, body.name, body.config_json,
                        template_type=body.template_type, description=body.description, owner=owner(request))
    return {"config": record}


@api.get("/api/training/{id}", summary="Get a training config", response=ConfigEnvelope, errors=(404, 405))
async def get_config(request: Request) -> dict[str, Any]:
    return {"config": await call(services(request).configs.get, _config_id(request), owner(request))}


@api.put("/api/training/{id}", summary="Update a training config", body=ConfigUpdate, response=ConfigEnvelope,
         errors=(404, 405))
async def update_config(request: Request, body: ConfigUpdate) -> dict[str, Any]:
    config_id = _config_id(request)
    fields = body.model_dump(exclude_unset=True)
    return {"config": await call(services(request).configs.update, config_id, fields, owner(request))}


@api.delete("/api/training/{id}", summary="Delete a training config", response=Success, errors=(404, 405, 409))
async def delete_config(request: Request) -> dict[str, Any]:
    """409 while an active (queued, running or paused) job uses the config."""
    await call(services(request).configs.delete, _config_id(request), owner(request))
    return {"success": True}
