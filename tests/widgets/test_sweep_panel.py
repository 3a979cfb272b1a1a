"""SweepPanel in-process: a one-trial grid sweep started from the panel runs to its best trial and a
suggestion; bad parameters are shown, not raised."""

from __future__ import annotations

import time
from pathlib import Path

from workbench.widgets.backend import LocalBackend
from workbench.widgets.sweeps import SweepPanel, parse_parameters


def test_parameters_are_lists_or_ranges() -> None:
    assert parse_parameters("training.learning_rate=1e-4,3e-4\nlora.r=8,16\n") == {
        "training.learning_rate": [1e-4, 3e-4], "lora.r": [8, 16]}
    assert parse_parameters("training.learning_rate=1e-5:1e-3:log") == {
        "training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}


def test_a_sweep_started_from_the_panel_shows_its_trials_best_and_suggestion(home: Path, tiny_chat_dir: Path,
                                                                             monkeypatch) -> None:
    from workbench.configs import ConfigService
    from workbench.datasets import DatasetService
    from workbench.testing import fast
    from workbench.tinymodel import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tiny_chat_dir))
    DatasetService().register_sample()
    cfg = ConfigService().create("fast", fast(training={"max_steps": 4, "save_steps": 4, "eval_steps": 2,
                                                         "save_total_limit": 1}), template_type="lora")
    panel = SweepPanel(LocalBackend(), poll=False)
    panel.config.value = cfg["id"]
    panel.parameters.value = "training.nonsense=1,2"
    assert panel.start() is None and "training.nonsense" in panel.message.value  # shown in the panel
    panel.parameters.value = "training.learning_rate=2e-3"
    sweep = panel.start()
    assert sweep and "1 trials" in panel.message.value and panel.sweep_select.value == sweep["sweep_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "completed" not in panel.status.value:
        time.sleep(0.5)
        panel.show()
    assert "completed" in panel.status.value and "best" in panel.status.value
    assert sweep["sweep_id"] in panel.suggestion.value and "0.002" in panel.suggestion.value
    assert len(panel.charts.children) == 1 and len(panel.charts.children[0].marks[0].x) == 1
    opened = SweepPanel(LocalBackend(), poll=False)  # the tab opened later (or in another process)
    assert opened.sweep_select.value == sweep["sweep_id"] and "completed" in opened.status.value  # the newest
