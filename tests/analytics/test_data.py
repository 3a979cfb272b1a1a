"""``GET /api/analytics/data``: per-bucket figures checked against hand-computed ones.

Buckets are local calendar periods of the requested time zone (DST included); the first starts at
``startDate``, the last ends at ``endDate`` inclusive. Above ``EXACT_ROWS`` rows the endpoint reads
the 15-minute rollups, and its figures agree with the row-by-row ones: counts, tokens, cost and
conversations exactly, latency percentiles within the histogram's ±12%.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from workbench.analytics import data

from .usage_rows import at, row, write

DAY = 86400.0


def by_label(series: list[dict]) -> dict[str, dict]:
    return {e["timestamp"]: e for e in series}


# --- sums per bucket -------------------------------------------------------------------------------

def test_day_buckets_sum_messages_tokens_cost_conversations_and_errors_as_computed_by_hand(api) -> None:
    me = api.alice_id
    t0 = at("2025-11-03T00:00:00Z")
    write([
        row("r-before", t0 - 0.001, me, input_tokens=999, output_tokens=999, cost_micro=999_999),  # outside
        row("r-a", t0, me, input_tokens=100, output_tokens=50, cost_micro=250_000, conversation_id="c1"),  # at the start
        row("r-b", t0 + 3600, me, input_tokens=10, output_tokens=5, cost_micro=250_000, conversation_id="c1"),
        row("r-c", t0 + DAY - 0.001, me, input_tokens=1, output_tokens=1, cost_micro=250_000, conversation_id="c2",
            success=False, error="timeout: the engine took too long"),
        row("r-d", t0 + DAY, me, input_tokens=7, output_tokens=3, cost_micro=250_000, conversation_id="c3"),  # day 2's start
        row("r-e", t0 + 2 * DAY, me, input_tokens=2, output_tokens=2, conversation_id="c3"),  # the inclusive end
        row("r-after", t0 + 2 * DAY + 0.001, me, input_tokens=999, output_tokens=999, cost_micro=999_999),  # outside
    ])
    d = api.data(startDate="2025-11-03T00:00:00Z", endDate="2025-11-05T00:00:00Z", granularity="day")

    assert d["userId"] == me
    assert d["timeRange"] == {"start": "2025-11-03T00:00:00Z", "end": "2025-11-05T00:00:00Z", "period": "day",
                              "timezone": "UTC"}
    assert d["metrics"]["tokenUsage"] == [
        {"timestamp": "2025-11-03T00:00:00Z", "messages": 3, "inputTokens": 111, "outputTokens": 56,
         "totalTokens": 167, "estimatedCost": 0.75},
        {"timestamp": "2025-11-04T00:00:00Z", "messages": 1, "inputTokens": 7, "outputTokens": 3,
         "totalTokens": 10, "estimatedCost": 0.25},
        {"timestamp": "2025-11-05T00:00:00Z", "messages": 1, "inputTokens": 2, "outputTokens": 2,
         "totalTokens": 4, "estimatedCost": 0.0},
    ]
    conv = d["metrics"]["conversations"]
    assert [(c["conversations"], c["messages"], c["messagesPerConversation"]) for c in conv] == \
        [(2, 3, 1.5), (1, 1, 1.0), (1, 1, 1.0)]
    errors = d["metrics"]["errors"]
    assert [(e["errors"], e["errorRate"], e["byType"]) for e in errors] == \
        [(1, 33.33, {"timeout": 1}), (0, 0.0, {}), (0, 0.0, {})]

    totals, averages = d["aggregations"]["totals"], d["aggregations"]["averages"]
    assert totals == {"messages": 5, "conversations": 3, "tokens": 181, "inputTokens": 120, "outputTokens": 61,
                      "cost": 1.0, "evaluations": 0, "errors": 1, "toolCalls": 0}  # 4 x $0.25 is exactly $1
    assert averages["tokensPerMessage"] == 36.2 and averages["costPerMessage"] == 0.2
    assert averages["errorRate"] == 20.0 and averages["rating"] is None and averages["successRate"] is None


def test_an_empty_range_has_zero_buckets_and_no_averages(api) -> None:
    d = api.data(startDate="2025-11-03", endDate="2025-11-04T23:59:59Z")
    assert [e["messages"] for e in d["metrics"]["tokenUsage"]] == [0, 0]
    assert d["aggregations"]["totals"]["messages"] == 0
    assert all(v is None for v in d["aggregations"]["averages"].values())
    assert d["metrics"]["latency"][0]["p95Ms"] is None and d["metrics"]["errors"][0]["errorRate"] is None


def test_granularity_all_is_one_bucket_labelled_with_the_start(api) -> None:
    me = api.alice_id
    write([row(f"r{i}", at("2025-11-01T00:00:00Z") + i * 7 * 3600, me, input_tokens=i, output_tokens=1)
           for i in range(20)])
    d = api.data(startDate="2025-11-01T00:00:00Z", endDate="2025-11-30T23:59:59Z", granularity="all")
    assert d["metrics"]["tokenUsage"] == [{"timestamp": "2025-11-01T00:00:00Z", "messages": 20,
                                           "inputTokens": sum(range(20)), "outputTokens": 20,
                                           "totalTokens": sum(range(20)) + 20, "estimatedCost": 0.0}]


def test_the_default_granularity_is_day(api) -> None:
    d = api.data(startDate="2025-11-01T00:00:00Z", endDate="2025-11-03T12:00:00Z")
    assert d["timeRange"]["period"] == "day"
    assert [e["timestamp"] for e in d["metrics"]["tokenUsage"]] == \
        ["2025-11-01T00:00:00Z", "2025-11-02T00:00:00Z", "2025-11-03T00:00:00Z"]


# --- time zones, DST, weeks and months ---------------------------------------------------------------

def test_berlin_day_buckets_follow_local_midnight_and_the_spring_forward_day_has_23_hours(api) -> None:
    me = api.alice_id
    write([
        row("sat-last", "2025-03-29T23:59:59+01:00", me),  # Saturday in Berlin
        row("sun-first", "2025-03-30T00:00:00+01:00", me),  # 2025-03-29T23:00Z: Saturday in UTC, Sunday in Berlin
        row("sun-noon", "2025-03-30T12:00:00+02:00", me),
        row("sun-last", "2025-03-30T23:59:59+02:00", me),  # 2025-03-30T21:59:59Z
        row("mon-first", "2025-03-31T00:00:00+02:00", me),  # 2025-03-30T22:00Z: Sunday in UTC, Monday in Berlin
    ])
    d = api.data(startDate="2025-03-29T00:00:00+01:00", endDate="2025-03-31T23:59:59+02:00", granularity="day",
                 timezone="Europe/Berlin")
    series = d["metrics"]["tokenUsage"]
    labels = [e["timestamp"] for e in series]
    assert labels == ["2025-03-29T00:00:00+01:00", "2025-03-30T00:00:00+01:00", "2025-03-31T00:00:00+02:00"]
    starts = [datetime.fromisoformat(x) for x in labels]
    assert starts[2] - starts[1] == timedelta(hours=23) and starts[1] - starts[0] == timedelta(hours=24)
    assert [e["messages"] for e in series] == [1, 3, 1]
    assert d["timeRange"]["timezone"] == "Europe/Berlin"

    utc = api.data(startDate="2025-03-29T00:00:00Z", endDate="2025-03-31T23:59:59Z", granularity="day")
    assert [e["messages"] for e in utc["metrics"]["tokenUsage"]] == [2, 3, 0]  # the same rows, UTC days


def test_berlin_hour_buckets_repeat_two_oclock_when_clocks_go_back(api) -> None:
    me = api.alice_id
    write([row("first-two", "2025-10-26T02:30:00+02:00", me), row("second-two", "2025-10-26T02:30:00+01:00", me),
           row("second-two-b", "2025-10-26T02:59:59+01:00", me)])
    d = api.data(startDate="2025-10-26T01:00:00+02:00", endDate="2025-10-26T03:59:59+01:00", granularity="hour",
                 timezone="Europe/Berlin")
    assert [(e["timestamp"], e["messages"]) for e in d["metrics"]["tokenUsage"]] == [
        ("2025-10-26T01:00:00+02:00", 0), ("2025-10-26T02:00:00+02:00", 1),
        ("2025-10-26T02:00:00+01:00", 2), ("2025-10-26T03:00:00+01:00", 0)]


def test_kolkata_hour_buckets_start_at_half_past_in_utc(api) -> None:
    me = api.alice_id
    write([row("a", "2025-11-01T00:29:59Z", me), row("b", "2025-11-01T00:30:00Z", me),
           row("c", "2025-11-01T01:29:59Z", me), row("d", "2025-11-01T01:30:00Z", me),
           row("e", "2025-11-01T02:45:00Z", me)])
    d = api.data(startDate="2025-11-01T00:00:00Z", endDate="2025-11-01T02:59:59Z", granularity="hour",
                 timezone="Asia/Kolkata")
    assert [(e["timestamp"], e["messages"]) for e in d["metrics"]["tokenUsage"]] == [
        ("2025-11-01T05:30:00+05:30", 1),  # the partial first bucket: 00:00Z-00:30Z
        ("2025-11-01T06:00:00+05:30", 2), ("2025-11-01T07:00:00+05:30", 1), ("2025-11-01T08:00:00+05:30", 1)]


def test_week_buckets_start_on_monday(api) -> None:
    me = api.alice_id
    write([row("sun", "2025-11-02T23:59:59Z", me), row("mon", "2025-11-03T00:00:00Z", me),
           row("sun2", "2025-11-09T23:59:59Z", me), row("mon2", "2025-11-10T00:00:00Z", me),
           row("thu", "2025-11-20T12:00:00Z", me)])
    d = api.data(startDate="2025-11-01T00:00:00Z", endDate="2025-11-20T23:59:59Z", granularity="week")
    series = d["metrics"]["tokenUsage"]
    assert [(e["timestamp"], e["messages"]) for e in series] == [
        ("2025-11-01T00:00:00Z", 1), ("2025-11-03T00:00:00Z", 2), ("2025-11-10T00:00:00Z", 1),
        ("2025-11-17T00:00:00Z", 1)]
    assert all(datetime.fromisoformat(e["timestamp"]).weekday() == 0 for e in series[1:])


def test_month_buckets_start_on_the_first_in_the_zone(api) -> None:
    me = api.alice_id
    write([row("jan", "2025-01-31T22:59:59Z", me),  # 23:59:59 on Jan 31st in Berlin
           row("feb", "2025-01-31T23:00:00Z", me),  # midnight Feb 1st in Berlin
           row("feb2", "2025-02-28T22:00:00Z", me), row("dec", "2024-12-31T23:00:00Z", me)])
    d = api.data(startDate="2024-12-15T00:00:00+01:00", endDate="2025-03-10T00:00:00+01:00", granularity="month",
                 timezone="Europe/Berlin")
    assert [(e["timestamp"], e["messages"]) for e in d["metrics"]["tokenUsage"]] == [
        ("2024-12-15T00:00:00+01:00", 0), ("2025-01-01T00:00:00+01:00", 2), ("2025-02-01T00:00:00+01:00", 2),
        ("2025-03-01T00:00:00+01:00", 0)]


# --- metrics and errors in the query -------------------------------------------------------------------

ALL_KEYS = {"tokenUsage", "quality", "tools", "conversations", "errors", "latency"}


def test_metrics_selects_the_series_returned(api) -> None:
    q = {"startDate": "2025-11-01", "endDate": "2025-11-02"}
    assert set(api.data(**q, metrics="tokens,latency")["metrics"]) == {"tokenUsage", "latency"}
    assert set(api.data(**q, metrics="quality")["metrics"]) == {"quality"}
    assert set(api.data(**q, metrics="all")["metrics"]) == ALL_KEYS
    assert set(api.data(**q)["metrics"]) == ALL_KEYS
    assert "totals" in api.data(**q, metrics="tools")["aggregations"]


@pytest.mark.parametrize(("params", "field"), [
    ({"startDate": "2025-13-45", "endDate": "2025-11-02"}, "startDate"),
    ({"startDate": "yesterday", "endDate": "2025-11-02"}, "startDate"),
    ({"startDate": "2025-11-01", "endDate": "not a date"}, "endDate"),
    ({"startDate": "2025-11-05", "endDate": "2025-11-02"}, "endDate"),  # before the start
    ({"startDate": "2025-11-01", "endDate": "2025-11-02", "granularity": "fortnight"}, "granularity"),
    ({"startDate": "2025-11-01", "endDate": "2025-11-02", "metrics": "tokens,vibes"}, "metrics"),
    ({"startDate": "2025-11-01", "endDate": "2025-11-02", "timezone": "Mars/Olympus"}, "timezone"),
    ({"startDate": "2000-01-01", "endDate": "2025-11-02", "granularity": "hour"}, "granularity"),  # too many buckets
])
def test_an_unreadable_query_is_a_400_naming_the_field(api, params, field) -> None:
    r = api.client.get("/api/analytics/data", headers=api.alice, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["success"] is False and r.json()["error"]["field"] == field


def test_missing_dates_are_refused_naming_the_field(api) -> None:
    r = api.client.get("/api/analytics/data", headers=api.alice, params={"endDate": "2025-11-02"})
    assert r.status_code in (400, 422) and r.json()["error"]["field"] == "startDate"
    r = api.client.get("/api/analytics/data", headers=api.alice, params={"startDate": "2025-11-02"})
    assert r.status_code in (400, 422) and r.json()["error"]["field"] == "endDate"


def test_the_data_endpoint_needs_a_token(api) -> None:
    assert api.client.get("/api/analytics/data", params={"startDate": "2025-11-01", "endDate": "2025-11-02"}
                          ).status_code == 401


# --- latency ----------------------------------------------------------------------------------------

def test_latency_percentiles_and_time_to_first_token_are_numpy_linear_percentiles(api) -> None:
    me = api.alice_id
    t0 = at("2025-11-03T00:00:00Z")
    # day 1: latencies 1..100 ms, TTFT a tenth; day 2: 10 and 30 ms, one row without a latency
    write([row(f"a{i}", t0 + i, me, latency_ms=float(i), ttft_ms=i / 10) for i in range(1, 101)])
    write([row("b1", t0 + DAY, me, latency_ms=10.0, ttft_ms=2.0), row("b2", t0 + DAY + 1, me, latency_ms=30.0),
           row("b3", t0 + DAY + 2, me)])
    d = api.data(startDate="2025-11-03T00:00:00Z", endDate="2025-11-04T23:59:59Z", metrics="latency")
    day1, day2 = d["metrics"]["latency"]
    assert day1 == {"timestamp": "2025-11-03T00:00:00Z", "requests": 100, "avgMs": 50.5, "p50Ms": 50.5,
                    "p95Ms": 95.05, "p99Ms": 99.01, "ttftAvgMs": 5.05, "ttftP50Ms": 5.05, "ttftP95Ms": 9.5}
    assert day2 == {"timestamp": "2025-11-04T00:00:00Z", "requests": 3, "avgMs": 20.0, "p50Ms": 20.0,
                    "p95Ms": 29.0, "p99Ms": 29.8, "ttftAvgMs": 2.0, "ttftP50Ms": 2.0, "ttftP95Ms": 2.0}
    av = d["aggregations"]["averages"]
    every = sorted([float(i) for i in range(1, 101)] + [10.0, 30.0])  # 102 values
    assert av["latencyMs"] == round(sum(every) / 102, 2)
    # rank (102-1)*q: p50 is half way between every[50] = 49 and every[51] = 50 (the two extra values
    # shift everything above 30 by two places); p99 at rank 99.99, between every[99] = 98 and every[100] = 99
    assert (every[50], every[51], every[99], every[100]) == (49.0, 50.0, 98.0, 99.0)
    assert av["latencyP50Ms"] == 49.5 and av["latencyP99Ms"] == 98.99
    assert av["ttftMs"] == round((sum(i / 10 for i in range(1, 101)) + 2.0) / 101, 2)
    assert d["percentiles"] == "exact"


# --- quality (feedback) and filters -------------------------------------------------------------------

def test_a_rating_appears_in_quality_for_its_message_id(api) -> None:
    me = api.alice_id
    write([row("chatcmpl-1", "2025-11-03T10:00:00Z", me, conversation_id="c1", model="model-a", job_id="job-1",
               checkpoint="checkpoint-5"),
           row("chatcmpl-2", "2025-11-03T11:00:00Z", me, conversation_id="c1"),
           row("chatcmpl-3", "2025-11-03T12:00:00Z", me, conversation_id="c2")])
    assert api.rate("chatcmpl-1", rating=4, success=True, comment="Great, thanks!").status_code == 200
    assert api.rate("chatcmpl-2", rating=2).status_code == 200
    assert api.rate("chatcmpl-3", success=False).status_code == 200

    d = api.data(startDate="2025-11-03T00:00:00Z", endDate="2025-11-03T23:59:59Z")
    quality = {q["messageId"]: q for q in d["metrics"]["quality"]}
    assert set(quality) == {"chatcmpl-1", "chatcmpl-2", "chatcmpl-3"}
    one = quality["chatcmpl-1"]
    assert one["rating"] == 4 and one["successStatus"] == "success" and one["evaluationType"] == "user_feedback"
    assert one["conversationId"] == "c1" and one["modelId"] == "model-a" and one["jobId"] == "job-1"
    assert one["checkpoint"] == "checkpoint-5" and one["comment"] == "Great, thanks!" and one["sentiment"] > 0.05
    assert quality["chatcmpl-2"]["successStatus"] is None and quality["chatcmpl-3"]["rating"] is None
    assert quality["chatcmpl-3"]["successStatus"] == "failure"
    av, totals = d["aggregations"]["averages"], d["aggregations"]["totals"]
    assert totals["evaluations"] == 3 and av["rating"] == 3.0 and av["successRate"] == 50.0

    # the verdicts describe the range's replies, whenever they were given: today's range holds none of them
    now = datetime.now(UTC)
    today = api.data(startDate=(now - timedelta(hours=1)).isoformat(), endDate=(now + timedelta(hours=1)).isoformat())
    assert today["metrics"]["quality"] == [] and today["aggregations"]["totals"]["evaluations"] == 0
    assert datetime.fromisoformat(one["timestamp"]) > now - timedelta(minutes=5)  # stamped when it was given


def test_model_and_job_filters_keep_only_their_replies(api) -> None:
    me = api.alice_id
    t = at("2025-11-03T10:00:00Z")
    write([row("a1", t, me, model="model-a", job_id="job-1", input_tokens=10, conversation_id="ca"),
           row("a2", t + 60, me, model="model-a", job_id="job-2", input_tokens=20, conversation_id="ca"),
           row("b1", t + 120, me, model="model-b", job_id="job-1", input_tokens=40, conversation_id="cb",
               success=False, error="engine: oom")])
    api.rate("a1", rating=5)
    api.rate("b1", rating=1)
    q = {"startDate": "2025-11-03T00:00:00Z", "endDate": "2025-11-03T23:59:59Z"}
    a = api.data(**q, model="model-a")["aggregations"]
    assert a["totals"]["messages"] == 2 and a["totals"]["inputTokens"] == 30 and a["totals"]["errors"] == 0
    assert a["totals"]["evaluations"] == 1 and a["averages"]["rating"] == 5.0
    j = api.data(**q, job_id="job-1")
    assert j["aggregations"]["totals"]["inputTokens"] == 50 and j["aggregations"]["totals"]["conversations"] == 2
    assert {x["messageId"] for x in j["metrics"]["quality"]} == {"a1", "b1"}
    assert j["metrics"]["errors"][0]["byType"] == {"engine": 1}
    both = api.data(**q, model="model-b", job_id="job-1")["aggregations"]["totals"]
    assert both["messages"] == 1 and both["inputTokens"] == 40
    assert api.data(**q, model="model-z")["aggregations"]["totals"]["messages"] == 0


def test_cohort_filter_keeps_only_the_cohorts_end_users(api) -> None:
    me = api.alice_id
    t = at("2025-11-03T10:00:00Z")
    write([row("u1", t, me, end_user="ann", input_tokens=1), row("u2", t + 1, me, end_user="ben", input_tokens=2),
           row("u3", t + 2, me, end_user="cat", input_tokens=4), row("u4", t + 3, me, input_tokens=8)])
    api.rate("u2", rating=5)
    r = api.client.post("/api/analytics/cohorts", headers=api.alice,
                        json={"name": "pair", "cohort_type": "static", "criteria": {"members": ["ann", "ben"]}})
    assert r.status_code == 201, r.text
    cid = r.json()["cohort"]["id"]
    d = api.data(startDate="2025-11-03T00:00:00Z", endDate="2025-11-03T23:59:59Z", cohort_id=cid)
    assert d["aggregations"]["totals"]["messages"] == 2 and d["aggregations"]["totals"]["inputTokens"] == 3
    assert [q["messageId"] for q in d["metrics"]["quality"]] == ["u2"]

    empty = api.client.post("/api/analytics/cohorts", headers=api.alice,
                            json={"name": "nobody", "cohort_type": "static", "criteria": {"members": []}})
    d = api.data(startDate="2025-11-03T00:00:00Z", endDate="2025-11-03T23:59:59Z",
                 cohort_id=empty.json()["cohort"]["id"])
    assert d["aggregations"]["totals"]["messages"] == 0

    r = api.client.get("/api/analytics/data", headers=api.bob,
                       params={"startDate": "2025-11-03", "endDate": "2025-11-04", "cohort_id": cid})
    assert r.status_code == 404  # alice's cohort is not bob's to filter by
    r = api.client.get("/api/analytics/data", headers=api.alice,
                       params={"startDate": "2025-11-03", "endDate": "2025-11-04", "cohort_id": "cohort-nope"})
    assert r.status_code == 404


def test_another_users_rows_and_feedback_never_appear(api) -> None:
    t = at("2025-11-03T10:00:00Z")
    write([row("alice-1", t, api.alice_id, input_tokens=5, conversation_id="shared-name"),
           row("bob-1", t, api.bob_id, input_tokens=700, conversation_id="shared-name"),
           row("bob-2", t + 1, api.bob_id, input_tokens=700, success=False)])
    assert api.rate("bob-1", who=api.bob, rating=1, comment="terrible").status_code == 200
    q = {"startDate": "2025-11-03T00:00:00Z", "endDate": "2025-11-03T23:59:59Z"}
    mine = api.data(**q)
    assert mine["aggregations"]["totals"] == {"messages": 1, "conversations": 1, "tokens": 5, "inputTokens": 5,
                                              "outputTokens": 0, "cost": 0.0, "evaluations": 0, "errors": 0,
                                              "toolCalls": 0}
    assert mine["metrics"]["quality"] == []
    bobs = api.data(who=api.bob, **q)
    assert bobs["aggregations"]["totals"]["messages"] == 2 and bobs["userId"] == api.bob_id
    assert [x["messageId"] for x in bobs["metrics"]["quality"]] == ["bob-1"]


def test_rating_another_users_reply_is_404_and_writes_nothing(api) -> None:
    t = at("2025-11-03T10:00:00Z")
    write([row("bob-1", t, api.bob_id)])
    r = api.rate("bob-1", rating=5, comment="sneaky")
    assert r.status_code == 404 and r.json()["error"]["field"] == "message_id"
    q = {"startDate": "2025-11-03T00:00:00Z", "endDate": "2025-11-03T23:59:59Z"}
    assert api.data(who=api.bob, **q)["metrics"]["quality"] == []
    assert api.data(**q)["metrics"]["quality"] == []


# --- the rollup path agrees with the rows ---------------------------------------------------------------

def _generated(owner: str, n: int, start: float, span: float, seed: int = 7) -> list:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = start + rng.random() * span
        out.append(row(f"g{seed}-{i}", ts, owner, model=rng.choice(["model-a", "model-b"]),
                       job_id=rng.choice(["job-1", "job-2", None]), checkpoint=rng.choice(["ck-5", "ck-10", None]),
                       conversation_id=f"c{rng.randrange(60)}" if rng.random() < 0.9 else None,
                       input_tokens=rng.randrange(1, 500), output_tokens=rng.randrange(0, 300),
                       cost_micro=rng.randrange(0, 5000), success=rng.random() > 0.1,
                       error="timeout: slow" if rng.random() < 0.5 else "engine: crashed",
                       latency_ms=rng.lognormvariate(5, 0.8) if rng.random() < 0.95 else None,
                       ttft_ms=rng.lognormvariate(3, 0.6) if rng.random() < 0.8 else None))
    return out


def _close(a: float | None, b: float | None, rel: float) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= rel * abs(b) + 1e-9


QUERIES = [
    {"startDate": "2025-11-03T00:07:30Z", "endDate": "2025-11-06T17:52:10Z", "granularity": "day"},
    {"startDate": "2025-11-03T00:07:30.250Z", "endDate": "2025-11-06T17:52:10.750Z", "granularity": "day",
     "timezone": "Europe/Berlin"},  # mid-second edges
    {"startDate": "2025-11-03T00:15:00.250Z", "endDate": "2025-11-05T23:45:00.500Z", "granularity": "day"},
    # ^ a quarter of a second past a slot's start: the slot is split, not wholly inside
    {"startDate": "2025-11-03T00:00:00Z", "endDate": "2025-11-07T00:00:00Z", "granularity": "hour",
     "timezone": "Asia/Kolkata"},
    {"startDate": "2025-11-01T00:00:00-04:00", "endDate": "2025-11-06T23:59:59-05:00", "granularity": "day",
     "timezone": "America/New_York"},  # November 2nd there has 25 hours: days of unequal length
    {"startDate": "2025-11-02T00:00:00-04:00", "endDate": "2025-11-03T12:00:00Z", "granularity": "hour",
     "timezone": "America/New_York"},
    {"startDate": "2025-11-02T22:14:59Z", "endDate": "2025-11-07T03:00:01Z", "granularity": "week"},
    {"startDate": "2025-10-20T00:00:00Z", "endDate": "2025-12-01T00:00:00Z", "granularity": "month",
     "timezone": "Asia/Kathmandu"},
    {"startDate": "2025-11-03T05:00:00Z", "endDate": "2025-11-05T05:00:00Z", "granularity": "all"},
    {"startDate": "2025-11-03T05:00:00Z", "endDate": "2025-11-05T05:00:00Z", "granularity": "day",
     "model": "model-a"},
    {"startDate": "2025-11-03T05:00:00Z", "endDate": "2025-11-05T05:00:00Z", "granularity": "day",
     "job_id": "job-2"},
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q['granularity']}-{q.get('timezone', 'UTC')}"
                         f"-{q.get('model', q.get('job_id', 'all'))}")
def test_the_rollup_path_agrees_with_the_exact_path(api, monkeypatch, query) -> None:
    me = api.alice_id
    start = at("2025-11-03T00:00:00Z")
    items = _generated(me, 1500, start, 4 * DAY)
    # rows just around the query's edges, where a slot is split between inside and outside
    for k, edge in enumerate((query["startDate"], query["endDate"])):
        e = at(edge)
        for j, dt in enumerate((-0.3, -0.001, 0.0, 0.001, 0.3, 899.9)):
            items.append(row(f"edge{k}-{j}", e + dt, me, input_tokens=1000 + j, conversation_id=f"edge{k}{j}",
                             latency_ms=100.0, model="model-a", job_id="job-2", cost_micro=7))
    write(items)
    write(_generated(api.bob_id, 200, start, 4 * DAY, seed=8))  # another owner's rows, in the same slots

    exact = api.data(**query)
    assert exact["percentiles"] == "exact"
    monkeypatch.setattr(data, "EXACT_ROWS", 10)
    rolled = api.data(**query)
    if not (query.get("model") or query.get("job_id")):  # a filtered range may read its rows either way
        assert rolled["percentiles"].startswith("histogram")

    for key in ("tokenUsage", "conversations", "errors"):
        assert rolled["metrics"][key] == exact["metrics"][key], key
    assert rolled["aggregations"]["totals"] == exact["aggregations"]["totals"]
    assert exact["aggregations"]["totals"]["messages"] > 0
    for r, e in zip([*rolled["metrics"]["latency"], rolled["aggregations"]["averages"]],
                    [*exact["metrics"]["latency"], exact["aggregations"]["averages"]], strict=True):
        for k, v in e.items():
            if k == "timestamp" or k == "requests":
                assert r[k] == v
            elif k in ("avgMs", "ttftAvgMs", "latencyMs", "ttftMs"):
                assert _close(r[k], v, 1e-6), (k, r[k], v)  # sums: exact but for float rounding
            elif "P" in k or k.startswith("p"):
                assert _close(r[k], v, 0.12), (k, r[k], v)  # from the histograms: within ±12%
            else:
                assert r[k] == v, k


def test_rollup_percentiles_stay_within_12_percent_on_repeated_values(api, monkeypatch) -> None:
    """A constant latency (a cached reply) near a histogram bin's lower edge: the worst case for a bin read."""
    me = api.alice_id
    t0 = at("2025-11-03T00:00:00Z")
    write([row(f"r{i}", t0 + i * 7.0, me, latency_ms=87.0, ttft_ms=1.26) for i in range(300)])
    monkeypatch.setattr(data, "EXACT_ROWS", 10)
    d = api.data(startDate="2025-11-03T00:00:00Z", endDate="2025-11-03T23:59:59Z", metrics="latency")
    assert d["percentiles"].startswith("histogram")
    for key in ("p50Ms", "p95Ms", "p99Ms"):
        assert _close(d["metrics"]["latency"][0][key], 87.0, 0.12), (key, d["metrics"]["latency"][0][key])
    assert _close(d["metrics"]["latency"][0]["ttftP95Ms"], 1.26, 0.12)


