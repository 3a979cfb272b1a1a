"""Sweeps of real tiny-chat jobs: a grid finds its best trial, optuna prunes a clearly worse one, suggestions
learn from the sweep, lineage follows duplicates and paused changes, datasets keep versions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.errors import InvalidInput
from workbench.experiments import lineage, suggestions
from workbench.experiments.space import SweepSpec
from workbench.experiments.sweeps import SweepService
from workbench.jobs.service import JobService
from workbench.testing import fast, scratch_home

BASE = fast(training={"max_steps": 8, "eval_steps": 4, "save_steps": 8, "save_total_limit": 1})


@pytest.fixture(scope="module")
def sweep_home(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path) -> Iterator[Path]:
    with scratch_home(tmp_path_factory.mktemp("home"), tiny_chat=tiny_chat_dir,
                      env={"WORKBENCH_MAX_CONCURRENT_JOBS": "2"}) as home:
        yield home
        svc = JobService()
        for job in svc.list():
            if job["status"] not in ("completed", "failed", "cancelled"):
                svc.cancel(job["id"], grace=1)


@pytest.fixture(scope="module")
def data(sweep_home: Path) -> dict[str, Any]:
    from workbench.datasets import DatasetService

    ds = DatasetService().register_sample()
    split = DatasetService().split(ds["id"], eval_fraction=0.2, seed=0)
    return {"train": split["train"]["id"], "eval": split["eval"]["id"]}


def _spec(data: dict[str, Any], **kw: Any) -> SweepSpec:
    return SweepSpec(**{"model": "tiny-chat", "dataset": data["train"], "eval_dataset": data["eval"], "config": BASE,
                        **kw})


def test_a_grid_sweep_finishes_and_its_best_trial_has_the_lowest_eval_loss(sweep_home, data) -> None:
    before = suggestions.suggest("tiny-chat", data["train"])
    assert before["source"] == "defaults" and before["learned_from"] == []

    svc = SweepService()
    sweep = svc.create(_spec(data, strategy="grid", parameters={"training.learning_rate": [2e-3, 1e-6]},
                             max_concurrent=2, name="lr grid"))
    assert sweep["status"] == "running" and sweep["max_trials"] == 2
    done = svc.wait(sweep["sweep_id"], timeout=600)
    assert done["status"] == "completed" and [t["status"] for t in done["trials"]] == ["completed", "completed"]
    losses = {t["job_id"]: t["eval_loss"] for t in done["trials"]}
    assert all(v is not None for v in losses.values())
    best = min(losses, key=losses.__getitem__)
    assert done["best_trial"]["job_id"] == best and done["best_trial"]["eval_loss"] == losses[best]
    assert {t["params"]["training.learning_rate"] for t in done["trials"]} == {2e-3, 1e-6}
    for t in done["trials"]:  # each trial is a normal job whose lineage names the sweep
        assert lineage.lineage(t["job_id"])["sweep_id"] == sweep["sweep_id"]
        assert JobService().get(t["job_id"])["config"]["training"]["learning_rate"] == t["params"]["training.learning_rate"]
    assert [s["sweep_id"] for s in svc.list()] == [sweep["sweep_id"]]

    after = suggestions.suggest("tiny-chat", data["train"])  # the suggestion now proposes the best trial's values
    best_lr = next(t for t in done["trials"] if t["job_id"] == best)["params"]["training.learning_rate"]
    assert after["source"] == "sweep" and after["suggestion"]["training"]["learning_rate"] == best_lr
    assert after["learned_from"][0] == best and set(after["learned_from"]) == set(losses)
    assert sweep["sweep_id"] in after["reasons"][0]


def _seed_asking(first: float, second: float) -> int:
    """A TPE seed whose first two trials ask ``first`` then ``second`` (found with optuna itself)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {"training.learning_rate": CategoricalDistribution([first, second])}
    for seed in range(200):
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        a = study.ask(dists)
        study.tell(a, 1.0)
        if a.params["training.learning_rate"] == first and study.ask(dists).params["training.learning_rate"] == second:
            return seed
    raise AssertionError("no seed found")


def test_an_optuna_sweep_prunes_a_clearly_worse_trial(sweep_home, data) -> None:
    good, bad = 3e-3, 1e-9
    spec = _spec(data, strategy="optuna", parameters={"training.learning_rate": [good, bad]}, max_trials=2,
                 seed=_seed_asking(good, bad), config=fast(training={"max_steps": 40, "eval_steps": 2,
                                                                      "save_steps": 40, "save_total_limit": 1}))
    svc = SweepService()
    done = svc.wait(svc.create(spec)["sweep_id"], timeout=600)
    first, second = done["trials"]
    assert first["params"]["training.learning_rate"] == good and first["status"] == "completed"
    assert second["params"]["training.learning_rate"] == bad
    assert second["status"] == "cancelled" and second["reason"] == "pruned"
    st = JobService().status(second["job_id"])
    assert st["status"] == "cancelled" and st["reason"] == "pruned" and (st["current_step"] or 0) < 40
    assert done["best_trial"]["job_id"] == first["job_id"]


