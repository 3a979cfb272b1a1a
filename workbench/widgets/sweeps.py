"""SweepPanel: start a sweep (dataset, parameters, strategy, trials), follow its trials, see the metric
against each parameter, and the suggestion it leads to. Thin over the backend (the core of
``/api/training/sweeps`` and ``/api/training/suggestions``)."""

from __future__ import annotations

import json
import threading
from typing import Any

import bqplot as bq
import ipywidgets as W

from .common import error_html, esc, guarded, ok_html

POLL_S = 1.0
PLACEHOLDER = "training.learning_rate=1e-4,3e-4,1e-3\nlora.r=8,16"


def parse_parameters(text: str) -> dict[str, Any]:
    """One parameter a line: ``KEY=V1,V2`` (values to try) or ``KEY=LOW:HIGH[:log]`` (a range)."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, spec = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"parameters: {line!r} is not KEY=values")

        def val(x: str) -> Any:
            try:
                return json.loads(x)
            except ValueError:
                return x.strip()

        if ":" in spec and "," not in spec:
            low, _, rest = spec.partition(":")
            high, _, log = rest.partition(":")
            out[key.strip()] = {"low": val(low), "high": val(high), "log": log.strip() == "log"}
        else:
            out[key.strip()] = [val(v) for v in spec.split(",") if v.strip()]
    return out


def trials_html(sweep: dict[str, Any]) -> str:
    if not sweep["trials"]:
        return "<i>no trials yet</i>"
    best = (sweep.get("best_trial") or {}).get("job_id")
    keys = list(sweep["parameters"])
    head = "".join(f"<th>{esc(k)}</th>" for k in ["#", "job", *keys, "status", "eval_loss"])
    rows = []
    for t in sweep["trials"]:
        mark = " style='font-weight:bold;background:#e8f5e9'" if t["job_id"] == best else ""
        cells = [t["number"], t["job_id"], *(t["params"].get(k) for k in keys),
                 t["status"] + (f" ({t['reason']})" if t.get("reason") else ""),
                 "" if t["eval_loss"] is None else f"{t['eval_loss']:.4f}"]
        rows.append(f"<tr{mark}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return f"<table class='wb-table'><tr>{head}</tr>{''.join(rows)}</table>"


class SweepPanel:
    """``SweepPanel(backend)`` — ``.widget`` is the panel's root ``VBox``."""

    def __init__(self, backend: Any = None, *, poll: bool = True):
        if backend is None:
            from .backend import default_backend

            backend = default_backend()
        self.backend = backend
        self.current: dict[str, Any] | None = None
        self._poll = poll
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

        def css(widget: Any, cls: str) -> Any:
            widget.add_class(cls)
            return widget

        self.dataset = css(W.Dropdown(description="Dataset", options=[]), "wb-sweep-dataset")
        self.model = css(W.Text(value="tiny-chat", description="Model"), "wb-sweep-model")
        self.config = css(W.Dropdown(description="Config", options=[("default", "default")], value="default"),
                          "wb-sweep-config")
        self.parameters = css(W.Textarea(placeholder=PLACEHOLDER, description="Parameters",
                                         layout={"width": "460px", "height": "70px"}), "wb-sweep-parameters")
        self.strategy = css(W.ToggleButtons(options=["grid", "random", "optuna"], value="grid"), "wb-sweep-strategy")
        self.max_trials = css(W.BoundedIntText(0, min=0, max=200, description="Trials", tooltip="0: the grid's size"),
                              "wb-sweep-trials")
        self.max_concurrent = css(W.BoundedIntText(1, min=1, max=16, description="At once"), "wb-sweep-concurrent")
        self.start_button = css(W.Button(description="Start sweep", button_style="primary", icon="play"),
                                "wb-sweep-start")
        self.message = css(W.HTML(""), "wb-sweep-message")
        self.sweep_select = css(W.Dropdown(description="Sweep", options=[]), "wb-sweep-select")
        self.refresh_button = css(W.Button(description="Refresh", icon="refresh"), "wb-sweep-refresh")
        self.status = css(W.HTML(""), "wb-sweep-status")
        self.trials = css(W.HTML(""), "wb-sweep-trials-table")
        self.suggestion = css(W.HTML(""), "wb-sweep-suggestion")
        self.charts = css(W.HBox([]), "wb-sweep-charts")

        self.start_button.on_click(lambda _b: self.start())
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.sweep_select.observe(lambda _c: self.show(), names="value")
        form = W.VBox([W.HTML("<h4 style='margin:2px 0'>New sweep</h4>"), W.HBox([self.dataset, self.model]),
                       self.config, self.parameters, self.strategy, W.HBox([self.max_trials, self.max_concurrent]),
                       self.start_button, self.message])
        view = W.VBox([W.HTML("<h4 style='margin:8px 0 2px'>Sweeps</h4>"), W.HBox([self.sweep_select,
                                                                                   self.refresh_button]),
                       self.status, self.trials, self.charts,
                       W.HTML("<h4 style='margin:8px 0 2px'>Suggestion</h4>"), self.suggestion])
        self.widget = css(W.VBox([form, view]), "wb-sweep-panel")
        self.refresh()

    def refresh(self) -> None:
        ok, datasets = guarded(self.message, self.backend.list_datasets)
        if ok:
            keep = self.dataset.value
            self.dataset.options = [(f"{d['name']} (v{d.get('version', 1)}, {d['samples']})", d["id"]) for d in datasets]
            ids = [d["id"] for d in datasets]
            self.dataset.value = keep if keep in ids else (ids[-1] if ids else None)
        ok, configs = guarded(self.message, self.backend.list_configs)
        if ok:
            keep = self.config.value
            self.config.options = [("default", "default")] + [(c["name"], c["id"]) for c in configs]
            self.config.value = keep if keep in [c["id"] for c in configs] else "default"
        ok, sweeps = guarded(self.message, self.backend.sweeps)
        if ok:
            keep = self.sweep_select.value
            self.sweep_select.options = [(f"{s['name']} · {s['status']}", s["sweep_id"]) for s in reversed(sweeps)]
            ids = [s["sweep_id"] for s in sweeps]
            self.sweep_select.value = keep if keep in ids else (ids[-1] if ids else None)  # else the newest
        self.show()

    def start(self) -> dict[str, Any] | None:
        try:
            params = parse_parameters(self.parameters.value)
        except ValueError as exc:
            self.message.value = error_html(exc)
            return None
        body = {"model": self.model.value.strip() or None, "dataset": self.dataset.value, "config": self.config.value,
                "strategy": self.strategy.value, "parameters": params, "max_concurrent": int(self.max_concurrent.value),
                **({"max_trials": int(self.max_trials.value)} if self.max_trials.value else {})}
        ok, sweep = guarded(self.message, self.backend.start_sweep, body)
        if not ok:
            return None
        self.message.value = ok_html(f"started {sweep['sweep_id']}: {sweep['max_trials']} trials")
        self.refresh()
        self.sweep_select.value = sweep["sweep_id"]
        self._ensure_polling()
        return sweep

    def show(self) -> dict[str, Any] | None:
        if not self.sweep_select.value:
            self.status.value, self.trials.value = "<i>no sweeps yet</i>", ""
            return None
        ok, sweep = guarded(self.status, self.backend.sweep, self.sweep_select.value)
        if not ok:
            return None
        self.current = sweep
        best = sweep.get("best_trial")
        done = sum(1 for t in sweep["trials"] if t["status"] in ("completed", "failed", "cancelled"))
        self.status.value = (f"<b>{esc(sweep['status'])}</b> · {esc(sweep['strategy'])} · {done}/{sweep['max_trials']} "
                             f"trials done" + (f" · best {esc(best['job_id'])}: {esc(sweep['metric'])} "
                                               f"{best[sweep['metric']]:.4f}" if best else ""))
        self.trials.value = trials_html(sweep)
        self._charts(sweep)
        if sweep["status"] != "running":
            ok, sug = guarded(self.suggestion, self.backend.suggestions, sweep["model"], sweep["dataset"])
            if ok:
                self.suggestion.value = (f"<code>{esc(json.dumps(sug['suggestion']))}</code><br>"
                                         f"<small>{esc(' '.join(sug['reasons']))}</small>")
        return sweep

    def _charts(self, sweep: dict[str, Any]) -> None:
        """The metric against each parameter, one scatter per parameter (log x for a log range)."""
        figs = []
        for key, space in sweep["parameters"].items():
            pts = [(t["params"][key], t["eval_loss"]) for t in sweep["trials"]
                   if t["eval_loss"] is not None and isinstance(t["params"].get(key), int | float)]
            log = isinstance(space, dict) and space.get("log") or (
                len(pts) > 1 and min(p[0] for p in pts) > 0 and max(p[0] for p in pts) / min(p[0] for p in pts) >= 100)
            sx = bq.LogScale() if log else bq.LinearScale()
            sy = bq.LinearScale()
            mark = bq.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], scales={"x": sx, "y": sy},
                              default_size=48, colors=["#1f77b4"])
            fig = bq.Figure(marks=[mark], title=f"eval_loss vs {key}", layout={"height": "240px", "width": "360px"},
                            axes=[bq.Axis(scale=sx, label=key), bq.Axis(scale=sy, orientation="vertical",
                                                                        tick_format=".3g")],
                            fig_margin={"top": 40, "bottom": 40, "left": 60, "right": 20})
            fig.add_class("wb-sweep-chart")
            figs.append(fig)
        self.charts.children = figs

    def _ensure_polling(self) -> None:
        if not self._poll or (self._poller is not None and self._poller.is_alive()):
            return
        self._poller = threading.Thread(target=self._loop, name="wb-sweep-poll", daemon=True)
        self._poller.start()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                sweep = self.show()
            except Exception:  # noqa: BLE001 - the next tick tries again
                continue
            if sweep and sweep["status"] != "running":
                return

    def close(self) -> None:
        self._stop.set()


