"""DatasetPanel: register (upload / path / sample), inspect stats, preview loss masking, split.

Every action is one call on a :class:`~workbench.widgets.backend.Backend`; errors from it are
shown in the panel (validation errors line by line), never raised out of a click handler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as w

from .backend import Backend
from .common import css, error_html, esc, guarded, info_html, line_errors_html, ok_html

DEFAULT_MODEL = "tiny-chat"
COMPUTING = "computing…"


def stats_html(stats: dict[str, Any]) -> str:
    """The stats of one dataset as a small table."""
    rows: list[tuple[str, str]] = [
        ("samples", str(stats.get("samples", "?"))),
        ("size", f"{stats.get('size_mb', '?')} MB"),
        ("roles", ", ".join(f"{r}: {n}" for r, n in (stats.get("roles") or {}).items())),
    ]
    tokens = stats.get("tokens")
    if tokens:
        rows += [
            ("tokens (total)", str(tokens.get("total"))),
            ("tokens (assistant)", str(tokens.get("assistant"))),
            ("tokens per sample (mean)", str(tokens.get("mean"))),
            ("tokens per sample (p95)", str(tokens.get("p95"))),
            ("tokenizer", str(stats.get("model") or tokens.get("tokenizer") or "")),
        ]
    else:
        chars = stats.get("chars") or {}
        rows.append(("characters (total / mean / p95)", f"{chars.get('total')} / {chars.get('mean')} / {chars.get('p95')}"))
    rows.append(("duplicates", str(stats.get("duplicates", 0))))
    body = "".join(f'<tr><th style="text-align:left;padding-right:1em">{esc(k)}</th><td>{esc(v)}</td></tr>'
                   for k, v in rows)
    return f'<table class="wb-stats-table">{body}</table>'


def histogram_html(hist: dict[str, Any] | None, height: int = 80) -> str:
    """Length histogram as inline HTML bars (one per bin, height proportional to its count)."""
    if not hist or not hist.get("counts"):
        return ""
    counts, edges, unit = hist["counts"], hist.get("bins") or [], hist.get("unit", "")
    top = max(counts) or 1
    bars = []
    for i, c in enumerate(counts):
        lo = edges[i] if i < len(edges) else ""
        hi = edges[i + 1] if i + 1 < len(edges) else ""
        px = max(1, round(height * c / top)) if c else 0
        bars.append(f'<div class="wb-hist-bar" title="{esc(lo)}–{esc(hi)} {esc(unit)}: {c}" '
                    f'style="width:22px;height:{px}px;background:#4a7fd6;margin-right:2px"></div>')
    lo, hi = (edges[0], edges[-1]) if edges else ("", "")
    return (f'<div><b>Length ({esc(unit)} per sample)</b></div>'
            f'<div style="display:flex;align-items:flex-end;height:{height}px">{"".join(bars)}</div>'
            f'<div style="font-size:small;color:#555">{esc(lo)} … {esc(hi)} {esc(unit)}; max bin {top}</div>')


def tokens_html(tokens: list[dict[str, Any]]) -> str:
    """Tokens as spans: trained ones plain, masked ones (no loss) greyed; whitespace kept."""
    spans = []
    for t in tokens:
        text = esc(t["text"])
        if t["trained"]:
            spans.append(f'<span class="wb-tok-trained">{text}</span>')
        else:
            spans.append(f'<span class="wb-tok-masked" style="color:#999">{text}</span>')
    return ('<pre class="wb-token-view" style="white-space:pre-wrap;word-break:break-word;margin:0">'
            + "".join(spans) + "</pre>")


class DatasetPanel:
    """Register, inspect, preview and split datasets through ``backend``."""

    def __init__(self, backend: Backend, model: str = DEFAULT_MODEL):
        self.backend = backend

        # -- registration --
        self.upload = css(w.FileUpload(accept=".jsonl,.csv", multiple=False, description="File"), "wb-dataset-upload")
        self.name = css(w.Text(placeholder="dataset name (default: file name)", description="Name"), "wb-dataset-name")
        self.register_button = css(w.Button(description="Register upload", icon="upload"), "wb-dataset-register")
        self.path = css(w.Text(placeholder="/path/to/data.jsonl", description="Path"), "wb-dataset-path")
        self.register_path_button = css(w.Button(description="Register path"), "wb-dataset-register-path")
        self.sample_button = css(w.Button(description="Use sample dataset"), "wb-dataset-sample")
        self.report = css(w.HTML(), "wb-dataset-report")

        # -- selection and inspection --
        self.datasets = css(w.Dropdown(options=[], description="Dataset"), "wb-dataset-list")
        self.model = css(w.Dropdown(options=self._model_options(model), value=model, description="Tokenizer"),
                         "wb-dataset-model")
        self.stats = css(w.HTML(), "wb-dataset-stats")
        self.histogram = css(w.HTML(), "wb-dataset-histogram")
        self.preview_index = css(w.IntText(value=0, description="Sample #"), "wb-dataset-preview-index")
        self.preview = css(w.HTML(), "wb-dataset-preview")

        # -- split --
        self.eval_fraction = css(w.FloatText(value=0.1, step=0.05, description="Eval fraction"),
                                 "wb-dataset-eval-fraction")
        self.seed = css(w.IntText(value=42, description="Seed"), "wb-dataset-seed")
        self.split_button = css(w.Button(description="Split"), "wb-dataset-split")
        self.split_result = css(w.HTML(), "wb-dataset-split-result")

        self.register_button.on_click(lambda _: self.register_upload())
        self.register_path_button.on_click(lambda _: self.register_path())
        self.sample_button.on_click(lambda _: self.use_sample())
        self.split_button.on_click(lambda _: self.split())
        self._quiet = False
        self.datasets.observe(lambda _: None if self._quiet else self.show_selected(), names="value")
        self.model.observe(lambda _: self.show_selected(), names="value")
        self.preview_index.observe(lambda _: self.show_preview(), names="value")

        heading = lambda text: w.HTML(f"<h4 style='margin:0.6em 0 0.2em'>{esc(text)}</h4>")  # noqa: E731
        self.widget = css(w.VBox([
            heading("Register a dataset"),
            w.HBox([self.upload, self.name, self.register_button]),
            w.HBox([self.path, self.register_path_button]),
            self.sample_button,
            self.report,
            heading("Inspect"),
            w.HBox([self.datasets, self.model]),
            w.HBox([self.stats, self.histogram]),
            heading("Preview (greyed tokens are masked: no loss)"),
            self.preview_index,
            self.preview,
            heading("Train / eval split"),
            w.HBox([self.eval_fraction, self.seed, self.split_button]),
            self.split_result,
        ]), "wb-dataset-panel")
        self.refresh()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- helpers --

    def _model_options(self, current: str) -> list[str]:
        ok, models = guarded(w.HTML(), self.backend.list_models)
        ids = [m["id"] for m in models if m.get("kind") != "custom"] if ok and models else []
        return ids if current in ids else [current, *ids]

    @property
    def selected(self) -> str | None:
        return self.datasets.value

    def refresh(self, select: str | None = None) -> None:
        """Reload the dataset list (keeping, or moving to, ``select``)."""
        ok, records = guarded(self.report, self.backend.list_datasets)
        if not ok:
            return
        options = [(f"{r['name']} ({r['samples']} samples) · {r['id']}", r["id"]) for r in records]
        ids = [v for _, v in options]
        keep = select if select in ids else (self.datasets.value if self.datasets.value in ids else None)
        if keep is None and ids:
            keep = ids[-1]
        previous = self.datasets.value
        self._quiet = True  # one explicit refresh below instead of one per trait change
        try:
            self.datasets.options = options
            self.datasets.value = keep
        finally:
            self._quiet = False
        if keep is not None and (keep != previous or select is not None):
            self.show_selected()

    def _registered(self, record: dict[str, Any] | None) -> None:
        if record is None:
            return
        self.report.value = ok_html(f"Registered {record['name']} ({record['id']}): {record['samples']} samples")
        self.refresh(select=record["id"])

    # -- actions --

    def register_upload(self) -> None:
        files = self.upload.value
        if not files:
            self.report.value = error_html("choose a .jsonl or .csv file first")
            return
        f = files[0]
        content = f["content"]
        data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
        name = self.name.value.strip() or Path(f["name"]).stem
        self.report.value = info_html(f"validating {f['name']}…")
        ok, record = guarded(self.report, lambda: self.backend.upload_dataset(data, f["name"], name))
        if ok:
            self.upload.value = ()
            self._registered(record)

    def register_path(self) -> None:
        path = self.path.value.strip()
        if not path:
            self.report.value = error_html("enter a file path first")
            return
        name = self.name.value.strip() or Path(path).stem
        self.report.value = info_html(f"validating {path}…")
        ok, record = guarded(self.report, lambda: self.backend.register_path(path, name))
        if ok:
            self._registered(record)

    def use_sample(self) -> None:
        ok, record = guarded(self.report, self.backend.register_sample)
        if ok:
            self._registered(record)

    def show_selected(self) -> None:
        self.show_stats()
        self.show_preview()

    def show_stats(self) -> None:
        dataset_id = self.selected
        if not dataset_id:
            self.stats.value, self.histogram.value = "", ""
            return
        self.stats.value = info_html(COMPUTING)
        self.histogram.value = ""
        ok, record = guarded(self.stats, lambda: self.backend.dataset(dataset_id, model=self.model.value))
        if ok and record:
            stats = record.get("stats") or {}
            self.stats.value = stats_html(stats)
            self.histogram.value = histogram_html(stats.get("histogram"))

    def show_preview(self) -> None:
        dataset_id = self.selected
        if not dataset_id:
            self.preview.value = ""
            return
        index = self.preview_index.value
        self.preview.value = info_html(COMPUTING)
        ok, p = guarded(self.preview, lambda: self.backend.preview(dataset_id, self.model.value, index))
        if ok and p:
            head = (f'<div class="wb-preview-summary">sample {p["index"]} of {p["samples"]} · '
                    f'{p["trained_tokens"]} of {p["total_tokens"]} tokens trained</div>')
            self.preview.value = head + tokens_html(p["tokens"])

    def split(self) -> None:
        dataset_id = self.selected
        if not dataset_id:
            self.split_result.value = error_html("select a dataset first")
            return
        ok, parts = guarded(self.split_result, lambda: self.backend.split_dataset(
            dataset_id, self.eval_fraction.value, self.seed.value))
        if ok and parts:
            items = "".join(f"<li>{esc(part)}: {esc(r['name'])} ({esc(r['id'])}, {r['samples']} samples)</li>"
                            for part, r in parts.items())
            self.split_result.value = ok_html("Split done") + f"<ul>{items}</ul>"
            self.refresh()


__all__ = ["DatasetPanel", "histogram_html", "line_errors_html", "stats_html", "tokens_html"]
