"""Every database-specific query of the knowledge base, behind one interface (:class:`GraphStore`).

The chunk layer lives in the same graph as graphiti's episodes and entities (one graph per
user's knowledge base):

    (:Document {id, filename})-[:HAS_CHUNK]->(:Chunk {id, document_id, idx, heading, text, embedding})
    (:Chunk)-[:MENTIONS]->(:Term {key, name})        locally extracted entities
    (:Chunk)-[:HAS_SENTENCE]->(:Sentence {chunk_id, document_id, embedding})   small vectors

Vector search scores a chunk by the better of its own vector and its best sentence's.

``FalkorGraphStore`` uses FalkorDB's native indexes: a vector index (HNSW, cosine) on
``Chunk.embedding`` and a full-text index (RediSearch) on ``Chunk.text``. ``Neo4jGraphStore``
holds the same queries in Neo4j's dialect (``db.index.vector.queryNodes``,
``db.index.fulltext.queryNodes``); it is exercised by the contract test when ``NEO4J_URI`` is set.
Nothing outside this module writes a query.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

WORD = re.compile(r"[A-Za-z0-9]+")
MAX_EXPAND_DF = 25  # an entity in more chunks than this links everything to everything: never expanded
STOPWORDS = frozenset("""a an and are as at be by can do does for from has have how i if in is it its me my of on
or that the their there these this to was what when where which who why will with you your about any all
also into more most much not only other our out over than then them they use used using via we were""".split())


@dataclass
class ChunkRow:
    id: str
    document_id: str
    idx: int
    heading: str
    text: str
    embedding: list[float]
    terms: list[tuple[str, str]]  # (key, display name)
    sentence_embeddings: list[list[float]] = field(default_factory=list)  # one per sentence (chunking.sentences)


@dataclass
class Hit:
    chunk_id: str
    document_id: str
    heading: str
    text: str
    score: float  # higher is better, per method


def keyword_query(text: str) -> str | None:
    """A RediSearch query for the words of ``text``: any of them (``a|b|c``), stopwords dropped."""
    words = [w.lower() for w in WORD.findall(text)]
    words = list(dict.fromkeys(w for w in words if w not in STOPWORDS and (len(w) > 1 or w.isdigit())))
    return "|".join(words) if words else None


class GraphStore(ABC):
    """One user's knowledge base in a graph database."""

    @abstractmethod
    def ensure_indexes(self, dimension: int) -> None: ...

    @abstractmethod
    def add_chunks(self, document_id: str, filename: str, rows: list[ChunkRow]) -> None: ...

    @abstractmethod
    def vector_search(self, embedding: list[float], k: int, document_ids: list[str] | None) -> list[Hit]: ...

    @abstractmethod
    def keyword_search(self, query: str, k: int, document_ids: list[str] | None) -> list[Hit]: ...

    @abstractmethod
    def term_search(self, keys: list[str], k: int, document_ids: list[str] | None) -> list[Hit]: ...

    @abstractmethod
    def neighbours(self, chunk_ids: list[str], k: int, document_ids: list[str] | None) -> list[Hit]: ...

    @abstractmethod
    def terms_of(self, chunk_ids: list[str]) -> dict[str, list[str]]: ...

    @abstractmethod
    def term_frequencies(self, keys: list[str]) -> dict[str, int]: ...

    @abstractmethod
    def delete_document(self, document_id: str) -> dict[str, int]: ...

    @abstractmethod
    def count(self, document_id: str | None = None) -> dict[str, int]: ...


def _hits(rows: list[list[Any]], score: Any = None) -> list[Hit]:
    return [Hit(r[0], r[1], r[2] or "", r[3], float(score(r[4]) if score else r[4])) for r in rows]


_RETURN = "RETURN node.id, node.document_id, node.heading, node.text, score"


def _best(hits: list[Hit], k: int) -> list[Hit]:
    """One hit per chunk, its best score (a chunk found by itself and by a sentence), best first."""
    best: dict[str, Hit] = {}
    for h in hits:
        if h.chunk_id not in best or h.score > best[h.chunk_id].score:
            best[h.chunk_id] = h
    return sorted(best.values(), key=lambda h: -h.score)[:k]


