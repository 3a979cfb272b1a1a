"""AnalyticsPanel in-process: the figures and charts of a range, models in use, insights, cohorts,
the assistant's missing-LLM message; and the playground's thumbs and stars landing in the quality metrics."""

from __future__ import annotations

import time
from pathlib import Path

from workbench import usage
from workbench.widgets.analytics import AnalyticsPanel
from workbench.widgets.backend import LocalBackend


def _rows(n: int, now: float) -> None:
    usage.record_many([(usage.UsageRecord(
        id=f"chatcmpl-{i}", ts=now - i * 1800, owner="local", deployment_id="dep-1", model="support-bot",
        provider="local", job_id="job-1", checkpoint="final" if i % 2 else "step-10", conversation_id=f"c{i // 3}",
        route="chat", input_tokens=10, output_tokens=5, latency_ms=100.0 + i, ttft_ms=10.0, success=i != 4,
        error=None if i != 4 else "TIMEOUT: slow", cost_micro=2500, end_user=f"u{i % 4}"), ()) for i in range(n)])


def test_the_panel_shows_the_range_figures_models_and_charts(home: Path) -> None:
    _rows(12, time.time() - 60)
    backend = LocalBackend()
    backend.rate_reply("chatcmpl-1", rating=5, success=True, comment="great answer")
    panel = AnalyticsPanel(backend)
    d = panel.refresh()
    assert d is not None and d["aggregations"]["totals"]["messages"] == 12
    assert "Messages<br><b>12</b>" in panel.totals.value and "$0.0300" in panel.totals.value  # 12 × $0.0025
    assert sum(panel.token_marks[0].y) == 12 * 15  # the tokens line holds every bucket's tokens
    assert max(panel.latency_marks[2].y) <= 111.0 and len(panel.latency_marks[0].x) >= 1
    assert list(panel.quality_marks[1].y) == [100.0]  # one rating of 5, drawn ×20
    # on a date axis: each point at its bucket's time, the rating at its reply's bucket
    assert panel.token_marks[0].x.dtype.kind == "M" and len(panel.token_marks[0].x) == len(d["metrics"]["tokenUsage"])
    rated = next(b["timestamp"] for b in d["series"]["quality"] if b["rating"] is not None)
    assert str(panel.quality_marks[1].x[0]).startswith(rated.rstrip("Z"))
    assert "support-bot" in panel.models.value and "step-10" in panel.models.value and "final" in panel.models.value
    assert "no anomalies" in panel.insights.value


def test_cohorts_are_created_listed_used_as_a_filter_and_deleted(home: Path) -> None:
    _rows(8, time.time() - 60)
    panel = AnalyticsPanel(LocalBackend())
    panel.cohort_name.value, panel.cohort_type.value = "two users", "static"
    panel.cohort_criteria.value = '{"members": ["u1", "u2"]}'
    c = panel.create_cohort()
    assert c and c["member_count"] == 2 and "2 members" in panel.cohort_message.value
    panel.cohort.value = c["id"]
    d = panel.refresh()
    assert d["aggregations"]["totals"]["messages"] == 4  # u1 and u2: rows 1, 2, 5, 6
    panel.cohort_criteria.value = "{not json"
    assert panel.create_cohort() is None and "not JSON" in panel.cohort_message.value
    panel.delete_cohort()
    assert "deleted" in panel.cohort_message.value and panel.cohort.options == (("everyone", ""),)


def test_the_assistant_says_how_to_configure_a_model_when_none_is(home: Path, monkeypatch) -> None:
    for var in ("WORKBENCH_ANALYTICS_LLM", "WORKBENCH_ANALYTICS_LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    panel = AnalyticsPanel(LocalBackend())
    panel.ask.value = "What did I spend?"
    assert panel.ask_assistant() is None
    assert "WORKBENCH_ANALYTICS_LLM" in panel.answer.value and panel.chat_history == []
