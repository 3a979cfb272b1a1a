"""``/api/analytics``: usage data, feedback, model comparison, export, sentiment insights, cohorts and the
assistant — thin over :mod:`workbench.analytics`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import StreamingResponse

from ...analytics import (
    assistant,
    cohorts,
    compare,
    data,
    export,
    insights,
    records,
    tools,
)
from ..common import Body, Loose, Query, call, call_long, owner, stream_long
from ..openapi import Registry
from ..responses import dumps

api = Registry("usage", "usage analytics")


class DataQuery(Query):
    startDate: str = Field(description="ISO 8601 (required)")
    endDate: str = Field(description="ISO 8601 (required, inclusive)")
    metrics: str | None = Field(None, description="comma list of tokens, quality, tools, conversations, errors, "
                                                  "latency; or all")
    granularity: str = Field("day", description="hour, day, week, month or all")
    timezone: str | None = Field(None, description="IANA time zone of the buckets (default UTC)")
    cohort_id: str | None = Field(None, description="only this cohort's end users")
    model: str | None = Field(None, description="only this deployment model name")
    job_id: str | None = Field(None, description="only replies of models fine-tuned by this job")


class DataResponse(Loose):
    success: Literal[True]
    data: dict[str, Any]


@api.get("/api/analytics/data", summary="Get analytics data", query=DataQuery, response=DataResponse,
         errors=(400, 404))
async def analytics_data(request: Request, query: DataQuery) -> dict[str, Any]:
    """Tokens, quality, tools, conversations, errors and latency (p50/p95/p99, time to first token) per bucket."""
    me = owner(request)
    members = await call(cohorts.member_filter, query.cohort_id, me)
    return await call_long(data.query, me, start=query.startDate, end=query.endDate, metrics=query.metrics,
                           granularity=query.granularity, timezone=query.timezone, members=members,
                           model=query.model, job_id=query.job_id)


class FeedbackOut(Loose):
    message_id: str
    rating: int | None
    success: bool | None


class FeedbackBody(records.Feedback, Body):  # unknown fields refused: a typo ("coment") is a 422 naming it
    pass


@api.post("/api/analytics/feedback", summary="Rate a reply", body=FeedbackBody, response=FeedbackOut,
          errors=(404, 422))
async def feedback(request: Request, body: FeedbackBody) -> dict[str, Any]:
    """A rating (1-5) and/or success verdict, with an optional comment, on a reply (its completion ``id``)."""
    return await call(records.add_feedback, body, owner(request))


class RangeQuery(Query):
    startDate: str
    endDate: str


@api.get("/api/analytics/models", summary="Compare fine-tuned models and checkpoints in use", query=RangeQuery,
         errors=(400,))
async def models(request: Request, query: RangeQuery) -> dict[str, Any]:
    """Quality, cost and latency per served model, per training job and per checkpoint."""
    return await call_long(compare.by_model, owner(request), query.startDate, query.endDate)


class ExportQuery(RangeQuery):
    format: Literal["csv", "jsonl"] = "csv"


@api.get("/api/analytics/export", summary="Export usage records", query=ExportQuery, errors=(400,),
         media_type="text/csv")
async def export_records(request: Request, query: ExportQuery) -> Any:
    """Every usage record of the range with its feedback, as CSV or JSONL, streamed."""
    chunks, media = await call(export.export, owner(request), query.startDate, query.endDate, query.format)
    name = f"usage-{query.startDate[:10]}-{query.endDate[:10]}.{query.format}"
    return StreamingResponse(stream_long(chunks), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


class InsightsQuery(Query):
    lookback_days: int = Field(30, ge=1, le=365)


class Insights(Loose):
    insights: list[dict[str, Any]]


@api.get("/api/analytics/sentiment/insights", summary="Get sentiment insights", query=InsightsQuery,
         response=Insights, errors=(400,))
async def sentiment_insights(request: Request, query: InsightsQuery) -> dict[str, Any]:
    """Sentiment drops, rising negative feedback, quality changes: z-scores against a baseline (see the docs)."""
    return await call_long(insights.insights, owner(request), query.lookback_days)


class CohortQuery(Query):
    cohort_id: str | None = None
    cohort_type: str | None = None
    is_active: str | None = None
    limit: str | None = None


class CohortCreate(cohorts.CohortCreate, Body):
    pass


class CohortPatch(cohorts.CohortPatch, Body):
    pass


class CohortOut(Loose):
    cohort: dict[str, Any]


class CohortList(Loose):
    cohorts: list[dict[str, Any]]


@api.get("/api/analytics/cohorts", summary="List cohorts (or one, with its members)", query=CohortQuery,
         response=CohortList, errors=(400, 404))
async def list_cohorts(request: Request, query: CohortQuery) -> dict[str, Any]:
    """The caller's cohorts with a current ``member_count``; ``cohort_id`` returns one with its ``members``."""
    me = owner(request)
    if query.cohort_id:
        c = await call(cohorts.get, query.cohort_id, me)
        members = await call(cohorts.members, me, c)
        return {"cohorts": [{**{k: v for k, v in c.items() if k != "owner"}, "member_count": len(members),
                             "members": members}]}
    return {"cohorts": await call(cohorts.listing, me, query.cohort_type, query.is_active, query.limit)}


