"""Cohorts of end users (the ``user`` field of the OpenAI requests), evaluated on the usage data.

The five types differ in what decides membership:

* ``static`` — the listed ``members`` (PATCH ``add_members`` / ``remove_members``);
* ``dynamic`` — activity in the last ``lookback_days``: ``min_conversations``, ``min_messages``,
  ``active_status`` (true: seen in the window; false: not seen in it, though seen before);
* ``behavioral`` — what they did: ``used_model``, ``used_job_id``, ``route`` (chat | completion),
  ``streamed``, ``had_errors``, ``feedback`` (negative | positive | any: a verdict on one of their replies);
* ``subscription`` — the latest ``metadata.tier`` their requests carried, one of ``tiers``;
* ``custom`` — ``rules`` ``[{field, op, value}]`` matched ``all`` or ``any``, over per-user figures:
  requests, conversations, tokens, cost, error_rate, avg_rating, avg_latency_ms, tier, days_since_seen.

Membership is computed from the data whenever a cohort is read, so ``member_count`` is always current;
the stored count is the last computed one.
"""

from __future__ import annotations

import operator
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidInput
from ..records import new_id, now_iso
from ..store import get_store
from . import records

TABLE = "cohorts"
CohortType = Literal["static", "dynamic", "behavioral", "subscription", "custom"]
DAY = 86400.0


class _Criteria(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Static(_Criteria):
    members: list[str] = Field(default_factory=list, max_length=100_000)


class Dynamic(_Criteria):
    lookback_days: int = Field(30, ge=1, le=3650)
    min_conversations: int | None = Field(None, ge=0)
    min_messages: int | None = Field(None, ge=0)
    active_status: bool | None = None


class Behavioral(_Criteria):
    lookback_days: int = Field(30, ge=1, le=3650)
    used_model: str | None = None
    used_job_id: str | None = None
    route: Literal["chat", "completion"] | None = None
    streamed: bool | None = None
    had_errors: bool | None = None
    feedback: Literal["negative", "positive", "any"] | None = None


class Subscription(_Criteria):
    tiers: list[str] = Field(min_length=1)


FIELDS = ("requests", "conversations", "tokens", "cost", "error_rate", "avg_rating", "avg_latency_ms", "tier",
          "days_since_seen")
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
       "!=": operator.ne, "in": lambda a, b: a in b}


class Rule(_Criteria):
    field: Literal[FIELDS]  # type: ignore[valid-type]
    op: Literal[">", ">=", "<", "<=", "==", "!=", "in"]
    value: Any


class Custom(_Criteria):
    lookback_days: int = Field(30, ge=1, le=3650)
    rules: list[Rule] = Field(min_length=1)
    match: Literal["all", "any"] = "all"


CRITERIA: dict[str, type[_Criteria]] = {"static": Static, "dynamic": Dynamic, "behavioral": Behavioral,
                                        "subscription": Subscription, "custom": Custom}


class CohortCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    cohort_type: CohortType
    criteria: dict[str, Any] = Field(default_factory=dict)
    is_active: bool = True


class CohortPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cohort_id: str
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    criteria: dict[str, Any] | None = None
    is_active: bool | None = None
    add_members: list[str] | None = None
    remove_members: list[str] | None = None


def _criteria(kind: str, raw: dict[str, Any]) -> dict[str, Any]:
    try:
        return CRITERIA[kind].model_validate(raw).model_dump(exclude_none=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"criteria{'.' + where if where else ''}: {err['msg']}",
                           field=f"criteria.{where}" if where else "criteria") from None


def _features(owner: str, since: float) -> dict[str, dict[str, Any]]:
    """Per end user over ``[since, now]``: the figures custom rules read."""
    conn = records.connect()
    out: dict[str, dict[str, Any]] = {}
    for r in conn.execute(
            "SELECT u.end_user, COUNT(*), COUNT(DISTINCT u.conversation_id), SUM(u.input_tokens + u.output_tokens), "
            "SUM(u.cost_micro), SUM(1 - u.success), AVG(u.latency_ms), MAX(u.ts), AVG(f.rating) "
            "FROM usage u LEFT JOIN feedback f ON f.message_id = u.id AND f.owner = u.owner "
            "WHERE u.owner = ? AND u.ts >= ? AND u.end_user IS NOT NULL GROUP BY u.end_user", (owner, since)):
        out[r[0]] = {"requests": r[1], "conversations": r[2], "tokens": r[3] or 0, "cost": (r[4] or 0) / 1e6,
                     "error_rate": 100 * (r[5] or 0) / r[1], "avg_latency_ms": r[6], "last_ts": r[7],
                     "days_since_seen": (time.time() - r[7]) / DAY, "avg_rating": r[8]}
    for user, tier in conn.execute(
            "SELECT end_user, tier FROM usage WHERE owner = ? AND end_user IS NOT NULL AND tier IS NOT NULL "
            "ORDER BY ts", (owner,)):
        if user in out:
            out[user]["tier"] = tier  # the latest wins
    return out


