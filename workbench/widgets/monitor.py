"""TrainingMonitor: start, follow and control one training job, live.

Every action is a call on a :class:`~workbench.widgets.backend.Backend`. Live updates come from
``backend.events(job_id)``, consumed by ONE daemon thread per followed job: picking another job
bumps a generation counter and the old thread stops at its next item. Following a job first
loads its history (``backend.rows``) and then consumes events, de-duplicated by
``(type, step)`` because the local event stream starts at the beginning of ``metrics.jsonl``.
Nothing is reloaded on a timer: logs refresh on status changes and eval/checkpoint events,
the checkpoints table on checkpoint events and when the job ends.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as W

from ..job_states import FINAL, actions
from .charts import DEFAULT_CAP, Downsampler, line_chart, set_points
from .common import backend_errors, esc, fmt, guarded, inline_error_html

LOG_LINES = 30

STATUS_FIELDS = [
    ("status", "Status"), ("progress", "Progress %"), ("current_step", "Step"), ("total_steps", "Total steps"),
    ("current_epoch", "Epoch"), ("loss", "Loss"), ("eval_loss", "Eval loss"), ("best_eval_loss", "Best eval loss"),
    ("best_step", "Best step"), ("loss_trend", "Loss trend"), ("learning_rate", "Learning rate"),
    ("grad_norm", "Grad norm"), ("tokens_per_second", "Tokens/s"), ("elapsed_time", "Elapsed"),
    ("estimated_remaining", "Remaining"),
]

STYLE = """<style>
.wb-monitor-panel table.wb-table{border-collapse:collapse;font-size:12px}
.wb-monitor-panel table.wb-table td,.wb-monitor-panel table.wb-table th{border:1px solid #ddd;padding:2px 6px}
.wb-monitor-panel tr.wb-best-checkpoint{background:#fff6cc;font-weight:bold}
.wb-monitor-panel .wb-warning{background:#fff3cd;color:#7a5b00;padding:4px}
.wb-monitor-panel .wb-error-text{color:#b00020}
.wb-monitor-panel pre.wb-log{max-height:320px;overflow:auto;background:#f7f7f7;font-size:11px;padding:4px}
</style>"""


class TrainingMonitor:
    """``TrainingMonitor(backend, job_id=None)`` — ``.widget`` is the panel's root ``VBox``."""

    def __init__(self, backend: Any = None, job_id: str | None = None, *, cap: int = DEFAULT_CAP):
        if backend is None:
            from .backend import default_backend

            backend = default_backend()
        self.backend = backend
        self.cap = cap
        self.job_id: str | None = None
        self.status: dict[str, Any] = {}
        self._gen = 0
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._validation_thread: threading.Thread | None = None
        self._seen: set[tuple[Any, ...]] = set()
        self._picking = False
        self._reset_series()

        # ---- job picker
        self.job_picker = W.Dropdown(description="Job", options=[], value=None, layout={"width": "520px"})
        self.job_picker.add_class("wb-monitor-job")
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.add_class("wb-monitor-refresh")
        self.error = W.HTML()
        self.error.add_class("wb-monitor-error")

        # ---- start section
        self.model = W.Dropdown(description="Model", options=[])
        self.model.add_class("wb-monitor-model")
        self.dataset = W.Dropdown(description="Dataset", options=[])
        self.dataset.add_class("wb-monitor-dataset")
        self.config = W.Dropdown(description="Config", options=[])
        self.config.add_class("wb-monitor-config")
        self.max_steps = W.IntText(description="Max steps", value=0, min=0,
                                   tooltip="0 = use the config's value")
        self.max_steps.add_class("wb-monitor-max-steps")
        self.start_button = W.Button(description="Start", button_style="primary", icon="play")
        self.start_button.add_class("wb-monitor-start")

        # ---- control
        self.pause_button = W.Button(description="Pause", icon="pause", disabled=True)
        self.pause_button.add_class("wb-monitor-pause")
        self.resume_button = W.Button(description="Resume", icon="play", disabled=True)
        self.resume_button.add_class("wb-monitor-resume")
        self.cancel_button = W.Button(description="Cancel", icon="stop", button_style="danger", disabled=True)
        self.cancel_button.add_class("wb-monitor-cancel")

        # ---- progress + charts
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=100.0, description="Progress")
        self.progress.add_class("wb-monitor-progress")
        self.eta = W.HTML("")
        self.eta.add_class("wb-monitor-eta")
        self.loss_chart, (self._loss_line, self._eval_line) = line_chart(
            "Loss", "step", "loss",
            [{"label": "train loss"}, {"label": "eval loss", "markers": True, "color": "#d62728"}],
            "wb-monitor-loss-chart")
        self.lr_chart, (self._lr_line,) = line_chart(
            "Learning rate", "step", "learning rate", [{"label": "learning rate"}], "wb-monitor-lr-chart")
        self.throughput_chart, (self._tps_line, self._ttps_line) = line_chart(
            "Throughput", "step", "tokens/s",
            [{"label": "tokens/s"}, {"label": "trained tokens/s", "color": "#2ca02c"}], "wb-monitor-throughput-chart")

        # ---- status, logs, checkpoints, validation
        self.status_html = W.HTML("<i>No job selected.</i>")
        self.status_html.add_class("wb-monitor-status")
        self.logs_html = W.HTML("")
        self.logs_html.add_class("wb-monitor-logs")
        self.checkpoints_html = W.HTML("")
        self.checkpoints_html.add_class("wb-monitor-checkpoints")
        self.val_checkpoint = W.Dropdown(description="Checkpoint", options=[])
        self.val_checkpoint.add_class("wb-monitor-val-checkpoint")
        self.val_dataset = W.Dropdown(description="Test data", options=[])
        self.val_dataset.add_class("wb-monitor-val-dataset")
        self.validate_button = W.Button(description="Validate", icon="check")
        self.validate_button.add_class("wb-monitor-validate")
        self.validation_html = W.HTML("")
        self.validation_html.add_class("wb-monitor-validation")

        self.job_picker.observe(self._on_pick, names="value")
        self.refresh_button.on_click(lambda _b: self._guard(self.reload))
        self.start_button.on_click(lambda _b: self._guard(self._start))
        self.pause_button.on_click(lambda _b: self._guard(self._control, self.backend.pause))
        self.resume_button.on_click(lambda _b: self._guard(self._control, self.backend.resume))
        self.cancel_button.on_click(lambda _b: self._guard(self._control, self.backend.cancel))
        self.validate_button.on_click(lambda _b: self._guard(self._validate))

        self.widget = W.VBox([
            W.HTML(STYLE),
            W.HBox([self.job_picker, self.refresh_button]),
            self.error,
            W.HTML("<b>Start a job</b>"),
            W.HBox([self.model, self.dataset]),
            W.HBox([self.config, self.max_steps, self.start_button]),
            W.HBox([self.pause_button, self.resume_button, self.cancel_button]),
            W.HBox([self.progress, self.eta]),
            W.HBox([self.loss_chart, self.lr_chart], layout={"width": "100%"}),
            self.throughput_chart,
            W.HBox([self.status_html, self.checkpoints_html]),
            W.HTML("<b>Validate a checkpoint</b>"),
            W.HBox([self.val_checkpoint, self.val_dataset, self.validate_button]),
            self.validation_html,
            W.HTML("<b>Logs</b>"),
            self.logs_html,
        ])
        self.widget.add_class("wb-monitor-panel")

        self._guard(self._load_choices)
        if job_id:
            self._guard(self.follow, job_id)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ helpers
    def _guard(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` under the panels' one guard: a backend error lands in the error HTML."""
        return guarded(self.error, fn, *args, render=inline_error_html)[1]

    def _reset_series(self) -> None:
        self.series = {name: Downsampler(self.cap) for name in ("loss", "eval_loss", "lr", "tps", "ttps")}

    # ------------------------------------------------------------------ choices
    def reload(self) -> None:
        """New datasets, configs and jobs made elsewhere (other tabs, other processes), then the job."""
        self._load_choices()
        self.refresh()

    @staticmethod
    def _set_options(dropdown: Any, options: list[tuple[str, Any]], default: Any = None) -> None:
        """Replace a dropdown's options, keeping the user's choice when it is still offered."""
        keep = dropdown.value
        dropdown.options = options
        values = [v for _, v in options]
        if keep in values:
            dropdown.value = keep
        elif default in values:
            dropdown.value = default

    def _load_choices(self) -> None:
        models = [m for m in self.backend.list_models() if m.get("status", "available") == "available"]
        ids = [m["id"] for m in models]
        self._set_options(self.model, [(f"{m.get('name') or m['id']} ({m['id']})", m["id"]) for m in models],
                          "tiny-chat" if "tiny-chat" in ids else (ids[0] if ids else None))
        datasets = [(f"{d['name']} ({d['id']})", d["id"]) for d in self.backend.list_datasets()]
        self._set_options(self.dataset, datasets, datasets[-1][1] if datasets else None)  # the newest, not blank
        self._set_options(self.val_dataset, datasets)  # optional: blank is "none"
        try:
            names = list(self.backend.templates())
        except backend_errors():
            names = ["default"]  # the server is unreachable: the default template still names a config
        configs = [(f"template: {n}", n) for n in names]
        configs += [(f"{c['name']} ({c['id']})", c["id"]) for c in self.backend.list_configs()]
        self._set_options(self.config, configs, "default")
        self._load_jobs()

    def _load_jobs(self) -> None:
        jobs = self.backend.list_jobs()
        options = [(f"{j['id']} · {j['status']} · {j.get('name') or ''}", j["id"]) for j in reversed(jobs)]
        self._picking = True
        try:
            self.job_picker.options = options
            self.job_picker.value = self.job_id if self.job_id in {o[1] for o in options} else None
        finally:
            self._picking = False

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._picking or not change["new"] or change["new"] == self.job_id:
            return
        self._guard(self.follow, change["new"])

    # ------------------------------------------------------------------ following
    def follow(self, job_id: str, *, live: bool = True) -> None:
        """Show ``job_id``: load its history now, then follow its events in one background thread."""
        with self._lock:
            self._gen += 1
            gen = self._gen
            self.job_id = job_id
            self._seen = set()
            self._reset_series()
            self.status = {}
        self.error.value = ""
        self.validation_html.value = ""
        if self.job_picker.value != job_id:
            ids = {o[1] for o in self.job_picker.options}
            if job_id not in ids:
                self._load_jobs()
            self._picking = True
            try:
                if job_id in {o[1] for o in self.job_picker.options}:
                    self.job_picker.value = job_id
            finally:
                self._picking = False
        self.refresh()
        if live and self.status.get("status") not in FINAL:
            self._thread = threading.Thread(target=self._consume, args=(job_id, gen), daemon=True,
                                            name=f"wb-monitor-{job_id}")
            self._thread.start()

    def stop(self) -> None:
        """Stop following (the events thread ends at its next item)."""
        with self._lock:
            self._gen += 1

    def refresh(self) -> None:
        """Synchronously reload the followed job: status, metrics history, logs, checkpoints."""
        if not self.job_id:
            self._load_jobs()
            return
        job_id = self.job_id
        self._apply_status(self.backend.status(job_id))
        with self._lock:
            for row in self.backend.rows(job_id):
                self._add_row(row)
            self._redraw()
        self._refresh_logs()
        self._refresh_checkpoints()

    def _consume(self, job_id: str, gen: int) -> None:
        try:
            for item in self.backend.events(job_id):
                if gen != self._gen:
                    return
                self.handle_event(item)
        except backend_errors() as exc:
            if gen == self._gen:
                self.error.value = inline_error_html(exc)
        except Exception as exc:  # a dead stream must not kill the kernel's thread silently
            if gen == self._gen:
                self.error.value = inline_error_html(f"event stream stopped: {exc}")

    def handle_event(self, item: dict[str, Any]) -> None:
        """One item of ``backend.events``: a status change or one metrics event."""
        if item.get("kind") == "status":
            try:
                self._apply_status(self.backend.status(self.job_id))
            except backend_errors():
                self._apply_status({**self.status, "status": item.get("status"), "error": item.get("error")})
            self._guard(self._refresh_logs)
            self._guard(self._load_jobs)  # the picker's labels show each job's status
            if item.get("status") in FINAL:
                self._guard(self._refresh_checkpoints)
            return
        with self._lock:
            new = self._add_metric(item)
            if new:
                self._redraw()
        if not new:
            return
        kind = item.get("type")
        if kind == "train":
            patch = {k: item.get(k) for k in ("loss", "learning_rate", "grad_norm", "tokens_per_second")}
            patch["current_step"] = item.get("step")
            if item.get("epoch") is not None:
                patch["current_epoch"] = item["epoch"]
            total = item.get("total_steps") or self.status.get("total_steps")
            if total:
                patch["total_steps"] = total
                patch["progress"] = round(100.0 * (item.get("step") or 0) / total, 1)
            self._apply_status({**self.status, **patch})
        elif kind in ("eval", "checkpoint"):
            self._guard(lambda: self._apply_status(self.backend.status(self.job_id)))
            self._guard(self._refresh_logs)
            if kind == "checkpoint":
                self._guard(self._refresh_checkpoints)

    def _add_row(self, row: dict[str, Any]) -> None:
        """Add one history row (a train point and/or the step's eval) as the events it stands for."""
        step = row.get("step")
        if row.get("train_loss") is not None or row.get("learning_rate") is not None:
            self._add_metric({"type": "train", "step": step, "loss": row.get("train_loss"),
                              "learning_rate": row.get("learning_rate"),
                              "tokens_per_second": row.get("tokens_per_second"),
                              "trained_tokens_per_second": row.get("trained_tokens_per_second")})
        if row.get("eval_loss") is not None:
            self._add_metric({"type": "eval", "step": step, "eval_loss": row["eval_loss"]})

    def _add_metric(self, e: dict[str, Any]) -> bool:
        """Add one metrics event to the series unless already seen; True when it was new."""
        kind = e.get("type")
        key = (kind, e.get("step")) if kind in ("train", "eval", "checkpoint") else \
            (kind, e.get("status"), e.get("timestamp"))
        if key in self._seen:
            return False
        self._seen.add(key)
        step = e.get("step")
        if step is None:
            return True
        if kind == "train":
            if e.get("loss") is not None:
                self.series["loss"].add(step, e["loss"])
            if e.get("learning_rate") is not None:
                self.series["lr"].add(step, e["learning_rate"])
            if e.get("tokens_per_second") is not None:
                self.series["tps"].add(step, e["tokens_per_second"])
            if e.get("trained_tokens_per_second") is not None:
                self.series["ttps"].add(step, e["trained_tokens_per_second"])
        elif kind == "eval" and e.get("eval_loss") is not None:
            self.series["eval_loss"].add(step, e["eval_loss"])
        return True

    def _redraw(self) -> None:
        for name, mark in (("loss", self._loss_line), ("eval_loss", self._eval_line), ("lr", self._lr_line),
                           ("tps", self._tps_line), ("ttps", self._ttps_line)):
            xs, ys = self.series[name].points()
            if len(xs) != len(mark.x) or (xs and xs[-1] != mark.x[-1]):
                set_points(mark, xs, ys)

    # ------------------------------------------------------------------ status
    def _apply_status(self, status: dict[str, Any]) -> None:
        """Show a status dict: buttons enabled per state, progress, ETA and the status table."""
        self.status = dict(status)
        state = status.get("status")
        allowed = status.get("actions")
        allowed = actions(state or "") if allowed is None else allowed  # a status object says; an event may not
        self.pause_button.disabled = "pause" not in allowed
        self.resume_button.disabled = "resume" not in allowed
        self.cancel_button.disabled = "cancel" not in allowed
        self.progress.value = float(status.get("progress") or 0.0)
        self.progress.bar_style = {"completed": "success", "failed": "danger", "cancelled": "warning"}.get(state, "")
        step, total = status.get("current_step"), status.get("total_steps")
        eta = status.get("estimated_remaining")
        parts = [f"step {fmt(step)}/{fmt(total)}"]
        if eta:
            parts.append(f"ETA {esc(eta)}")
        elif state in FINAL:
            parts.append(esc(state))
        self.eta.value = " · ".join(parts)
        rows = "".join(f"<tr><th>{label}</th><td>{fmt(status.get(key))}</td></tr>"
                       for key, label in STATUS_FIELDS if key in status)
        extra = ""
        if status.get("warning"):
            extra += f'<div class="wb-warning wb-stale-warning">{esc(status["warning"])}</div>'
        if status.get("error"):
            extra += f'<div class="wb-error-text wb-job-error">Error: {esc(status["error"])}</div>'
        self.status_html.value = extra + f'<table class="wb-table">{rows}</table>'

    # ------------------------------------------------------------------ logs, checkpoints
    def _refresh_logs(self) -> None:
        if not self.job_id:
            return
        lines = self.backend.logs(self.job_id, tail=LOG_LINES)[-LOG_LINES:]
        self.logs_html.value = f'<pre class="wb-log">{esc(chr(10).join(lines))}</pre>'

    def _refresh_checkpoints(self) -> None:
        if not self.job_id:
            return
        job_id = self.job_id
        data = self.backend.checkpoints(job_id)
        best = data.get("best_checkpoint")
        items = data.get("checkpoints", [])
        head = "".join(f"<th>{h}</th>" for h in ("", "path", "step", "epoch", "eval_loss", "train_loss",
                                                  "size_mb", "download"))
        rows = []
        for c in items:
            is_best = c.get("path") == best
            url = self.backend.download_url(job_id, c.get("path"))
            link = f'<a href="{esc(url)}" target="_blank" download>download</a>' if url else ""
            cls = ' class="wb-best-checkpoint"' if is_best else ""
            rows.append(f"<tr{cls}><td>{'★' if is_best else ''}</td><td>{esc(c.get('path'))}</td>"
                        f"<td>{fmt(c.get('step'))}</td><td>{fmt(c.get('epoch'))}</td>"
                        f"<td>{fmt(c.get('eval_loss'))}</td><td>{fmt(c.get('train_loss'))}</td>"
                        f"<td>{fmt(c.get('size_mb'))}</td><td>{link}</td></tr>")
        body = "".join(rows) or '<tr><td colspan="8"><i>No checkpoints yet.</i></td></tr>'
        self.checkpoints_html.value = f'<b>Checkpoints</b><table class="wb-table"><tr>{head}</tr>{body}</table>'
        paths = [c["path"] for c in items]
        if (self.status.get("status") == "completed") and "final" not in paths:
            paths.append("final")
        current = self.val_checkpoint.value
        self.val_checkpoint.options = paths
        if paths:
            self.val_checkpoint.value = current if current in paths else (best if best in paths else paths[-1])

    # ------------------------------------------------------------------ actions
    def _start(self) -> None:
        self.error.value = ""
        if not self.model.value or not self.dataset.value:
            self.error.value = inline_error_html("Pick a model and a dataset first.")
            return
        overrides = {"training": {"max_steps": int(self.max_steps.value)}} if self.max_steps.value > 0 else None
        job = self.backend.start_job(self.model.value, self.dataset.value, self.config.value, overrides=overrides)
        self._load_jobs()
        self.follow(job["id"])

    def _control(self, action: Any) -> None:
        if not self.job_id:
            return
        self.error.value = ""
        self._apply_status(action(self.job_id))
        self._refresh_logs()
        self._load_jobs()

    def _validate(self) -> None:
        if not self.job_id or not self.val_checkpoint.value or not self.val_dataset.value:
            self.validation_html.value = inline_error_html("Pick a checkpoint and a test dataset first.")
            return
        args = (self.job_id, self.val_checkpoint.value, self.val_dataset.value)
        self.validate_button.disabled = True
        self.validation_html.value = "<i>Validating…</i>"

        def run() -> None:
            try:
                result = self.backend.validate(*args)
                self.validation_html.value = _validation_html(result)
            except backend_errors() as exc:
                self.validation_html.value = inline_error_html(exc)
            except Exception as exc:
                self.validation_html.value = inline_error_html(f"validation failed: {exc}")
            finally:
                self.validate_button.disabled = False

        self._validation_thread = threading.Thread(target=run, daemon=True, name="wb-monitor-validate")
        self._validation_thread.start()


def _validation_html(result: dict[str, Any]) -> str:
    metrics = result.get("metrics") or {}
    rows = "".join(f'<tr class="wb-metric-{esc(k)}"><th>{esc(k)}</th><td>{fmt(v)}</td></tr>'
                   for k, v in metrics.items())
    out = f'<b>Validation</b> — {esc(result.get("message", ""))}<table class="wb-table">{rows}</table>'
    for ex in (result.get("examples") or [])[:2]:
        out += ('<div class="wb-example"><b>Prompt:</b> ' + esc(ex.get("prompt")) +
                "<br><b>Reference:</b> " + esc(ex.get("reference")) +
                "<br><b>Generated:</b> " + esc(ex.get("generated")) + "</div>")
    return out
