"""``training.report_to``: TensorBoard's events are written under the job folder and read back; a reporter
that is not installed fails the job at once, naming the setting."""

from __future__ import annotations

import importlib.util
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


def test_report_to_is_validated_and_a_missing_reporter_fails_at_once(monkeypatch) -> None:
    with pytest.raises(Exception, match="report_to"):
        parse_config({"training": {"report_to": "wandb"}})
    cfg = parse_config({"training": {"report_to": "mlflow"}})
    if importlib.util.find_spec("mlflow") is None:  # not an extra of `make install`: the clear refusal
        with pytest.raises(hardware.SettingUnavailable, match="training.report_to=mlflow needs mlflow"):
            hardware.check_settings(cfg)
    monkeypatch.setattr(hardware, "_installed", lambda module: module != "tensorboard")
    with pytest.raises(hardware.SettingUnavailable, match="training.report_to=tensorboard"):
        hardware.check_settings(parse_config({"training": {"report_to": "tensorboard"}}))
