"""Analytics: one job, all of the caller's jobs, and jobs side by side."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request

from ...results import analytics
from ..common import Loose, Query, call, owner
from ..openapi import Registry

api = Registry("analytics", "job analytics")


class JobAnalytics(Loose):
    job_id: str
    duration: dict[str, Any]
    performance: dict[str, Any]
    resources: dict[str, Any]
    loss_progression: dict[str, Any]
    checkpoints: dict[str, Any]
    efficiency_score: float | None


class Summary(Loose):
    total_jobs: int
    jobs_by_status: dict[str, int]
    avg_training_duration_seconds: float | None
    total_training_time_hours: float
    avg_throughput: float | None
    top_performing_jobs: list[dict[str, Any]]
    resource_utilization: dict[str, Any]


class CompareQuery(Query):
    job_ids: str = Field(min_length=1, max_length=10_000, description="comma-separated job ids (at least two)")


class Comparison(Loose):
    comparison: list[dict[str, Any]]
    winner: dict[str, str | None]


@api.get("/api/training/analytics/summary", summary="Get analytics across all jobs", response=Summary)
async def analytics_summary(request: Request) -> dict[str, Any]:
    """Counts by status, durations, throughput, the most efficient jobs and resource use — the caller's jobs only."""
    return await call(analytics.summary, owner(request))


@api.get("/api/training/analytics/compare", summary="Compare training jobs", query=CompareQuery,
         response=Comparison, errors=(404,))
async def analytics_compare(request: Request, query: CompareQuery) -> dict[str, Any]:
    """Duration, throughput, loss improvement, GPU use and efficiency side by side, with the best job per metric."""
    return await call(analytics.compare, query.job_ids, owner(request))


@api.get("/api/training/{jobId}/analytics", summary="Get job analytics", response=JobAnalytics, errors=(404,))
async def job_analytics(request: Request) -> dict[str, Any]:
    """Duration, performance, resources, loss progression, checkpoints and the efficiency score."""
    return await call(analytics.job_analytics, request.path_params["jobId"], owner(request))
