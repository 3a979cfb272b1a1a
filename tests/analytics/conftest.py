"""The analytics tests' fixtures: a fresh home per test with two users, alice and bob, and the server.

``api`` is the real app (``create_app(multi_user=True)``) behind Starlette's TestClient; usage rows are
written the way the serving gateway writes them (``usage.record_many``), with explicit timestamps, so
every figure a test asserts is one it computed by hand from the rows it wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from workbench.testing import scratch_home


@dataclass
class Api:
    client: TestClient
    alice: dict[str, str]  # request headers
    bob: dict[str, str]
    alice_id: str
    bob_id: str
    home: Path

    def data(self, who: dict[str, str] | None = None, **params: Any) -> Any:
        """``GET /api/analytics/data``: the response's ``data`` (asserting a 200)."""
        r = self.client.get("/api/analytics/data", headers=who or self.alice, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True
        return body["data"]

    def rate(self, message_id: str, who: dict[str, str] | None = None, **fields: Any) -> Any:
        return self.client.post("/api/analytics/feedback", headers=who or self.alice,
                                json={"message_id": message_id, **fields})


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    from workbench.server.app import create_app
    from workbench.users import add_user

    with scratch_home(tmp_path / "home") as home:
        alice, alice_token = add_user("alice")
        bob, bob_token = add_user("bob")
        with TestClient(create_app(multi_user=True)) as client:
            yield Api(client, {"Authorization": f"Bearer {alice_token}"}, {"Authorization": f"Bearer {bob_token}"},
                      alice["id"], bob["id"], home)


@pytest.fixture
def owner_home(tmp_path: Path) -> Iterator[str]:
    """A fresh home and an owner id, for the core functions called without the server."""
    with scratch_home(tmp_path / "home"):
        yield "user-core"
