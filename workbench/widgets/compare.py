"""JobsComparison: overlaid loss curves and the side-by-side table of ``backend.compare``."""

from __future__ import annotations

from typing import Any

import ipywidgets as W

from .charts import DEFAULT_CAP, PALETTE, add_line, downsample, line_chart
from .common import esc, fmt, guarded, inline_error_html

# winner key of backend.compare → the comparison column it rewards
WINNER_COLUMNS = {
    "best_duration": "duration_seconds",
    "best_throughput": "throughput",
    "best_efficiency": "efficiency_score",
    "best_loss_improvement": "loss_improvement",
    "best_eval_loss": "best_eval_loss",
}
COLUMNS = [("job_id", "Job"), ("status", "Status"), ("duration_seconds", "Duration (s)"),
           ("throughput", "Throughput"), ("loss_improvement", "Loss improvement"),
           ("efficiency_score", "Efficiency"), ("final_loss", "Final loss"), ("best_eval_loss", "Best eval loss"),
           ("gpu_utilization", "GPU util.")]

STYLE = """<style>
.wb-compare-panel table.wb-table{border-collapse:collapse;font-size:12px}
.wb-compare-panel table.wb-table td,.wb-compare-panel table.wb-table th{border:1px solid #ddd;padding:2px 6px}
.wb-compare-panel td.wb-winner{background:#d4edda;font-weight:bold}
.wb-compare-panel .wb-error-text{color:#b00020}
</style>"""


class JobsComparison:
    """``JobsComparison(backend)`` — ``.widget`` is the panel's root ``VBox``."""

    def __init__(self, backend: Any = None, *, cap: int = DEFAULT_CAP):
        if backend is None:
            from .backend import default_backend

            backend = default_backend()
        self.backend = backend
        self.cap = cap
        self.result: dict[str, Any] | None = None

        self.jobs = W.SelectMultiple(description="Jobs", options=[], rows=8, layout={"width": "560px"})
        self.jobs.add_class("wb-compare-jobs")
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.add_class("wb-compare-refresh")
        self.run_button = W.Button(description="Compare", button_style="primary")
        self.run_button.add_class("wb-compare-run")
        self.error = W.HTML("")
        self.error.add_class("wb-compare-error")
        self.chart, _ = line_chart("Training loss", "step", "loss", [], "wb-compare-chart", height="320px")
        self.table = W.HTML("")
        self.table.add_class("wb-compare-table")

        self.refresh_button.on_click(lambda _b: self._guard(self.refresh))
        self.run_button.on_click(lambda _b: self._guard(self.compare))

        self.widget = W.VBox([W.HTML(STYLE), W.HBox([self.jobs, W.VBox([self.refresh_button, self.run_button])]),
                              self.error, self.chart, self.table])
        self.widget.add_class("wb-compare-panel")
        self._guard(self.refresh)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _guard(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` under the panels' one guard: a backend error lands in the error HTML."""
        return guarded(self.error, fn, *args, render=inline_error_html)[1]

    def refresh(self) -> None:
        """Reload the job list, keeping the selection where the jobs still exist."""
        jobs = self.backend.list_jobs()
        options = [(f"{j['id']} · {j['status']} · {j.get('name') or ''}", j["id"]) for j in reversed(jobs)]
        keep = tuple(v for v in self.jobs.value if v in {o[1] for o in options})
        self.jobs.options = options
        self.jobs.value = keep

    def compare(self, job_ids: list[str] | None = None) -> None:
        """Compare ``job_ids`` (default: the selection): the overlay chart and the table."""
        ids = list(job_ids if job_ids is not None else self.jobs.value)
        self.error.value = ""
        if len(ids) < 2:
            self.error.value = inline_error_html("Select at least two jobs to compare.")
            return
        result = self.backend.compare(ids)
        self.result = result
        self.table.value = _table_html(result)
        self.chart.marks = []
        for i, job_id in enumerate(ids):
            train = [r for r in self.backend.rows(job_id) if r.get("train_loss") is not None]
            xs, ys = downsample([r["step"] for r in train], [r["train_loss"] for r in train], self.cap)
            add_line(self.chart, job_id, xs, ys, PALETTE[i % len(PALETTE)])


def _table_html(result: dict[str, Any]) -> str:
    winner = result.get("winner") or {}
    won: dict[tuple[str, str], str] = {}  # (job_id, column) → winner key
    for key, job_id in winner.items():
        if job_id and key in WINNER_COLUMNS:
            won[(job_id, WINNER_COLUMNS[key])] = key
    head = "".join(f"<th>{label}</th>" for _, label in COLUMNS) + "<th>Wins</th>"
    rows = []
    for r in result.get("comparison", []):
        cells = []
        for col, _ in COLUMNS:
            key = won.get((r["job_id"], col))
            if key:
                cells.append(f'<td class="wb-winner" title="{esc(key)}">★ {fmt(r.get(col))}</td>')
            else:
                cells.append(f"<td>{fmt(r.get(col))}</td>")
        wins = ", ".join(k.removeprefix("best_").replace("_", " ") for k, j in winner.items() if j == r["job_id"])
        rows.append(f'<tr data-job="{esc(r["job_id"])}">{"".join(cells)}<td>{esc(wins)}</td></tr>')
    return f'<table class="wb-table"><tr>{head}</tr>{"".join(rows)}</table>'
