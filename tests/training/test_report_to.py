"""``training.report_to``: TensorBoard's events and MLflow's run are written under the job folder and read
back; a reporter that is not installed fails the job at once, naming the setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench.configs import parse_config
from workbench.testing import fast, train_finished_job
from workbench.training import hardware


def test_tensorboard_events_land_in_the_job_folder_and_read_back(tmp_path: Path, tiny_chat_dir: Path,
                                                                 monkeypatch) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    job = train_finished_job(tmp_path, overrides=fast(training={"report_to": "tensorboard"}), tiny_chat=tiny_chat_dir)
    logdir = job.folder / "tensorboard"
    assert any(p.name.startswith("events.out.tfevents") for p in logdir.rglob("*"))
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    losses = acc.Scalars("train/loss")
    assert [e.step for e in losses] == [5, 10] and all(e.value > 0 for e in losses)  # FAST logs every 5 steps


def test_an_mlflow_run_lands_in_the_job_folder_and_reads_back(tmp_path: Path, tiny_chat_dir: Path,
                                                              monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):  # unset now, and again after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    job = train_finished_job(tmp_path, overrides=fast(training={"report_to": "mlflow"}), tiny_chat=tiny_chat_dir)
    client = MlflowClient(tracking_uri=f"sqlite:///{job.folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(job.job_id)  # one experiment per job, named by its id
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == [5, 10] and all(m.value > 0 for m in losses)
    assert "eval_loss" in run.data.metrics and run.data.params["learning_rate"]


def test_report_to_is_validated_and_a_missing_reporter_fails_at_once(monkeypatch) -> None:
    with pytest.raises(Exception, match="report_to"):
        parse_config({"training": {"report_to": "wandb"}})
    for reporter in ("tensorboard", "mlflow"):
        monkeypatch.setattr(hardware, "_installed", lambda module, missing=reporter: module != missing)
        with pytest.raises(hardware.SettingUnavailable,
                           match=rf"training.report_to={reporter} needs {reporter}.*workbench\[experiments\]"):
            hardware.check_settings(parse_config({"training": {"report_to": reporter}}))


def test_mlflow_goes_to_each_jobs_own_folder_unless_the_user_names_a_tracking_uri(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):  # unset now, and again after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    cfg = parse_config({"training": {"report_to": "mlflow"}})
    for name in ("job-a", "job-b"):  # two jobs in one process (the in-process executor)
        assert hardware.reporting(cfg, tmp_path / name) == "mlflow"
        assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{(tmp_path / name / 'mlflow.db').resolve()}"
        assert os.environ["MLFLOW_EXPERIMENT_NAME"] == name
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    hardware.reporting(cfg, tmp_path / "job-c")
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.internal:5000"
