"""AnalyticsPanel: usage analytics — a date range and granularity; charts of tokens and cost, latency
percentiles, quality and success rate, errors; tools; the per-model and per-checkpoint comparison;
sentiment insights as cards; cohorts; the assistant chat. Thin over the backend (the core of ``/api/analytics``)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ipywidgets as W

from .charts import as_times, line_chart, set_points
from .common import error_html, esc, guarded, ok_html

STYLE = """<style>
.wb-an-panel table.wb-table{border-collapse:collapse;font-size:12px}
.wb-an-panel table.wb-table td,.wb-an-panel table.wb-table th{border:1px solid #ddd;padding:2px 6px}
.wb-an-panel .wb-an-card{display:inline-block;vertical-align:top;width:300px;margin:4px;padding:6px 8px;
 border-radius:6px;border:1px solid #ddd;font-size:12px}
.wb-an-panel .wb-an-high{border-left:4px solid #c62828}.wb-an-panel .wb-an-medium{border-left:4px solid #ef6c00}
.wb-an-panel .wb-an-low{border-left:4px solid #2e7d32}
.wb-an-panel .wb-an-kpi{display:inline-block;margin:2px 14px 2px 0}
.wb-an-panel .wb-an-kpi b{font-size:15px}
</style>"""


def totals_html(d: dict[str, Any]) -> str:
    t, a = d["aggregations"]["totals"], d["aggregations"]["averages"]

    def kpi(label: str, value: Any, fmt: str = "{}") -> str:
        shown = "–" if value is None else fmt.format(value)
        return f"<span class='wb-an-kpi'>{esc(label)}<br><b>{esc(shown)}</b></span>"

    return "".join([kpi("Messages", t["messages"]), kpi("Conversations", t["conversations"]),
                    kpi("Tokens", t["tokens"]), kpi("Cost", t["cost"], "${:.4f}"),
                    kpi("Rating", a["rating"], "{:.2f}"), kpi("Success", a["successRate"], "{:.1f}%"),
                    kpi("Errors", a["errorRate"], "{:.1f}%"), kpi("p50", a["latencyP50Ms"], "{:.0f} ms"),
                    kpi("p95", a["latencyP95Ms"], "{:.0f} ms"), kpi("p99", a["latencyP99Ms"], "{:.0f} ms"),
                    kpi("TTFT p95", a["ttftP95Ms"], "{:.0f} ms")])


def table_html(rows: list[dict[str, Any]], cols: list[str], empty: str) -> str:
    if not rows:
        return f"<i>{esc(empty)}</i>"
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc('' if r.get(c) is None else r.get(c))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table class='wb-table'><tr>{head}</tr>{body}</table>"


def insights_html(result: dict[str, Any]) -> str:
    cards = [f"<div class='wb-an-card wb-an-{esc(i['severity'])}'><b>{esc(i['title'])}</b> "
             f"<small>({esc(i['type'])}, {esc(i['severity'])})</small><br>{esc(i['description'])}<br>"
             f"<small>{i['affectedConversations']} conversations · {esc(i['recommendation'])}</small></div>"
             for i in result.get("insights") or []]
    return "".join(cards) or "<i>no anomalies in the period</i>"


class AnalyticsPanel:
    """``AnalyticsPanel(backend)`` — ``.widget`` is the panel's root ``VBox``."""

    def __init__(self, backend: Any = None):
        if backend is None:
            from .backend import default_backend

            backend = default_backend()
        self.backend = backend
        self.data: dict[str, Any] | None = None
        self.chat_history: list[dict[str, str]] = []

        def css(widget: Any, cls: str) -> Any:
            widget.add_class(cls)
            return widget

        today = date.today()
        self.start = css(W.DatePicker(value=today - timedelta(days=7), description="From"), "wb-an-start")
        self.end = css(W.DatePicker(value=today, description="To"), "wb-an-end")
        self.granularity = css(W.Dropdown(options=["hour", "day", "week", "month", "all"], value="day",
                                          description="Per"), "wb-an-granularity")
        self.timezone = css(W.Text(value="UTC", description="Zone", layout={"width": "220px"}), "wb-an-timezone")
        self.cohort = css(W.Dropdown(options=[("everyone", "")], value="", description="Cohort"), "wb-an-cohort")
        self.refresh_button = css(W.Button(description="Refresh", icon="refresh", button_style="primary"),
                                  "wb-an-refresh")
        self.message = css(W.HTML(""), "wb-an-message")
        self.totals = css(W.HTML(""), "wb-an-totals")
        self.tokens_chart, self.token_marks = line_chart("Tokens and cost", "", "tokens / cost ×1000",
                                                         [{"label": "tokens"}, {"label": "cost ($/1000)"}],
                                                         css_class="wb-an-tokens-chart", height="220px", dates=True)
        self.latency_chart, self.latency_marks = line_chart("Latency", "", "ms",
                                                            [{"label": "p50"}, {"label": "p95"}, {"label": "p99"},
                                                             {"label": "TTFT p95"}],
                                                            css_class="wb-an-latency-chart", height="220px", dates=True)
        self.quality_chart, self.quality_marks = line_chart("Quality", "", "% / rating×20",
                                                            [{"label": "success %", "markers": True},
                                                             {"label": "rating ×20", "markers": True},
                                                             {"label": "errors %"}],
                                                            css_class="wb-an-quality-chart", height="220px", dates=True)
        self.buckets = css(W.HTML(""), "wb-an-buckets")
        self.tools = css(W.HTML(""), "wb-an-tools")
        self.models = css(W.HTML(""), "wb-an-models")
        self.insights = css(W.HTML(""), "wb-an-insights")

        self.cohort_name = css(W.Text(description="Name"), "wb-an-cohort-name")
        self.cohort_type = css(W.Dropdown(options=["static", "dynamic", "behavioral", "subscription", "custom"],
                                          value="dynamic", description="Type"), "wb-an-cohort-type")
        self.cohort_criteria = css(W.Textarea(value='{"min_conversations": 1, "lookback_days": 30}',
                                              description="Criteria", layout={"width": "420px"}),
                                   "wb-an-cohort-criteria")
        self.cohort_create = css(W.Button(description="Create cohort", icon="plus"), "wb-an-cohort-create")
        self.cohort_delete = css(W.Button(description="Delete selected", icon="trash", button_style="danger"),
                                 "wb-an-cohort-delete")
        self.cohorts_html = css(W.HTML(""), "wb-an-cohorts")
        self.cohort_message = css(W.HTML(""), "wb-an-cohort-message")

        self.ask = css(W.Textarea(placeholder="Ask about your usage: cost, quality, errors…", layout={"width": "520px"}),
                       "wb-an-ask")
        self.ask_button = css(W.Button(description="Ask", icon="comments", button_style="success"), "wb-an-ask-button")
        self.answer = css(W.HTML(""), "wb-an-answer")

        self.refresh_button.on_click(lambda _b: self.refresh())
        self.cohort_create.on_click(lambda _b: self.create_cohort())
        self.cohort_delete.on_click(lambda _b: self.delete_cohort())
        self.ask_button.on_click(lambda _b: self.ask_assistant())

        self.widget = css(W.VBox([
            W.HTML(STYLE),
            W.HBox([self.start, self.end, self.granularity]), W.HBox([self.timezone, self.cohort, self.refresh_button]),
            self.message, self.totals,
            W.HBox([self.tokens_chart, self.latency_chart]), self.quality_chart, self.buckets,
            W.HTML("<h4 style='margin:8px 0 2px'>Fine-tuned models and checkpoints in use</h4>"), self.models,
            W.HTML("<h4 style='margin:8px 0 2px'>Tools</h4>"), self.tools,
            W.HTML("<h4 style='margin:8px 0 2px'>Sentiment insights</h4>"), self.insights,
            W.HTML("<h4 style='margin:8px 0 2px'>Cohorts</h4>"), self.cohorts_html,
            W.HBox([self.cohort_name, self.cohort_type]), self.cohort_criteria,
            W.HBox([self.cohort_create, self.cohort_delete]), self.cohort_message,
            W.HTML("<h4 style='margin:8px 0 2px'>Assistant</h4>"), self.answer, self.ask, self.ask_button,
        ]), "wb-an-panel")

    def _range(self) -> tuple[str, str]:
        s = self.start.value or date.today() - timedelta(days=7)
        e = self.end.value or date.today()
        start = datetime(s.year, s.month, s.day, tzinfo=UTC).isoformat().replace("+00:00", "Z")
        end = (datetime(e.year, e.month, e.day, tzinfo=UTC) + timedelta(days=1, seconds=-1)).isoformat()
        return start, end.replace("+00:00", "Z")

    def refresh(self) -> dict[str, Any] | None:
        """Everything for the chosen range: figures, charts, models, tools, insights, cohorts."""
        start, end = self._range()
        ok, d = guarded(self.message, self.backend.analytics_data, start, end, self.granularity.value,
                        self.timezone.value.strip() or None, self.cohort.value or None)
        if not ok:
            return None
        self.data = d
        self.message.value = ok_html(f"{d['timeRange']['start']} – {d['timeRange']['end']} per {d['timeRange']['period']}"
                                     f" ({d['timeRange']['timezone']}; percentiles {d['percentiles']})")
        self.totals.value = totals_html(d)
        m = d["metrics"]
        xs = as_times([b["timestamp"] for b in m["tokenUsage"]])  # every series has the same buckets
        ticks = "%b %d %H:%M" if d["timeRange"]["period"] == "hour" else "%b %d"
        for chart in (self.tokens_chart, self.latency_chart, self.quality_chart):
            chart.axes[0].tick_format = ticks
        set_points(self.token_marks[0], xs, [b["totalTokens"] for b in m["tokenUsage"]])
        set_points(self.token_marks[1], xs, [b["estimatedCost"] * 1000 for b in m["tokenUsage"]])

        def points(mark: Any, buckets: list[dict[str, Any]], key: str, scale: float = 1) -> None:
            kept = [i for i, b in enumerate(buckets) if b[key] is not None]  # empty buckets draw no point
            set_points(mark, xs[kept], [buckets[i][key] * scale for i in kept])

        for mark, key in zip(self.latency_marks, ("p50Ms", "p95Ms", "p99Ms", "ttftP95Ms"), strict=True):
            points(mark, m["latency"], key)
        q = d["series"]["quality"]
        points(self.quality_marks[0], q, "successRate")
        points(self.quality_marks[1], q, "rating", 20)
        points(self.quality_marks[2], m["errors"], "errorRate")
        rows = [{"bucket": t["timestamp"], "messages": t["messages"], "tokens": t["totalTokens"],
                 "cost": f"{t['estimatedCost']:.4f}", "p95 ms": lat["p95Ms"], "errors": er["errors"],
                 "rating": qu["rating"], "success %": qu["successRate"]}
                for t, lat, er, qu in zip(m["tokenUsage"], m["latency"], m["errors"], q, strict=True) if t["messages"]]
        self.buckets.value = table_html(rows, list(rows[0]) if rows else [], "no usage in this range yet")
        self.tools.value = table_html(d["series"]["tools"], ["toolName", "calls", "successRate", "avgMs"],
                                      "no tool calls yet")
        ok, models = guarded(self.message, self.backend.models_in_use, start, end)
        if ok:
            self.models.value = table_html(models["models"], ["modelId", "jobId", "checkpoint", "requests", "rating",
                                                              "successRate", "errorRate", "costPerMessage",
                                                              "latencyP95Ms"], "no served models in this range")
        days = max(1, min(365, (self.end.value - self.start.value).days + 1)) if self.start.value and self.end.value else 30
        ok, ins = guarded(self.insights, self.backend.sentiment_insights, days)
        if ok:
            self.insights.value = insights_html(ins)
        self.load_cohorts()
        return d

    # ---- cohorts -----------------------------------------------------------------------------
    def load_cohorts(self) -> list[dict[str, Any]]:
        ok, rows = guarded(self.cohort_message, self.backend.cohorts)
        if not ok:
            return []
        self.cohorts_html.value = table_html(rows, ["name", "cohort_type", "member_count", "is_active", "id"],
                                             "no cohorts yet")
        keep = self.cohort.value
        self.cohort.options = [("everyone", "")] + [(f"{c['name']} ({c['member_count']})", c["id"]) for c in rows]
        self.cohort.value = keep if keep in [c["id"] for c in rows] else ""
        return rows

    def create_cohort(self) -> dict[str, Any] | None:
        try:
            criteria = json.loads(self.cohort_criteria.value or "{}")
        except ValueError as exc:
            self.cohort_message.value = error_html(ValueError(f"criteria: not JSON ({exc})"))
            return None
        ok, c = guarded(self.cohort_message, self.backend.create_cohort, self.cohort_name.value.strip(),
                        self.cohort_type.value, criteria)
        if ok:
            self.cohort_message.value = ok_html(f"created {c['name']}: {c['member_count']} members")
            self.load_cohorts()
        return c

    def delete_cohort(self) -> None:
        if not self.cohort.value:
            self.cohort_message.value = error_html(ValueError("choose a cohort in the Cohort list first"))
            return
        ok, _ = guarded(self.cohort_message, self.backend.delete_cohort, self.cohort.value)
        if ok:
            self.cohort_message.value = ok_html("deleted")
            self.cohort.value = ""
            self.load_cohorts()

    # ---- the assistant -----------------------------------------------------------------------
    def ask_assistant(self) -> list[dict[str, Any]] | None:
        text = self.ask.value.strip()
        if not text:
            return None
        self.chat_history.append({"role": "user", "content": text})
        self.answer.value = "<i>thinking…</i>"
        ok, events = guarded(self.answer, self.backend.analytics_chat, list(self.chat_history))
        if not ok:
            self.chat_history.pop()
            return None
        content = "".join(e.get("content", "") for e in events)
        tools = next((e["tools_called"] for e in events if e.get("type") == "tools_metadata"), [])
        use = next((e for e in events if e.get("type") == "token_usage"), {})
        self.chat_history.append({"role": "assistant", "content": content})
        self.ask.value = ""
        used = ", ".join(f"{t['name']}{'' if t['success'] else ' (failed)'}" for t in tools) or "none"
        self.answer.value = (f"<div>{esc(content)}</div><small>tools: {esc(used)} · "
                             f"{use.get('input_tokens', 0)}+{use.get('output_tokens', 0)} tokens</small>")
        return events
