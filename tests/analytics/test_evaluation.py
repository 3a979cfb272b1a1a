"""The assistant's tools as plain functions over the data: ``evaluation_metrics``' 13 operations on rows
whose answers are worked out by hand, the exact calculator that never evals, and the other tools.

Definitions under test (``workbench.analytics.evaluation``): a reply succeeded when its feedback says
success or rates it >= 4, failed on failure or a rating <= 2, and has no verdict otherwise (a 3).
"""

from __future__ import annotations

import os
import statistics

import pytest

from workbench.analytics import evaluation, records, tools
from workbench.analytics.calculator import calculate
from workbench.analytics.records import Feedback
from workbench.errors import InvalidInput

from .usage_rows import at, row, write

OWNER = "user-core"
DAY1 = {"startDate": "2025-11-03T00:00:00Z", "endDate": "2025-11-03T23:59:59Z"}  # a Monday
DAY2 = {"startDate": "2025-11-04T00:00:00Z", "endDate": "2025-11-04T23:59:59Z"}
BOTH = {"startDate": "2025-11-03T00:00:00Z", "endDate": "2025-11-04T23:59:59Z"}

POSITIVE_MSG = "I love this, thank you so much!"
NEGATIVE_MSG = "This is terrible and broken."
NEUTRAL_MSG = "What is the capital of France?"
GOOD_COMMENT = "Excellent answer, very helpful"
BAD_COMMENT = "Wrong and useless answer"


def rate(message_id: str, owner: str = OWNER, **fields) -> None:
    records.add_feedback(Feedback(message_id=message_id, **fields), owner)


@pytest.fixture
def seven(owner_home: str) -> str:
    """Seven replies over two days; the figures of each operation below follow from this table.

    ====  =======  ================  ======  ====  =======  ====  ===================================
    id    model    when (UTC)        tokens  cost  latency  conv  outcome / feedback
    ====  =======  ================  ======  ====  =======  ====  ===================================
    m1    model-a  Mon 03 09:00      100+50  1000  100      c1    rating 5, success, GOOD_COMMENT
    m2    model-a  Mon 03 09:30      10+10   500   300      c1    rating 2 (failed), BAD_COMMENT
    m3    model-b  Mon 03 14:00      20+20   0     200      c2    error "timeout: engine"
    m4    model-b  Mon 03 14:10      0       0     400      c2    failure
    m5    model-a  Mon 03 14:20      0       0     500      c3    rating 3 (no verdict)
    m6    model-a  Tue 04 14:00      0       0     1000     -     rating 4 (succeeded)
    m7    model-b  Tue 04 15:00      0       0     -        c4    error "timeout: slow"
    ====  =======  ================  ======  ====  =======  ====  ===================================
    """
    a = {"model": "model-a", "job_id": "job-1", "checkpoint": "checkpoint-10"}
    b = {"model": "model-b"}
    write([
        row("m1", "2025-11-03T09:00:00Z", OWNER, input_tokens=100, output_tokens=50, cost_micro=1000, latency_ms=100.0,
            conversation_id="c1", messages=[("user", POSITIVE_MSG), ("assistant", "You are welcome.")], **a),
        row("m2", "2025-11-03T09:30:00Z", OWNER, input_tokens=10, output_tokens=10, cost_micro=500, latency_ms=300.0,
            conversation_id="c1", **a),
        row("m3", "2025-11-03T14:00:00Z", OWNER, input_tokens=20, output_tokens=20, latency_ms=200.0, conversation_id="c2",
            success=False, error="timeout: engine", messages=[("user", NEGATIVE_MSG)], **b),
        row("m4", "2025-11-03T14:10:00Z", OWNER, latency_ms=400.0, conversation_id="c2", **b),
        row("m5", "2025-11-03T14:20:00Z", OWNER, latency_ms=500.0, conversation_id="c3",
            messages=[("user", NEUTRAL_MSG)], **a),
        row("m6", "2025-11-04T14:00:00Z", OWNER, latency_ms=1000.0, **a),
        row("m7", "2025-11-04T15:00:00Z", OWNER, conversation_id="c4", success=False, error="timeout: slow", **b),
        row("other", "2025-11-03T09:00:00Z", "user-else", input_tokens=9999, conversation_id="c1",
            success=False, error="boom: other user", messages=[("user", NEGATIVE_MSG)]),
    ])
    rate("m1", rating=5, success=True, comment=GOOD_COMMENT)
    rate("m2", rating=2, comment=BAD_COMMENT)
    rate("m4", success=False)
    rate("m5", rating=3)
    rate("m6", rating=4)
    rate("other", "user-else", rating=1, comment="awful awful awful")
    return OWNER


