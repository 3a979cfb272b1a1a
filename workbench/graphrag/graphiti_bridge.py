"""graphiti-core for what needs an LLM: entity and relation extraction (``add_episode``), facts search,
and the removal of a document's episodes (``remove_episode``, which needs none).

The LLM is chosen from what the workbench already knows (``WORKBENCH_GRAPHRAG_LLM``):

* a custom model entry of ``/api/models`` (its id): its ``base_url`` and ``model_id``, and its
  encrypted API key, decrypted here on the server side only;
* ``deployment:<model_name>``: a model this workbench serves, over its own ``/v1`` (the server that
  :func:`workbench.local_server.url` finds) with the user's token;
* or ``WORKBENCH_GRAPHRAG_LLM_BASE_URL`` + ``WORKBENCH_GRAPHRAG_LLM_MODEL`` (+ ``…_API_KEY``).

Any OpenAI-compatible ``base_url`` works through ``OpenAIGenericClient`` (chat completions with a
JSON schema), which is what OpenAI, vLLM, Ollama and the workbench's own ``/v1`` answer.
Embeddings for graphiti are the knowledge base's own (:mod:`.embeddings`), so its facts and the
chunk layer share one vector space. graphiti's telemetry is off.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

os.environ.setdefault("GRAPHITI_TELEMETRY_ENABLED", "false")
log = logging.getLogger("workbench.graphrag")


def configured_llm(owner: str) -> dict[str, Any] | None:
    """``{"base_url", "model", "api_key", "auth_type"}`` of the LLM graphiti should use for ``owner``, or None:
    ``WORKBENCH_GRAPHRAG_LLM`` (a custom model entry or ``deployment:<name>``), else
    ``WORKBENCH_GRAPHRAG_LLM_BASE_URL``/``_MODEL``/``_API_KEY`` (see :mod:`workbench.llm_endpoints`)."""
    from ..llm_endpoints import resolve

    ref = os.environ.get("WORKBENCH_GRAPHRAG_LLM", "")
    try:
        return resolve(ref, owner, env_prefix="WORKBENCH_GRAPHRAG_LLM")
    except ValueError as exc:
        raise ValueError(f"WORKBENCH_GRAPHRAG_LLM={ref.strip()}: {exc}") from None


def _graphiti(kb: str, llm: dict[str, Any] | None) -> Any:
    from graphiti_core import Graphiti
    from graphiti_core.cross_encoder.client import CrossEncoderClient
    from graphiti_core.embedder.client import EmbedderClient
    from graphiti_core.llm_client.config import LLMConfig
    from graphiti_core.llm_client.openai_generic_client import OpenAIGenericClient

    from .backend import graphiti_driver
    from .embeddings import get_embedder

    ours = get_embedder()

    class Embedder(EmbedderClient):
        async def create(self, input_data: Any) -> list[float]:
            text = input_data if isinstance(input_data, str) else " ".join(map(str, input_data))
            return (await asyncio.to_thread(ours.embed, [text]))[0]

        async def create_batch(self, input_data_list: list[str]) -> list[list[float]]:
            return await asyncio.to_thread(ours.embed, list(input_data_list))

    class NoRerank(CrossEncoderClient):
        """Keeps graphiti's order: its cross-encoder search mode is the one not used here."""

        async def rank(self, query: str, passages: list[str]) -> list[tuple[str, float]]:
            return [(p, 1.0 - i / max(1, len(passages))) for i, p in enumerate(passages)]

    cfg = llm or {"base_url": "http://127.0.0.1:9/v1", "model": "none", "api_key": "none"}  # never called then
    sdk = None
    if cfg.get("auth_type") == "api-key":  # the key in an ``api-key`` header, and no ``Authorization`` at all
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        async def no_bearer(request: Any) -> None:
            request.headers.pop("Authorization", None)

        sdk = AsyncOpenAI(api_key=cfg["api_key"], base_url=cfg["base_url"], default_headers={"api-key": cfg["api_key"]},
                          http_client=DefaultAsyncHttpxClient(event_hooks={"request": [no_bearer]}))
    client = OpenAIGenericClient(LLMConfig(api_key=cfg["api_key"], model=cfg["model"], small_model=cfg["model"],
                                           base_url=cfg["base_url"]), client=sdk)
    return Graphiti(graph_driver=graphiti_driver(kb), llm_client=client, embedder=Embedder(), cross_encoder=NoRerank())


