"""bqplot chart helpers for the panels, and the downsampler that keeps live series small.

Every bqplot update resends the whole series to the browser, so a long run would grow the
traffic without bound. :class:`Downsampler` keeps every ``stride``-th point and doubles the
stride whenever the kept points reach the cap — at most ``cap`` points per series, always
including the newest one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import bqplot as bq
import numpy as np

DEFAULT_CAP = 500
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


class Downsampler:
    """An append-only (x, y) series of at most ``cap`` points; the last point added is always kept."""

    def __init__(self, cap: int = DEFAULT_CAP):
        if cap < 2:
            raise ValueError("cap must be at least 2")
        self.cap = cap
        self.stride = 1
        self.count = 0  # points added so far
        self._xs: list[float] = []
        self._ys: list[float] = []
        self._last: tuple[float, float] | None = None

    def add(self, x: float, y: float) -> None:
        if self.count % self.stride == 0:
            self._xs.append(x)
            self._ys.append(y)
            if len(self._xs) > self.cap - 1:  # one slot stays free for the newest point
                self._xs, self._ys = self._xs[::2], self._ys[::2]
                self.stride *= 2
        self._last = (x, y)
        self.count += 1

    def extend(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        for x, y in zip(xs, ys):
            self.add(x, y)

    def points(self) -> tuple[list[float], list[float]]:
        xs, ys = list(self._xs), list(self._ys)
        if self._last is not None and (self.count - 1) % self.stride != 0:
            xs.append(self._last[0])
            ys.append(self._last[1])
        return xs, ys

    def __len__(self) -> int:
        return len(self.points()[0])


def downsample(xs: Sequence[float], ys: Sequence[float], cap: int = DEFAULT_CAP) -> tuple[list[float], list[float]]:
    """The points :class:`Downsampler` keeps for this whole series."""
    d = Downsampler(cap)
    d.extend(xs, ys)
    return d.points()


def line_chart(title: str, x_label: str, y_label: str, series: Sequence[dict[str, Any]],
               css_class: str | None = None, height: str = "260px",
               dates: bool = False) -> tuple[bq.Figure, list[bq.Lines]]:
    """A figure with one ``Lines`` mark per entry of ``series`` on shared scales.

    Each entry: ``{"label": str, "color": str?, "markers": bool?}`` — markers draw points only.
    ``dates``: the x values are times (see :func:`as_times`), on a date axis; every line also marks
    its points, so a range with one busy bucket still shows it.
    """
    sx, sy = (bq.DateScale() if dates else bq.LinearScale()), bq.LinearScale()
    marks = []
    for i, s in enumerate(series):
        markers = bool(s.get("markers"))
        marks.append(bq.Lines(
            x=[], y=[], scales={"x": sx, "y": sy}, labels=[s["label"]], display_legend=True,
            colors=[s.get("color") or PALETTE[i % len(PALETTE)]],
            marker="circle" if markers or dates else None, marker_size=32 if markers else 12,
            line_style="dashed" if markers else "solid", stroke_width=0 if markers else 2,
        ))
    fig = bq.Figure(
        marks=marks, title=title, legend_location="top-right",
        axes=[bq.Axis(scale=sx, label=x_label, **({"tick_format": "%b %d"} if dates else {})),
              bq.Axis(scale=sy, label=y_label, side="left", tick_format=".3g")],
        fig_margin={"top": 40, "bottom": 40, "left": 60, "right": 20},
        layout={"height": height, "width": "100%"},
    )
    if css_class:
        fig.add_class(css_class)
    return fig, marks


def set_points(mark: bq.Lines, xs: Sequence[Any], ys: Sequence[float]) -> None:
    """Replace a mark's data in one message (x and y always the same length)."""
    with mark.hold_sync():
        mark.x = xs if isinstance(xs, np.ndarray) else list(xs)
        mark.y = list(ys)


def as_times(stamps: Sequence[str]) -> np.ndarray:
    """ISO-8601 stamps (``2026-12-01T00:00:00Z``, ``…+01:00``) as datetime64 of their own wall-clock time,
    so a bucket of a zone's day is drawn at that day's midnight, whatever the zone."""
    return np.array([datetime.fromisoformat(t).replace(tzinfo=None) for t in stamps], dtype="datetime64[ms]")


def add_line(fig: bq.Figure, label: str, xs: Sequence[float], ys: Sequence[float], color: str | None = None) -> bq.Lines:
    """Add one more ``Lines`` mark on the figure's existing scales (the compare overlay)."""
    sx, sy = fig.axes[0].scale, fig.axes[1].scale
    mark = bq.Lines(x=list(xs), y=list(ys), scales={"x": sx, "y": sy}, labels=[label], display_legend=True,
                    colors=[color or PALETTE[len(fig.marks) % len(PALETTE)]], stroke_width=2)
    fig.marks = [*fig.marks, mark]
    return mark
