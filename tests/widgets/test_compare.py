"""JobsComparison, kernel-free: two real tiny-chat jobs trained in this process, compared through
a real LocalBackend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.testing import TrainedJob, copy_job, scratch_home

from .conftest import FAST, in_process_backend


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path,
        finished_lora_job_source: TrainedJob) -> dict[str, Any]:
    """Two finished 10-step jobs with different learning rates, so the metrics differ: the session's
    (1e-3), copied, and one trained here (1e-4)."""
    import torch

    from workbench.configs import deep_merge

    torch.set_num_threads(1)
    home = tmp_path_factory.mktemp("compare-home")
    with scratch_home(home, tiny_chat=tiny_chat_dir):
        backend = in_process_backend()
        sample = backend.register_sample()
        jobs = [copy_job(finished_lora_job_source),  # FAST as it is: learning rate 1e-3
                backend.jobs.start("tiny-chat", sample["id"], "lora",
                                   overrides=deep_merge(FAST, {"training": {"learning_rate": 1e-4}}))]
        assert all(j["status"] == "completed" for j in jobs), jobs
    return {"home": home, "tiny": tiny_chat_dir, "jobs": jobs}


@pytest.fixture(autouse=True)
def _home(env: dict[str, Any]) -> Iterator[None]:
    with scratch_home(env["home"], tiny_chat=env["tiny"]):
        yield


@pytest.fixture
def backend(env: dict[str, Any]) -> Any:
    return in_process_backend()


def _panel(backend: Any) -> Any:
    from workbench.widgets.compare import JobsComparison

    return JobsComparison(backend)


def test_panel_lists_jobs_with_stable_css_classes(backend: Any, env: dict[str, Any]) -> None:
    p = _panel(backend)
    assert "wb-compare-panel" in p.widget._dom_classes
    assert "wb-compare-jobs" in p.jobs._dom_classes
    assert "wb-compare-run" in p.run_button._dom_classes
    assert "wb-compare-chart" in p.chart._dom_classes
    assert "wb-compare-table" in p.table._dom_classes
    ids = [v for _, v in p.jobs.options]
    assert set(ids) == {j["id"] for j in env["jobs"]}
    assert all(label.split(" · ")[1] == "completed" for label, _ in p.jobs.options)


def test_compare_overlays_one_loss_line_per_job_and_marks_the_winners(backend: Any, env: dict[str, Any]) -> None:
    p = _panel(backend)
    ids = [j["id"] for j in env["jobs"]]
    p.jobs.value = tuple(ids)
    p.run_button.click()

    assert p.error.value == ""
    # the chart: one Lines per job, labelled with the job id, on shared scales, with a legend
    assert [list(mark.labels) for mark in p.chart.marks] == [[i] for i in ids]
    assert all(mark.display_legend for mark in p.chart.marks)
    assert len({id(mark.scales["y"]) for mark in p.chart.marks}) == 1
    for job_id, mark in zip(ids, p.chart.marks):
        train = [e for e in backend.jobs.metrics(job_id) if e["type"] == "train"]
        assert list(mark.x) == [e["step"] for e in train]
        assert len(mark.y) == len(train)

    # the table: one row per job; each winner's cell carries the wb-winner class and a star
    result = backend.compare(ids)
    html = p.table.value
    rows = {r.split('data-job="', 1)[1].split('"', 1)[0]: r for r in html.split("<tr")[2:]}
    assert set(rows) == set(ids)
    winners = {k: v for k, v in result["winner"].items() if v}
    assert winners
    assert html.count('class="wb-winner"') == len(winners)
    for key, job_id in winners.items():
        assert f'class="wb-winner" title="{key}"' in rows[job_id]
        assert "★" in rows[job_id]
    losers = set(ids) - set(winners.values())
    for job_id in losers:
        assert "wb-winner" not in rows[job_id]


def test_fewer_than_two_jobs_is_an_error_message(backend: Any, env: dict[str, Any]) -> None:
    p = _panel(backend)
    p.jobs.value = (env["jobs"][0]["id"],)
    p.run_button.click()
    assert "at least two" in p.error.value
    assert p.table.value == "" and list(p.chart.marks) == []
    p.jobs.value = ()
    p.run_button.click()
    assert "at least two" in p.error.value


def test_backend_errors_are_shown_not_raised(backend: Any, env: dict[str, Any]) -> None:
    from workbench.client import APIError

    class Failing:
        def __getattr__(self, name: str) -> Any:
            return getattr(backend, name)

        def compare(self, job_ids: list[str]) -> dict[str, Any]:
            raise APIError(404, "NOT_FOUND", "job 'x' not found", field="job_ids")

    p = _panel(Failing())
    p.jobs.value = tuple(j["id"] for j in env["jobs"])
    p.run_button.click()
    assert "job &#x27;x&#x27; not found" in p.error.value