def add_episodes(kb: str, llm: dict[str, Any], rec: dict[str, Any], chunks: Iterable[Any]) -> list[str]:
    """One episode per chunk through ``add_episode`` (extraction, dedupe, edges): their uuids.

    All or nothing: if one fails, the episodes already added for this call are removed again before
    the error goes on (the caller records no uuids then, so nothing else could ever remove them).
    With the document's ``id`` in ``rec`` the episodes are named after its chunks (``<id>:<index>``,
    as the chunk layer's ids), and any left by an earlier, interrupted run for it are removed first:
    a resumed document starts over without duplicate episodes and facts.
    """
    from graphiti_core.nodes import EpisodeType

    doc_id = rec.get("id")

    async def run() -> list[str]:
        g = _graphiti(kb, llm)
        uuids: list[str] = []
        try:
            await g.build_indices_and_constraints()
            if doc_id:
                for u in await _episodes_of(g, kb, f"{doc_id}:"):
                    await _remove(g, u)
            for c in chunks:
                name = f"{doc_id}:{c.index}" if doc_id else f"{rec['filename']}#{c.index}"
                out = await g.add_episode(name=name, episode_body=c.text,
                                          source_description=rec["filename"], reference_time=datetime.now(UTC),
                                          source=EpisodeType.text, group_id=kb)
                uuids.append(out.episode.uuid)
            return uuids
        except Exception:  # an interrupted process: the resumed run removes them (above)
            for u in reversed(uuids):
                try:
                    await _remove(g, u)
                except Exception as cleanup:  # noqa: BLE001 - the original error is the one to report
                    log.warning("could not remove episode %s after a failed add: %s", u, cleanup)
            raise
        finally:
            await g.close()

    return asyncio.run(run())


async def _episodes_of(g: Any, kb: str, prefix: str) -> list[str]:
    """The uuids of ``kb``'s episodes whose name starts with ``prefix``."""
    records, _, _ = await g.driver.execute_query(
        "MATCH (e:Episodic) WHERE e.group_id = $group_id AND e.name STARTS WITH $prefix RETURN e.uuid AS uuid",
        group_id=kb, prefix=prefix)
    return [r["uuid"] for r in records or []]


async def _remove(g: Any, uuid: str) -> bool:
    """``remove_episode``; False if it is already gone."""
    try:
        await g.remove_episode(uuid)
        return True
    except Exception as exc:  # already gone: nothing left to remove
        if "not found" not in str(exc).lower():
            raise
        return False


def remove_episodes(kb: str, uuids: list[str]) -> int:
    """``remove_episode`` for each: the episode and the entities and edges only it mentioned."""

    async def run() -> int:
        g = _graphiti(kb, None)
        try:
            n = 0
            for u in uuids:
                n += await _remove(g, u)
            return n
        finally:
            await g.close()

    return asyncio.run(run())


def facts(kb: str, query: str, limit: int = 5) -> list[dict[str, Any]]:
    """graphiti's own hybrid search over the facts (edges) its extraction built."""

    async def run() -> list[dict[str, Any]]:
        g = _graphiti(kb, None)
        try:
            edges = await g.search(query, group_ids=[kb], num_results=limit)
            return [{"fact": e.fact, "name": e.name, "uuid": e.uuid} for e in edges]
        finally:
            await g.close()

    return asyncio.run(run())
