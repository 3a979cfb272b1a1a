"""Users and bearer tokens: shown once, stored only as a hash, revocable."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench import users
from workbench.errors import Conflict, InvalidInput, NotFound


def test_add_user_returns_the_record_and_a_fresh_token(home: Path) -> None:
    user, token = users.add_user("alice")
    assert user["id"].startswith("user-") and user["name"] == "alice"
    assert token.startswith("wb_") and len(token) > 40
    assert users.authenticate(token) == user["id"]
    assert users.list_users() == [user]


def test_only_a_hash_of_the_token_is_at_rest(home: Path) -> None:
    _, token = users.add_user("alice")
    _, second = users.issue_token("alice")
    at_rest = (home / "store.json").read_text()
    assert token not in at_rest and second not in at_rest
    assert token[len("wb_"):] not in at_rest  # not even the random part
    assert users.hash_token(token) in at_rest


def test_listings_show_a_prefix_never_the_hash(home: Path) -> None:
    alice, token = users.add_user("alice")
    [row] = users.list_tokens()
    assert row["user_id"] == alice["id"] and row["user_name"] == "alice"
    assert token.startswith(row["prefix"]) and len(row["prefix"]) < len(token) // 3
    assert "hash" not in row and row["revoked_at"] is None
    assert set(row) >= {"id", "user_id", "user_name", "prefix", "created_at", "revoked_at"}


def test_names_are_unique_regardless_of_case(home: Path) -> None:
    users.add_user("alice")
    with pytest.raises(Conflict):
        users.add_user("Alice")


@pytest.mark.parametrize("bad", ["", " ", "a b", "-dash", "x" * 65, "semi;colon"])
def test_bad_names_are_refused(home: Path, bad: str) -> None:
    with pytest.raises(InvalidInput):
        users.add_user(bad)


def test_a_second_token_for_an_existing_user_by_name_or_id(home: Path) -> None:
    alice, first = users.add_user("alice")
    rec, by_name = users.issue_token("alice", label="laptop")
    _, by_id = users.issue_token(alice["id"])
    assert len({first, by_name, by_id}) == 3
    assert rec["label"] == "laptop" and "hash" not in rec
    assert {users.authenticate(t) for t in (first, by_name, by_id)} == {alice["id"]}
    assert len(users.list_tokens("alice")) == 3


def test_issue_token_for_an_unknown_user(home: Path) -> None:
    with pytest.raises(NotFound):
        users.issue_token("nobody")


@pytest.mark.parametrize("guess", [None, "", "wb_", "Bearer x", "wb_" + "A" * 43, "not-a-token"])
def test_unknown_tokens_authenticate_as_nobody(home: Path, guess: str | None) -> None:
    users.add_user("alice")
    assert users.authenticate(guess) is None


def test_a_token_differing_in_one_character_is_unknown(home: Path) -> None:
    _, token = users.add_user("alice")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert users.authenticate(flipped) is None


@pytest.mark.parametrize("how", ["id", "prefix", "token"])
def test_revoke_by_id_prefix_or_token(home: Path, how: str) -> None:
    alice, token = users.add_user("alice")
    _, other = users.issue_token("alice")
    row = next(t for t in users.list_tokens() if token.startswith(t["prefix"]))
    key = {"id": row["id"], "prefix": row["prefix"], "token": token}[how]
    revoked = users.revoke(key)
    assert revoked["id"] == row["id"] and revoked["revoked_at"]
    assert users.authenticate(token) is None
    assert users.authenticate(other) == alice["id"]  # the user's other tokens keep working
    assert users.revoke(key)["revoked_at"] == revoked["revoked_at"]  # idempotent


def test_revoke_unknown(home: Path) -> None:
    with pytest.raises(NotFound):
        users.revoke("tok-0000000000")


def test_tokens_of_one_user_do_not_open_another(home: Path) -> None:
    alice, a = users.add_user("alice")
    bob, b = users.add_user("bob")
    assert users.authenticate(a) == alice["id"] and users.authenticate(b) == bob["id"]
    assert [t["user_name"] for t in users.list_tokens("bob")] == ["bob"]


def test_a_crash_between_the_user_and_its_token_leaves_the_store_unchanged(home: Path, monkeypatch) -> None:
    from workbench.store import Transaction, get_store

    users.add_user("bob")
    before = (home / "store.json").read_bytes()
    real_insert = Transaction.insert

    def insert(self: Transaction, table: str, record: dict) -> dict:
        if table == users.TOKENS:
            raise OSError("the process dies after the user was inserted")
        return real_insert(self, table, record)

    monkeypatch.setattr(Transaction, "insert", insert)
    with pytest.raises(OSError):
        users.add_user("alice")
    monkeypatch.setattr(Transaction, "insert", real_insert)

    assert (home / "store.json").read_bytes() == before
    assert [u["name"] for u in get_store().all(users.USERS)] == ["bob"]
    user, token = users.add_user("alice")  # nothing half-made is in the way
    assert users.authenticate(token) == user["id"]
