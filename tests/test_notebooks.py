"""The notebooks run top to bottom: the quickstart tutorial under papermill, the app builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_quickstart_runs_top_to_bottom_under_papermill(home: Path, tiny_chat_dir: Path, monkeypatch, tmp_path) -> None:
    import papermill as pm

    monkeypatch.setenv("WORKBENCH_TINY_CHAT_CACHE", str(tiny_chat_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "quickstart.out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "quickstart.ipynb"), str(out), kernel_name="python3",
                        parameters={"max_steps": 20}, progress_bar=False, cwd=str(ROOT / "notebooks"))
    nb = json.loads(out.read_text())
    outputs = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                      for o in c.get("outputs", []))
    assert "completed loss" in outputs
    assert "validated: True" in outputs


def test_the_voila_app_notebook_builds_every_tab(home: Path) -> None:
    from workbench.widgets.app import build_app

    app = build_app()
    assert [app.tabs.get_title(i) for i in range(len(app.tabs.children))] == [
        "Datasets", "Configs", "Training", "Sweeps", "Compare", "Deploy", "Knowledge", "Analytics"]
    src = json.loads((ROOT / "notebooks" / "workbench.ipynb").read_text())
    assert any("build_app()" in "".join(c["source"]) for c in src["cells"])