@api.post("/api/analytics/cohorts", summary="Create a cohort", body=CohortCreate, response=CohortOut,
          errors=(400, 422), status=201)
async def create_cohort(request: Request, body: CohortCreate) -> dict[str, Any]:
    """static, dynamic, behavioral, subscription or custom; the criteria are checked for the type."""
    return {"cohort": await call(cohorts.create, body, owner(request))}


@api.patch("/api/analytics/cohorts", summary="Update a cohort", body=CohortPatch, response=CohortOut,
           errors=(400, 404, 422))
async def patch_cohort(request: Request, body: CohortPatch) -> dict[str, Any]:
    """Rename, re-describe, (de)activate, change the criteria, or add/remove a static cohort's members."""
    return {"cohort": await call(cohorts.patch, body, owner(request))}


@api.delete("/api/analytics/cohorts", summary="Delete a cohort", query=CohortQuery, errors=(400, 404))
async def delete_cohort(request: Request, query: CohortQuery) -> dict[str, Any]:
    """Permanent; the usage data is untouched."""
    return await call(cohorts.delete, query.cohort_id, owner(request))


class ChatBody(assistant.AnalyticsChat, Body):
    pass


@api.post("/api/analytics/chat", summary="Chat with the analytics assistant", body=ChatBody, errors=(422, 503),
          media_type="text/event-stream")
async def analytics_chat(request: Request, body: ChatBody) -> Any:
    """Streams ``token_usage``, ``tools_metadata``, then ``content`` events and ``[DONE]``; 503 without an LLM."""
    me = owner(request)
    auth = request.headers.get("authorization", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else None
    llm = assistant.llm_for(body, me, str(request.base_url), token)
    events = assistant.chat(body, me, llm)
    first = await anext(events)  # the tool loop runs here: a failing model is an HTTP error, not a broken stream

    async def sse() -> AsyncIterator[bytes]:
        yield b"data: " + dumps(first) + b"\n\n"
        async for e in events:
            yield b"data: " + dumps(e) + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class ToolArgs(Body):
    arguments: dict[str, Any] = Field(default_factory=dict)


@api.post("/api/analytics/tools/{name}", summary="Run one analytics tool", body=ToolArgs, errors=(400, 422))
async def run_tool(request: Request, body: ToolArgs) -> dict[str, Any]:
    """The assistant's tools, callable directly (no LLM needed): calculator, evaluation_metrics, datetime, ..."""
    name = request.path_params["name"]
    if name not in tools.TOOLS:
        from ...errors import NotFound

        raise NotFound(f"no tool {name!r}; tools: {', '.join(tools.TOOLS)}", field="name")
    return {"tool": name, "result": await call_long(tools.call, owner(request), name, body.arguments)}
