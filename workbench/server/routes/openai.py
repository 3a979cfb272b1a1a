"""The OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``, and ``/metrics``.

The ``openai`` SDK works against ``base_url=http://HOST:PORT/v1`` with the workbench token as
its ``api_key`` (it is sent as ``Authorization: Bearer``, which the auth middleware checks).
``model`` is a deployment's ``model_name``. Streams are Server-Sent Events in OpenAI's chunk
format, ending with ``data: [DONE]``. Every request goes through
:func:`workbench.serving.gateway.complete`, which meters it against the deployment's budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ...serving import gateway
from ...serving.deployments import LIVE, DeploymentService
from ...serving.inference import ChatRequest, CompletionRequest
from ..common import Loose, call, owner
from ..openapi import Registry
from ..responses import dumps

api = Registry("openai", "OpenAI-compatible inference")


class ModelCard(Loose):
    id: str
    object: str
    owned_by: str
    parent: str | None = None


class ModelsList(Loose):
    object: str
    data: list[ModelCard]


def _conversation(request: Request) -> str | None:
    raw = request.headers.get("x-conversation-id")
    return raw[:256] if raw else None


async def _answer(request: Request, kind: str, body: Any) -> Any:
    result = await gateway.complete(kind, body, owner(request), conversation_id=_conversation(request))  # type: ignore[arg-type]
    if isinstance(result, dict):
        return result
    return StreamingResponse(_sse(result), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _sse(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for c in chunks:
            yield b"data: " + dumps(c) + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


@api.post("/v1/chat/completions", summary="Chat completion (OpenAI-compatible)", body=ChatRequest,
          errors=(402, 404, 409, 422, 503), media_type="application/json")
async def chat_completions(request: Request, body: ChatRequest) -> Any:
    """A deployed model answers a chat; ``stream: true`` sends ``chat.completion.chunk`` events.

    ``metadata.conversation_id`` (or the ``X-Conversation-Id`` header) groups the usage records."""
    return await _answer(request, "chat", body)


@api.post("/v1/completions", summary="Text completion (OpenAI-compatible)", body=CompletionRequest,
          errors=(402, 404, 409, 422, 503))
async def completions(request: Request, body: CompletionRequest) -> Any:
    """The legacy completion of a prompt; ``max_tokens`` defaults to 256, not 16."""
    return await _answer(request, "completion", body)


@api.get("/v1/models", summary="List deployed models (OpenAI-compatible)", response=ModelsList)
async def list_models(request: Request) -> dict[str, Any]:
    """The caller's live deployments, each with its base model as ``parent`` (as vLLM lists adapters)."""
    deps = await call(DeploymentService().list, owner(request))
    data = [{"id": d["model_name"], "object": "model", "created": int(d.get("created_ts") or 0),
             "owned_by": d["owner"], "parent": d["base_model"], "root": d["base_model"],
             "deployment_id": d["id"], "provider": d["provider"], "checkpoint": d["checkpoint"]}
            for d in deps if d["status"] in LIVE]
    return {"object": "list", "data": data}


@api.get("/metrics", summary="Prometheus metrics", media_type="text/plain")
async def metrics(request: Request) -> Response:
    """Per deployment: requests by outcome, tokens, latency and time-to-first-token histograms, errors."""
    from ...serving.metrics import CONTENT_TYPE, render

    return Response(render(), media_type=CONTENT_TYPE)
