"""``/openapi.json`` describes every route: its parameters, request body and response schemas."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_route_is_documented(anon: TestClient) -> None:
    spec = anon.get("/openapi.json").json()
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    served = set()
    for route in anon.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, WebSocketRoute):
            assert spec["paths"][route.path]["get"]["x-websocket"] is True
            served.add((route.path, "GET"))
        else:
            assert isinstance(route, Route)
            served.update((route.path, m) for m in route.methods or () if m != "HEAD")
    assert documented == served
    assert len(served) == 76


def test_every_operation_has_a_summary_responses_and_schemas(anon: TestClient) -> None:
    spec = anon.get("/openapi.json").json()
    ids = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            ids.append(op["operationId"])
            assert op["summary"] and op["tags"], (method, path)
            success = [code for code in op["responses"] if code.startswith("2")]
            assert success, (method, path)
            for code in success:
                assert op["responses"][code]["content"], (method, path, code)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, (method, path)
            if method in ("post", "put") and not path.startswith(("/api/training/pause", "/api/training/cancel",
                                                                  "/api/training/dataset/sample")):
                assert "requestBody" in op, (method, path)
            if path not in ("/health", "/openapi.json"):
                assert "401" in op["responses"], (method, path)
    assert len(ids) == len(set(ids))


def test_every_reference_resolves(anon: TestClient) -> None:
    spec = anon.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for ref in _refs(spec):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


def test_bodies_queries_and_responses_are_described(anon: TestClient) -> None:
    spec = anon.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    start = spec["paths"]["/api/training/start"]["post"]
    body = schemas[start["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(body["required"]) == {"model", "dataset"} and "config" in body["properties"]
    assert {"422", "401", "404"} <= set(start["responses"])
    upload = spec["paths"]["/api/training/dataset"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = schemas[upload["schema"]["$ref"].rsplit("/", 1)[1]]
    assert form["properties"]["file"] == {"description": "chat JSONL, prompt/completion JSONL or CSV",
                                          "format": "binary", "title": "File", "type": "string"}
    logs = spec["paths"]["/api/training/logs/{jobId}"]["get"]
    tail = next(p for p in logs["parameters"] if p["name"] == "tail")
    assert tail["in"] == "query" and tail["schema"]["type"] == "integer" and tail["schema"]["minimum"] == 1
    compare = spec["paths"]["/api/training/analytics/compare"]["get"]
    assert next(p for p in compare["parameters"] if p["name"] == "job_ids")["required"] is True
    status = spec["paths"]["/api/training/status/{jobId}"]["get"]["responses"]["200"]
    status_schema = schemas[status["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {"job_id", "status", "progress", "current_step", "loss", "elapsed_time"} <= set(status_schema["properties"])
    download = spec["paths"]["/api/training/{jobId}/download/model"]["get"]["responses"]["200"]
    assert download["content"]["application/zip"]["schema"]["format"] == "binary"
    events = spec["paths"]["/api/training/{jobId}/events"]["get"]["responses"]["200"]
    assert "text/event-stream" in events["content"]
    delete_config = spec["paths"]["/api/training/{id}"]["delete"]["responses"]
    assert "409" in delete_config and delete_config["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}


def test_security_is_a_token_everywhere_but_the_public_routes(anon: TestClient, local: TestClient) -> None:
    for spec in (anon.get("/openapi.json").json(), local.get("/openapi.json").json()):  # the same in both modes
        assert spec["paths"]["/health"]["get"]["security"] == []
        assert spec["paths"]["/api/models"]["get"]["security"] == [{}, {"bearerAuth": []}]  # optional there
        assert spec["paths"]["/api/models"]["post"]["security"] == [{"bearerAuth": []}]
        assert spec["paths"]["/api/training/jobs"]["get"]["security"] == [{"bearerAuth": []}]
        assert "415" in spec["paths"]["/api/models"]["post"]["responses"]
