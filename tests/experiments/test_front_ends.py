"""Sweeps from the API and the CLI: the routes answer in the reference's shapes, per user; `workbench sweep run`
follows a sweep with a progress bar to its best trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from workbench.datasets import SAMPLE_DATASET
from workbench.testing import fast, scratch_home

TINY = fast(training={"max_steps": 4, "save_steps": 4, "eval_steps": 2, "save_total_limit": 1})


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path) -> Iterator[tuple[TestClient, dict, dict]]:
    from workbench.server.app import create_app
    from workbench.users import add_user

    with scratch_home(tmp_path_factory.mktemp("sweep-api"), tiny_chat=tiny_chat_dir):
        _, alice = add_user("alice-sw")
        _, bob = add_user("bob-sw")
        with TestClient(create_app(multi_user=True)) as client:
            yield client, {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bob}"}


def test_a_sweep_over_http_its_suggestion_lineage_and_duplicate(api) -> None:
    client, alice, bob = api
    ds = client.post("/api/training/dataset/sample", headers=alice).json()["dataset"]["id"]
    bad = client.post("/api/training/sweeps", headers=alice, json={
        "model": "tiny-chat", "dataset": ds, "config": TINY, "parameters": {"training.learning_rate": [-1]}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "parameters.training.learning_rate"
    r = client.post("/api/training/sweeps", headers=alice, json={
        "model": "tiny-chat", "dataset": ds, "config": TINY, "strategy": "grid",
        "parameters": {"training.learning_rate": [2e-3]}, "name": "http sweep"})
    assert r.status_code == 201, r.text
    sweep_id = r.json()["sweep_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        s = client.get(f"/api/training/sweeps/{sweep_id}", headers=alice).json()
        if s["status"] != "running":
            break
        time.sleep(0.5)
    assert s["status"] == "completed" and s["best_trial"]["job_id"] == s["trials"][0]["job_id"]
    assert client.get(f"/api/training/sweeps/{sweep_id}", headers=bob).status_code == 404  # alice's only
    assert client.get("/api/training/sweeps", headers=bob).json()["sweeps"] == []

    sug = client.get("/api/training/suggestions", params={"model": "tiny-chat", "dataset": ds}, headers=alice).json()
    assert sug["suggestion"]["training"]["learning_rate"] == 2e-3 and sug["learned_from"] == [s["best_trial"]["job_id"]]
    assert client.get("/api/training/suggestions", params={"model": "tiny-chat"}, headers=bob).json()["source"] == "defaults"

    job = s["trials"][0]["job_id"]
    dup = client.post(f"/api/training/{job}/duplicate", headers=alice, json={"overrides": {"training": {"max_steps": 2}}})
    assert dup.status_code == 201, dup.text
    ln = client.get(f"/api/training/{dup.json()['id']}/lineage", headers=alice).json()
    assert ln["parent_job_id"] == job and ln["config"]["changes_from_parent"] == {
        "training.max_steps": {"from": 4, "to": 2}}
    assert client.get(f"/api/training/{job}/lineage", headers=alice).json()["sweep_id"] == sweep_id
    assert client.get(f"/api/training/{job}/lineage", headers=bob).status_code == 404
    versions = client.get(f"/api/training/dataset/{ds}/versions", headers=alice).json()["versions"]
    assert [v["id"] for v in versions] == [ds]


def test_workbench_sweep_run_follows_the_sweep_to_its_best_trial(home: Path, tiny_chat_dir: Path,
                                                                 tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_TINY_CHAT_CACHE": str(tiny_chat_dir)}
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "sweep", "run", "--dataset", str(SAMPLE_DATASET),
                          "--config", str(cfg), "--param", "training.learning_rate=2e-3,1e-6", "--max-concurrent",
                          "2", "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    sweep = json.loads(out.stdout)
    assert sweep["status"] == "completed" and len(sweep["trials"]) == 2
    assert "trial" in out.stderr and "2/2" in out.stderr  # the progress bar
    best = min(sweep["trials"], key=lambda t: t["eval_loss"])
    assert sweep["best_trial"]["job_id"] == best["job_id"]
    listed = subprocess.run([sys.executable, "-m", "workbench.cli", "sweep", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert json.loads(listed.stdout)[0]["sweep_id"] == sweep["sweep_id"]
