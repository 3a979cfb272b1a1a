"""The knowledge base: upload, background processing, search, deletion — per user.

Each user has one knowledge base: one graph (``kb_<hash of the user>``) holding the chunk layer
and graphiti's episodes and entities for that user alone (graphiti's ``group_id`` is the same
name). Documents are TinyDB records (table ``kb_documents``) and files under
``$WORKBENCH_HOME/knowledge/<doc id>/``.

Upload parses the file at once (a corrupt or unsupported file is a 400/415 and leaves nothing),
stores it with its parsed sections, and queues it; a background thread chunks, embeds, extracts
entities and writes the graph, with progress in the record (``processed`` turns true at the
end). A process that starts (the server) resumes what an earlier one left unfinished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import home
from ..errors import Conflict, InvalidInput, NotFound, WorkbenchError
from ..records import LOCAL_USER, new_id, now_iso
from ..store import Store, atomic_write_bytes, get_store
from . import search as searching
from .backend import open_store
from .embeddings import get_embedder
from .entities import extract
from .store import ChunkRow, GraphStore

log = logging.getLogger("workbench.graphrag")
TABLE = "kb_documents"
KB_TABLE = "knowledge_bases"
FOLDER = "knowledge"
EMBED_BATCH = 32
WRITE_BATCH = 64
UNFINISHED = ("queued", "processing")

_pool = ThreadPoolExecutor(1, thread_name_prefix="wb-graphrag")  # one document at a time: 2 cores
_scheduled: set[str] = set()
_scheduled_lock = threading.Lock()


def kb_name(owner: str) -> str:
    """The user's graph (and graphiti group_id): a stable name that reveals nothing of the user id."""
    return "kb_" + hashlib.sha256(owner.encode()).hexdigest()[:16]


def documents_dir() -> Path:
    return home.subdir(FOLDER)