def op(name: str, owner: str = OWNER, **args) -> dict:
    out = evaluation.run(owner, {"operation": name, **args})
    assert out["operation"] == name
    return out


def test_thirteen_operations_are_offered() -> None:
    assert len(evaluation.OPERATIONS) == 13 == len(set(evaluation.OPERATIONS))
    spec = dict(tools.TOOLS)["evaluation_metrics"][1]
    assert spec["parameters"]["properties"]["operation"]["enum"] == list(evaluation.OPERATIONS)


def test_get_metrics(seven) -> None:
    m = op("get_metrics", **BOTH)
    assert {k: m[k] for k in ("messages", "conversations", "tokens", "cost", "errors", "error_rate", "evaluations",
                              "success_rate", "rating", "latency_p50_ms", "latency_p95_ms")} == {
        "messages": 7, "conversations": 4, "tokens": 210, "cost": 0.0015, "errors": 2, "error_rate": 28.57,
        "evaluations": 4, "success_rate": 50.0, "rating": 3.5,
        "latency_p50_ms": 350.0,  # 100 200 300 400 500 1000: half way between 300 and 400
        "latency_p95_ms": 875.0}  # rank 4.75: 500 + 0.75 x 500


def test_quality_trends_are_per_utc_day(seven) -> None:
    days = op("quality_trends", **BOTH)["days"]
    assert days == [{"date": "2025-11-03", "messages": 5, "evaluations": 3, "success_rate": 33.33, "rating": 3.333},
                    {"date": "2025-11-04", "messages": 2, "evaluations": 1, "success_rate": 100.0, "rating": 4.0}]


def test_success_analysis_by_model(seven) -> None:
    s = op("success_analysis", **BOTH)
    assert (s["evaluated"], s["successes"], s["success_rate"]) == (4, 2, 50.0)
    assert s["by_model"] == {"model-a": 66.67, "model-b": 0.0}  # a: m1 yes, m2 no, m6 yes; b: m4 no


def test_compare_periods(seven) -> None:
    c = op("compare_periods", **DAY1, compare_startDate=DAY2["startDate"], compare_endDate=DAY2["endDate"])
    assert c["period"]["messages"] == 5 and c["compared_to"]["messages"] == 2
    assert c["change"]["messages"] == 3 and c["change"]["conversations"] == 2  # c1 c2 c3 against c4
    assert c["change"]["tokens"] == 210 and c["change"]["errors"] == 0
    assert c["change"]["success_rate"] == pytest.approx(33.33 - 100.0)


def test_model_comparison(seven) -> None:
    rows = {r["modelId"]: r for r in op("model_comparison", **BOTH)["models"]}
    a, b = rows["model-a"], rows["model-b"]
    assert (a["jobId"], a["checkpoint"], a["requests"], a["errorRate"], a["tokens"]) == \
        ("job-1", "checkpoint-10", 4, 0.0, 170)
    assert a["evaluations"] == 4 and a["rating"] == 3.5 and a["successRate"] == 100.0  # m1's success verdict
    assert a["latencyP50Ms"] == 400.0  # 100 300 500 1000
    assert (b["jobId"], b["requests"], b["errorRate"], b["evaluations"], b["successRate"]) == (None, 3, 66.67, 1, 0.0)


