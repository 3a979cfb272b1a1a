"""GraphSearchPanel in-process: upload, the live document list, search, a hit's neighbourhood, delete."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from workbench.widgets.backend import LocalBackend
from workbench.widgets.graphsearch import GraphSearchPanel

NOW = datetime.now()
DOC = b"# Orbital Catering\n\n## Staff\n\nChef Marisol Ventura leads the Orbital Catering kitchen on deck nine.\n"


def test_upload_search_neighbourhood_and_delete(home: Path) -> None:
    panel = GraphSearchPanel(LocalBackend(), poll=False)
    assert "no documents yet" in panel.docs_html.value
    panel.upload.value = ({"name": "catering.md", "type": "text/markdown", "size": len(DOC),
                           "content": memoryview(DOC), "last_modified": NOW},)
    doc = panel.upload_file()
    assert doc and doc["processed"] is False and "processing in the background" in panel.message.value
    deadline = time.monotonic() + 120
    while "processed" not in panel.docs_html.value and time.monotonic() < deadline:
        time.sleep(0.2)
        panel.refresh()
    assert "catering.md" in panel.docs_html.value and "processed" in panel.docs_html.value

    panel.query.value = "Who leads the kitchen?"
    result = panel.search()
    assert result and "Marisol" in panel.hits.value and panel.hit_select.value == result["sources"][0]["chunkId"]
    hood = panel.show_neighbourhood()
    assert hood and "Orbital Catering" in hood["entities"] and "Orbital Catering" in panel.neighbourhood.value

    panel.delete()
    assert "deleted:" in panel.message.value and "no documents yet" in panel.docs_html.value
    assert panel.search() and "nothing found" in panel.hits.value


def test_an_unsupported_file_is_shown_not_raised(home: Path) -> None:
    panel = GraphSearchPanel(LocalBackend(), poll=False)
    panel.upload.value = ({"name": "tool.exe", "type": "", "size": 4, "content": memoryview(b"MZ\x90\x00"),
                           "last_modified": NOW},)
    assert panel.upload_file() is None and "are accepted" in panel.message.value
    assert "no documents yet" in panel.docs_html.value
