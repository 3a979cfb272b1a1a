"""Quality feedback on replies, the export of a range's records, and usage joined back to training:
the per-model, per-job and per-checkpoint comparison."""

from __future__ import annotations

import csv
import io
import json

import pytest

from workbench.analytics.export import COLUMNS

from .usage_rows import at, row, write

RANGE = {"startDate": "2025-11-03T00:00:00Z", "endDate": "2025-11-03T23:59:59Z"}


# --- feedback -----------------------------------------------------------------------------------------

def test_a_verdict_is_stored_with_the_replys_training_origin_and_the_comments_sentiment(api) -> None:
    write([row("chatcmpl-9", "2025-11-03T10:00:00Z", api.alice_id, conversation_id="c9", model="support-bot",
               job_id="job-7", checkpoint="checkpoint-20")])
    r = api.rate("chatcmpl-9", rating=1, success=False, comment="This answer is wrong and rude.")
    assert r.status_code == 200, r.text
    out = r.json()
    assert {k: out[k] for k in ("message_id", "rating", "success", "conversation_id", "model", "job_id",
                                "checkpoint")} == {
        "message_id": "chatcmpl-9", "rating": 1, "success": False, "conversation_id": "c9", "model": "support-bot",
        "job_id": "job-7", "checkpoint": "checkpoint-20"}
    assert out["sentiment"] <= -0.05 and out["comment"] == "This answer is wrong and rude."


@pytest.mark.parametrize(("body", "field"), [
    ({"rating": 0}, "rating"),
    ({"rating": 6}, "rating"),
    ({"rating": 3.5}, "rating"),
    ({"rating": "good"}, "rating"),
    ({"success": "maybe"}, "success"),
    ({}, None),  # neither a rating nor a verdict
    ({"comment": "no verdict, only words"}, None),
    ({"rating": 4, "coment": "a typo"}, "coment"),  # an unknown field is refused, not dropped
    ({"rating": 4, "comment": "x" * 5001}, "comment"),
])
def test_feedback_needs_a_rating_of_1_to_5_or_a_verdict(api, body, field) -> None:
    write([row("m1", "2025-11-03T10:00:00Z", api.alice_id)])
    r = api.client.post("/api/analytics/feedback", headers=api.alice, json={"message_id": "m1", **body})
    assert r.status_code == 422, r.text
    if field:
        assert r.json()["error"]["field"] == field
    assert api.data(**RANGE)["metrics"]["quality"] == []  # nothing written


def test_feedback_on_an_unknown_reply_is_404(api) -> None:
    r = api.rate("chatcmpl-never", rating=5)
    assert r.status_code == 404 and r.json()["error"]["field"] == "message_id"
    assert api.client.post("/api/analytics/feedback", json={"message_id": "x", "rating": 5}).status_code == 401


def test_either_a_rating_or_a_verdict_is_enough(api) -> None:
    write([row("m1", "2025-11-03T10:00:00Z", api.alice_id), row("m2", "2025-11-03T10:01:00Z", api.alice_id)])
    assert api.rate("m1", rating=5).json()["success"] is None
    assert api.rate("m2", success=True).json()["rating"] is None
    q = api.data(**RANGE)["aggregations"]
    assert q["totals"]["evaluations"] == 2 and q["averages"]["rating"] == 5.0 and q["averages"]["successRate"] == 100.0


def test_rating_a_reply_again_replaces_the_earlier_verdict(api) -> None:
    write([row("m1", "2025-11-03T10:00:00Z", api.alice_id)])
    api.rate("m1", rating=1, success=False, comment="bad")
    api.rate("m1", rating=5, comment="on reflection, great")
    d = api.data(**RANGE)
    assert [(q["rating"], q["successStatus"], q["comment"]) for q in d["metrics"]["quality"]] == \
        [(5, None, "on reflection, great")]
    assert d["aggregations"]["totals"]["evaluations"] == 1 and d["aggregations"]["averages"]["rating"] == 5.0
    assert d["aggregations"]["averages"]["successRate"] is None  # the earlier failure is gone with it


def test_two_users_rating_their_own_replies_do_not_overwrite_each_other(api) -> None:
    write([row("a1", "2025-11-03T10:00:00Z", api.alice_id), row("b1", "2025-11-03T10:00:00Z", api.bob_id)])
    api.rate("a1", rating=2)
    api.rate("b1", who=api.bob, rating=4)
    assert api.data(**RANGE)["aggregations"]["averages"]["rating"] == 2.0
    assert api.data(who=api.bob, **RANGE)["aggregations"]["averages"]["rating"] == 4.0


