"""Users and their bearer tokens, kept in the store (tables ``users`` and ``tokens``).

A token is ``wb_`` + 32 random bytes (URL-safe base64). It is shown once, when issued;
the store keeps only its SHA-256 and a short prefix to recognise it in listings. A plain
hash is enough here because the tokens are high-entropy (nothing to brute-force), and it
makes :func:`authenticate` a lookup by digest: no secret is ever compared character by
character, so response times say nothing about how much of a guess was right.

Records are owned by the user's id, so the server isolates users by passing that id as
``owner`` to the core services.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from typing import Any

from . import home
from .errors import Conflict, InvalidInput, NotFound
from .home import read_local_token, token_file
from .records import LOCAL_USER, new_id, now_iso
from .store import Store, get_store

USERS = "users"
TOKENS = "tokens"
TOKEN_PREFIX = "wb_"
PREFIX_CHARS = 10  # "wb_" + 7 random characters: enough to tell tokens apart, far too few to guess the rest
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _store(store: Store | None) -> Store:
    return store or get_store()


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise InvalidInput("a user name is 1-64 characters: letters, digits and _ . @ + - "
                           "(starting with a letter or digit)", field="name")
    return name


def _find_user(users: list[dict[str, Any]], name_or_id: str) -> dict[str, Any] | None:
    key = (name_or_id or "").strip()
    return next((u for u in users if u["id"] == key or u["name"].casefold() == key.casefold()), None)


def _new_token(user: dict[str, Any], label: str | None) -> tuple[dict[str, Any], str]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = {"id": new_id("tok"), "user_id": user["id"], "hash": hash_token(token),
              "prefix": token[:PREFIX_CHARS], "label": label, "created_at": now_iso(), "revoked_at": None}
    return record, token


def public_token(record: dict[str, Any], users: dict[str, str] | None = None) -> dict[str, Any]:
    """A token record without its hash, plus the user's name when known."""
    out = {k: v for k, v in record.items() if k != "hash"}
    if users is not None:
        out["user_name"] = users.get(record["user_id"])
    return out


# --- users --------------------------------------------------------------------------------

def add_user(name: str, *, label: str | None = None, store: Store | None = None) -> tuple[dict[str, Any], str]:
    """Create a user and its first token; returns ``(user, token)``. Names are unique (any case)."""
    name = _check_name(name)
    with _store(store).transaction() as tx:
        if _find_user(tx.all(USERS), name) is not None:
            raise Conflict(f"user '{name}' already exists; issue another token with issue_token('{name}')",
                           field="name")
        user = {"id": new_id("user"), "name": name, "created_at": now_iso()}
        tx.insert(USERS, user)
        record, token = _new_token(user, label)
        tx.insert(TOKENS, record)
    return user, token


def get_user(name_or_id: str, *, store: Store | None = None) -> dict[str, Any]:
    user = _find_user(_store(store).all(USERS), name_or_id)
    if user is None:
        raise NotFound(f"user '{name_or_id}' not found", field="user")
    return user


def list_users(*, store: Store | None = None) -> list[dict[str, Any]]:
    return sorted(_store(store).all(USERS), key=lambda u: u["created_at"])


# --- tokens -------------------------------------------------------------------------------

def issue_token(name_or_id: str, *, label: str | None = None,
                store: Store | None = None) -> tuple[dict[str, Any], str]:
    """Another token for an existing user; returns ``(token record without hash, token)``."""
    with _store(store).transaction() as tx:
        user = _find_user(tx.all(USERS), name_or_id)
        if user is None:
            raise NotFound(f"user '{name_or_id}' not found", field="user")
        record, token = _new_token(user, label)
        tx.insert(TOKENS, record)
    return public_token(record, {user["id"]: user["name"]}), token


def authenticate(token: str | None, *, store: Store | None = None) -> str | None:
    """The user id a live token belongs to; None for a missing, unknown or revoked token.

    A lookup by digest in the store's lock-free snapshot index: it never takes the store's
    lock, so a flood of unknown tokens costs one hash and one dict lookup each.
    """
    if not token or not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    st = _store(store)
    doc = st.lookup(TOKENS, "hash", hash_token(token))
    if doc is None or doc.get("revoked_at"):
        return None
    if st.lookup(USERS, "id", doc["user_id"]) is None:  # user removed by hand: its tokens die with it
        return None
    return str(doc["user_id"])


# --- the local user's token ------------------------------------------------------------------

def local_token(*, store: Store | None = None) -> str:
    """The local user's token, created on first use (as Jupyter does): single-user use needs no set-up.

    The file is written with mode 600 before the token is stored, so it is never readable by others.
    A file whose token the store no longer knows (a reset store) is replaced.
    """
    st = _store(store)
    path = token_file(home.home())
    existing = read_local_token(path.parent)
    if existing and authenticate(existing, store=st) == LOCAL_USER:
        return existing
    with st.transaction() as tx:
        if tx.get(USERS, LOCAL_USER) is None:
            tx.insert(USERS, {"id": LOCAL_USER, "name": LOCAL_USER, "created_at": now_iso(), "local": True})
        user = tx.get(USERS, LOCAL_USER)
        record, token = _new_token(user, "local")
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        os.replace(path.with_suffix(".tmp"), path)
        tx.insert(TOKENS, record)
    return token


def list_tokens(user: str | None = None, *, store: Store | None = None) -> list[dict[str, Any]]:
    """Every token (or one user's, by name or id), oldest first; hashes are never returned."""
    with _store(store).transaction() as tx:
        users = tx.all(USERS)
        tokens = tx.all(TOKENS)
    if user is not None:
        found = _find_user(users, user)
        if found is None:
            raise NotFound(f"user '{user}' not found", field="user")
        tokens = [t for t in tokens if t["user_id"] == found["id"]]
    names = {u["id"]: u["name"] for u in users}
    return [public_token(t, names) for t in sorted(tokens, key=lambda t: t["created_at"])]


def revoke(token_id_or_prefix: str, *, store: Store | None = None) -> dict[str, Any]:
    """Revoke one token by id (``tok-…``), listed prefix (``wb_xxxxxxx``) or the full token.

    A prefix matching several live tokens is refused (Conflict) rather than revoking a guess.
    Revoking twice is harmless; the first ``revoked_at`` stays.
    """
    key = (token_id_or_prefix or "").strip()
    if not key:
        raise InvalidInput("give a token id, prefix or token", field="token")
    with _store(store).transaction() as tx:
        tokens = tx.all(TOKENS)
        if len(key) > PREFIX_CHARS and key.startswith(TOKEN_PREFIX):
            digest = hash_token(key)
            matches = [t for t in tokens if t["hash"] == digest]
        else:
            matches = [t for t in tokens if t["id"] == key or t["prefix"] == key]
        if len(matches) > 1:
            live = [t for t in matches if not t.get("revoked_at")]
            if len(live) > 1:
                raise Conflict(f"'{key}' matches {len(live)} tokens; revoke by id "
                               f"({', '.join(t['id'] for t in live)})", field="token")
            matches = live or matches[:1]
        if not matches:
            raise NotFound(f"token '{key}' not found", field="token")
        record = matches[0]
        if not record.get("revoked_at"):
            record = tx.update(TOKENS, record["id"], {"revoked_at": now_iso()})
        user = tx.get(USERS, record["user_id"])
    return public_token(record, {record["user_id"]: user["name"]} if user else {})