def test_tool_impact_analysis(owner_home) -> None:
    for ms, ok in ((10.0, True), (20.0, True), (30.0, False)):
        records.record_tool_call(OWNER, "calculator", ms, ok, None if ok else "bad expression")
    records.record_tool_call(OWNER, "datetime", 5.0, True)
    records.record_tool_call("user-else", "datetime", 99.0, False)
    t = op("tool_impact_analysis")["tools"]  # the default range: the last 30 days
    assert t == {"calculator": {"calls": 3, "success_rate": 66.67, "avg_ms": 20.0},
                 "datetime": {"calls": 1, "success_rate": 100.0, "avg_ms": 5.0}}


def test_error_analysis(seven) -> None:
    e = op("error_analysis", **BOTH)
    assert e["errors"] == 2 and e["error_rate"] == 28.57
    assert e["by_type"] == {"timeout": 2} and e["by_model"] == {"model-b": 2}


def test_temporal_analysis(seven) -> None:
    t = op("temporal_analysis", **BOTH)
    assert t["by_hour_utc"] == {9: 2, 14: 4, 15: 1} and t["busiest_hour_utc"] == 14
    assert t["by_weekday"] == {"Monday": 5, "Tuesday": 2}


def test_textual_feedback_analysis(seven) -> None:
    t = op("textual_feedback_analysis", **BOTH)
    assert t["comments"] == 2 and t["sentiment"] == {"positive": 1, "negative": 1}
    assert t["top_words"]["answer"] == 2
    assert set(t["top_words"]) == {"answer", "excellent", "helpful", "wrong", "useless"}  # stop words dropped


def test_benchmark_analysis(seven) -> None:
    b = op("benchmark_analysis", **BOTH)["benchmarks"]
    assert b["success_rate"] == {"value": 50.0, "target": 90.0, "meets": False}
    assert b["rating"] == {"value": 3.5, "target": 4.0, "meets": False}
    assert b["error_rate"] == {"value": 28.57, "target": 2.0, "meets": False}
    assert b["latency_p95_ms"] == {"value": 875.0, "target": 2000.0, "meets": True}


def test_advanced_sentiment_analysis_scores_user_messages_and_comments(seven) -> None:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    texts = [POSITIVE_MSG, NEGATIVE_MSG, NEUTRAL_MSG, GOOD_COMMENT, BAD_COMMENT]  # not the assistant's reply
    scores = [vader.polarity_scores(t)["compound"] for t in texts]
    assert [s >= 0.05 for s in scores] == [True, False, False, True, False]  # the texts are what they say
    s = op("advanced_sentiment_analysis", **BOTH)
    assert s["scored"] == 5 and s["mean"] == round(statistics.fmean(scores), 4)
    assert s["shares"] == {"positive": 40.0, "neutral": 20.0, "negative": 40.0}


def _daily_verdicts(owner: str, successes: list[int], ratings: list[int], per_day: int = 10) -> None:
    items, verdicts = [], []
    for d, (k, r) in enumerate(zip(successes, ratings, strict=True)):
        for i in range(per_day):
            mid = f"p{d}-{i}"
            items.append(row(mid, at("2025-11-03T10:00:00Z") + d * 86400 + i, owner))
            verdicts.append((mid, i < k, r))
    write(items)
    for mid, ok, r in verdicts:
        rate(mid, owner, success=ok, rating=r)


def test_predictive_quality_modeling_fits_a_line_and_holds_the_forecast_to_the_scale(owner_home) -> None:
    _daily_verdicts(OWNER, successes=[5, 6, 7, 8], ratings=[2, 3, 4, 5])  # 50 60 70 80%; ratings 2 3 4 5
    p = op("predictive_quality_modeling", startDate="2025-11-01T00:00:00Z", endDate="2025-11-10T00:00:00Z",
           horizon_days=1)
    assert p["days"] == 4 and p["horizon_days"] == 1
    assert p["success_rate"] == {"intercept": 50.0, "slope": 10.0, "r2": 1.0, "forecast": 90.0}  # 50 + 10 x (3+1)
    assert p["rating"]["slope"] == 1.0 and p["rating"]["r2"] == 1.0
    assert p["rating"]["forecast"] == 5.0  # the line says 6; ratings stop at 5
    far = op("predictive_quality_modeling", startDate="2025-11-01T00:00:00Z", endDate="2025-11-10T00:00:00Z",
             horizon_days=30)
    assert far["success_rate"]["forecast"] == 100.0
    with pytest.raises(InvalidInput) as err:
        op("predictive_quality_modeling", horizon_days="soon")
    assert err.value.field == "horizon_days"


