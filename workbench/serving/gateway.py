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
from typing import Any

from .. import usage
from ..errors import WorkbenchError
from . import budget
from .deployments import DeploymentService, DeploymentStopped, budget_error
from .engine import Generation
from .inference import (
    ChatRequest,
    CompletionRequest,
    Kind,
    chunk,
    new_id,
    reply,
    usage_of,
)
from .metrics import ALERTS, ERRORS, LATENCY, REQUESTS, TOKENS, TTFT
from .providers import get_provider

log = logging.getLogger("workbench.serving")


async def complete(kind: Kind, body: ChatRequest | CompletionRequest, owner: str, *,
                   conversation_id: str | None = None) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
    """The whole reply (a dict), or for ``stream: true`` an async iterator of chunk dicts."""
    svc = DeploymentService()
    dep = await asyncio.to_thread(svc.for_model, body.model, owner)
    labels = (dep["id"], dep["model_name"], dep["provider"])
    try:
        svc.refuse_unless_live(dep)
    except WorkbenchError as exc:
        ERRORS.labels(*labels, exc.code).inc()
        raise
    charged = await asyncio.to_thread(budget.charge, dep["id"])
    if not charged.allowed:
        if charged.reason == "budget":
            dep = await asyncio.to_thread(svc.stopped_by_budget, dep)
            ERRORS.labels(*labels, "BUDGET_EXCEEDED").inc()
            raise budget_error(dep)
        ERRORS.labels(*labels, "DEPLOYMENT_STOPPED").inc()
        raise DeploymentStopped(f"deployment '{dep['model_name']}' is stopped", field="model")
    for alert in charged.alerts:
        ALERTS.labels(*labels, str(alert["threshold"])).inc()
        log.warning("deployment %s: %s", dep["id"], alert["message"])
    if dep["status"] == "deploying" and dep["provider"] == "local":
        await asyncio.to_thread(svc.mark_active, dep["id"])  # loaded on this first request

    meter = _Meter(kind, dep, body, owner, conversation_id or body.conversation_id, cost=charged)
    events = get_provider(dep["provider"]).generate(dep, kind, body)
    try:
        first = await anext(events)
    except WorkbenchError as exc:
        await meter.failed(exc, refund=exc.http_status < 500)
        raise
    except Exception as exc:
        await meter.failed(exc, refund=False)
        raise
    if not body.stream:
        return await meter.collect(first, events)
    return meter.stream(first, events)


class _Meter:
    """Times one request and writes its usage row and metrics exactly once."""

    def __init__(self, kind: Kind, dep: dict[str, Any], body: Any, owner: str, conversation_id: str | None,
                 cost: budget.Charge):
        self.kind, self.dep, self.body, self.owner = kind, dep, body, owner
        self.conversation_id = conversation_id
        self.id = new_id(kind)
        self.created = int(time.time())
        self.t0 = time.perf_counter()
        self.ts = time.time()
        self.labels = (dep["id"], dep["model_name"], dep["provider"])
        self.cost_micro = usage.to_micro(dep["cost_per_request"])
        self.recorded = False

    async def collect(self, first: tuple[str, Any], events: AsyncIterator[tuple[str, Any]]) -> dict[str, Any]:
        item = first
        try:
            while item[0] == "text":
                item = await anext(events)
        except Exception as exc:
            await self.failed(exc, refund=False)
            raise
        if item[0] == "error":
            await self.failed(item[1], refund=False)
            raise item[1]
        gen: Generation = item[1]
        await self.done(gen)
        return reply(self.kind, self.id, self.dep["model_name"], gen, self.created)

    async def stream(self, first: tuple[str, Any], events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[dict]:
        model = self.dep["model_name"]
        item, started = first, False
        try:
            while True:
                if item[0] == "text":
                    yield chunk(self.kind, self.id, model, self.created, text=item[1], first=not started)
                    started = True
                elif item[0] == "done":
                    gen: Generation = item[1]
                    if not started:
                        yield chunk(self.kind, self.id, model, self.created, text="", first=True)
                    yield chunk(self.kind, self.id, model, self.created, finish_reason=gen.finish_reason)
                    if self.body.include_usage:
                        yield chunk(self.kind, self.id, model, self.created, usage=usage_of(gen))
                    await self.done(gen)
                    return
                else:  # ("error", exc): the stream has begun, so it can only end
                    await self.failed(item[1], refund=False)
                    return
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
        await asyncio.to_thread(usage.record, self._row(
            success=True, input_tokens=gen.prompt_tokens, output_tokens=gen.completion_tokens,
            latency_ms=gen.latency_s * 1000, ttft_ms=None if gen.ttft_s is None else gen.ttft_s * 1000))

    async def failed(self, exc: BaseException, *, refund: bool) -> None:
        self.recorded = True
        reason = getattr(exc, "code", None) or type(exc).__name__
        ERRORS.labels(*self.labels, reason).inc()
        REQUESTS.labels(*self.labels, self.kind, "refused" if refund else "error").inc()
        if refund:  # bad input: nothing was generated, so nothing is billed or counted
            await asyncio.to_thread(budget.refund, self.dep["id"])
            return
        await asyncio.to_thread(usage.record, self._row(
            success=False, error=f"{reason}: {exc}"[:500], latency_ms=(time.perf_counter() - self.t0) * 1000))

    def _row(self, **fields: Any) -> usage.UsageRecord:
        d = self.dep
        return usage.UsageRecord(id=self.id, ts=self.ts, owner=self.owner, deployment_id=d["id"], model=d["model_name"],
                                 provider=d["provider"], base_model=d["base_model"], job_id=d["training_job_id"],
                                 checkpoint=d["checkpoint"], conversation_id=self.conversation_id, route=self.kind,
                                 stream=bool(self.body.stream), cost_micro=self.cost_micro, **fields)
