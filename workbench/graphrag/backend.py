"""Which graph database holds the knowledge bases, from the settings.

===========================  =====================================================  ==========
``WORKBENCH_GRAPH_STORE``    what                                                   needs
===========================  =====================================================  ==========
``embedded`` (default)       FalkorDB as a child process on a Unix socket under     nothing
                             ``$WORKBENCH_HOME/graph`` (:mod:`.falkor`)
``falkordb``                 a FalkorDB server                                      ``WORKBENCH_FALKORDB_URL``
                                                                                    (redis://[:pw@]host:port)
``neo4j``                    Neo4j 5 through its driver (graphiti: ``Neo4jDriver``) ``NEO4J_URI``,
                                                                                    ``NEO4J_USER``,
                                                                                    ``NEO4J_PASSWORD``
===========================  =====================================================  ==========
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..errors import InvalidInput
from .store import FalkorGraphStore, GraphStore, Neo4jGraphStore

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def kind() -> str:
    value = os.environ.get("WORKBENCH_GRAPH_STORE", "embedded").strip().lower() or "embedded"
    if value not in ("embedded", "falkordb", "neo4j"):
        raise InvalidInput(f"WORKBENCH_GRAPH_STORE: one of embedded, falkordb, neo4j — not {value!r}",
                           field="WORKBENCH_GRAPH_STORE")
    return value


def falkor_client() -> Any:
    """A sync FalkorDB client: the embedded server (started or restarted as needed), or the configured one."""
    import falkordb

    if kind() == "embedded":
        from .falkor import embedded

        server = embedded()
        server.ensure()
        return server.client()
    url = os.environ.get("WORKBENCH_FALKORDB_URL", "").strip()
    if not url:
        raise InvalidInput("WORKBENCH_FALKORDB_URL is required with WORKBENCH_GRAPH_STORE=falkordb",
                           field="WORKBENCH_FALKORDB_URL")
    with _lock:
        if url not in _clients:
            _clients[url] = falkordb.FalkorDB.from_url(url)
        return _clients[url]


def neo4j_driver() -> Any:
    import neo4j

    uri = os.environ.get("NEO4J_URI", "").strip()
    if not uri:
        raise InvalidInput("NEO4J_URI is required with WORKBENCH_GRAPH_STORE=neo4j", field="NEO4J_URI")
    with _lock:
        if uri not in _clients:
            _clients[uri] = neo4j.GraphDatabase.driver(
                uri, auth=(os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD", "")))
        return _clients[uri]


def open_store(kb: str) -> GraphStore:
    """The knowledge base ``kb`` (one user's) in the configured database."""
    if kind() == "neo4j":
        return Neo4jGraphStore(neo4j_driver(), os.environ.get("NEO4J_DATABASE") or None, kb=kb)
    return FalkorGraphStore(falkor_client(), kb)


def graphiti_driver(kb: str) -> Any:
    """graphiti's driver for ``kb`` (made inside the event loop that will use it)."""
    if kind() == "neo4j":
        from graphiti_core.driver.neo4j_driver import Neo4jDriver

        return Neo4jDriver(os.environ["NEO4J_URI"], os.environ.get("NEO4J_USER", "neo4j"),
                           os.environ.get("NEO4J_PASSWORD", ""))
    from falkordb.asyncio import FalkorDB
    from graphiti_core.driver.falkordb_driver import FalkorDriver

    if kind() == "embedded":
        from .falkor import embedded

        server = embedded()
        server.ensure()
        return FalkorDriver(falkor_db=server.async_client(), database=kb)
    return FalkorDriver(falkor_db=FalkorDB.from_url(os.environ["WORKBENCH_FALKORDB_URL"]), database=kb)