def test_predictive_quality_modeling_needs_two_days(owner_home) -> None:
    _daily_verdicts(OWNER, successes=[5], ratings=[4])
    p = op("predictive_quality_modeling", startDate="2025-11-01T00:00:00Z", endDate="2025-11-10T00:00:00Z")
    assert p["days"] == 1 and p["success_rate"] is None and p["rating"] is None


def test_anomaly_detection_finds_the_busy_day(owner_home) -> None:
    counts = [10, 10, 10, 10, 10, 40, 10, 10, 10, 10]  # mean 13, sd 9: the 40 is z = +3, the others -0.33
    write([row(f"d{d}-{i}", at("2025-11-01T12:00:00Z") + d * 86400 + i, OWNER, latency_ms=100.0)
           for d, n in enumerate(counts) for i in range(n)])
    found = op("anomaly_detection", startDate="2025-11-01T00:00:00Z", endDate="2025-11-10T23:59:59Z")["anomalies"]
    assert found == [{"date": "2025-11-06", "metric": "requests", "value": 40, "mean": 13.0, "z": 3.0}]


def test_anomaly_detection_is_quiet_on_steady_days(owner_home) -> None:
    write([row(f"d{d}-{i}", at("2025-11-01T12:00:00Z") + d * 86400 + i, OWNER, latency_ms=100.0 + i)
           for d in range(10) for i in range(10 + d % 2)])
    assert op("anomaly_detection", startDate="2025-11-01T00:00:00Z", endDate="2025-11-10T23:59:59Z")["anomalies"] == []


def test_an_unknown_operation_or_bad_range_names_the_field(owner_home) -> None:
    with pytest.raises(InvalidInput) as err:
        evaluation.run(OWNER, {"operation": "astrology"})
    assert err.value.field == "operation"
    with pytest.raises(InvalidInput) as err:
        evaluation.run(OWNER, {"operation": "get_metrics", "startDate": "2025-11-05", "endDate": "2025-11-01"})
    assert err.value.field == "endDate"
    out = tools.call(OWNER, "evaluation_metrics", {"operation": "get_metrics", "startDate": "someday"})
    assert out["field"] == "startDate" and "ISO 8601" in out["error"]


# --- the calculator ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "result", "fraction"), [
    ("1/3*3", "1", None),
    ("1/3 + 1/6", "0.5", "1/2"),
    ("0.1 + 0.2", "0.3", "3/10"),  # not 0.30000000000000004
    ("2**10", "1024", None),
    ("2^10", "1024", None),
    ("2**-2", "0.25", "1/4"),
    ("7 // 2 + 7 % 2", "4", None),
    ("-(3 - 5) * +4", "8", None),
    ("1/7", "0.1428571428571428571428571428571428571429", "1/7"),
    ("sqrt(9/4)", "1.5", "3/2"),
    ("abs(-2.5) + max(1, 2, 3) - min(4, 5)", "1.5", "3/2"),
    ("round(2/3, 3)", "0.667", "667/1000"),
    ("0.0123 * 3", "0.0369", "369/10000"),
    ("12345678901234567890 * 98765432109876543210", str(12345678901234567890 * 98765432109876543210), None),
])
def test_the_calculator_is_exact(expression, result, fraction) -> None:
    out = calculate(expression)
    assert out["result"] == result and out.get("fraction") == fraction and out["expression"] == expression


def test_sqrt_of_a_non_square_is_correct_to_forty_digits() -> None:
    from decimal import Decimal

    out = calculate("sqrt(2)")
    assert abs(Decimal(out["result"]) - Decimal("1.4142135623730950488016887242096980785696718753769")) < Decimal("1e-38")


