"""``/api/models``: built-ins for everyone, custom endpoints per user, keys never returned."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from workbench.server.routes.models import ModelCreated, ModelList

ENDPOINT = {"name": "My Custom GPT-4", "provider": "openai", "base_url": "https://api.openai.com/v1",
            "model_id": "gpt-4", "auth_type": "bearer", "api_key": "sk-secret-123"}


def create(client: TestClient, **changes: Any) -> dict[str, Any]:
    r = client.post("/api/models", json={**ENDPOINT, **changes})
    assert r.status_code == 201, r.text
    return r.json()


def test_list_has_the_global_models_in_the_reference_shape(alice: TestClient) -> None:
    r = alice.get("/api/models")
    assert r.status_code == 200
    body = ModelList.model_validate(r.json())
    ids = [m.id for m in body.models]
    assert {"tiny-chat", "llama-3-8b", "mistral-7b"} <= set(ids)
    llama = next(m for m in body.models if m.id == "llama-3-8b")
    assert llama.parameters == "8B" and llama.status in ("available", "not_downloaded")


def test_create_answers_201_without_the_key(alice: TestClient) -> None:
    r = alice.post("/api/models", json=ENDPOINT)
    assert r.status_code == 201
    body = r.json()
    ModelCreated.model_validate(body)
    assert body["success"] is True and body["message"] == "Model created successfully"
    assert body["model"]["name"] == ENDPOINT["name"] and body["model"]["enabled"] is True
    assert body["model"]["has_api_key"] is True
    assert "sk-secret-123" not in r.text and "api_key" not in body["model"]
    listing = alice.get("/api/models").text
    assert body["model"]["id"] in listing and "sk-secret-123" not in listing


def test_invalid_model_is_422_naming_the_field(alice: TestClient, unchanged: Any) -> None:
    r = alice.post("/api/models", json={**ENDPOINT, "name": ""})
    assert r.status_code == 422
    err = r.json()["error"]
    assert (err["code"], err["field"]) == ("INVALID_INPUT", "name") and err["message"].startswith("name:")
    r = alice.post("/api/models", json={**ENDPOINT, "base_url": "ftp://x"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "base_url")
    r = alice.post("/api/models", json={**ENDPOINT, "auth_type": "magic"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "auth_type")
    r = alice.post("/api/models", json={**ENDPOINT, "api_key": None})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "api_key")
    r = alice.post("/api/models", json={**ENDPOINT, "surprise": 1})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "surprise")
    assert "sk-secret-123" not in r.text  # inputs are not echoed back in error details
    unchanged()


def test_delete_own_model(alice: TestClient) -> None:
    model_id = create(alice)["model"]["id"]
    r = alice.delete(f"/api/models/{model_id}")
    assert r.status_code == 200 and r.json() == {"success": True, "message": "Model deleted successfully"}
    assert model_id not in alice.get("/api/models").text
    assert alice.delete(f"/api/models/{model_id}").status_code == 404


def test_global_models_cannot_be_deleted(alice: TestClient, unchanged: Any) -> None:
    r = alice.delete("/api/models/llama-3-8b")
    assert r.status_code == 403
    assert r.json()["success"] is False and r.json()["error"] == "Cannot delete global models"
    unchanged()


def test_another_users_model_is_invisible_and_undeletable(alice: TestClient, bob: TestClient) -> None:
    model_id = create(alice, name="alice's endpoint")["model"]["id"]
    assert model_id not in bob.get("/api/models").text
    assert bob.delete(f"/api/models/{model_id}").status_code == 404
    assert model_id in alice.get("/api/models").text  # still there
