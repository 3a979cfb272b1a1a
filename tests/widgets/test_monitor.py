"""TrainingMonitor, kernel-free: a real LocalBackend over a temporary home, with real tiny-chat
jobs trained in this process (InProcessExecutor), plus stub backends for live streams and errors.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.testing import TrainedJob, copy_job, scratch_home

from .conftest import FAST, in_process_backend

ALL_STATES = ["queued", "pending", "running", "paused", "completed", "failed", "cancelled"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path,
        finished_lora_job_source: TrainedJob) -> dict[str, Any]:
    """One home with the sample dataset and one finished 10-step LoRA job (checkpoints at 5 and 10),
    a copy of the session's."""
    import torch

    torch.set_num_threads(1)
    home = tmp_path_factory.mktemp("monitor-home")
    with scratch_home(home, tiny_chat=tiny_chat_dir):
        sample = in_process_backend().register_sample()
        job = copy_job(finished_lora_job_source)
    return {"home": home, "tiny": tiny_chat_dir, "sample": sample, "job": job}


@pytest.fixture(autouse=True)
def _home(env: dict[str, Any]) -> Iterator[None]:
    with scratch_home(env["home"], tiny_chat=env["tiny"]):
        yield


@pytest.fixture
def backend(env: dict[str, Any]) -> Any:
    return in_process_backend()


def _monitor(backend: Any, **kw: Any) -> Any:
    from workbench.widgets.monitor import TrainingMonitor

    return TrainingMonitor(backend, **kw)


# ---------------------------------------------------------------------------- downsampling

def test_downsampler_keeps_at_most_cap_points_and_always_the_last() -> None:
    from workbench.widgets.charts import Downsampler, downsample

    d = Downsampler(cap=50)
    for i in range(10_000):
        d.add(i, i * 2.0)
        xs, ys = d.points()
        assert len(xs) == len(ys) <= 50
        assert xs[-1] == i and ys[-1] == i * 2.0  # the newest point is always shown
    assert xs[0] == 0
    assert xs == sorted(xs)
    assert d.stride > 1  # the stride doubled as the run grew
    # short series are untouched
    assert downsample([1, 2, 3], [4, 5, 6], cap=500) == ([1, 2, 3], [4, 5, 6])
    assert len(downsample(range(100_000), range(100_000))[0]) <= 500


# ---------------------------------------------------------------------------- layout

def test_panel_has_the_stable_css_classes_and_start_choices(backend: Any, env: dict[str, Any]) -> None:
    m = _monitor(backend)
    assert "wb-monitor-panel" in m.widget._dom_classes
    for w, cls in [(m.job_picker, "wb-monitor-job"), (m.refresh_button, "wb-monitor-refresh"),
                   (m.model, "wb-monitor-model"), (m.dataset, "wb-monitor-dataset"), (m.config, "wb-monitor-config"),
                   (m.max_steps, "wb-monitor-max-steps"), (m.start_button, "wb-monitor-start"),
                   (m.pause_button, "wb-monitor-pause"), (m.resume_button, "wb-monitor-resume"),
                   (m.cancel_button, "wb-monitor-cancel"), (m.progress, "wb-monitor-progress"),
                   (m.eta, "wb-monitor-eta"), (m.loss_chart, "wb-monitor-loss-chart"),
                   (m.lr_chart, "wb-monitor-lr-chart"), (m.throughput_chart, "wb-monitor-throughput-chart"),
                   (m.status_html, "wb-monitor-status"), (m.logs_html, "wb-monitor-logs"),
                   (m.checkpoints_html, "wb-monitor-checkpoints"), (m.validate_button, "wb-monitor-validate"),
                   (m.validation_html, "wb-monitor-validation")]:
        assert cls in w._dom_classes, cls
    assert m.model.value == "tiny-chat"  # only available models, tiny-chat by default
    assert m.config.value == "default"
    assert {"default", "sft", "lora", "full"} <= set(m.config.options and [v for _, v in m.config.options])
    assert env["sample"]["id"] in [v for _, v in m.dataset.options]
    job = env["job"]
    label = dict((v, k) for k, v in m.job_picker.options)[job["id"]]
    assert label.startswith(f"{job['id']} · completed · ")  # "job-id · status · name"
    # nothing is followed yet: every control button is disabled
    assert m.pause_button.disabled and m.resume_button.disabled and m.cancel_button.disabled


