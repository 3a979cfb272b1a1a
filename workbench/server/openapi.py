"""A small route registry that is also the OpenAPI document.

Each route module declares its operations once — method, path, summary, the pydantic
models of its query string, body and response, its status codes — with a decorator on
a :class:`Registry`. The same declaration

* builds the Starlette route, whose wrapper validates the query and body with the declared
  models before the handler runs (so the docs cannot promise what the code does not check),
* and feeds :func:`build_spec`, which writes ``/openapi.json`` (OpenAPI 3.1, pydantic's
  JSON Schema under ``components.schemas``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from .. import settings as core_settings
from ..errors import InvalidInput, WorkbenchError
from .common import JSON_BODY_LIMIT, home_root, parse_body, parse_query
from .responses import ORJSONResponse

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Handler = Callable[..., Awaitable[Any]]
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")

STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad request (e.g. a path in a file name)",
               401: "Missing or invalid bearer token", 403: "Forbidden", 404: "Not found (or another user's)",
               405: "Method not allowed", 409: "Conflict with the resource's state",
               413: "Payload too large", 415: "Unsupported media type",
               422: "Invalid input: `error.field` names the field"}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    description: str | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_optional: bool = False
    body_limit: Callable[[Request], int] | None = None
    form: type[BaseModel] | None = None  # multipart/form-data, parsed by the handler itself (streamed)
    response: type[BaseModel] | None = None
    media_type: str = "application/json"
    status: int = 200
    also: tuple[int, ...] = ()  # other success codes (e.g. 202)
    errors: tuple[int, ...] = ()
    invalid: type[WorkbenchError] | None = None  # the error a bad body becomes (default: a 422 INVALID_INPUT)
    public: bool = False
    websocket: bool = False
    operation_id: str | None = None

    @property
    def path_params(self) -> list[str]:
        return _PARAM.findall(self.path)


class Registry:
    """The operations of one area of the API; ``tag`` groups them in the document."""

    def __init__(self, tag: str, description: str = ""):
        self.tag = tag
        self.description = description
        self.operations: list[Operation] = []

    def route(self, method: Method, path: str, *, summary: str, **meta: Any) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.operations.append(Operation(method=method, path=path, handler=fn, summary=summary,
                                             tag=self.tag, description=meta.pop("description", None) or
                                             _first_paragraph(fn.__doc__), **meta))
            return fn

        return register

    def get(self, path: str, *, summary: str, **meta: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, summary=summary, **meta)

    def post(self, path: str, *, summary: str, **meta: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, summary=summary, **meta)

    def put(self, path: str, *, summary: str, **meta: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, summary=summary, **meta)

    def delete(self, path: str, *, summary: str, **meta: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, summary=summary, **meta)

    def patch(self, path: str, *, summary: str, **meta: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, summary=summary, **meta)

    def websocket(self, path: str, *, summary: str, **meta: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, summary=summary, websocket=True, **meta)


def _first_paragraph(doc: str | None) -> str | None:
    if not doc:
        return None
    return " ".join(doc.strip().split("\n\n")[0].split())


# --- routes ----------------------------------------------------------------------------------

def _endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint: validate the declared inputs, call the handler, render its dict."""

    async def endpoint(request: Request) -> Response:
        check_path_params(request.path_params)
        inputs: dict[str, Any] = {}
        if op.query is not None:
            inputs["query"] = parse_query(request, op.query)
        if op.body is not None:
            limit = op.body_limit(request) if op.body_limit else JSON_BODY_LIMIT
            try:
                inputs["body"] = await parse_body(request, op.body, limit=limit, optional=op.body_optional)
            except InvalidInput as exc:
                if op.invalid is None:
                    raise
                raise op.invalid(exc.message, field=exc.field, details=exc.details) from None
        result = await op.handler(request, **inputs)
        if isinstance(result, Response):
            return result
        if request.app.state.settings.multi_user:
            result = redact_paths(result)
        return ORJSONResponse(result, status_code=op.status)

    endpoint.__name__ = op.handler.__name__
    endpoint.__doc__ = op.handler.__doc__
    return endpoint


MAX_ID_CHARS = 128


def check_path_params(params: dict[str, Any]) -> None:
    """Every id in a URL is bounded at the edge: a 5,000-character id is a 422, never a file name."""
    for name, value in params.items():
        if isinstance(value, str) and len(value) > MAX_ID_CHARS:
            raise InvalidInput(f"{name}: at most {MAX_ID_CHARS} characters ({len(value)} given)", field=name)