@pytest.mark.parametrize("expression", [
    "__import__('os')",  # a call outside the list
    "__import__('os').system('true')",
    "open('/etc/passwd')",
    "x + 1",  # a name
    "(1).real",  # an attribute
    "[1, 2]",
    "'a' * 3",
    "lambda: 1",
    "1 if 1 else 2",
    "1 < 2",
    "True + 1",
    "1j * 2",
    "sqrt(x=4)",
    "min()",  # no argument
    "abs(1, 2)",
    "9**9**9",  # an exponent over the limit
    "(9**1000)**1000",  # a whole exponent, but a result of millions of digits
    "9**1000 * 9**1000 * 9**1000 * 9**1000 * 9**1000",
    "2**0.5",
    "round(1, 10**100)",  # 10**(10**100) would be built
    "1e400",  # inf
    "1/0",
    "0**-1",
    "5 % 0",
    "sqrt(-1)",
    "",
    "1 +",
    "1" * 501,
])
def test_the_calculator_refuses_what_is_not_bounded_arithmetic(expression) -> None:
    with pytest.raises(InvalidInput) as err:
        calculate(expression)
    assert err.value.field == "expression"


def test_the_calculator_never_evals(owner_home, tmp_path, monkeypatch) -> None:
    import builtins

    def no_eval(*args, **kwargs):
        raise AssertionError("eval was called")

    monkeypatch.setattr(builtins, "eval", no_eval)
    monkeypatch.setattr(builtins, "exec", no_eval)
    marker = tmp_path / "pwned"
    out = tools.call(OWNER, "calculator", {"expression": f"__import__('os').system('touch {marker}')"})
    assert "error" in out and not marker.exists()
    assert calculate("6*7")["result"] == "42"


def test_the_calculator_leaves_the_decimal_context_alone() -> None:
    import decimal

    before = decimal.getcontext().prec
    calculate("1/3")
    calculate("sqrt(2)")
    assert decimal.getcontext().prec == before


# --- the other tools ---------------------------------------------------------------------------------

def test_datetime_tool(owner_home) -> None:
    from datetime import datetime

    now = tools.call(OWNER, "datetime", {"operation": "now", "timezone": "Asia/Kolkata"})["now"]
    assert now.endswith("+05:30") and abs(datetime.fromisoformat(now).timestamp() - __import__("time").time()) < 60
    conv = tools.call(OWNER, "datetime", {"operation": "convert", "datetime": "2025-03-30T01:30:00Z",
                                          "to_timezone": "Europe/Berlin"})
    assert conv == {"datetime": "2025-03-30T03:30:00+02:00"}  # after the spring change
    add = tools.call(OWNER, "datetime", {"operation": "add", "datetime": "2025-11-03T10:00:00Z", "days": 1,
                                         "hours": 2, "minutes": 30})
    assert add == {"datetime": "2025-11-04T12:30:00+00:00"}
    diff = tools.call(OWNER, "datetime", {"operation": "diff", "datetime": "2025-11-03T00:00:00Z",
                                          "other": "2025-11-04T12:00:00Z"})
    assert diff == {"seconds": 129600.0, "hours": 36.0, "days": 1.5}
    assert tools.call(OWNER, "datetime", {"operation": "travel"})["field"] == "operation"
    assert tools.call(OWNER, "datetime", {"operation": "now", "timezone": "Nowhere/Land"})["field"] == "timezone"


def test_system_monitor_reports_this_machine(owner_home) -> None:
    out = tools.call(OWNER, "system_monitor", {})
    assert out["cpu_count"] == os.cpu_count() and 0 <= out["cpu_percent"] <= 100 * os.cpu_count()
    assert out["memory"]["total_gb"] > 0 and 0 < out["memory"]["used_percent"] <= 100
    assert out["disk"]["free_gb"] >= 0 and isinstance(out["gpus"], list)


