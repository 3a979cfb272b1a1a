"""``GET /api/analytics/sentiment/insights``: anomalies reported with their statistics, nothing from noise.

The statistics (``workbench.analytics.insights``): the mean VADER score of the last 3 days' user messages
against the earlier days, as ``z = (mean_recent - mean_base) / (sd_base / sqrt(n_recent))``, reported at
``z <= -2`` (``medium``) and ``z <= -3`` (``high``); the share of negative (or positive) verdicts this
week against last week, a pooled two-proportion z-test, reported at ``|z| >= 2``; at least 5 points a side.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from workbench.analytics import insights, records
from workbench.analytics.records import Feedback

from .usage_rows import row, write

DAY = 86400.0
LOVE = "I love it, great work, thanks!"
THANKS = "Thanks, that works."
WRONG = "That is wrong."
HMM = "Hmm, not sure that is right."
AWFUL = "This is awful and broken, I hate it"
_vader = SentimentIntensityAnalyzer()


def vader(text: str) -> float:
    return _vader.polarity_scores(text)["compound"]


def get(api, who=None, **params):
    return api.client.get("/api/analytics/sentiment/insights", headers=who or api.alice, params=params)


def messages(owner: str, texts_and_ages: list[tuple[str, float, str]], prefix: str) -> None:
    """User messages (with an assistant reply each), ``age`` days before now, in conversation ``conv``."""
    now = time.time()
    write([row(f"{prefix}{i}", now - age * DAY, owner, conversation_id=conv,
               messages=[("user", text), ("assistant", "Here is what I found, thanks for asking!")])
           for i, (text, age, conv) in enumerate(texts_and_ages)])


@contextmanager
def clock(monkeypatch: pytest.MonkeyPatch, ts: float):
    """Feedback is stamped with the time it is given: give it at ``ts``."""
    with monkeypatch.context() as m:
        m.setattr(records.time, "time", lambda: ts)
        yield


def verdicts(monkeypatch, owner: str, items: list[tuple[float, dict, str]], prefix: str) -> None:
    """Replies, each rated ``age`` days ago with ``fields``, in conversation ``conv``."""
    now = time.time()
    write([row(f"{prefix}{i}", now - age * DAY, owner, conversation_id=conv) for i, (age, _, conv) in enumerate(items)])
    for i, (age, fields, _) in enumerate(items):
        with clock(monkeypatch, now - age * DAY):
            records.add_feedback(Feedback(message_id=f"{prefix}{i}", **fields), owner)


def test_a_sudden_sentiment_drop_is_a_high_anomaly_naming_the_conversations(api) -> None:
    base = [(LOVE if i % 2 else THANKS, 4 + i, f"old{i}") for i in range(12)]
    recent = [(AWFUL, 0.5, "c1"), (AWFUL, 0.6, "c1"), (AWFUL, 1.0, "c2"), (AWFUL, 1.5, "c3"), (AWFUL, 2.0, "c4"),
              (AWFUL, 2.5, "c4")]
    messages(api.alice_id, base + recent, "m")
    r = get(api, lookback_days=30)
    assert r.status_code == 200, r.text
    body = r.json()
    drops = [i for i in body["insights"] if i["title"] == "Sudden Sentiment Drop Detected"]
    assert len(drops) == 1
    d = drops[0]
    assert d["type"] == "anomaly" and d["severity"] == "high" and d["affectedConversations"] == 4
    assert d["recommendation"] and d["detectedAt"].endswith("Z") and d["zScore"] <= -3
    assert body["lookbackDays"] == 30 and body["analyzed"]["messages"] == 18  # the user messages only
    assert "z-score" in body["method"]
    assert get(api, who=api.bob).json()["insights"] == []  # bob has no drop of alice's


def test_a_moderate_drop_is_medium_with_the_documented_z_score(api) -> None:
    base = [(LOVE if i % 2 else WRONG, 4 + i / 2, f"old{i}") for i in range(20)]
    recent = [(HMM, 0.2 + i / 10, f"new{i}") for i in range(12)]
    messages(api.alice_id, base + recent, "m")
    b = [vader(t) for t, _, _ in base]
    z = (vader(HMM) - statistics.fmean(b)) / (statistics.pstdev(b) / math.sqrt(len(recent)))
    assert -3 < z <= -2  # the data is built for the middle band
    d = next(i for i in get(api).json()["insights"] if i["title"] == "Sudden Sentiment Drop Detected")
    assert d["severity"] == "medium" and d["zScore"] == pytest.approx(z, abs=0.01)
    assert d["affectedConversations"] == 12  # HMM scores negative: every recent conversation


def test_rising_negative_feedback_is_a_trend(api, monkeypatch) -> None:
    last_week = [(8 + i * 0.5, {"rating": 1 if i == 0 else 5}, f"p{i}") for i in range(10)]  # 1 of 10 negative
    this_week = [(0.5 + i * 0.5, {"rating": 1} if i < 8 else {"rating": 5}, f"n{i % 5}") for i in range(10)]  # 8 of 10
    verdicts(monkeypatch, api.alice_id, last_week + this_week, "r")
    found = {i["title"]: i for i in get(api, lookback_days=30).json()["insights"]}
    t = found["Increasing Negative Feedback"]
    p = (1 + 8) / 20
    z = (0.8 - 0.1) / math.sqrt(p * (1 - p) * (1 / 10 + 1 / 10))  # 3.15
    assert t["type"] == "trend" and t["zScore"] == pytest.approx(z, abs=0.01) and t["severity"] == "high"
    assert t["affectedConversations"] == 5  # 8 negative replies in conversations n0..n4
    assert "10%" in t["description"] and "80%" in t["description"]
    assert found["Quality Drop Detected"]["type"] == "anomaly"  # the positive share fell with it
    assert "Quality Improvement Detected" not in found


def test_a_quality_improvement_is_positive(api, monkeypatch) -> None:
    last_week = [(8 + i * 0.5, {"success": i < 2}, f"p{i}") for i in range(10)]  # 2 of 10 succeeded
    this_week = [(0.5 + i * 0.5, {"success": i < 9}, f"c{i % 3}") for i in range(10)]  # 9 of 10
    verdicts(monkeypatch, api.alice_id, last_week + this_week, "r")
    found = {i["title"]: i for i in get(api).json()["insights"]}
    q = found["Quality Improvement Detected"]
    assert q["type"] == "positive" and q["severity"] == "low" and q["zScore"] >= 2
    assert q["affectedConversations"] == 3
    assert "20%" in q["description"] and "90%" in q["description"]
    assert "Increasing Negative Feedback" not in found  # the negative share fell


def test_stationary_noise_reports_nothing(api, monkeypatch) -> None:
    texts = [LOVE, WRONG, THANKS, HMM, AWFUL, "ok"]
    messages(api.alice_id, [(texts[i % 6], i / 2, f"c{i % 7}") for i in range(60)], "m")  # every day alike
    week = [{"rating": 5}, {"rating": 1}, {"success": True}, {"rating": 4}, {"success": False}, {"rating": 3},
            {"rating": 5}, {"success": True}, {"rating": 2}, {"rating": 4}]
    verdicts(monkeypatch, api.alice_id, [(0.5 + i * 0.6, f, "x") for i, f in enumerate(week)] +
             [(7.5 + i * 0.6, f, "y") for i, f in enumerate(week)], "r")
    body = get(api).json()
    assert body["insights"] == [] and body["analyzed"]["messages"] == 60 and body["analyzed"]["feedback"] == 20


def test_too_few_points_report_nothing(api, monkeypatch) -> None:
    messages(api.alice_id, [(LOVE, 5 + i, f"o{i}") for i in range(4)] + [(AWFUL, 0.5, f"n{i}") for i in range(4)], "m")
    verdicts(monkeypatch, api.alice_id, [(9, {"rating": 5}, "a")] * 4 + [(1, {"rating": 1}, "b")] * 4, "r")
    assert get(api).json()["insights"] == []


def test_the_lookback_bounds_what_is_analysed(api) -> None:
    base = [(LOVE if i % 2 else THANKS, 10 + i, f"old{i}") for i in range(10)]
    recent = [(AWFUL, 0.5 + i / 10, f"c{i}") for i in range(6)]
    messages(api.alice_id, base + recent, "m")
    assert any(i["type"] == "anomaly" for i in get(api, lookback_days=30).json()["insights"])
    short = get(api, lookback_days=7).json()  # the baseline is older than the window: nothing to compare
    assert short["insights"] == [] and short["analyzed"]["messages"] == 6 and short["lookbackDays"] == 7


@pytest.mark.parametrize("value", ["0", "-3", "366", "abc", "7.5"])
def test_a_bad_lookback_is_refused_naming_the_field(api, value) -> None:
    r = get(api, lookback_days=value)
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["field"] == "lookback_days"


def test_the_default_lookback_is_30_days(api) -> None:
    r = get(api)
    assert r.status_code == 200 and r.json()["lookbackDays"] == 30 and r.json()["insights"] == []
    assert api.client.get("/api/analytics/sentiment/insights").status_code == 401


def test_the_core_refuses_a_bad_lookback_too(owner_home) -> None:
    from workbench.errors import InvalidInput

    for bad in ("x", 0, 400):
        with pytest.raises(InvalidInput) as err:
            insights.insights(owner_home, bad)
        assert err.value.field == "lookback_days"


def test_scoring_messages_leaves_the_usage_table_writable(api) -> None:
    """The insights store each message's score beside it; the gateway's writes of new messages go on working."""
    messages(api.alice_id, [(LOVE, 1, "c1")], "a")
    assert get(api).status_code == 200
    messages(api.alice_id, [(AWFUL, 0.5, "c2"), (THANKS, 0.4, "c3")], "b")  # after the scores were stored
    assert get(api).json()["analyzed"]["messages"] == 3