class FalkorGraphStore(GraphStore):
    """FalkorDB (embedded or remote): one graph per knowledge base."""

    def __init__(self, client: Any, graph: str):
        self.client = client
        self.graph_name = graph
        self.g = client.select_graph(graph)

    def _q(self, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        return self.g.query(query, params or {}).result_set

    def ensure_indexes(self, dimension: int) -> None:
        existing = {(row[0], field) for row in self._q("CALL db.indexes()") for field in row[1]}
        if ("Chunk", "embedding") not in existing:
            self._q(f"CREATE VECTOR INDEX FOR (c:Chunk) ON (c.embedding) OPTIONS {{dimension: {int(dimension)}, "
                    "similarityFunction: 'cosine'}")
        if ("Sentence", "embedding") not in existing:
            self._q(f"CREATE VECTOR INDEX FOR (s:Sentence) ON (s.embedding) OPTIONS {{dimension: {int(dimension)}, "
                    "similarityFunction: 'cosine'}")
        if ("Chunk", "text") not in existing:
            self._q("CALL db.idx.fulltext.createNodeIndex('Chunk', 'text')")
        for label, prop in (("Chunk", "id"), ("Chunk", "document_id"), ("Term", "key"), ("Document", "id"),
                            ("Sentence", "document_id")):
            if (label, prop) not in existing:
                self._q(f"CREATE INDEX FOR (n:{label}) ON (n.{prop})")

    def add_chunks(self, document_id: str, filename: str, rows: list[ChunkRow]) -> None:
        self._q("MERGE (d:Document {id: $id}) SET d.filename = $filename", {"id": document_id, "filename": filename})
        batch = [{"id": r.id, "idx": r.idx, "heading": r.heading, "text": r.text, "embedding": r.embedding,
                  "terms": [{"key": k, "name": n} for k, n in r.terms]} for r in rows]
        self._q("MATCH (d:Document {id: $doc}) UNWIND $rows AS r "
                "CREATE (d)-[:HAS_CHUNK]->(c:Chunk {id: r.id, document_id: $doc, idx: r.idx, heading: r.heading, "
                "text: r.text, embedding: vecf32(r.embedding)}) "
                "WITH c, r UNWIND r.terms AS t "
                "MERGE (e:Term {key: t.key}) ON CREATE SET e.name = t.name "
                "MERGE (c)-[:MENTIONS]->(e)", {"doc": document_id, "rows": batch})
        sentences = [{"chunk": r.id, "embedding": v} for r in rows for v in r.sentence_embeddings]
        if sentences:
            self._q("UNWIND $rows AS r MATCH (c:Chunk {id: r.chunk}) "
                    "CREATE (c)-[:HAS_SENTENCE]->(:Sentence {chunk_id: r.chunk, document_id: $doc, "
                    "embedding: vecf32(r.embedding)})", {"doc": document_id, "rows": sentences})

    @staticmethod
    def _filter(document_ids: list[str] | None, var: str = "node") -> str:
        return f" WHERE {var}.document_id IN $docs" if document_ids else ""

    def vector_search(self, embedding: list[float], k: int, document_ids: list[str] | None) -> list[Hit]:
        # HNSW returns about the k nearest over the whole graph (fewer after deletions): ask for
        # more, then filter and cut
        fetch = max(k * 4, k + 20)
        params = {"k": fetch, "v": embedding, "docs": document_ids or [], "limit": k}
        rows = self._q("CALL db.idx.vector.queryNodes('Chunk', 'embedding', $k, vecf32($v)) YIELD node, score"
                       + self._filter(document_ids) + " " + _RETURN + " ORDER BY score ASC LIMIT $limit", params)
        rows += self._q("CALL db.idx.vector.queryNodes('Sentence', 'embedding', $k, vecf32($v)) YIELD node AS s, score "
                        "MATCH (node:Chunk)-[:HAS_SENTENCE]->(s)" + self._filter(document_ids) +
                        " WITH node, min(score) AS score " + _RETURN + " ORDER BY score ASC LIMIT $limit",
                        {**params, "k": fetch * 3})
        return _best(_hits(rows, score=lambda d: 1.0 - float(d)), k)  # cosine distance → similarity

    def keyword_search(self, query: str, k: int, document_ids: list[str] | None) -> list[Hit]:
        q = keyword_query(query)
        if not q:
            return []
        rows = self._q("CALL db.idx.fulltext.queryNodes('Chunk', $q) YIELD node, score" + self._filter(document_ids)
                       + " " + _RETURN + " ORDER BY score DESC LIMIT $k", {"q": q, "k": k, "docs": document_ids or []})
        return _hits(rows)

    def term_search(self, keys: list[str], k: int, document_ids: list[str] | None) -> list[Hit]:
        """Chunks that mention the given entities, the rarer ones counting more (IDF)."""
        if not keys:
            return []
        # each entity's document frequency first, once: counting it per (chunk, entity) pair is
        # quadratic in how common the entity is (5 s at 3k chunks)
        rows = self._q("MATCH (e:Term) WHERE e.key IN $keys MATCH (e)<-[:MENTIONS]-(other:Chunk) "
                       "WITH e, count(other) AS df MATCH (e)<-[:MENTIONS]-(node:Chunk)" + self._filter(document_ids) +
                       " WITH node, e, df "
                       # longer names are more specific; a passage whose heading names it is about it
                       "WITH node, sum(toFloat(size(split(e.key, '-'))) / (1.0 + log(toFloat(df))) * "
                       "CASE WHEN toLower(node.heading) CONTAINS toLower(e.name) THEN 2.0 ELSE 1.0 END) AS score "
                       + _RETURN +
                       " ORDER BY score DESC LIMIT $k", {"keys": keys, "k": k, "docs": document_ids or []})
        return _hits(rows)

    def neighbours(self, chunk_ids: list[str], k: int, document_ids: list[str] | None) -> list[Hit]:
        """Other chunks that share entities with ``chunk_ids`` (one hop through :Term), rarer shared
        entities counting more: how a hit leads to the passage it does not contain."""
        if not chunk_ids:
            return []
        where = " AND node.document_id IN $docs" if document_ids else ""
        # the rare entities of the seeds first, then their chunks: common entities are never expanded
        rows = self._q("MATCH (c:Chunk)-[:MENTIONS]->(e:Term) WHERE c.id IN $ids WITH DISTINCT e "
                       "MATCH (e)<-[:MENTIONS]-(any:Chunk) WITH e, count(any) AS df WHERE df <= $max_df "
                       "MATCH (e)<-[:MENTIONS]-(node:Chunk) WHERE NOT node.id IN $ids" + where +
                       " WITH node, sum(1.0 / toFloat(df)) AS score " + _RETURN + " ORDER BY score DESC LIMIT $k",
                       {"ids": chunk_ids, "k": k, "docs": document_ids or [], "max_df": MAX_EXPAND_DF})
        return _hits(rows)

    def terms_of(self, chunk_ids: list[str]) -> dict[str, list[str]]:
        rows = self._q("MATCH (c:Chunk)-[:MENTIONS]->(e:Term) WHERE c.id IN $ids RETURN c.id, collect(e.name)",
                       {"ids": chunk_ids})
        return {r[0]: sorted(r[1]) for r in rows}

    def term_frequencies(self, keys: list[str]) -> dict[str, int]:
        rows = self._q("MATCH (e:Term)<-[:MENTIONS]-(c:Chunk) WHERE e.key IN $keys RETURN e.key, count(c)",
                       {"keys": keys})
        return {r[0]: int(r[1]) for r in rows}

    def delete_document(self, document_id: str) -> dict[str, int]:
        """The document, its chunks, and the entities nothing else mentions any more."""
        terms = self._q("MATCH (:Chunk {document_id: $doc})-[:MENTIONS]->(e:Term) RETURN DISTINCT e.key",
                        {"doc": document_id})
        self._q("MATCH (s:Sentence {document_id: $doc}) DELETE s", {"doc": document_id})
        chunks = self._q("MATCH (c:Chunk {document_id: $doc}) DETACH DELETE c RETURN count(c)", {"doc": document_id})
        self._q("MATCH (d:Document {id: $doc}) DETACH DELETE d", {"doc": document_id})
        orphans = self._q("MATCH (e:Term) WHERE e.key IN $keys AND NOT (e)<-[:MENTIONS]-() DELETE e RETURN count(e)",
                          {"keys": [t[0] for t in terms]})
        return {"chunks": int(chunks[0][0]) if chunks else 0, "terms": int(orphans[0][0]) if orphans else 0}

    def count(self, document_id: str | None = None) -> dict[str, int]:
        if document_id:
            c = self._q("MATCH (c:Chunk {document_id: $doc}) RETURN count(c)", {"doc": document_id})
            s = self._q("MATCH (s:Sentence {document_id: $doc}) RETURN count(s)", {"doc": document_id})
            return {"chunks": int(c[0][0]), "sentences": int(s[0][0])}
        c = self._q("MATCH (c:Chunk) RETURN count(c)")
        t = self._q("MATCH (e:Term) RETURN count(e)")
        s = self._q("MATCH (s:Sentence) RETURN count(s)")
        return {"chunks": int(c[0][0]), "terms": int(t[0][0]), "sentences": int(s[0][0])}


class Neo4jGraphStore(GraphStore):
    """The same knowledge base in Neo4j 5 (``NEO4J_URI``); the contract test runs it when one is configured."""

    def __init__(self, driver: Any, database: str | None = None, kb: str = "default"):
        self.driver = driver
        self.database = database
        self.kb = kb  # Neo4j Community has one database: the knowledge base is a property

    def _q(self, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        records, _, _ = self.driver.execute_query(query, {"kb": self.kb, **(params or {})}, database_=self.database)
        return [list(r.values()) for r in records]

    def ensure_indexes(self, dimension: int) -> None:
        self._q(f"CREATE VECTOR INDEX wb_chunk_embedding IF NOT EXISTS FOR (c:Chunk) ON (c.embedding) "
                f"OPTIONS {{indexConfig: {{`vector.dimensions`: {int(dimension)}, "
                "`vector.similarity_function`: 'cosine'}}")
        self._q(f"CREATE VECTOR INDEX wb_sentence_embedding IF NOT EXISTS FOR (s:Sentence) ON (s.embedding) "
                f"OPTIONS {{indexConfig: {{`vector.dimensions`: {int(dimension)}, "
                "`vector.similarity_function`: 'cosine'}}")
        self._q("CREATE FULLTEXT INDEX wb_chunk_text IF NOT EXISTS FOR (c:Chunk) ON EACH [c.text]")
        self._q("CREATE INDEX wb_chunk_id IF NOT EXISTS FOR (c:Chunk) ON (c.id)")
        self._q("CREATE INDEX wb_term_key IF NOT EXISTS FOR (e:Term) ON (e.key)")

    def add_chunks(self, document_id: str, filename: str, rows: list[ChunkRow]) -> None:
        batch = [{"id": r.id, "idx": r.idx, "heading": r.heading, "text": r.text, "embedding": r.embedding,
                  "terms": [{"key": k, "name": n} for k, n in r.terms]} for r in rows]
        self._q("MERGE (d:Document {id: $doc, kb: $kb}) SET d.filename = $filename "
                "WITH d UNWIND $rows AS r "
                "CREATE (d)-[:HAS_CHUNK]->(c:Chunk {id: r.id, kb: $kb, document_id: $doc, idx: r.idx, "
                "heading: r.heading, text: r.text, embedding: r.embedding}) "
                "WITH c, r UNWIND r.terms AS t "
                "MERGE (e:Term {key: t.key, kb: $kb}) ON CREATE SET e.name = t.name "
                "MERGE (c)-[:MENTIONS]->(e)", {"doc": document_id, "filename": filename, "rows": batch})
        sentences = [{"chunk": r.id, "embedding": v} for r in rows for v in r.sentence_embeddings]
        if sentences:
            self._q("UNWIND $rows AS r MATCH (c:Chunk {kb: $kb, id: r.chunk}) "
                    "CREATE (c)-[:HAS_SENTENCE]->(:Sentence {kb: $kb, chunk_id: r.chunk, document_id: $doc, "
                    "embedding: r.embedding})", {"doc": document_id, "rows": sentences})

    def vector_search(self, embedding: list[float], k: int, document_ids: list[str] | None) -> list[Hit]:
        rows = self._q("CALL db.index.vector.queryNodes('wb_chunk_embedding', $fetch, $v) YIELD node, score "
                       "WHERE node.kb = $kb AND ($docs = [] OR node.document_id IN $docs) " + _RETURN +
                       " ORDER BY score DESC LIMIT $k", {"fetch": k * 4, "v": embedding, "k": k,
                                                         "docs": document_ids or []})
        rows += self._q("CALL db.index.vector.queryNodes('wb_sentence_embedding', $fetch, $v) YIELD node AS s, score "
                        "WHERE s.kb = $kb MATCH (node:Chunk)-[:HAS_SENTENCE]->(s) "
                        "WHERE ($docs = [] OR node.document_id IN $docs) WITH node, max(score) AS score " + _RETURN +
                        " ORDER BY score DESC LIMIT $k", {"fetch": k * 12, "v": embedding, "k": k,
                                                          "docs": document_ids or []})
        return _best(_hits(rows), k)

    def keyword_search(self, query: str, k: int, document_ids: list[str] | None) -> list[Hit]:
        q = keyword_query(query)
        if not q:
            return []
        rows = self._q("CALL db.index.fulltext.queryNodes('wb_chunk_text', $q) YIELD node, score "
                       "WHERE node.kb = $kb AND ($docs = [] OR node.document_id IN $docs) " + _RETURN +
                       " ORDER BY score DESC LIMIT $k", {"q": q.replace("|", " OR "), "k": k,
                                                         "docs": document_ids or []})
        return _hits(rows)

    def term_search(self, keys: list[str], k: int, document_ids: list[str] | None) -> list[Hit]:
        rows = self._q("MATCH (e:Term {kb: $kb}) WHERE e.key IN $keys WITH e, COUNT { (e)<-[:MENTIONS]-() } AS df "
                       "MATCH (node:Chunk)-[:MENTIONS]->(e) WHERE ($docs = [] OR node.document_id IN $docs) "
                       "WITH node, e, df "
                       "WITH node, sum(toFloat(size(split(e.key, '-'))) / (1.0 + log(toFloat(df))) * "
                       "CASE WHEN toLower(node.heading) CONTAINS toLower(e.name) THEN 2.0 ELSE 1.0 END) AS score "
                       + _RETURN +
                       " ORDER BY score DESC LIMIT $k", {"keys": keys, "k": k, "docs": document_ids or []})
        return _hits(rows)

    def neighbours(self, chunk_ids: list[str], k: int, document_ids: list[str] | None) -> list[Hit]:
        rows = self._q("MATCH (c:Chunk {kb: $kb})-[:MENTIONS]->(e:Term) WHERE c.id IN $ids WITH DISTINCT e "
                       "WITH e, COUNT { (e)<-[:MENTIONS]-() } AS df WHERE df <= $max_df "
                       "MATCH (e)<-[:MENTIONS]-(node:Chunk) "
                       "WHERE NOT node.id IN $ids AND ($docs = [] OR node.document_id IN $docs) "
                       "WITH node, sum(1.0 / toFloat(df)) AS score " + _RETURN + " ORDER BY score DESC LIMIT $k",
                       {"ids": chunk_ids, "k": k, "docs": document_ids or [], "max_df": MAX_EXPAND_DF})
        return _hits(rows)

    def terms_of(self, chunk_ids: list[str]) -> dict[str, list[str]]:
        rows = self._q("MATCH (c:Chunk {kb: $kb})-[:MENTIONS]->(e:Term) WHERE c.id IN $ids "
                       "RETURN c.id, collect(e.name)", {"ids": chunk_ids})
        return {r[0]: sorted(r[1]) for r in rows}

    def term_frequencies(self, keys: list[str]) -> dict[str, int]:
        rows = self._q("MATCH (e:Term {kb: $kb})<-[:MENTIONS]-(c) WHERE e.key IN $keys RETURN e.key, count(c)",
                       {"keys": keys})
        return {r[0]: int(r[1]) for r in rows}

    def delete_document(self, document_id: str) -> dict[str, int]:
        terms = self._q("MATCH (:Chunk {kb: $kb, document_id: $doc})-[:MENTIONS]->(e:Term) RETURN DISTINCT e.key",
                        {"doc": document_id})
        self._q("MATCH (s:Sentence {kb: $kb, document_id: $doc}) DETACH DELETE s", {"doc": document_id})
        chunks = self._q("MATCH (c:Chunk {kb: $kb, document_id: $doc}) WITH c, c.id AS id DETACH DELETE c "
                         "RETURN count(id)", {"doc": document_id})
        self._q("MATCH (d:Document {kb: $kb, id: $doc}) DETACH DELETE d", {"doc": document_id})
        orphans = self._q("MATCH (e:Term {kb: $kb}) WHERE e.key IN $keys AND NOT (e)<-[:MENTIONS]-() "
                          "WITH e, e.key AS key DELETE e RETURN count(key)", {"keys": [t[0] for t in terms]})
        return {"chunks": int(chunks[0][0]) if chunks else 0, "terms": int(orphans[0][0]) if orphans else 0}

    def count(self, document_id: str | None = None) -> dict[str, int]:
        if document_id:
            return {"chunks": int(self._q("MATCH (c:Chunk {kb: $kb, document_id: $doc}) RETURN count(c)",
                                          {"doc": document_id})[0][0]),
                    "sentences": int(self._q("MATCH (s:Sentence {kb: $kb, document_id: $doc}) RETURN count(s)",
                                             {"doc": document_id})[0][0])}
        return {"chunks": int(self._q("MATCH (c:Chunk {kb: $kb}) RETURN count(c)")[0][0]),
                "terms": int(self._q("MATCH (e:Term {kb: $kb}) RETURN count(e)")[0][0]),
                "sentences": int(self._q("MATCH (s:Sentence {kb: $kb}) RETURN count(s)")[0][0])}