def redact_paths(value: Any) -> Any:
    """Absolute server paths become relative to the home (or the import folder), for multi-user responses."""
    roots = [str(home_root()) + "/"]
    import_dir = core_settings.current().import_dir
    if import_dir is not None:
        roots.append(str(import_dir) + "/")

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            for root in roots:
                if v.startswith(root):
                    return v[len(root):]
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def to_route(op: Operation) -> BaseRoute:
    if op.websocket:
        return WebSocketRoute(op.path, op.handler, name=op.handler.__name__)
    return Route(op.path, _endpoint(op), methods=[op.method], name=op.handler.__name__)


def specificity(path: str) -> tuple[int, ...]:
    """Sort key: at the first segment where two paths differ in kind, the literal one comes first.

    Two paths can only match the same URL when they have as many segments, so this puts
    ``/api/training/templates`` before ``/api/training/{id}`` and
    ``/api/training/analytics/summary`` before ``/api/training/{jobId}/analytics``.
    """
    return tuple(1 if _PARAM.fullmatch(seg) else 0 for seg in path.strip("/").split("/"))


# --- the document ----------------------------------------------------------------------------

ERROR_SCHEMA = {
    "type": "object",
    "required": ["success", "error"],
    "properties": {
        "success": {"const": False},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["NOT_FOUND", "INVALID_INPUT", "CONFLICT"]},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the dotted input field the error is about"},
                "details": {"description": "every error found (validation), e.g. line-numbered dataset errors"},
            },
        },
    },
}


def build_spec(operations: list[Operation], *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = set()
    for op in operations:
        models.update(m for m in (op.query, op.body, op.form, op.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, defs = models_json_schema([(m, "validation") for m in ordered],
                                    ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item = paths.setdefault(op.path, {})
        item[op.method.lower()] = _operation(op, ref, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Fine-Tune Workbench REST API. Errors: `{success: false, error: {code, message, "
                                "field?, details?}}`. Multi-user servers need `Authorization: Bearer <token>`."},
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in sorted({op.tag for op in operations})],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "a token from `workbench users add NAME`"}},
        },
    }


def _operation(op: Operation, ref: Callable[[type[BaseModel]], dict[str, Any]], schemas: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"tags": [op.tag], "summary": op.summary,
                           "operationId": op.operation_id or f"{op.tag}_{op.handler.__name__}"}
    if op.description:
        out["description"] = op.description
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in op.path_params]
    if op.query is not None:
        query_schema = schemas.get(op.query.__name__, {})
        required = set(query_schema.get("required", []))
        for name, prop in query_schema.get("properties", {}).items():
            param = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
    if op.websocket:
        params.append({"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
                       "description": "bearer token, for clients that cannot set the Authorization header"})
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": not op.body_optional,
                              "content": {"application/json": {"schema": ref(op.body)}}}
    elif op.form is not None:
        out["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": ref(op.form)}}}

    responses: dict[str, Any] = {}
    for status in (op.status, *op.also):
        responses[str(status)] = {"description": STATUS_TEXT.get(status, "Success"),
                                  "content": {op.media_type: {"schema": _response_schema(op, ref)}}}
    errors = set(op.errors)
    if op.query is not None or op.body is not None or op.form is not None:
        errors.add(422)
    if op.body is not None:
        errors.update({400, 413, 415})
    if not op.public or op.path.startswith("/api/"):
        errors.add(401)  # a public API route still refuses a token that is sent and invalid
    for status in sorted(errors):
        responses[str(status)] = {"description": STATUS_TEXT.get(status, "Error"),
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    out["responses"] = responses
    if op.public and not op.path.startswith("/api/"):
        out["security"] = []
    elif op.public:
        out["security"] = [{}, {"bearerAuth": []}]  # no token needed; one that is sent must be valid
    else:
        out["security"] = [{"bearerAuth": []}]
    if op.websocket:
        out["x-websocket"] = True
        out["description"] = (op.description or "") + (
            " WebSocket: upgrade this GET; the server sends JSON text frames and closes the socket at the end.")
    return out


def _response_schema(op: Operation, ref: Callable[[type[BaseModel]], dict[str, Any]]) -> dict[str, Any]:
    if op.response is not None:
        return ref(op.response)
    if op.media_type == "application/zip":
        return {"type": "string", "format": "binary"}
    if op.media_type == "text/event-stream":
        return {"type": "string", "description": "`event: status|metric` then `data: <JSON>` per event"}
    return {"type": "object"}
