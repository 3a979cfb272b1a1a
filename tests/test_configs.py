"""Training configs: schema, HF names, templates, CRUD with validation results."""

from __future__ import annotations

import pytest

from workbench.configs import RESUME_SAFE_KEYS, TEMPLATES, ConfigService, apply_overrides, template, validate_config
from workbench.errors import InvalidInput, NotFound


def test_keys_use_hugging_face_training_arguments_names() -> None:
    from transformers import TrainingArguments

    hf = set(TrainingArguments.__dataclass_fields__)
    cfg = template("default")["training"]
    for key in ("num_train_epochs", "per_device_train_batch_size", "learning_rate", "max_steps", "eval_steps",
                "save_steps", "logging_steps", "logging_first_step", "gradient_accumulation_steps", "warmup_steps", "weight_decay",
                "lr_scheduler_type", "seed", "save_total_limit", "max_grad_norm"):
        assert key in cfg and key in hf


def test_the_first_step_is_logged_by_default_so_the_first_loss_shows_at_once() -> None:
    assert template("default")["training"]["logging_first_step"] is True
    assert "training.logging_first_step" in RESUME_SAFE_KEYS


def test_every_template_is_valid_and_distinct() -> None:
    assert set(TEMPLATES) == {"default", "sft", "lora", "full"}
    assert template("full")["training"]["method"] == "full"
    assert template("lora")["lora"]["r"] == 16
    assert template("sft")["training"]["packing"] is True


def test_validation_names_each_bad_field() -> None:
    cfg, errors = validate_config({"training": {"learning_rate": -1, "method": "qlora", "bogus": 1},
                                   "lora": {"r": 0}})
    assert cfg is None
    assert set(errors) == {"training.learning_rate", "training.method", "training.bogus", "lora.r"}
    assert "greater than 0" in errors["training.learning_rate"]


def test_lora_aliases_from_the_reference_are_accepted() -> None:
    cfg, errors = validate_config({"lora": {"r": 4, "alpha": 8, "dropout": 0.1}})
    assert errors is None and cfg.lora.lora_alpha == 8 and cfg.lora.lora_dropout == 0.1


def test_overrides_accept_short_and_dotted_keys() -> None:
    out = apply_overrides(template("default"), ["learning_rate=1e-3", "training.max_steps=7", "lora.r=2"])
    assert out["training"]["learning_rate"] == 1e-3 and out["training"]["max_steps"] == 7 and out["lora"]["r"] == 2
    with pytest.raises(InvalidInput):
        apply_overrides(template("default"), ["nonsense=1"])


def test_crud_records_validation_results(home) -> None:
    svc = ConfigService()
    good = svc.create("ok", {"training": {"num_train_epochs": 3}}, template_type="sft")
    assert good["is_validated"] is True and good["validation_errors"] is None
    assert good["config_json"]["training"]["packing"] is True  # template merged under the given keys
    bad = svc.create("bad", {"training": {"learning_rate": "fast"}})
    assert bad["is_validated"] is False and "training.learning_rate" in bad["validation_errors"]
    upd = svc.update(bad["id"], {"config_json": {"training": {"learning_rate": 1e-4}}, "name": "fixed"})
    assert upd["is_validated"] is True and upd["name"] == "fixed"
    assert [c["id"] for c in svc.list()] == [good["id"], bad["id"]]
    with pytest.raises(NotFound):
        svc.get(good["id"], owner="someone-else")
    svc.delete(good["id"])
    with pytest.raises(NotFound):
        svc.get(good["id"])
    with pytest.raises(InvalidInput):
        svc.create("x", {}, template_type="nope")
