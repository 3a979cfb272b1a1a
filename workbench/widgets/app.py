"""The whole workbench as one tabbed widget: what the Voila app and notebooks display."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from .backend import Backend, default_backend


class WorkbenchApp:
    """Datasets, Configs, Training, Sweeps, Compare, Deploy, Knowledge and Analytics tabs over one backend."""

    def __init__(self, backend: Backend | None = None):
        from .analytics import AnalyticsPanel
        from .compare import JobsComparison
        from .configs import ConfigEditor
        from .datasets import DatasetPanel
        from .deployment import DeploymentPanel
        from .graphsearch import GraphSearchPanel
        from .monitor import TrainingMonitor
        from .sweeps import SweepPanel

        self.backend = backend or default_backend()
        self.datasets = DatasetPanel(self.backend)
        self.configs = ConfigEditor(self.backend)
        self.monitor = TrainingMonitor(self.backend)
        self.sweeps = SweepPanel(self.backend)
        self.compare = JobsComparison(self.backend)
        self.deploy = DeploymentPanel(self.backend)
        self.knowledge = GraphSearchPanel(self.backend)
        self.analytics = AnalyticsPanel(self.backend)
        self.tabs = w.Tab(children=[self.datasets.widget, self.configs.widget, self.monitor.widget,
                                    self.sweeps.widget, self.compare.widget, self.deploy.widget,
                                    self.knowledge.widget, self.analytics.widget])
        for i, title in enumerate(["Datasets", "Configs", "Training", "Sweeps", "Compare", "Deploy", "Knowledge",
                                   "Analytics"]):
            self.tabs.set_title(i, title)
        self.tabs.add_class("wb-app-tabs")
        self.tabs.observe(self._on_tab, names="selected_index")
        title = w.HTML("<h2 style='margin:4px 0'>Fine-Tune Workbench</h2>")
        where = "remote: " + getattr(self.backend, "base_url", "") if self.backend.remote else "in-process"
        self.widget = w.VBox([title, w.HTML(f"<small>backend: {where}</small>"), self.tabs])
        self.widget.add_class("wb-app")

    def _on_tab(self, change: dict[str, Any]) -> None:
        """Panels list what other panels created; refresh the one being opened."""
        panel = [self.datasets, self.configs, self.monitor, self.sweeps, self.compare, self.deploy,
                 self.knowledge, self.analytics][change["new"]]
        refresh = getattr(panel, "reload", None) or getattr(panel, "refresh", None)
        if callable(refresh):
            try:
                refresh()
            except Exception:  # noqa: BLE001 - a refresh failure shows up in the panel itself
                pass

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def build_app(backend: Backend | None = None) -> WorkbenchApp:
    return WorkbenchApp(backend)
