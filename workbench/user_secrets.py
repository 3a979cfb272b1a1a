"""Per-user secrets (a RunPod API key, say): encrypted at rest, never shown again.

Values are Fernet-encrypted with the home's ``secret.key`` before they reach the store; the
listing gives names and times only. Only server-side code that needs a value (the RunPod
provider) calls :func:`reveal`.
"""

from __future__ import annotations

import re
from typing import Any

from .crypto import decrypt, encrypt
from .errors import InvalidInput, NotFound
from .records import LOCAL_USER, now_iso
from .store import Store, get_store

TABLE = "secrets"
NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
MAX_VALUE_CHARS = 8192
RUNPOD_API_KEY = "RUNPOD_API_KEY"


def _key(owner: str, name: str) -> str:
    return f"{owner}:{name}"


def _check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InvalidInput("name: use upper-case letters, digits and _ (e.g. RUNPOD_API_KEY), at most 64",
                           field="name")
    return name


def set_secret(name: str, value: str, owner: str = LOCAL_USER, *, store: Store | None = None) -> dict[str, Any]:
    """Store (or replace) a secret; returns its public entry, without the value."""
    _check_name(name)
    if not value or not value.strip():
        raise InvalidInput("value: a secret cannot be empty", field="value")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidInput(f"value: at most {MAX_VALUE_CHARS} characters", field="value")
    store = store or get_store()
    rid = _key(owner, name)
    now = now_iso()
    with store.transaction() as tx:
        found = tx.get(TABLE, rid)
        if found:
            tx.update(TABLE, rid, {"value": encrypt(value.strip()), "updated_at": now})
        else:
            tx.insert(TABLE, {"id": rid, "owner": owner, "name": name, "value": encrypt(value.strip()),
                              "created_at": now, "updated_at": now})
    return public(store.get(TABLE, rid) or {})


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {"name": record.get("name"), "created_at": record.get("created_at"), "updated_at": record.get("updated_at"),
            "has_value": bool(record.get("value"))}


def list_secrets(owner: str = LOCAL_USER, *, store: Store | None = None) -> list[dict[str, Any]]:
    return sorted((public(r) for r in (store or get_store()).all(TABLE, owner)), key=lambda r: r["name"])


def delete_secret(name: str, owner: str = LOCAL_USER, *, store: Store | None = None) -> None:
    _check_name(name)
    if not (store or get_store()).delete(TABLE, _key(owner, name)):
        raise NotFound(f"no secret named {name}", field="name")


def reveal(name: str, owner: str = LOCAL_USER, *, store: Store | None = None) -> str | None:
    """The decrypted value, for server-side use only; ``None`` when it is not set."""
    record = (store or get_store()).get(TABLE, _key(owner, name))
    return decrypt(record["value"]) if record and record.get("value") else None
