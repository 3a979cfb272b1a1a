"""Property-based fuzzing of the live server from its own ``/openapi.json``: no input, valid or
not, may make it answer 5xx.

Schemathesis generates a few cases per operation (deterministic, bounded) from the schema and
its examples, and sends them with a real user's token so they reach the handlers rather than
stopping at the auth check. The operations that would start real training from generated
input (``/start``, ``/execute``) are left out; the live flow covers them. The fuzzing user owns
nothing else, so generated ids only ever meet 404s and its generated records stay its own.
"""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

from .conftest import LiveServer  # noqa: E402

MAX_EXAMPLES = 6
STARTS_TRAINING = ["/api/training/start", "/api/training/execute"]
DOCUMENTED = {
    ("GET", "/api/models"), ("POST", "/api/models"), ("GET", "/api/training/dataset"),
    ("POST", "/api/training/dataset"), ("GET", "/api/training"), ("POST", "/api/training"),
    ("POST", "/api/training/start"), ("POST", "/api/training/execute"), ("POST", "/api/training/validate"),
    ("GET", "/api/training/analytics/summary"), ("GET", "/api/training/analytics/compare"),
}


@pytest.fixture(scope="module")
def fuzz_token(live_server: LiveServer) -> str:
    from workbench.users import add_user

    return add_user("fuzzer")[1]


@pytest.fixture(scope="module")
def openapi(live_server: LiveServer, fuzz_token: str) -> Any:
    config = SchemathesisConfig.from_dict({
        "seed": 20240601,
        "base-url": live_server.base_url,
        "headers": {"Authorization": f"Bearer {fuzz_token}"},
        "request-timeout": 30,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    })
    return schemathesis.openapi.from_url(f"{live_server.base_url}/openapi.json", config=config, timeout=30)


schema = schemathesis.pytest.from_fixture("openapi").exclude(method="POST", path=STARTS_TRAINING)


@schema.parametrize()
def test_no_generated_request_makes_the_server_fail(case: Any) -> None:
    case.call_and_validate(checks=[not_a_server_error])


def test_the_schema_lists_the_documented_operations(openapi: Any) -> None:
    listed = {(op.method.upper(), op.path) for op in (r.ok() for r in openapi.get_all_operations())}
    assert DOCUMENTED <= listed, DOCUMENTED - listed
    paths = {p for _, p in listed}
    assert any(p.startswith("/api/training/status/") for p in paths)
    assert any(p.endswith("/download/model") for p in paths)
