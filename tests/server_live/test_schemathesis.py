"""Property-based fuzzing of the live server from its OpenAPI document: no input, valid or not,
may make it answer 5xx.

Schemathesis generates a few cases per operation (deterministic, bounded) from the schema and
its examples, and sends them over the socket with a real user's token, so they reach the
handlers rather than stopping at the auth check. The document is the one ``create_app``
serves at ``/openapi.json`` (read at collection time, so every operation is a test of its own;
a test below checks the live server serves the same). The operations that would start real
training from generated input (``/start``, ``/execute``) are left out; the live flow covers
them. The fuzzing user owns nothing else, so generated ids only meet 404s and whatever it
creates stays its own.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import schemathesis  # noqa: E402

from workbench.server.app import create_app  # noqa: E402

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

from .conftest import LiveServer  # noqa: E402

MAX_EXAMPLES = 10
STARTS_TRAINING = ["/api/training/start", "/api/training/execute", "/api/training/sweeps"]
# 503 by design without an LLM configured (tests/analytics/test_assistant.py covers it with a scripted one)
NEEDS_AN_LLM = ["/api/analytics/chat"]
DOCUMENTED = {
    ("GET", "/api/models"), ("POST", "/api/models"), ("GET", "/api/training/dataset"),
    ("POST", "/api/training/dataset"), ("GET", "/api/training"), ("POST", "/api/training"),
    ("POST", "/api/training/start"), ("POST", "/api/training/execute"), ("POST", "/api/training/validate"),
    ("GET", "/api/training/analytics/summary"), ("GET", "/api/training/analytics/compare"),
}
CONFIG = SchemathesisConfig.from_dict({
    "seed": 20240601,
    "request-timeout": 30,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none",
                   "with-security-parameters": False},  # always our token, never a generated one
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
})
SPEC = create_app(multi_user=True).state.openapi
schema = (schemathesis.openapi.from_dict(SPEC, config=CONFIG).exclude(method="POST", path=STARTS_TRAINING)
          .exclude(method="POST", path=NEEDS_AN_LLM))


@pytest.fixture(scope="module")
def fuzz_headers(live_server: LiveServer) -> dict[str, str]:
    from workbench.users import add_user

    return {"Authorization": f"Bearer {add_user('fuzzer')[1]}"}


@schema.parametrize()
def test_no_generated_request_makes_the_server_fail(case: Any, live_server: LiveServer,
                                                    fuzz_headers: dict[str, str]) -> None:
    case.call_and_validate(base_url=live_server.base_url, headers=fuzz_headers, checks=[not_a_server_error],
                           timeout=30)


def test_the_live_server_serves_this_document(live_server: LiveServer) -> None:
    served = httpx.get(f"{live_server.base_url}/openapi.json", timeout=10)
    assert served.status_code == 200 and served.json() == SPEC


def test_the_document_lists_the_documented_operations() -> None:
    listed = {(method.upper(), path) for path, item in SPEC["paths"].items() for method in item
              if method in ("get", "post", "put", "delete", "patch")}
    assert DOCUMENTED <= listed, DOCUMENTED - listed
    assert ("GET", "/api/training/status/{jobId}") in listed
    assert ("GET", "/api/training/{jobId}/download/model") in listed