def test_bad_sweeps_are_refused_naming_the_parameter(sweep_home, data) -> None:
    svc = SweepService()
    before = len(svc.list())
    with pytest.raises(InvalidInput, match="parameters.training.learning_rate") as e:
        svc.create(_spec(data, strategy="grid", parameters={"training.learning_rate": {"low": 1e-5, "high": 1e-3}}))
    assert e.value.field == "parameters.training.learning_rate"
    with pytest.raises(InvalidInput) as e:
        svc.create(_spec(data, strategy="random", parameters={"training.learning_rate": [-1.0]}))
    assert e.value.field == "parameters.training.learning_rate"
    with pytest.raises(InvalidInput) as e:
        svc.create(_spec(data, strategy="psychic", parameters={"training.learning_rate": [1e-4]}))
    assert e.value.field == "strategy"
    with pytest.raises(InvalidInput) as e:
        svc.create(_spec(data, strategy="grid", parameters={"learning_rat": [1e-4]}))
    assert e.value.field == "parameters.learning_rat" and "unknown config key" in e.value.message
    with pytest.raises(InvalidInput) as e:  # the short name and the dotted one are the same key
        svc.create(_spec(data, strategy="grid", parameters={"learning_rate": [1e-4], "training.learning_rate": [2e-4]}))
    assert e.value.field == "parameters.training.learning_rate" and "twice" in e.value.message
    assert len(svc.list()) == before  # nothing half-made: refused before any record


def test_a_parameter_may_be_named_as_in_set_without_its_section() -> None:
    from workbench.configs import template
    from workbench.experiments.space import check

    space = check({"learning_rate": [1e-4, 3e-4], "lora_dropout": [0.0, 0.1]}, template("lora"), "grid")
    assert space == {"training.learning_rate": [1e-4, 3e-4], "lora.lora_dropout": [0.0, 0.1]}


def test_lineage_follows_a_duplicate_and_a_paused_change(sweep_home, data) -> None:
    svc = JobService()
    cfg = fast(training={"max_steps": 30, "save_steps": 2, "eval_steps": 30, "save_total_limit": 2})
    job = svc.start("tiny-chat", data["train"], cfg, name="original")
    deadline = time.monotonic() + 240
    while (svc.status(job["id"])["current_step"] or 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    svc.pause(job["id"], wait=120)
    assert svc.get(job["id"])["status"] == "paused"
    svc.resume(job["id"], changes={"learning_rate": 5e-4})
    copy = lineage.duplicate(job["id"], {"training": {"max_steps": 4}}, name="copy")
    ln = lineage.lineage(job["id"])
    assert ln["parent_job_id"] is None and ln["children"] == [copy["id"]]
    assert ln["hyperparameter_changes"][0]["changes"]["training.learning_rate"] == {"from": 1e-3, "to": 5e-4}
    assert [r["action"] for r in ln["runs"]] == ["queued", "resumed"]
    assert ln["dataset"]["id"] == data["train"] and len(ln["dataset"]["sha256"]) == 64
    child = lineage.lineage(copy["id"])
    assert child["parent_job_id"] == job["id"]
    # the copy starts from the config as it ended (the paused change included), plus its override
    assert child["config"]["changes_from_parent"] == {"training.max_steps": {"from": 30, "to": 4}}
    for j in (job, copy):
        if svc.get(j["id"])["status"] not in ("completed", "failed", "cancelled"):
            svc.cancel(j["id"], grace=1)


def test_registering_an_existing_name_makes_a_new_version(sweep_home) -> None:
    from workbench.datasets import SAMPLE_DATASET, DatasetService

    ds = DatasetService()
    v1 = ds.register(SAMPLE_DATASET.read_bytes(), name="support chats", filename="a.jsonl")
    v2 = ds.register(SAMPLE_DATASET.read_bytes()[: len(SAMPLE_DATASET.read_bytes()) // 2].rsplit(b"\n", 1)[0] + b"\n",
                     name="support chats", filename="b.jsonl")
    assert (v1["version"], v1["previous_version_id"]) == (1, None)
    assert (v2["version"], v2["previous_version_id"]) == (2, v1["id"]) and v2["name"] == v1["name"]
    assert [v["id"] for v in ds.versions(v2["id"])] == [v1["id"], v2["id"]] == [v["id"] for v in ds.versions("support chats")]
    job = JobService().start("tiny-chat", v2["id"], fast(training={"max_steps": 1}))
    assert lineage.lineage(job["id"])["dataset"]["version"] == 2  # a job records the version it trained on
    JobService().cancel(job["id"], grace=1)


def test_a_sweep_wider_than_the_job_quota_waits_for_slots_instead_of_failing(sweep_home, data, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_QUOTA_ACTIVE_JOBS", "1")  # settings are read per call
    svc = SweepService()
    done = svc.wait(svc.create(_spec(data, strategy="grid", parameters={"training.learning_rate": [1e-3, 2e-3]},
                                     max_concurrent=2))["sweep_id"], timeout=600)
    assert done["status"] == "completed" and [t["status"] for t in done["trials"]] == ["completed", "completed"]
