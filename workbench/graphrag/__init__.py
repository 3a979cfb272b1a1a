"""GraphRAG: knowledge graphs over an embedded FalkorDB (see ``workbench.graphrag.falkor``)."""