# ---------------------------------------------------------------------------- following a finished job

def test_following_a_completed_job_fills_charts_progress_status_and_checkpoints(backend: Any, env: dict[str, Any]) -> None:
    job_id = env["job"]["id"]
    m = _monitor(backend)
    m.job_picker.value = job_id  # picking a job follows it

    assert m.job_id == job_id
    train = [e for e in backend.jobs.metrics(job_id) if e["type"] == "train"]
    evals = [e for e in backend.jobs.metrics(job_id) if e["type"] == "eval"]
    assert train and evals
    assert list(m._loss_line.x) == [e["step"] for e in train]
    assert list(m._loss_line.y) == pytest.approx([e["loss"] for e in train])
    assert len(m._eval_line.x) == len(m._eval_line.y) == len(evals)
    assert len(m._lr_line.x) == len(m._lr_line.y) == len(train)
    assert len(m._tps_line.x) == len(m._tps_line.y) == len(train)

    assert m.progress.value == 100
    assert "10/10" in m.eta.value
    status = backend.status(job_id)
    assert "Loss" in m.status_html.value and f"{status['loss']:.6g}" in m.status_html.value
    assert "completed" in m.status_html.value
    # a finished job needs no events thread
    assert m._thread is None
    # every button is disabled once the job is final
    assert m.pause_button.disabled and m.resume_button.disabled and m.cancel_button.disabled

    cps = backend.checkpoints(job_id)
    best = cps["best_checkpoint"]
    assert best
    html = m.checkpoints_html.value
    assert html.count("<tr") == 1 + len(cps["checkpoints"])
    best_row = next(r for r in html.split("<tr") if "wb-best-checkpoint" in r)
    assert "★" in best_row and f">{best}<" in best_row
    assert html.count("wb-best-checkpoint") == 1
    assert "download" not in html.split("</tr>", 1)[1]  # no api_url → no links
    assert [c["path"] for c in cps["checkpoints"]] == [o for o in m.val_checkpoint.options][: len(cps["checkpoints"])]
    assert m.val_checkpoint.value == best

    # the log tail: at most 30 lines, in a <pre>
    assert m.logs_html.value.startswith('<pre class="wb-log">')
    assert 0 < m.logs_html.value.count("\n") + 1 <= 30

    # refresh() is idempotent: history is de-duplicated by (type, step)
    m.refresh()
    assert len(m._loss_line.x) == len(train)


def test_download_links_are_short_lived_signed_urls_the_server_accepts(backend: Any, env: dict[str, Any]) -> None:
    """The app's links open in the browser under the token's rules, with no long-lived token in them."""
    import html
    import re

    from starlette.testclient import TestClient

    from workbench.server.app import create_app
    from workbench.users import local_token

    backend.api_url = "http://127.0.0.1:8000"
    m = _monitor(backend, job_id=env["job"]["id"])
    job_id = env["job"]["id"]
    best = backend.checkpoints(job_id)["best_checkpoint"]
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', m.checkpoints_html.value)]
    link = next(h for h in hrefs if f"checkpoint={best}" in h)
    assert link.startswith(f"http://127.0.0.1:8000/api/training/{job_id}/download/model?")
    assert "wb_sig=" in link and "wb_exp=" in link and local_token() not in link
    with TestClient(create_app(), base_url="http://127.0.0.1:8000") as browser:  # no Authorization header
        r = browser.get(link.removeprefix("http://127.0.0.1:8000"))
        assert r.status_code == 200 and r.content[:2] == b"PK"
        assert browser.get(f"/api/training/{job_id}/download/model?checkpoint={best}").status_code == 401