def test_session_tools_read_only_the_callers_conversations(seven) -> None:
    m = tools.call(OWNER, "get_session_metrics", {"conversation_ids": ["c1", "c2", "nope"]})
    sessions = {s["conversation_id"]: s for s in m["sessions"]}
    assert set(sessions) == {"c1", "c2"}  # the other user's c1 is not counted
    assert sessions["c1"] == {"conversation_id": "c1", "messages": 2, "input_tokens": 110, "output_tokens": 60,
                              "avg_latency_ms": 200.0, "errors": 0, "cost": 0.0015}
    assert sessions["c2"]["messages"] == 2 and sessions["c2"]["errors"] == 1 and sessions["c2"]["cost"] == 0.0

    e = tools.call(OWNER, "get_session_evaluations", {"conversation_ids": ["c1"]})["evaluations"]
    assert sorted((x["message_id"], x["rating"], x["comment"]) for x in e) == \
        [("m1", 5, GOOD_COMMENT), ("m2", 2, BAD_COMMENT)]

    c = tools.call(OWNER, "get_session_conversations", {"conversation_ids": ["c1", "c2"]})["conversations"]
    assert [(x["role"], x["content"]) for x in c["c1"]] == [("user", POSITIVE_MSG), ("assistant", "You are welcome.")]
    assert [x["content"] for x in c["c2"]] == [NEGATIVE_MSG]  # not the other user's message in their c1/c2
    assert tools.call(OWNER, "get_session_metrics", {"conversation_ids": []})["field"] == "conversation_ids"


def test_training_control_lists_the_callers_configs_and_datasets(owner_home) -> None:
    from workbench.configs import ConfigService
    from workbench.datasets import DatasetService

    cfg = ConfigService().create("my-sft", owner=OWNER)
    ConfigService().create("someone-elses", owner="user-else")
    ds = DatasetService().register_sample(owner=OWNER)
    assert tools.call(OWNER, "training_control", {"action": "list_configs"}) == \
        {"configs": [{"id": cfg["id"], "name": "my-sft"}]}
    datasets = tools.call(OWNER, "training_control", {"action": "list_datasets"})["datasets"]
    assert [d["id"] for d in datasets] == [ds["id"]]
    assert tools.call("user-else", "training_control", {"action": "list_datasets"}) == {"datasets": []}
    assert tools.call(OWNER, "training_control", {"action": "start_training"})["field"] == "dataset"
    assert tools.call(OWNER, "training_control", {"action": "format_disk"})["field"] == "action"


def test_every_tool_call_is_recorded_and_shows_in_the_tools_metric(api) -> None:
    h = api.alice
    ok = api.client.post("/api/analytics/tools/calculator", headers=h, json={"arguments": {"expression": "1/3*3"}})
    assert ok.status_code == 200 and ok.json() == {"tool": "calculator",
                                                   "result": {"expression": "1/3*3", "result": "1"}}
    bad = api.client.post("/api/analytics/tools/calculator", headers=h,
                          json={"arguments": {"expression": "__import__('os')"}})
    assert bad.status_code == 200 and bad.json()["result"]["field"] == "expression"
    assert api.client.post("/api/analytics/tools/datetime", headers=h,
                           json={"arguments": {"operation": "now"}}).status_code == 200
    assert api.client.post("/api/analytics/tools/teleport", headers=h, json={}).status_code == 404
    assert api.client.post("/api/analytics/tools/calculator", json={"arguments": {}}).status_code == 401
    api.client.post("/api/analytics/tools/datetime", headers=api.bob, json={"arguments": {"operation": "now"}})

    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    d = api.data(startDate=(now - timedelta(hours=1)).isoformat(), endDate=(now + timedelta(hours=1)).isoformat(),
                 metrics="tools", granularity="all")
    calls = d["metrics"]["tools"]
    assert [(c["toolName"], c["success"]) for c in calls] == [("calculator", True), ("calculator", False),
                                                              ("datetime", True)]
    assert calls[1]["error"] and all(c["executionTimeMs"] >= 0 for c in calls)
    assert d["aggregations"]["totals"]["toolCalls"] == 3  # not bob's
