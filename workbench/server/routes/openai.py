"""The OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``, and ``/metrics``.

The ``openai`` SDK works against ``base_url=http://HOST:PORT/v1`` with the workbench token as
its ``api_key`` (it is sent as ``Authorization: Bearer``, which the auth middleware checks).
``model`` is a deployment's ``model_name``. Streams are Server-Sent Events in OpenAI's chunk
format, ending with ``data: [DONE]``. Every request goes through
:func:`workbench.serving.gateway.complete`, which meters it against the deployment's budget.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ...errors import Forbidden
from ...records import LOCAL_USER
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


DISCONNECT_POLL_S = 0.25


async def _answer(request: Request, kind: str, body: Any) -> Any:
    """The reply; a client that hangs up on a whole (non-streamed) reply stops its generation too."""
    task = asyncio.ensure_future(gateway.complete(kind, body, owner(request),  # type: ignore[arg-type]
                                                  conversation_id=_conversation(request)))
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            break
        if await request.is_disconnected():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return Response(status_code=499)  # nginx's "client closed request": nobody reads it
    result = task.result()
    if isinstance(result, dict):
        return result
    return StreamingResponse(_sse(result), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _sse(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Chunks as SSE, then ``[DONE]``; a failure mid-stream ends with an ``error`` event instead."""
    try:
        async for c in chunks:
            yield b"data: " + dumps(c) + b"\n\n"
        yield b"data: [DONE]\n\n"
    except gateway.StreamError as exc:
        yield b"data: " + dumps({"error": exc.error}) + b"\n\n"
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


@api.get("/metrics", summary="Prometheus metrics", media_type="text/plain", errors=(403,))
async def metrics(request: Request) -> Response:
    """Per deployment: requests by outcome, tokens, latency and time-to-first-token histograms, errors.

    Every user's deployments are in it, so only the server's own (local) user may read it."""
    from ...serving.metrics import CONTENT_TYPE, render

    if owner(request) != LOCAL_USER:
        raise Forbidden("/metrics covers every user's deployments: scrape it with the server owner's token "
                        "(`workbench token`)", field="authorization")

    return Response(render(), media_type=CONTENT_TYPE)