# ---------------------------------------------------------------------------- buttons per state

@pytest.mark.parametrize("state", ALL_STATES)
def test_control_buttons_are_enabled_only_where_they_apply(backend: Any, state: str) -> None:
    m = _monitor(backend)
    m._apply_status({"status": state, "progress": 40.0, "current_step": 4, "total_steps": 10})
    assert m.pause_button.disabled is (state not in {"pending", "running"})
    assert m.resume_button.disabled is (state != "paused")
    assert m.cancel_button.disabled is (state not in {"queued", "pending", "running", "paused"})
    assert m.progress.value == 40.0
    assert "4/10" in m.eta.value


def test_stale_warning_and_error_are_shown(backend: Any) -> None:
    m = _monitor(backend)
    m._apply_status({"status": "running", "progress": 10.0, "current_step": 1, "total_steps": 10,
                     "estimated_remaining": "2m 5s",
                     "warning": "⚠️ No updates received in 7 minute(s). The training process may have terminated unexpectedly."})
    assert "wb-stale-warning" in m.status_html.value and "No updates received in 7 minute(s)" in m.status_html.value
    assert "ETA 2m 5s" in m.eta.value
    m._apply_status({"status": "failed", "error": "CUDA <out> of memory"})
    assert "wb-stale-warning" not in m.status_html.value
    assert "wb-job-error" in m.status_html.value and "CUDA &lt;out&gt; of memory" in m.status_html.value


# ---------------------------------------------------------------------------- the live events thread

