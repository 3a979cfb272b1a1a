"""Validation of trained checkpoints on a test dataset (``POST /api/training/validate``).

``eval_set`` is the 10 % the engine held out while training (same split, same seed), so
these numbers are on chats the model never trained on.
"""

from __future__ import annotations

import math
import re

import pytest

from workbench.errors import InvalidInput, NotFound
from workbench.jobs.service import JobService
from workbench.results.evaluate import validate

FEW = 16  # samples per validation where the exact number does not matter


def test_validate_returns_the_reference_shape(lora_job, eval_set) -> None:
    out = validate(lora_job["id"], "final", eval_set["id"])

    assert re.fullmatch(r"val-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out["job_id"])
    assert out["status"] == "completed"
    assert list(out["metrics"]) == ["perplexity", "accuracy", "bleu"]
    assert out["message"] == "Validation completed successfully with 3 metrics"
    assert out["model_path"] == f"{lora_job['id']}/final" and out["test_dataset_id"] == eval_set["id"]
    assert out["samples"] == eval_set["samples"] == 40
    m = out["metrics"]
    assert 1.0 <= m["perplexity"] < math.inf
    assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["bleu"] <= 1.0


def test_perplexity_is_exp_of_the_mean_label_token_loss_the_trainer_reported(lora_job, eval_set) -> None:
    """Same tokens (assistant labels), same held-out chats: exp(eval_loss) of the last evaluation."""
    eval_loss = {e["step"]: e["eval_loss"] for e in JobService().metrics(lora_job["id"], types={"eval"})}
    out = validate(lora_job["id"], "checkpoint-20", eval_set["id"], metrics=["perplexity"])

    assert list(out["metrics"]) == ["perplexity"]
    assert out["message"] == "Validation completed successfully with 1 metric"
    # the Trainer averages per batch, we average per token: equal up to batch weighting
    assert math.log(out["metrics"]["perplexity"]) == pytest.approx(eval_loss[20], abs=0.05)


def test_the_fine_tuned_model_beats_the_untrained_base_model(lora_job, eval_set) -> None:
    tuned = validate(lora_job["id"], "final", eval_set["id"], metrics=["perplexity", "accuracy"])["metrics"]
    base = validate(lora_job["id"], "base", eval_set["id"], metrics=["perplexity", "accuracy"])["metrics"]
    early = validate(lora_job["id"], "checkpoint-10", eval_set["id"], metrics=["perplexity"])["metrics"]

    assert tuned["perplexity"] < early["perplexity"] < base["perplexity"]
    assert tuned["accuracy"] > base["accuracy"]


def test_a_full_fine_tune_checkpoint_loads_as_a_whole_model(full_job, eval_set) -> None:
    out = validate(None, f"{full_job['id']}/checkpoint-10", eval_set["id"], max_samples=FEW)
    assert out["samples"] == FEW and math.isfinite(out["metrics"]["perplexity"])


def test_job_slash_checkpoint_names_the_same_model_as_job_plus_checkpoint(lora_job, eval_set) -> None:
    a = validate(None, f"{lora_job['id']}/checkpoint-10", eval_set["id"], ["perplexity", "accuracy"], max_samples=FEW)
    b = validate(lora_job["id"], "checkpoint-10", eval_set["id"], ["perplexity", "accuracy"], max_samples=FEW)
    assert a["metrics"] == b["metrics"] and a["model_path"] == b["model_path"]


def test_batching_does_not_change_the_results(lora_job, eval_set) -> None:
    """Right-padded scoring and left-padded generation give what one sample at a time gives."""
    one = validate(lora_job["id"], "final", eval_set["id"], max_samples=FEW, batch_size=1, max_new_tokens=24)
    many = validate(lora_job["id"], "final", eval_set["id"], max_samples=FEW, batch_size=8, max_new_tokens=24)
    assert many["metrics"]["perplexity"] == pytest.approx(one["metrics"]["perplexity"], rel=1e-4)
    assert many["metrics"]["accuracy"] == one["metrics"]["accuracy"]
    assert many["metrics"]["bleu"] == pytest.approx(one["metrics"]["bleu"], abs=1e-3)


@pytest.mark.parametrize("job, path", [
    (True, "../checkpoint-10"),
    (True, "checkpoint-10/../../.."),
    (True, "/etc"),
    (False, "checkpoint-10"),            # no job to look in
    (False, "JOB/../../etc"),
    (False, "/abs/path/checkpoint-10"),
])
def test_model_paths_outside_the_job_folder_are_rejected(lora_job, eval_set, job, path) -> None:
    with pytest.raises(InvalidInput) as err:
        validate(lora_job["id"] if job else None, path.replace("JOB", lora_job["id"]), eval_set["id"])
    assert err.value.field == "model_path"


def test_unknown_metrics_and_bad_limits_are_invalid_input(lora_job, eval_set) -> None:
    with pytest.raises(InvalidInput) as err:
        validate(lora_job["id"], "final", eval_set["id"], metrics=["perplexity", "rouge"])
    assert err.value.field == "metrics_to_compute" and "rouge" in err.value.message
    with pytest.raises(InvalidInput) as err:
        validate(lora_job["id"], "final", eval_set["id"], metrics=[])
    assert err.value.field == "metrics_to_compute"
    with pytest.raises(InvalidInput) as err:
        validate(lora_job["id"], "final", eval_set["id"], max_samples=0)
    assert err.value.field == "max_samples"


def test_unknown_checkpoint_job_dataset_or_another_owners_job_is_not_found(lora_job, eval_set) -> None:
    with pytest.raises(NotFound):
        validate(lora_job["id"], "checkpoint-999", eval_set["id"])
    with pytest.raises(NotFound):
        validate("job-doesnotexist", "final", eval_set["id"])
    with pytest.raises(NotFound):
        validate(lora_job["id"], "final", "dataset-doesnotexist")
    with pytest.raises(NotFound):
        validate(lora_job["id"], "final", eval_set["id"], owner="someone-else")