class KnowledgeBaseService:
    def __init__(self, store: Store | None = None):
        self.store = store or get_store()

    # ---- upload -----------------------------------------------------------------------------
    def upload(self, filename: str, data: bytes | Path, owner: str = LOCAL_USER,
               metadata: dict[str, Any] | None = None, *, max_bytes: int | None = None) -> dict[str, Any]:
        """Parse, store and queue a document; the reference's ``document`` object (``processed: false``)."""
        from ..quotas import check_storage
        from .parsing import parse

        raw = data.read_bytes() if isinstance(data, Path) else data
        if max_bytes is not None and len(raw) > max_bytes:
            from ..errors import TooLarge

            raise TooLarge(f"file: larger than the limit of {max_bytes / 2**20:.1f} MB", field="file")
        name = Path(filename or "").name
        if not name:
            raise InvalidInput("file: a file name is required", field="file")
        if metadata is not None and (not isinstance(metadata, dict) or len(json.dumps(metadata)) > 16_384):
            raise InvalidInput("metadata: a JSON object of at most 16 KB", field="metadata")
        parsed = parse(name, raw)  # 400/415 here: nothing stored yet
        check_storage(self.store, owner, len(raw))
        doc_id = new_id("doc")
        folder = documents_dir() / doc_id
        folder.mkdir(parents=True)
        try:
            atomic_write_bytes(folder / name, raw)
            atomic_write_bytes(folder / "parsed.json", parsed.model_dump_json().encode())
            record = {
                "id": doc_id, "owner": owner, "filename": name, "fileType": parsed.format, "size": len(raw),
                "processed": False, "status": "queued", "progress": {"chunks_done": 0, "chunks_total": None},
                "error": None, "extraction": None, "neo4jEpisodeIds": [], "metadata": metadata or {},
                "uploadPath": f"documents/{kb_name(owner)}/{doc_id}/{name}", "pages": parsed.pages,
                "createdAt": now_iso(), "processedAt": None, "chunks": 0, "entities": 0,
            }
            self.store.insert(TABLE, record)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.schedule(doc_id)
        return public(record)

    # ---- read -------------------------------------------------------------------------------
    def get(self, doc_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        try:
            return public(self.store.require(TABLE, doc_id, owner))
        except NotFound:
            raise NotFound(f"document '{doc_id}' not found", field="id") from None

    def list(self, owner: str = LOCAL_USER) -> list[dict[str, Any]]:
        return [public(r) for r in sorted(self.store.all(TABLE, owner), key=lambda r: r["createdAt"])]

    def wait(self, doc_id: str, owner: str = LOCAL_USER, timeout: float = 600) -> dict[str, Any]:
        """Until the document is processed; its failure as an error."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.get(doc_id, owner)
            if doc["processed"]:
                return doc
            if doc["status"] == "failed":
                raise WorkbenchError(f"processing {doc['filename']} failed: {doc['error']}", field="file")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{doc_id} is still {doc['status']} after {timeout:.0f} s")
            time.sleep(0.1)

    # ---- search -----------------------------------------------------------------------------
    def search(self, query: str, owner: str = LOCAL_USER, *, method: str = "hybrid", limit: int = 5,
               document_ids: list[str] | None = None) -> dict[str, Any]:
        """The reference's search reply: ``context``, ranked ``sources``, ``metadata.searchMethod``."""
        query = (query or "").strip()
        if not query:
            raise InvalidInput("query: must not be empty", field="query")
        if method not in searching.METHODS:
            raise InvalidInput(f"method: one of {', '.join(searching.METHODS)}", field="method")
        if not 1 <= int(limit) <= 50:
            raise InvalidInput("limit: between 1 and 50", field="limit")
        docs = self._documents(owner, document_ids)
        kb = self.store.get(KB_TABLE, kb_name(owner))
        if kb is None or not docs:
            return self._reply(query, method, limit, [], {})
        embedder = get_embedder()
        if kb["dimension"] != embedder.dimension:
            raise Conflict(f"the knowledge base was embedded with {kb['embedder']} ({kb['dimension']} dimensions); "
                           f"the configured embedder has {embedder.dimension}: re-upload the documents",
                           field="embedder")
        store = open_store(kb_name(owner))
        ranked, meta = searching.run(store, lambda q: embedder.embed([q])[0], query, method=method,  # type: ignore[arg-type]
                                     limit=int(limit), document_ids=document_ids)
        names = {d["id"]: d["filename"] for d in docs}
        terms = store.terms_of([h.chunk_id for h, _ in ranked]) if ranked else {}
        sources = [{"documentId": h.document_id, "filename": names.get(h.document_id, ""), "chunkId": h.chunk_id,
                    "heading": h.heading, "relevanceScore": score, "excerpt": searching.excerpt(h.text, query),
                    "text": h.text, "entities": terms.get(h.chunk_id, [])[:12]}
                   for h, score in ranked if h.document_id in names]
        return self._reply(query, method, limit, sources, meta)

    @staticmethod
    def _reply(query: str, method: str, limit: int, sources: list[dict[str, Any]],
               meta: dict[str, Any]) -> dict[str, Any]:
        return {"context": searching.context(sources), "sources": sources,
                "metadata": {"searchMethod": method, "resultsFound": len(sources), **meta},
                "query": query, "limit": limit}

    def _documents(self, owner: str, ids: list[str] | None) -> list[dict[str, Any]]:
        docs = [d for d in self.store.all(TABLE, owner) if d["processed"]]
        if ids:
            known = {d["id"] for d in self.store.all(TABLE, owner)}
            missing = [i for i in ids if i not in known]
            if missing:
                raise NotFound(f"document '{missing[0]}' not found", field="document_ids")
            docs = [d for d in docs if d["id"] in ids]
        return docs

    def neighbourhood(self, chunk_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        """A passage's entities and the other passages that share them (the panel's graph view)."""
        doc_id = chunk_id.rsplit(":", 1)[0]
        self.get(doc_id, owner)  # another user's (or no) document: 404
        store = open_store(kb_name(owner))
        mine = store.terms_of([chunk_id]).get(chunk_id, [])
        near = store.neighbours([chunk_id], 10, None)
        theirs = store.terms_of([h.chunk_id for h in near]) if near else {}
        names = {d["id"]: d["filename"] for d in self.store.all(TABLE, owner)}
        return {"chunkId": chunk_id, "entities": mine,
                "neighbours": [{"chunkId": h.chunk_id, "documentId": h.document_id,
                                "filename": names.get(h.document_id, ""), "heading": h.heading,
                                "excerpt": h.text[:240], "sharedEntities": sorted(set(mine) & set(theirs.get(h.chunk_id, [])))}
                               for h in near if h.document_id in names]}

    # ---- delete -----------------------------------------------------------------------------
    def delete(self, doc_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        """The file, the chunks, graphiti's episodes, and the entities only this document mentioned."""
        doc = self.get(doc_id, owner)
        removed = {"chunks": 0, "terms": 0, "episodes": 0}
        if self.store.get(KB_TABLE, kb_name(owner)) is not None:
            removed.update(open_store(kb_name(owner)).delete_document(doc_id))
        if doc["neo4jEpisodeIds"]:
            from .graphiti_bridge import remove_episodes

            removed["episodes"] = remove_episodes(kb_name(owner), doc["neo4jEpisodeIds"])
        shutil.rmtree(documents_dir() / doc_id, ignore_errors=True)
        self.store.delete(TABLE, doc_id)
        return removed

    # ---- processing -------------------------------------------------------------------------
    def schedule(self, doc_id: str) -> None:
        with _scheduled_lock:
            if doc_id in _scheduled:
                return
            _scheduled.add(doc_id)
        _pool.submit(self._process_safely, doc_id)

    def resume(self) -> list[str]:
        """Queue every unfinished document of every user again (a process starting)."""
        ids = [d["id"] for d in self.store.all(TABLE) if d["status"] in UNFINISHED]
        for i in ids:
            self.schedule(i)
        return ids

    def _process_safely(self, doc_id: str) -> None:
        try:
            self.process(doc_id)
        except Exception as exc:  # the record says what went wrong; the thread goes on
            log.exception("processing %s failed", doc_id)
            if self.store.get(TABLE, doc_id) is not None:
                self.store.update(TABLE, doc_id, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        finally:
            with _scheduled_lock:
                _scheduled.discard(doc_id)

    def process(self, doc_id: str) -> None:
        """Chunk, embed, extract entities, write the graph (and graphiti's episodes with an LLM)."""
        from .chunking import chunk, sentences
        from .parsing import ParsedDocument

        rec = self.store.get(TABLE, doc_id)
        if rec is None:
            return
        owner = rec["owner"]
        folder = documents_dir() / doc_id
        parsed = ParsedDocument.model_validate_json((folder / "parsed.json").read_bytes())
        chunks = chunk(parsed)
        self.store.update(TABLE, doc_id, {"status": "processing", "error": None,
                                          "progress": {"chunks_done": 0, "chunks_total": len(chunks)}})
        embedder = get_embedder()
        kb = self._knowledge_base(owner, embedder)
        store = open_store(kb["id"])
        store.ensure_indexes(kb["dimension"])
        store.delete_document(doc_id)  # a resumed run starts this document over: no duplicates
        done, terms = 0, set()
        for start in range(0, len(chunks), WRITE_BATCH):
            part = chunks[start:start + WRITE_BATCH]
            said = [sentences(c) for c in part]
            texts = [c.text for c in part] + [s for group in said for s in group]  # one embedding pass for both
            vectors: list[list[float]] = []
            for i in range(0, len(texts), EMBED_BATCH):
                vectors += embedder.embed(texts[i:i + EMBED_BATCH])
            small = iter(vectors[len(part):])
            rows = []
            for c, v, group in zip(part, vectors, said, strict=False):
                found = extract(c.text)
                terms.update(k for k, _ in found)
                rows.append(ChunkRow(id=f"{doc_id}:{c.index}", document_id=doc_id, idx=c.index, heading=c.heading,
                                     text=c.text, embedding=v, terms=found,
                                     sentence_embeddings=[next(small) for _ in group]))
            store.add_chunks(doc_id, rec["filename"], rows)
            done += len(part)
            self.store.update(TABLE, doc_id, {"progress": {"chunks_done": done, "chunks_total": len(chunks)}})
        extraction, episodes = self._extract_with_llm(kb["id"], rec, chunks)
        self.store.update(TABLE, doc_id, {"status": "processed", "processed": True, "processedAt": now_iso(),
                                          "chunks": len(chunks), "entities": len(terms), "extraction": extraction,
                                          "neo4jEpisodeIds": episodes})

    def _knowledge_base(self, owner: str, embedder: Any) -> dict[str, Any]:
        kb_id = kb_name(owner)
        with self.store.transaction() as tx:
            kb = tx.get(KB_TABLE, kb_id)
            if kb is None:
                kb = tx.insert(KB_TABLE, {"id": kb_id, "owner": owner, "embedder": embedder.name,
                                          "dimension": embedder.dimension, "created_at": now_iso()})
        if kb["dimension"] != embedder.dimension:
            raise Conflict(f"this knowledge base holds {kb['dimension']}-dimension vectors ({kb['embedder']}); "
                           f"the configured embedder makes {embedder.dimension}", field="embedder")
        return kb

    def _extract_with_llm(self, kb_id: str, rec: dict[str, Any], chunks: list[Any]) -> tuple[str, list[str]]:
        """graphiti's ``add_episode`` per chunk when an LLM is configured; else the local extractor's name."""
        from .graphiti_bridge import add_episodes, configured_llm

        llm = configured_llm(rec["owner"])
        if llm is None:
            return "local:entities.extract (identifiers, acronyms, capitalised names; no LLM configured)", []
        episodes = add_episodes(kb_id, llm, rec, chunks)
        return f"llm:graphiti add_episode ({llm['model']} at {llm['base_url']})", episodes


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "owner"}
