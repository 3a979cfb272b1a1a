"""The same panels work against a remote workbench: RemoteBackend over the live server."""

from __future__ import annotations

from typing import Any

from workbench.widgets.backend import RemoteBackend
from workbench.widgets.datasets import DatasetPanel
from workbench.widgets.monitor import TrainingMonitor

from .conftest import LiveServer
from .test_live import flow  # noqa: F401 - the shared finished job


def test_dataset_panel_registers_and_previews_through_the_server(live_server: LiveServer,
                                                                  alice: tuple[dict, str]) -> None:
    backend = RemoteBackend(live_server.base_url, token=alice[1])
    panel = DatasetPanel(backend)
    panel.sample_button.click()
    listed = backend.list_datasets()
    assert any(d["name"] == "Customer Support Chat (sample)" for d in listed)
    assert "400" in panel.stats.value
    assert "wb-tok-masked" in panel.preview.value and "wb-tok-trained" in panel.preview.value


def test_training_monitor_follows_a_job_through_the_server(live_server: LiveServer, alice: tuple[dict, str],
                                                           flow: dict[str, Any]) -> None:  # noqa: F811
    backend = RemoteBackend(live_server.base_url, token=alice[1])
    monitor = TrainingMonitor(backend)
    monitor.follow(flow["job_id"])
    assert monitor.status["status"] == "completed"
    assert list(monitor._loss_line.x) == [5, 10]  # the train events, from the server's metrics history
    best = backend.checkpoints(flow["job_id"])["best_checkpoint"]
    assert "wb-best-checkpoint" in monitor.checkpoints_html.value and best in monitor.checkpoints_html.value
    assert f"/api/training/{flow['job_id']}/download/model?checkpoint=" in monitor.checkpoints_html.value


def test_both_backends_read_the_same_rows(live_server: LiveServer, alice: tuple[dict, str],
                                          flow: dict[str, Any]) -> None:  # noqa: F811
    """One reader of step rows: the remote backend gets exactly what the core gives in process."""
    from workbench.jobs.service import JobService

    remote = RemoteBackend(live_server.base_url, token=alice[1]).rows(flow["job_id"])
    local = JobService().rows(flow["job_id"], owner=alice[0]["id"])
    assert remote == local and [r["step"] for r in local] == [5, 10]
    assert all(r["train_loss"] is not None for r in local) and any(r["eval_loss"] is not None for r in local)