# --- a usage database from before the analytics ---------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE usage (
    id TEXT PRIMARY KEY, ts REAL NOT NULL, owner TEXT NOT NULL, deployment_id TEXT NOT NULL, model TEXT NOT NULL,
    provider TEXT NOT NULL, base_model TEXT, job_id TEXT, checkpoint TEXT, conversation_id TEXT, route TEXT NOT NULL,
    stream INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL, ttft_ms REAL, success INTEGER NOT NULL, error TEXT, cost_micro INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE usage_messages (
    message_id TEXT NOT NULL, ts REAL NOT NULL, owner TEXT NOT NULL, conversation_id TEXT, role TEXT NOT NULL,
    content TEXT NOT NULL
);
"""


def test_a_database_from_before_the_rollups_is_migrated_and_its_rows_count_on_the_rollup_path(api, monkeypatch) -> None:
    """The deployment area's usage rows predate the rollups, end users, tiers and message scores."""
    import sqlite3

    folder = api.home / "usage"
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "usage.sqlite3")
    db.executescript(OLD_SCHEMA)
    rng = random.Random(3)
    t0 = at("2025-11-03T00:00:00Z")
    old = [(f"old{i}", t0 + rng.random() * DAY, api.alice_id, "dep-1", "model-a", "local", None, "job-1", None,
            f"c{i % 17}", "chat", 0, rng.randrange(100), rng.randrange(100), rng.uniform(20, 2000), None,
            int(i % 9 != 0), None if i % 9 else "timeout: x", rng.randrange(1000)) for i in range(300)]
    db.executemany(f"INSERT INTO usage VALUES ({','.join('?' * 19)})", old)
    db.execute("INSERT INTO usage_messages VALUES ('old0', ?, ?, 'c0', 'user', 'Thanks, that works.')",
               (t0, api.alice_id))
    db.commit()
    db.close()

    q = {"startDate": "2025-11-03T00:00:00Z", "endDate": "2025-11-03T23:59:59Z", "granularity": "hour"}
    exact = api.data(**q)
    assert exact["aggregations"]["totals"]["messages"] == 300
    assert exact["aggregations"]["totals"]["inputTokens"] == sum(r[12] for r in old)
    monkeypatch.setattr(data, "EXACT_ROWS", 10)
    rolled = api.data(**q)
    assert rolled["percentiles"].startswith("histogram")
    assert rolled["aggregations"]["totals"] == exact["aggregations"]["totals"]
    assert rolled["metrics"]["tokenUsage"] == exact["metrics"]["tokenUsage"]
    assert rolled["metrics"]["conversations"] == exact["metrics"]["conversations"]
    assert _close(rolled["aggregations"]["averages"]["latencyP95Ms"], exact["aggregations"]["averages"]["latencyP95Ms"],
                  0.12)

    # the new columns work on the old tables: end users, tiers, messages and their scores
    write([row("new1", t0 + 10, api.alice_id, end_user="ann", tier="pro", messages=[("user", "This is awful.")])])
    r = api.client.get("/api/analytics/sentiment/insights", headers=api.alice)
    assert r.status_code == 200, r.text
    write([row("new2", t0 + 20, api.alice_id, end_user="ann", messages=[("user", "Better now.")])])
    c = api.client.post("/api/analytics/cohorts", headers=api.alice,
                        json={"name": "pro", "cohort_type": "subscription", "criteria": {"tiers": ["pro"]}})
    assert c.json()["cohort"]["member_count"] == 1


def test_series_give_quality_per_bucket_of_the_replies_and_a_per_tool_summary(api) -> None:
    me = api.alice_id
    write([row("d1a", "2025-11-03T10:00:00Z", me), row("d1b", "2025-11-03T11:00:00Z", me),
           row("d2a", "2025-11-04T10:00:00Z", me), row("d3a", "2025-11-05T10:00:00Z", me)])
    api.rate("d1a", rating=5, success=True)
    api.rate("d1b", rating=2, success=False)
    api.rate("d2a", rating=4)
    d = api.data(startDate="2025-11-03T00:00:00Z", endDate="2025-11-05T23:59:59Z")
    assert d["series"]["quality"] == [
        {"timestamp": "2025-11-03T00:00:00Z", "evaluations": 2, "rating": 3.5, "successRate": 50.0},
        {"timestamp": "2025-11-04T00:00:00Z", "evaluations": 1, "rating": 4.0, "successRate": None},
        {"timestamp": "2025-11-05T00:00:00Z", "evaluations": 0, "rating": None, "successRate": None}]
    assert d["series"]["tools"] == []