class StreamBackend:
    """A LocalBackend whose job is "running" while a scripted event stream plays after ``history`` (rows)."""

    def __init__(self, inner: Any, history: list[dict[str, Any]], stream: Iterator[dict[str, Any]]):
        self.inner, self.history, self.stream = inner, history, stream
        self.state = "running"
        self.calls: dict[str, int] = {"checkpoints": 0, "logs": 0, "status": 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def status(self, job_id: str) -> dict[str, Any]:
        self.calls["status"] += 1
        from workbench.job_states import actions

        return {**self.inner.status(job_id), "status": self.state, "actions": actions(self.state)}

    def rows(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.history)

    def events(self, job_id: str) -> Iterator[dict[str, Any]]:
        return self.stream

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        self.calls["checkpoints"] += 1
        return self.inner.checkpoints(job_id)

    def logs(self, job_id: str, tail: int = 200) -> list[str]:
        self.calls["logs"] += 1
        return self.inner.logs(job_id, tail)


def test_events_thread_deduplicates_history_and_refreshes_on_checkpoints(backend: Any, env: dict[str, Any]) -> None:
    job_id = env["job"]["id"]
    events = backend.jobs.metrics(job_id)
    train = [e for e in events if e["type"] == "train"]
    checkpoint = next(e for e in events if e["type"] == "checkpoint")
    gate = threading.Event()
    seen_before_checkpoint: dict[str, int] = {}

    def stream() -> Iterator[dict[str, Any]]:
        yield {"kind": "status", "status": "running", "error": None}
        for e in events:  # the local stream starts at the beginning of metrics.jsonl: all duplicates
            if e is checkpoint:
                seen_before_checkpoint.update(stub.calls)
            yield {"kind": "metric", **e}
        yield {"kind": "metric", **train[-1], "step": 11, "loss": 0.5}  # one new point
        stub.state = "completed"
        yield {"kind": "status", "status": "completed", "error": None}
        gate.set()

    stub = StreamBackend(backend, history=backend.rows(job_id)[:1], stream=stream())
    m = _monitor(stub)
    m.follow(job_id)
    assert m._thread is not None and m._thread.daemon
    m._thread.join(timeout=30)
    assert gate.is_set() and not m._thread.is_alive()

    assert list(m._loss_line.x) == [e["step"] for e in train] + [11]  # history once, then the new point
    assert m._loss_line.y[-1] == 0.5
    assert m.progress.value == 100 and m.status["status"] == "completed"
    # the checkpoint event refreshed the checkpoints table (and again at the end) and the logs
    assert stub.calls["checkpoints"] >= seen_before_checkpoint["checkpoints"] + 2
    assert stub.calls["logs"] > seen_before_checkpoint["logs"]
    assert "wb-best-checkpoint" in m.checkpoints_html.value
    assert m.pause_button.disabled and m.cancel_button.disabled


def test_following_another_job_stops_the_previous_thread(backend: Any, env: dict[str, Any]) -> None:
    job_id = env["job"]["id"]
    train = [e for e in backend.jobs.metrics(job_id) if e["type"] == "train"]
    feed: queue.Queue[dict[str, Any] | None] = queue.Queue()
    consumed = threading.Event()

    def stream() -> Iterator[dict[str, Any]]:
        while (item := feed.get()) is not None:
            yield item
            consumed.set()

    stub = StreamBackend(backend, history=[], stream=stream())
    m = _monitor(stub)
    m.follow(job_id)
    first = m._thread
    feed.put({"kind": "metric", **train[0]})
    assert consumed.wait(10)
    consumed.clear()
    for _ in range(50):  # the item is applied just after it is yielded
        if len(m._loss_line.x) == 1:
            break
        threading.Event().wait(0.05)
    assert list(m._loss_line.x) == [train[0]["step"]]

    m.follow(job_id, live=False)  # a new generation: the old thread must drop its next item and end
    feed.put({"kind": "metric", **train[1]})
    first.join(timeout=10)
    assert not first.is_alive()
    assert list(m._loss_line.x) == []  # the old stream's item was not drawn


# ---------------------------------------------------------------------------- actions

def test_validate_click_shows_metrics_and_examples(backend: Any, env: dict[str, Any]) -> None:
    m = _monitor(backend, job_id=env["job"]["id"])
    m.val_dataset.value = env["sample"]["id"]
    m.validate_button.click()
    m._validation_thread.join(timeout=300)
    html = m.validation_html.value
    assert "perplexity" in html and "wb-error-text" not in html, html
    assert not m.validate_button.disabled


def test_backend_errors_are_shown_not_raised(backend: Any, env: dict[str, Any]) -> None:
    from workbench.errors import Conflict

    class Failing(StreamBackend):
        def pause(self, job_id: str) -> dict[str, Any]:
            raise Conflict(f"job '{job_id}' is completed; cannot move to paused", field="status")

    stub = Failing(backend, history=[], stream=iter(()))
    m = _monitor(stub)
    m.follow(env["job"]["id"], live=False)
    assert not m.pause_button.disabled  # "running" per the stub
    m.pause_button.click()
    assert "cannot move to paused" in m.error.value


def test_start_runs_a_job_with_max_steps_and_follows_it(backend: Any, env: dict[str, Any]) -> None:
    cfg = backend.create_config("fast", {"training": {k: v for k, v in FAST["training"].items()}}, "lora")
    m = _monitor(backend)
    assert cfg["id"] in [v for _, v in m.config.options]  # saved configs next to the templates
    assert m.dataset.value == m.dataset.options[-1][1] and m.val_dataset.value is None  # the newest, not blank
    m.config.value = cfg["id"]
    m.dataset.value = env["sample"]["id"]
    m.max_steps.value = 5
    m.start_button.click()

    assert m.error.value == ""
    assert m.job_id and m.job_id != env["job"]["id"]
    assert m.job_picker.value == m.job_id
    job = backend.jobs.get(m.job_id)
    assert job["config"]["training"]["max_steps"] == 5
    assert job["config_id"] == cfg["id"]
    assert m.status["status"] == "completed" and m.progress.value == 100
    assert list(m._loss_line.x) == [5]
