"""A sweep's search space: dotted config keys to a list of values or a ``{low, high, log}`` range, and the
three ways through it (grid, random, optuna's TPE)."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..configs import deep_merge, dotted_key, parse_config
from ..errors import InvalidInput

MAX_PARAMETERS = 10
MAX_GRID = 1000


class Range(BaseModel):
    """``{low, high, log}``: whole numbers when both bounds are (``lora.r``), else floats."""

    model_config = ConfigDict(extra="forbid")
    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="before")
    @classmethod
    def _kind(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "integer" not in raw:
            whole = all(isinstance(raw.get(k), int) and not isinstance(raw.get(k), bool) for k in ("low", "high"))
            raw = {**raw, "integer": whole and not raw.get("log")}
        return raw

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError("low must be below high")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


Space = dict[str, list[Any] | Range]


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"training.learning_rate": 1e-4}`` → ``{"training": {"learning_rate": 1e-4}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def check(space: dict[str, Any], base: dict[str, Any], strategy: str) -> dict[str, list[Any] | Range]:
    """Every key must be a config field and every value valid for it (a 422 naming ``parameters.<key>``)."""
    if not space:
        raise InvalidInput("parameters: give at least one dotted config key", field="parameters")
    if len(space) > MAX_PARAMETERS:
        raise InvalidInput(f"parameters: at most {MAX_PARAMETERS} keys", field="parameters")
    out: dict[str, list[Any] | Range] = {}
    for short, raw in space.items():
        key = dotted_key(short, field=f"parameters.{short}")  # learning_rate, as in `--set`: training.learning_rate
        field = f"parameters.{key}"
        if key in out:
            raise InvalidInput(f"{field}: given twice", field=field)
        if isinstance(raw, dict):
            try:
                values: list[Any] | Range = Range.model_validate(raw)
            except ValueError as exc:
                raise InvalidInput(f"{field}: {exc}", field=field) from None
            if strategy == "grid":
                raise InvalidInput(f"{field}: a grid takes a list of values, not a range", field=field)
            probes = [values.low, values.high]
        elif isinstance(raw, list) and raw:
            values, probes = raw, raw
        else:
            raise InvalidInput(f"{field}: a non-empty list of values, or {{low, high, log}}", field=field)
        for v in probes:
            try:
                parse_config(deep_merge(base, nested({key: int(v) if isinstance(values, Range) and values.integer else v})))
            except InvalidInput as exc:
                raise InvalidInput(f"{field}: {v!r} is not valid there ({exc.message})", field=field) from None
        out[key] = values
    return out


def grid(space: dict[str, list[Any] | Range]) -> list[dict[str, Any]]:
    keys = list(space)
    combos = list(itertools.islice(itertools.product(*(space[k] for k in keys)), MAX_GRID + 1))  # type: ignore[misc]
    if len(combos) > MAX_GRID:
        raise InvalidInput(f"parameters: the grid has more than {MAX_GRID} points", field="parameters")
    return [dict(zip(keys, c, strict=True)) for c in combos]


def sample(space: dict[str, list[Any] | Range], rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, values in space.items():
        if isinstance(values, list):
            out[key] = rng.choice(values)
        elif values.log:
            out[key] = math.exp(rng.uniform(math.log(values.low), math.log(values.high)))
        elif values.integer:
            out[key] = rng.randint(int(values.low), int(values.high))
        else:
            out[key] = rng.uniform(values.low, values.high)
    return out


def distributions(space: dict[str, list[Any] | Range]) -> dict[str, Any]:
    """optuna's distributions for the space (lists are categorical)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for key, values in space.items():
        if isinstance(values, list):
            out[key] = CategoricalDistribution(values)
        elif values.integer:
            out[key] = IntDistribution(int(values.low), int(values.high))
        else:
            out[key] = FloatDistribution(values.low, values.high, log=values.log)
    return out


def as_json(space: dict[str, list[Any] | Range]) -> dict[str, Any]:
    return {k: v if isinstance(v, list) else v.model_dump() for k, v in space.items()}


class SweepSpec(BaseModel):
    """``POST /api/training/sweeps``."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="the base model (else the config's)")
    dataset: str = Field(min_length=1)
    eval_dataset: str | None = None
    config: str | dict[str, Any] | None = Field(None, description="a config id, a template name, or a config object")
    strategy: str = Field("grid", description="grid, random or optuna (TPE, with pruning)")
    parameters: dict[str, Any]
    metric: str = Field("eval_loss", description="minimised; eval_loss or train_loss")
    max_trials: int | None = Field(None, ge=1, le=200, description="default: the grid's size, else 10")
    max_concurrent: int = Field(1, ge=1, le=16)
    seed: int = 0
    name: str | None = Field(None, max_length=200)
