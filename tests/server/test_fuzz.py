"""Schemathesis-style fuzzing from our own ``/openapi.json``: junk never gets a 500, and a refused
request never changes state.

Every documented HTTP operation gets a few hundred seeded requests in total: path parameters
from a pool of real ids and hostile strings, query values of every type, bodies shaped like
the declared schema with fields swapped for wrong types, dropped, or added, and raw bytes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from workbench.server.app import create_app
from workbench.testing import FAST

from .conftest import IdleExecutor, bearer, chat_lines, multipart, state_fingerprint, upload

ROUNDS = 14
HOSTILE = ["", " ", "0", "-1", "null", "true", "job-0000000000", "..", "../../store.json", "%2e%2e%2f", "a/b",
           "C:\\x", "\x00", "ü€😀", "x" * 600, "' OR 1=1 --", "{id}", "checkpoint-5", "final", "latest", "base",
           "1e309", "NaN", "[]", "{}"]
JUNK: list[Any] = [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, -1e308, "", "x", "../../etc/passwd",
                   "ü" * 40, "x" * 3000, [], [1, "a", None], {}, {"a": {"b": [1]}}, {"training": "x"}]


def resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def junk(rng: random.Random, depth: int = 0) -> Any:
    if depth < 2 and rng.random() < 0.2:
        return {rng.choice(["model", "training", "x", "lora"]): junk(rng, depth + 1)} if rng.random() < 0.5 \
            else [junk(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(JUNK + HOSTILE)


def shaped(schema: dict[str, Any], schemas: dict[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A value of the schema's shape, often wrong in places."""
    schema = resolve(schema, schemas)
    if rng.random() < 0.25 or depth > 3:
        return junk(rng)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return shaped(rng.choice(schema[key]), schemas, rng, depth + 1)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        out = {k: shaped(v, schemas, rng, depth + 1) for k, v in props.items() if rng.random() < 0.8}
        if rng.random() < 0.2:
            out[rng.choice(["extra", "owner", "id", "__proto__"])] = junk(rng)
        return out
    if kind == "array":
        return [shaped(schema.get("items", {}), schemas, rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "string":
        return rng.choice(HOSTILE + ["lora", "tiny-chat", "perplexity", "sft"])
    if kind == "integer":
        return rng.choice([0, 1, 5, -3, 10**12, 2**64])
    if kind == "number":
        return rng.choice([0.0, 0.5, -0.1, 1.0, 1e300])
    if kind == "boolean":
        return rng.choice([True, False])
    return junk(rng)


@pytest.fixture(scope="module")
def fuzz_env(server_home: Path, users: dict[str, str]) -> dict[str, Any]:
    app = create_app(multi_user=True, executor=IdleExecutor(), max_upload_bytes=64 * 1024)
    client = TestClient(app, headers=bearer(users["alice"]), raise_server_exceptions=False)
    ds = upload(client, chat_lines(10)).json()["dataset"]
    cfg = client.post("/api/training", json={"name": "fuzz", "config_json": FAST}).json()["config"]
    job = client.post("/api/training/start", json={"model": "tiny-chat", "dataset": ds["id"], "config": cfg["id"]})
    ids = [ds["id"], cfg["id"], job.json()["job_id"], "tiny-chat", "gpt2"]
    return {"client": client, "ids": ids, "spec": client.get("/openapi.json").json()}


def requests_for(spec: dict[str, Any], ids: list[str], rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    schemas = spec["components"]["schemas"]
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if op.get("x-websocket") or path in ("/health", "/openapi.json"):
                continue
            for _ in range(ROUNDS):
                url = path
                for p in op.get("parameters", []):
                    if p["in"] == "path":
                        value = rng.choice(ids) if rng.random() < 0.5 else rng.choice(HOSTILE)
                        url = url.replace("{" + p["name"] + "}", quote(value, safe="") or "%20")
                params = {p["name"]: str(junk(rng)) if rng.random() < 0.5 else rng.choice(ids + HOSTILE)
                          for p in op.get("parameters", []) if p["in"] == "query" and rng.random() < 0.8}
                kwargs: dict[str, Any] = {"params": params}
                body = op.get("requestBody", {}).get("content", {})
                if "application/json" in body:
                    roll = rng.random()
                    if roll < 0.1:
                        kwargs["content"] = rng.choice([b"", b"{", b"[1,2]", b"\xff\xfe", b'{"a":' * 600, b"null"])
                    else:
                        kwargs["json"] = shaped(body["application/json"]["schema"], schemas, rng)
                elif "multipart/form-data" in body:
                    name = rng.choice(["x.jsonl", "../x.jsonl", "", "a\\b.csv", "ü.csv", "data.CSV"])
                    fields = {k: str(junk(rng)) for k in ("name", "format", "column_mapping") if rng.random() < 0.5}
                    content = rng.choice([chat_lines(3), b"", b"\xff" * 100, b"a,b\n1,2\n", b"{}\n" * 10])
                    kwargs["content"], kwargs["headers"] = multipart(name, content, **fields)
                elif method in ("post", "put", "delete") and rng.random() < 0.3:
                    kwargs["content"] = rng.choice([b"junk", b"{}", b"\x00" * 10])
                out.append((method.upper(), url, kwargs))
    return out


def test_no_input_gets_a_500_and_refusals_change_nothing(fuzz_env: dict[str, Any], server_home: Path) -> None:
    client: TestClient = fuzz_env["client"]
    rng = random.Random(20261123)
    failures = []
    refused = 0
    for method, url, kwargs in requests_for(fuzz_env["spec"], fuzz_env["ids"], rng):
        before = state_fingerprint(server_home)
        r = client.request(method, url, **kwargs)
        if r.status_code >= 500:
            failures.append((method, url, kwargs, r.status_code, r.text[:300]))
        elif r.status_code >= 400:
            refused += 1
            if state_fingerprint(server_home) != before:
                failures.append((method, url, kwargs, r.status_code, "refused, yet the state changed"))
            body = r.json()
            error = body["error"]
            if not isinstance(error, dict):  # DELETE of a global model: the reference's bare-string error
                error = {"code": body["code"], "message": error}
            assert body["success"] is False and error["code"] and error["message"], (method, url)
    assert not failures, failures[:5]
    assert refused > 300  # the fuzzing really was mostly junk
