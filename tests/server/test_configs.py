"""``/api/training`` and ``/api/training/{id}``: saved configs, validated on save, one user's each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from workbench.server.routes.configs import ConfigEnvelope, ConfigList
from workbench.testing import FAST

from .conftest import chat_lines, state_fingerprint, upload


JSON = {"Content-Type": "application/json"}


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/api/training", json={"name": "My GPT-2 Fine-tune", "template_type": "sft", **body})
    assert r.status_code == 201, r.text
    return r.json()["config"]


def test_create_get_list_in_the_reference_shape(alice: TestClient, users: dict[str, str]) -> None:
    r = alice.post("/api/training", json={"name": "My Config", "description": "support bot", "template_type": "sft",
                                          "config_json": FAST})
    assert r.status_code == 201
    cfg = ConfigEnvelope.model_validate(r.json()).config
    assert cfg.is_validated and cfg.validation_errors is None
    assert r.json()["config"]["user_id"] == users["alice_id"]
    assert r.json()["config"]["config_json"]["training"]["max_steps"] == 10
    assert r.json()["config"]["config_json"]["training"]["packing"] is True  # from the sft template
    got = alice.get(f"/api/training/{cfg.id}")
    assert got.status_code == 200 and got.json()["config"]["id"] == cfg.id
    listing = ConfigList.model_validate(alice.get("/api/training").json())
    assert cfg.id in [c.id for c in listing.configs]


def test_a_config_that_fails_the_schema_is_saved_with_its_errors(alice: TestClient) -> None:
    cfg = create(alice, config_json={"training": {"learning_rate": -1}})
    assert cfg["is_validated"] is False
    assert "training.learning_rate" in cfg["validation_errors"]


def test_update_changes_only_what_is_sent(alice: TestClient) -> None:
    cfg = create(alice, description="before")
    r = alice.put(f"/api/training/{cfg['id']}", json={"name": "Updated Name"})
    assert r.status_code == 200
    updated = r.json()["config"]
    assert (updated["name"], updated["description"]) == ("Updated Name", "before")
    assert updated["config_json"] == cfg["config_json"] and updated["updated_at"] >= cfg["updated_at"]
    r = alice.put(f"/api/training/{cfg['id']}", json={"config_json": {"training": {"num_train_epochs": 0}}})
    assert r.status_code == 200 and r.json()["config"]["is_validated"] is False
    # JSON must say so: a browser sends text/plain (or a form) cross-site without asking first
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        r = alice.put(f"/api/training/{cfg['id']}", content=b'{"description": "raw"}', headers=headers)
        assert (r.status_code, r.json()["error"]["field"]) == (415, "content-type")
    assert alice.get(f"/api/training/{cfg['id']}").json()["config"]["description"] == "before"
    r = alice.put(f"/api/training/{cfg['id']}", content=b'{"description": "raw"}',
                  headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200 and r.json()["config"]["description"] == "raw"


def test_bad_bodies_are_refused_naming_the_field(alice: TestClient, server_home: Path) -> None:
    cfg_id = create(alice)["id"]
    before = state_fingerprint(server_home)
    cases = [
        (alice.post("/api/training", json={"template_type": "sft"}), 422, "name"),
        (alice.post("/api/training", json={"name": "x", "template_type": "nope"}), 422, "template_type"),
        (alice.post("/api/training", json={"name": "x", "config_json": [1]}), 422, "config_json"),
        (alice.post("/api/training", json={"name": 5}), 422, "name"),
        (alice.post("/api/training", content=b"not json", headers=JSON), 400, "body"),
        (alice.post("/api/training", content=b'"a string"', headers=JSON), 422, "body"),
        (alice.post("/api/training", content=b"", headers=JSON), 422, "body"),
        (alice.post("/api/training", content=b'{"name": "x"}', headers={"Content-Type": "text/plain"}), 415,
         "content-type"),
        (alice.put(f"/api/training/{cfg_id}", json={"name": None}), 422, "name"),
        (alice.put(f"/api/training/{cfg_id}", json={"owner": "bob"}), 422, "owner"),
    ]
    for r, status, field in cases:
        assert (r.status_code, r.json()["error"]["field"]) == (status, field), r.text
        assert r.json()["error"]["message"].startswith(field)
    assert state_fingerprint(server_home) == before  # refused requests changed nothing


def test_delete(alice: TestClient) -> None:
    cfg = create(alice)
    assert alice.delete(f"/api/training/{cfg['id']}").json() == {"success": True}
    assert alice.get(f"/api/training/{cfg['id']}").status_code == 404
    assert alice.delete(f"/api/training/{cfg['id']}").status_code == 404


def test_delete_of_a_config_used_by_an_active_job_is_409(alice: TestClient) -> None:
    cfg = create(alice, config_json=FAST)
    ds = upload(alice, chat_lines(8)).json()["dataset"]
    job = alice.post("/api/training/start", json={"model": "tiny-chat", "dataset": ds["id"], "config": cfg["id"]})
    assert job.status_code == 200 and job.json()["status"] in ("queued", "pending")  # the idle executor runs nothing
    r = alice.delete(f"/api/training/{cfg['id']}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"
    assert alice.get(f"/api/training/{cfg['id']}").status_code == 200
    assert alice.post(f"/api/training/cancel/{job.json()['job_id']}").status_code == 200
    assert alice.delete(f"/api/training/{cfg['id']}").status_code == 200  # no active job any more


def test_another_users_config_is_404_and_unlisted(alice: TestClient, bob: TestClient) -> None:
    cfg = create(alice, name="alice only")
    assert cfg["id"] not in [c["id"] for c in bob.get("/api/training").json()["configs"]]
    for r in (bob.get(f"/api/training/{cfg['id']}"), bob.put(f"/api/training/{cfg['id']}", json={"name": "mine"}),
              bob.delete(f"/api/training/{cfg['id']}")):
        assert r.status_code == 404
    assert alice.get(f"/api/training/{cfg['id']}").json()["config"]["name"] == "alice only"


def test_templates(alice: TestClient) -> None:
    r = alice.get("/api/training/templates")
    assert r.status_code == 200
    templates = r.json()["templates"]
    assert set(templates) == {"default", "sft", "lora", "full"}
    assert templates["full"]["training"]["method"] == "full"
