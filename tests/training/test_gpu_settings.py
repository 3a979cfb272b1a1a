"""GPU settings (attention kernel, bf16, checkpointing, batch size, QLoRA): validation, and what a CPU does with them."""

from __future__ import annotations

import json
import time

import pytest

from workbench.configs import TrainingConfig, validate_config
from workbench.jobs.executor import InProcessExecutor
from workbench.jobs.service import JobService
from workbench.testing import as_overrides, fast


@pytest.mark.parametrize(("training", "field"), [
    ({"quantization": "2bit"}, "training.quantization"),
    ({"quantization": "4bit", "method": "full"}, "training.quantization"),
    ({"num_processes": 0}, "training.num_processes"),
    ({"num_processes": 2, "auto_find_batch_size": True}, "training.num_processes"),
    ({"attn_implementation": "flash"}, "training.attn_implementation"),
    ({"packing_attention": "leaky"}, "training.packing_attention"),
])
def test_bad_settings_are_refused_naming_the_field(training: dict, field: str) -> None:
    cfg, errors = validate_config({"training": training})
    assert cfg is None and field in errors, errors


def test_good_settings_validate() -> None:
    t = TrainingConfig.model_validate({"training": {"quantization": "8bit", "num_processes": 4,
                                                    "attn_implementation": "flash_attention_2"}}).training
    assert (t.quantization, t.num_processes, t.attn_implementation) == ("8bit", 4, "flash_attention_2")
    d = TrainingConfig().training
    assert (d.quantization, d.num_processes, d.attn_implementation, d.packing_attention) == ("none", 1, "auto", "isolated")


@pytest.mark.parametrize(("setting", "named"), [
    ("training.quantization=4bit", "training.quantization=4bit"),
    ("training.quantization=8bit", "training.quantization=8bit"),
    ("training.attn_implementation=flash_attention_2", "training.attn_implementation=flash_attention_2"),
])
def test_a_job_this_cpu_cannot_run_fails_at_once_naming_the_setting(engine_home, sample, setting, named) -> None:
    svc = JobService(executor=InProcessExecutor())
    t0 = time.monotonic()
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=as_overrides(fast()) + [setting])
    assert job["status"] == "failed"
    assert named in job["error"] and "CUDA GPU" in job["error"], job["error"]
    assert time.monotonic() - t0 < 5
    assert "Loading model" not in "\n".join(svc.logs(job["id"]))  # nothing loaded before it failed


def test_the_settings_reach_from_pretrained_and_training_arguments(engine_home, sample, tmp_path) -> None:
    from workbench.training.engine import build_trainer

    cfg = TrainingConfig.model_validate(json.loads(json.dumps({"training": {
        **fast()["training"], "attn_implementation": "eager", "gradient_checkpointing": True, "precision": "fp32",
        "auto_find_batch_size": True}}))).dump()
    spec = {"model": "tiny-chat", "owner": "local", "config": cfg, "dataset": {"path": sample["path"]}}
    trainer, _ = build_trainer(spec, tmp_path)
    assert trainer.model.base_model.model.config._attn_implementation == "eager"
    assert trainer.args.activation_checkpointing and trainer.args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert trainer.args.auto_find_batch_size and not trainer.args.bf16 and trainer.args.use_cpu

    cfg["training"].update(attn_implementation="auto", gradient_checkpointing="auto", auto_find_batch_size="auto")
    trainer, _ = build_trainer({**spec, "config": cfg}, tmp_path)
    assert trainer.model.base_model.model.config._attn_implementation == "sdpa"  # auto on a CPU
    assert not trainer.args.activation_checkpointing and not trainer.args.auto_find_batch_size
