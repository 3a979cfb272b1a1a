"""Every inference request's path: find the deployment, charge the budget, generate, record.

The ``/v1`` routes call :func:`complete`; whichever provider runs the model, the same steps
happen in the same order, so no request escapes the meter:

1. the caller's deployment named by ``model`` (404), live (409 when stopped, 402 when its
   budget stopped it);
2. :func:`workbench.serving.budget.charge` reserves the cost or refuses it (402, and the
   auto-stop tears the deployment down);
3. the provider generates; a request refused as bad input (422) before its first token is
   refunded, a failure after the work began stays billed (the GPU worked);
4. one usage row (:mod:`workbench.usage`) and the Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import usage
from ..errors import InvalidInput, Unavailable, WorkbenchError
from . import budget
from .deployments import DeploymentService, DeploymentStopped, budget_error
from .engine import Generation
from .inference import (
    ChatRequest,
    CompletionRequest,
    Kind,
    PromptTooLong,
    chunk,
    new_id,
    reply,
    usage_of,
)
from .metrics import ALERTS, ERRORS, LATENCY, REQUESTS, TOKENS, TTFT
from .providers import get_provider

log = logging.getLogger("workbench.serving")


# Store and ledger calls, model loads and tokenizing: a pool of their own, so a burst of
# requests (or a slow first load) never starves the event loop's shared worker threads.
_POOL = ThreadPoolExecutor(16, thread_name_prefix="wb-serving")


async def _run(fn: Any, *args: Any) -> Any:
    return await asyncio.wrap_future(_POOL.submit(fn, *args))


async def complete(kind: Kind, body: ChatRequest | CompletionRequest, owner: str, *,
                   conversation_id: str | None = None) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
    """The whole reply (a dict), or for ``stream: true`` an async iterator of chunk dicts."""
    svc = DeploymentService()
    dep = await _run(svc.for_model, body.model, owner)
    labels = (dep["id"], dep["model_name"], dep["provider"])
    provider = get_provider(dep["provider"])
    knowledge = None
    try:
        svc.refuse_unless_live(dep)
        if kind == "chat" and getattr(body, "knowledge_base", None) is not None:
            body, knowledge, prepared = await _run(ground, provider, dep, body, owner)
        else:
            prepared = await _run(provider.prepare, dep, kind, body)  # a bad prompt is refused before any charge
    except WorkbenchError as exc:
        ERRORS.labels(*labels, exc.code).inc()
        raise
    charged = await _run(budget.charge, dep["id"])
    if not charged.allowed:
        if charged.reason == "budget":
            if charged.stopped_now:  # this request tripped the auto-stop: tear the deployment down
                dep = await _run(svc.stopped_by_budget, dep)
            ERRORS.labels(*labels, "BUDGET_EXCEEDED").inc()
            raise budget_error(dep)
        ERRORS.labels(*labels, "DEPLOYMENT_STOPPED").inc()
        raise DeploymentStopped(f"deployment '{dep['model_name']}' is stopped", field="model")
    for alert in charged.alerts:
        ALERTS.labels(*labels, str(alert["threshold"])).inc()
        log.warning("deployment %s: %s", dep["id"], alert["message"])
    if dep["status"] == "deploying":
        await _run(svc.mark_active, dep["id"])  # loaded by this first request

    meter = _Meter(kind, dep, body, owner, conversation_id or body.conversation_id)
    meter.knowledge = knowledge
    events = provider.generate(dep, prepared)
    try:
        first = await anext(events)
        if first[0] == "error":
            raise first[1]
    except BaseException as exc:  # nothing was generated: refused work is neither billed nor counted
        await meter.failed(exc, refund=True)
        await events.aclose()
        if isinstance(exc, WorkbenchError) or not isinstance(exc, Exception):
            raise
        raise Unavailable(f"generation failed: {type(exc).__name__}: {exc}", field="model") from exc
    if not body.stream:
        return await meter.collect(first, events)
    return meter.stream(first, events)


GROUNDING = ("Answer using the context below when it is relevant, and say which numbered source you used.\n\n"
             "Context:\n{context}")


def ground(provider: Any, dep: dict[str, Any], body: ChatRequest,
           owner: str) -> tuple[ChatRequest, dict[str, Any], Any]:
    """The chat with the knowledge base's passages for its last user message as a leading system
    message, what the reply reports about them, and the provider's prepared request.

    As many of the best passages as the model's context holds go in: on a prompt that is too long
    the lowest-ranked passage is dropped and the prompt built again (``knowledge.left_out`` counts
    them), down to the plain chat, which is refused only if it does not fit either."""
    from ..graphrag.search import context
    from ..graphrag.service import KnowledgeBaseService
    from .inference import Message

    opts = body.knowledge_base
    assert opts is not None
    question = next((m.text for m in reversed(body.messages) if m.role == "user"), "")
    if not question.strip():
        raise InvalidInput("knowledge_base: the chat has no user message to search for", field="knowledge_base")
    found = KnowledgeBaseService().search(question, owner, method=opts.method, limit=opts.limit,
                                          document_ids=opts.document_ids)
    sources = found["sources"]
    for n in range(len(sources), -1, -1):
        used = sources[:n]
        system = [Message(role="system", content=GROUNDING.format(context=context(used)))] if used else []
        grounded = body.model_copy(update={"messages": [*system, *body.messages], "knowledge_base": None})
        try:
            prepared = provider.prepare(dep, "chat", grounded)
        except PromptTooLong:
            if not used:
                raise
            continue
        report = {"searchMethod": opts.method, "left_out": len(sources) - n, "sources": [
            {k: s[k] for k in ("documentId", "filename", "chunkId", "heading", "relevanceScore")} for s in used]}
        return grounded, report, prepared
    raise AssertionError("unreachable: the plain chat either fits or raises")


class StreamError(Exception):
    """A stream that failed after it began: the route sends ``error`` as the last event."""

    def __init__(self, error: dict[str, Any]):
        super().__init__(error.get("message"))
        self.error = error


class _Meter:
    """Times one request and writes its usage row and metrics exactly once."""

    def __init__(self, kind: Kind, dep: dict[str, Any], body: Any, owner: str, conversation_id: str | None):
        self.kind, self.dep, self.body, self.owner = kind, dep, body, owner
        self.conversation_id = conversation_id
        self.id = new_id(kind)
        self.created = int(time.time())
        self.t0 = time.perf_counter()
        self.ts = time.time()
        self.labels = (dep["id"], dep["model_name"], dep["provider"])
        self.cost_micro = usage.to_micro(dep["cost_per_request"])
        self.recorded = False
        self.knowledge: dict[str, Any] | None = None  # the knowledge-base sources the prompt used

    async def collect(self, first: tuple[str, Any], events: AsyncIterator[tuple[str, Any]]) -> dict[str, Any]:
        item = first
        try:
            while item[0] == "text":
                item = await anext(events)
        except BaseException as exc:  # a failure, or the client left (the route cancels us): stop the row
            await events.aclose()
            await self.failed(exc if isinstance(exc, Exception) else ConnectionAbortedError("client disconnected"),
                              refund=False)
            raise
        if item[0] == "error":
            await self.failed(item[1], refund=False)
            exc = item[1]
            if isinstance(exc, WorkbenchError):
                raise exc
            raise Unavailable(f"generation failed: {type(exc).__name__}: {exc}", field="model") from exc
        gen: Generation = item[1]
        await self.done(gen)
        out = reply(self.kind, self.id, self.dep["model_name"], gen, self.created)
        if self.knowledge is not None:
            out["knowledge"] = self.knowledge
        return out

    async def stream(self, first: tuple[str, Any], events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[dict]:
        model = self.dep["model_name"]
        item, started = first, False
        try:
            while True:
                if item[0] == "text":
                    c = chunk(self.kind, self.id, model, self.created, text=item[1], first=not started)
                    if not started and self.knowledge is not None:
                        c["knowledge"] = self.knowledge
                    yield c
                    started = True
                elif item[0] == "done":
                    gen: Generation = item[1]
                    await self.done(gen)  # recorded before the last chunks: a client leaving now was served
                    if not started:
                        yield chunk(self.kind, self.id, model, self.created, text="", first=True)
                    yield chunk(self.kind, self.id, model, self.created, finish_reason=gen.finish_reason)
                    if self.body.include_usage:
                        yield chunk(self.kind, self.id, model, self.created, usage=usage_of(gen))
                    return
                else:  # ("error", exc) mid-stream: an error event (the openai SDK raises it), no [DONE]
                    exc = item[1]
                    await self.failed(exc, refund=False)
                    err = exc.to_dict() if isinstance(exc, WorkbenchError) else {
                        "code": "GENERATION_FAILED", "message": f"{type(exc).__name__}: {exc}"}
                    raise StreamError(err)
                item = await anext(events)
        finally:
            if not self.recorded:  # the client left mid-stream
                await self.failed(ConnectionAbortedError("client disconnected"), refund=False)
            await events.aclose()

    async def done(self, gen: Generation) -> None:
        self.recorded = True
        LATENCY.labels(*self.labels).observe(gen.latency_s)
        if gen.ttft_s is not None:
            TTFT.labels(*self.labels).observe(gen.ttft_s)
        TOKENS.labels(*self.labels, "prompt").inc(gen.prompt_tokens)
        TOKENS.labels(*self.labels, "completion").inc(gen.completion_tokens)
        REQUESTS.labels(*self.labels, self.kind, "success").inc()
        await _run(usage.record, self._row(
            success=True, input_tokens=gen.prompt_tokens, output_tokens=gen.completion_tokens,
            latency_ms=gen.latency_s * 1000, ttft_ms=None if gen.ttft_s is None else gen.ttft_s * 1000),
                   None, self._messages(gen.text))

    async def failed(self, exc: BaseException, *, refund: bool) -> None:
        self.recorded = True
        reason = getattr(exc, "code", None) or type(exc).__name__
        ERRORS.labels(*self.labels, reason).inc()
        REQUESTS.labels(*self.labels, self.kind, "refused" if refund else "error").inc()
        if refund:  # nothing was generated, so nothing is billed or counted
            await _run(budget.refund, self.dep["id"])
            return
        await _run(usage.record, self._row(
            success=False, error=f"{reason}: {exc}"[:500], latency_ms=(time.perf_counter() - self.t0) * 1000),
                   None, self._messages(None))

    def _messages(self, reply_text: str | None) -> list[usage.Message]:
        """The turn the analytics keep: the caller's last message and the reply (not the whole history,
        which each request of a conversation repeats)."""
        if self.kind == "chat":
            asked = next((m.text for m in reversed(self.body.messages) if m.role == "user"), "")
        else:
            asked = self.body.text
        out = [usage.Message(role="user", content=asked[:20_000])] if asked else []
        if reply_text is not None:
            out.append(usage.Message(role="assistant", content=reply_text[:20_000]))
        return out

    def _row(self, **fields: Any) -> usage.UsageRecord:
        d = self.dep
        return usage.UsageRecord(id=self.id, ts=self.ts, owner=self.owner, deployment_id=d["id"], model=d["model_name"],
                                 provider=d["provider"], base_model=d["base_model"], job_id=d["training_job_id"],
                                 checkpoint=d["checkpoint"], conversation_id=self.conversation_id, route=self.kind,
                                 stream=bool(self.body.stream), cost_micro=self.cost_micro,
                                 end_user=self.body.user, tier=_tier(self.body.metadata), **fields)


def _tier(metadata: dict[str, Any] | None) -> str | None:
    raw = (metadata or {}).get("tier")
    return str(raw)[:64] if raw else None