def members(owner: str, cohort: dict[str, Any]) -> list[str]:
    """The cohort's end users, from the data as it is now."""
    kind, c = cohort["cohort_type"], cohort["criteria"]
    conn = records.connect()
    now = time.time()
    if kind == "static":
        return sorted(set(c.get("members", [])))
    if kind == "subscription":
        latest: dict[str, str] = {}
        for user, tier in conn.execute("SELECT end_user, tier FROM usage WHERE owner = ? AND end_user IS NOT NULL "
                                       "AND tier IS NOT NULL ORDER BY ts", (owner,)):
            latest[user] = tier
        return sorted(u for u, t in latest.items() if t in c["tiers"])
    since = now - c.get("lookback_days", 30) * DAY
    if kind == "dynamic":
        feats = _features(owner, since)
        chosen = set(feats)
        if c.get("min_conversations") is not None:
            chosen = {u for u in chosen if feats[u]["conversations"] >= c["min_conversations"]}
        if c.get("min_messages") is not None:
            chosen = {u for u in chosen if feats[u]["requests"] >= c["min_messages"]}
        if c.get("active_status") is False:  # seen before the window, not in it
            ever = {r[0] for r in conn.execute("SELECT DISTINCT end_user FROM usage WHERE owner = ? AND ts < ? "
                                               "AND end_user IS NOT NULL", (owner, since))}
            chosen = ever - set(feats)
        return sorted(chosen)
    if kind == "behavioral":
        sql = ("SELECT DISTINCT u.end_user FROM usage u LEFT JOIN feedback f ON f.message_id = u.id AND f.owner = u.owner "
               "WHERE u.owner = ? AND u.ts >= ? AND u.end_user IS NOT NULL")
        args: list[Any] = [owner, since]
        for key, col in (("used_model", "u.model"), ("used_job_id", "u.job_id"), ("route", "u.route")):
            if c.get(key) is not None:
                sql += f" AND {col} = ?"
                args.append(c[key])
        if c.get("streamed") is not None:
            sql += " AND u.stream = ?"
            args.append(int(c["streamed"]))
        if c.get("had_errors") is not None:
            sql += " AND u.success = ?"
            args.append(0 if c["had_errors"] else 1)
        fb = c.get("feedback")
        if fb == "any":
            sql += " AND f.message_id IS NOT NULL"
        elif fb == "negative":
            sql += " AND (f.rating <= 2 OR f.success = 0)"
        elif fb == "positive":
            sql += " AND (f.rating >= 4 OR f.success = 1)"
        return sorted(r[0] for r in conn.execute(sql, args))
    feats = _features(owner, since)  # custom
    test = all if c.get("match", "all") == "all" else any

    def ok(f: dict[str, Any], rule: dict[str, Any]) -> bool:
        have = f.get(rule["field"])
        try:
            return have is not None and bool(OPS[rule["op"]](have, rule["value"]))
        except TypeError:
            return False

    return sorted(u for u, f in feats.items() if test(ok(f, r) for r in c["rules"]))


def _fresh(owner: str, cohort: dict[str, Any]) -> dict[str, Any]:
    count = len(members(owner, cohort))
    if count != cohort.get("member_count"):
        cohort = get_store().update(TABLE, cohort["id"], {"member_count": count})
    return _public(cohort)


def _public(c: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in c.items() if k != "owner"}


def create(body: CohortCreate, owner: str) -> dict[str, Any]:
    criteria = _criteria(body.cohort_type, body.criteria)
    now = now_iso()
    rec = {"id": new_id("cohort"), "owner": owner, "name": body.name, "description": body.description,
           "cohort_type": body.cohort_type, "criteria": criteria, "member_count": 0, "is_active": body.is_active,
           "created_at": now, "updated_at": now}
    get_store().insert(TABLE, rec)
    return _fresh(owner, rec)


def get(cohort_id: str | None, owner: str) -> dict[str, Any]:
    if not cohort_id:
        raise InvalidInput("cohort_id is required", field="cohort_id")
    return get_store().require(TABLE, cohort_id, owner)


def listing(owner: str, cohort_type: str | None = None, is_active: str | None = None,
            limit: str | int | None = None) -> list[dict[str, Any]]:
    if cohort_type is not None and cohort_type not in CRITERIA:
        raise InvalidInput(f"cohort_type must be one of {', '.join(CRITERIA)}", field="cohort_type")
    active = None if is_active in (None, "") else str(is_active).lower() in ("1", "true", "yes")
    try:
        n = int(limit) if limit not in (None, "") else 100
    except ValueError:
        raise InvalidInput("limit must be a whole number", field="limit") from None
    rows = sorted(get_store().all(TABLE, owner), key=lambda c: c["created_at"])
    rows = [c for c in rows if (cohort_type is None or c["cohort_type"] == cohort_type)
            and (active is None or c["is_active"] == active)]
    return [_fresh(owner, c) for c in rows[: max(1, min(n, 1000))]]


def patch(body: CohortPatch, owner: str) -> dict[str, Any]:
    cohort = get(body.cohort_id, owner)
    fields: dict[str, Any] = {k: v for k, v in body.model_dump(exclude_none=True).items()
                              if k in ("name", "description", "is_active")}
    criteria = dict(cohort["criteria"]) if body.criteria is None else body.criteria
    if body.add_members or body.remove_members:
        if cohort["cohort_type"] != "static":
            raise InvalidInput("add_members and remove_members are for static cohorts", field="add_members")
        have = set(criteria.get("members", [])) | set(body.add_members or [])
        criteria["members"] = sorted(have - set(body.remove_members or []))
    fields["criteria"] = _criteria(cohort["cohort_type"], criteria)
    fields["updated_at"] = now_iso()
    return _fresh(owner, get_store().update(TABLE, cohort["id"], fields))


def delete(cohort_id: str | None, owner: str) -> dict[str, Any]:
    cohort = get(cohort_id, owner)
    get_store().delete(TABLE, cohort["id"])
    return {"deleted": cohort["id"]}


def member_filter(cohort_id: str | None, owner: str) -> list[str] | None:
    """The end users the data endpoint keeps for ``cohort_id`` (None: no cohort filter)."""
    if not cohort_id:
        return None
    return members(owner, get(cohort_id, owner))