# --- export ---------------------------------------------------------------------------------------------

@pytest.fixture
def exported(api):
    me = api.alice_id
    write([
        row("e0", "2025-11-02T23:59:59Z", me),  # before the range
        row("e1", "2025-11-03T00:00:00Z", me, model="model-a", job_id="job-1", checkpoint="ck-5", conversation_id="c1",
            end_user="ann", tier="pro", input_tokens=12, output_tokens=30, latency_ms=123.5, ttft_ms=20.0,
            cost_micro=4200, stream=True),
        row("e2", "2025-11-03T12:00:00Z", me, success=False, error="timeout: slow", conversation_id="c1"),
        row("e3", "2025-11-03T23:59:59Z", me, route="completion"),  # the inclusive end
        row("e4", "2025-11-04T00:00:00Z", me),  # after
        row("bob", "2025-11-03T12:00:00Z", api.bob_id),
    ])
    api.rate("e1", rating=4, success=True, comment="Nice, helpful answer")
    api.rate("bob", who=api.bob, rating=1)
    return api


def test_csv_export_has_every_record_of_the_range_with_its_feedback(exported) -> None:
    api = exported
    r = api.client.get("/api/analytics/export", headers=api.alice, params={**RANGE, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="usage-2025-11-03-2025-11-03.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == list(COLUMNS)
    assert [x["id"] for x in rows] == ["e1", "e2", "e3"]
    e1 = rows[0]
    assert (e1["model"], e1["job_id"], e1["checkpoint"], e1["conversation_id"], e1["end_user"], e1["tier"]) == \
        ("model-a", "job-1", "ck-5", "c1", "ann", "pro")
    assert (e1["input_tokens"], e1["output_tokens"], e1["latency_ms"], e1["cost_micro"]) == ("12", "30", "123.5", "4200")
    assert float(e1["ts"]) == at("2025-11-03T00:00:00Z") and e1["owner"] == api.alice_id
    assert (e1["rating"], e1["feedback_success"], e1["comment"]) == ("4", "1", "Nice, helpful answer")
    assert float(e1["sentiment"]) > 0.05
    assert rows[1]["error"] == "timeout: slow" and rows[1]["rating"] == "" and rows[2]["route"] == "completion"


def test_jsonl_export_is_one_json_object_per_record(exported) -> None:
    api = exported
    r = api.client.get("/api/analytics/export", headers=api.alice, params={**RANGE, "format": "jsonl"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["id"] for x in lines] == ["e1", "e2", "e3"] and all(set(x) == set(COLUMNS) for x in lines)
    assert lines[0]["rating"] == 4 and lines[0]["comment"] == "Nice, helpful answer" and lines[0]["latency_ms"] == 123.5
    assert lines[1]["rating"] is None and lines[1]["success"] in (0, False)


def test_bobs_export_holds_only_bobs_rows(exported) -> None:
    api = exported
    r = api.client.get("/api/analytics/export", headers=api.bob, params={**RANGE, "format": "jsonl"})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [(x["id"], x["rating"]) for x in lines] == [("bob", 1)]


def test_a_large_export_streams_every_row(api) -> None:
    t = at("2025-11-03T00:00:00Z")
    write([row(f"r{i:05d}", t + i, api.alice_id, input_tokens=i) for i in range(4500)])  # more than 2 chunks
    r = api.client.get("/api/analytics/export", headers=api.alice, params={**RANGE, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 4500 and sum(int(x["input_tokens"]) for x in rows) == sum(range(4500))


@pytest.mark.parametrize(("params", "status", "field"), [
    ({**RANGE, "format": "xml"}, 422, "format"),
    ({"startDate": "soon", "endDate": RANGE["endDate"]}, 400, "startDate"),
    ({"startDate": RANGE["startDate"], "endDate": "2025-13-01"}, 400, "endDate"),
    ({"startDate": RANGE["endDate"], "endDate": RANGE["startDate"]}, 422, "endDate"),
])
def test_a_bad_export_request_is_refused_before_any_byte(api, params, status, field) -> None:
    r = api.client.get("/api/analytics/export", headers=api.alice, params=params)
    assert r.status_code == status and r.json()["error"]["field"] == field


# --- the comparison per model, job and checkpoint ---------------------------------------------------------

def test_models_compares_quality_cost_and_latency_per_job_and_checkpoint(api) -> None:
    me = api.alice_id
    ck5 = {"model": "tuned", "job_id": "job-1", "checkpoint": "checkpoint-5"}
    ck10 = {"model": "tuned", "job_id": "job-1", "checkpoint": "checkpoint-10"}
    write([
        row("a", "2025-11-03T01:00:00Z", me, latency_ms=100.0, input_tokens=10, output_tokens=10, cost_micro=250_000, **ck5),
        row("b", "2025-11-03T02:00:00Z", me, latency_ms=300.0, input_tokens=10, output_tokens=30, cost_micro=250_000,
            success=False, error="timeout", **ck5),
        row("c", "2025-11-03T03:00:00Z", me, latency_ms=50.0, input_tokens=5, output_tokens=5, cost_micro=100_000, **ck10),
        row("d", "2025-11-03T04:00:00Z", me, latency_ms=70.0, input_tokens=5, output_tokens=5, cost_micro=100_000, **ck10),
        row("e", "2025-11-03T05:00:00Z", me, latency_ms=90.0, input_tokens=5, output_tokens=5, cost_micro=100_000, **ck10),
        row("f", "2025-11-03T06:00:00Z", me, model="base-model", latency_ms=500.0),
        row("g", "2025-11-04T06:00:00Z", me, latency_ms=9999.0, **ck10),  # outside the range
        row("h", "2025-11-03T06:00:00Z", api.bob_id, latency_ms=9999.0, **ck10),  # bob's
    ])
    api.rate("a", rating=2, success=False)
    api.rate("c", rating=5, success=True)
    api.rate("d", rating=4)
    api.rate("g", rating=1)
    r = api.client.get("/api/analytics/models", headers=api.alice, params=RANGE)
    assert r.status_code == 200, r.text
    rows = {(m["modelId"], m["jobId"], m["checkpoint"]): m for m in r.json()["models"]}
    assert set(rows) == {("tuned", "job-1", "checkpoint-5"), ("tuned", "job-1", "checkpoint-10"),
                         ("base-model", None, None)}
    five, ten, base = rows["tuned", "job-1", "checkpoint-5"], rows["tuned", "job-1", "checkpoint-10"], \
        rows["base-model", None, None]
    assert {k: five[k] for k in ("requests", "errorRate", "tokens", "cost", "costPerMessage", "latencyP50Ms",
                                 "latencyP95Ms", "evaluations", "rating", "successRate")} == {
        "requests": 2, "errorRate": 50.0, "tokens": 60, "cost": 0.5, "costPerMessage": 0.25, "latencyP50Ms": 200.0,
        "latencyP95Ms": 290.0, "evaluations": 1, "rating": 2.0, "successRate": 0.0}
    assert {k: ten[k] for k in ("requests", "errorRate", "tokens", "cost", "latencyP50Ms", "evaluations", "rating",
                                "successRate")} == {
        "requests": 3, "errorRate": 0.0, "tokens": 30, "cost": 0.3, "latencyP50Ms": 70.0, "evaluations": 2,
        "rating": 4.5, "successRate": 100.0}
    assert ten["costPerMessage"] == pytest.approx(0.1)
    assert base["requests"] == 1 and base["evaluations"] == 0 and base["rating"] is None

    r = api.client.get("/api/analytics/models", headers=api.alice, params={"startDate": "x", "endDate": "y"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "startDate"


def test_the_data_endpoint_filtered_by_job_agrees_with_the_comparison(api) -> None:
    me = api.alice_id
    write([row(f"r{i}", at("2025-11-03T01:00:00Z") + i * 60, me, model="tuned", job_id=f"job-{i % 2}",
               input_tokens=i, latency_ms=10.0 * (i + 1)) for i in range(10)])
    for i in range(0, 10, 3):
        api.rate(f"r{i}", rating=1 + i % 5)
    models = {m["jobId"]: m for m in api.client.get("/api/analytics/models", headers=api.alice,
                                                      params=RANGE).json()["models"]}
    for job in ("job-0", "job-1"):
        agg = api.data(**RANGE, job_id=job)["aggregations"]
        assert agg["totals"]["messages"] == models[job]["requests"]
        assert agg["totals"]["tokens"] == models[job]["tokens"]
        assert agg["totals"]["evaluations"] == models[job]["evaluations"]
        assert agg["averages"]["rating"] == models[job]["rating"]
        assert agg["averages"]["latencyP50Ms"] == models[job]["latencyP50Ms"]
