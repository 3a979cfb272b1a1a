"""Sweeps, suggestions, lineage and duplicates — thin over :mod:`workbench.experiments`."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request

from ...experiments import lineage, suggestions
from ...experiments.space import SweepSpec
from ...experiments.sweeps import SweepService
from ..common import Body, Loose, Query, call, call_long, owner
from ..openapi import Registry

api = Registry("experiments", "sweeps, suggestions and lineage")


class SweepBody(SweepSpec, Body):
    pass


class Sweep(Loose):
    sweep_id: str
    status: str
    trials: list[dict[str, Any]]
    best_trial: dict[str, Any] | None


class SweepList(Loose):
    sweeps: list[dict[str, Any]]


@api.post("/api/training/sweeps", summary="Start a hyperparameter sweep", body=SweepBody, response=Sweep,
          errors=(404, 422, 429, 503), status=201)
async def create_sweep(request: Request, body: SweepBody) -> dict[str, Any]:
    """grid, random or optuna (TPE, with pruning); every trial is a normal job whose lineage names the sweep."""
    return await call_long(SweepService().create, body, owner(request))


@api.get("/api/training/sweeps", summary="List sweeps", response=SweepList)
async def list_sweeps(request: Request) -> dict[str, Any]:
    return {"sweeps": await call(SweepService().list, owner(request))}


@api.get("/api/training/sweeps/{id}", summary="A sweep's trials and best trial", response=Sweep, errors=(404,))
async def get_sweep(request: Request) -> dict[str, Any]:
    """``status``, ``trials`` (job_id, params, status, eval_loss) and ``best_trial``."""
    return await call(SweepService().get, request.path_params["id"], owner(request))


class SuggestQuery(Query):
    model: str | None = Field(None, description="the base model")
    dataset: str | None = Field(None, description="a dataset id")


class Suggestion(Loose):
    suggestion: dict[str, Any]
    reasons: list[str]
    learned_from: list[str]


@api.get("/api/training/suggestions", summary="Hyperparameters suggested from history", query=SuggestQuery,
         response=Suggestion)
async def suggest(request: Request, query: SuggestQuery) -> dict[str, Any]:
    """From past jobs and sweeps on the same model and dataset, then similar ones, else defaults by model size."""
    return await call_long(suggestions.suggest, query.model, query.dataset, owner(request))


class Lineage(Loose):
    job_id: str
    parent_job_id: str | None
    sweep_id: str | None
    dataset: dict[str, Any]
    config: dict[str, Any]
    children: list[str]


@api.get("/api/training/{jobId}/lineage", summary="A job's lineage", response=Lineage, errors=(404,))
async def job_lineage(request: Request) -> dict[str, Any]:
    """Parent, sweep, dataset version and hash, config hash and changes, paused changes, runs, children."""
    return await call(lineage.lineage, request.path_params["jobId"], owner(request))


class DuplicateBody(Body):
    overrides: dict[str, Any] | None = Field(None, description='e.g. {"training": {"learning_rate": 1e-4}}')
    name: str | None = Field(None, max_length=200)


@api.post("/api/training/{jobId}/duplicate", summary="Start a copy of a job", body=DuplicateBody,
          errors=(404, 409, 422, 429), status=201)
async def duplicate_job(request: Request, body: DuplicateBody) -> dict[str, Any]:
    """The same model, dataset and config (with its paused changes), plus ``overrides``; its lineage names the original."""
    return await call_long(lineage.duplicate, request.path_params["jobId"], body.overrides, body.name, owner(request))
