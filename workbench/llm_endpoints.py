"""Which OpenAI-compatible chat model a feature talks to, chosen from what the workbench knows.

One home for the choice the knowledge base (graphiti's extraction) and the analytics assistant both
make. A reference is:

* ``deployment:<name>`` — a model this workbench serves (``/v1`` of this server, the caller's token);
* a custom model entry of ``/api/models`` (an OpenAI-compatible ``base_url``; its encrypted key is
  decrypted here, on the server side, and never shown);
* nothing, and ``<PREFIX>_BASE_URL`` / ``_MODEL`` / ``_API_KEY`` in the environment; else None.
"""

from __future__ import annotations

import os
from typing import Any

from . import local_server, models
from .home import read_local_token


def resolve(ref: str | None, owner: str, *, env_prefix: str, self_url: str | None = None,
            token: str | None = None, default_model: str = "gpt-4o-mini") -> dict[str, Any] | None:
    """``{"base_url", "model", "api_key", "auth_type"}``, or None when nothing is configured.

    ``self_url``/``token``: this server's address and the caller's bearer token, for deployments
    (default: :func:`workbench.local_server.url` and the local token)."""
    ref = (ref or "").strip()
    if ref.startswith("deployment:"):
        base = (self_url or local_server.url()).rstrip("/")
        return {"base_url": f"{base}/v1", "model": ref.split(":", 1)[1], "api_key": token or read_local_token() or "none",
                "auth_type": "bearer"}
    if ref:
        record = models.get(ref, owner)
        if record.get("kind") != "custom":
            raise ValueError(f"{ref} is not a custom (OpenAI-compatible) model entry")
        return {"base_url": record["base_url"], "model": record["model_id"],
                "api_key": models.get_api_key(ref, owner) or "none", "auth_type": record.get("auth_type") or "bearer"}
    base = os.environ.get(f"{env_prefix}_BASE_URL", "").strip()
    if base:
        return {"base_url": base, "model": os.environ.get(f"{env_prefix}_MODEL", default_model),
                "api_key": os.environ.get(f"{env_prefix}_API_KEY") or "none", "auth_type": "bearer"}
    return None


def client_kwargs(llm: dict[str, Any]) -> dict[str, Any]:
    """What the ``openai`` SDK's client takes for ``llm``: an ``api-key`` header where the entry says so."""
    if llm.get("auth_type") == "api-key":
        return {"base_url": llm["base_url"], "api_key": "unused", "default_headers": {"api-key": llm["api_key"]}}
    return {"base_url": llm["base_url"], "api_key": llm["api_key"]}
