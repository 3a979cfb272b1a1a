"""GraphSearchPanel: the knowledge base — upload, documents with their processing state, search, a hit's
entity neighbourhood, delete. Thin over the backend (the same core as ``/api/graphrag``)."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as W

from .common import error_html, esc, guarded, info_html, ok_html

STYLE = """<style>
.wb-kb-panel table.wb-table{border-collapse:collapse;font-size:12px}
.wb-kb-panel table.wb-table td,.wb-kb-panel table.wb-table th{border:1px solid #ddd;padding:2px 6px}
.wb-kb-panel .wb-kb-hit{margin:6px 0;padding:4px 8px;border-left:3px solid #1976d2;max-width:760px}
.wb-kb-panel .wb-kb-meta{color:#666;font-size:11px}
.wb-kb-panel .wb-kb-entity{display:inline-block;background:#eef3fb;border-radius:8px;padding:0 6px;margin:1px;
 font-size:11px}
.wb-kb-panel .wb-error-text{color:#b00020}
</style>"""
POLL_S = 1.0


def documents_html(docs: list[dict[str, Any]]) -> str:
    if not docs:
        return "<i>no documents yet</i>"
    rows = []
    for d in docs:
        prog = d.get("progress") or {}
        state = d["status"] + (f" ({prog.get('chunks_done')}/{prog.get('chunks_total')})"
                               if d["status"] == "processing" and prog.get("chunks_total") else "")
        err = f"<br><span class='wb-error-text'>{esc(d['error'])}</span>" if d.get("error") else ""
        rows.append(f"<tr><td>{esc(d['filename'])}</td><td>{esc(d['fileType'])}</td>"
                    f"<td class='wb-kb-state'>{esc(state)}{err}</td><td>{d.get('chunks') or ''}</td>"
                    f"<td>{d.get('entities') or ''}</td><td>{esc(d['id'])}</td></tr>")
    return ("<table class='wb-table'><tr><th>File</th><th>Type</th><th>State</th><th>Chunks</th><th>Entities</th>"
            "<th>Id</th></tr>" + "".join(rows) + "</table>")


def hits_html(result: dict[str, Any]) -> str:
    sources = result.get("sources") or []
    meta = result.get("metadata") or {}
    head = (f"<div class='wb-kb-meta'>{len(sources)} results · {esc(meta.get('searchMethod'))} · "
            f"{(meta.get('timings_ms') or {}).get('total', '')} ms</div>")
    if not sources:
        return head + "<i>nothing found</i>"
    out = []
    for i, s in enumerate(sources, 1):
        ents = "".join(f"<span class='wb-kb-entity'>{esc(e)}</span>" for e in s.get("entities") or [])
        out.append(f"<div class='wb-kb-hit'><b>#{i}</b> <span class='wb-kb-score'>{s['relevanceScore']:.3f}</span>"
                   f" · {esc(s['filename'])} · <i>{esc(s['heading'])}</i><br>{esc(s['excerpt'])}<br>{ents}</div>")
    return head + "".join(out)


def neighbourhood_html(n: dict[str, Any]) -> str:
    ents = "".join(f"<span class='wb-kb-entity'>{esc(e)}</span>" for e in n.get("entities") or []) or "<i>none</i>"
    near = "".join(f"<li>{esc(x['filename'])} · <i>{esc(x['heading'])}</i> — shares "
                   f"{esc(', '.join(x['sharedEntities']))}</li>" for x in n.get("neighbours") or [])
    return f"<div><b>Entities:</b> {ents}</div><div><b>Passages that share them:</b><ul>{near or '<li>none</li>'}</ul></div>"


class GraphSearchPanel:
    """``GraphSearchPanel(backend)`` — ``.widget`` is the panel's root ``VBox``."""

    def __init__(self, backend: Any = None, *, poll: bool = True):
        if backend is None:
            from .backend import default_backend

            backend = default_backend()
        self.backend = backend
        self.result: dict[str, Any] | None = None
        self._poll = poll
        self._poller: threading.Thread | None = None

        def css(widget: Any, cls: str) -> Any:
            widget.add_class(cls)
            return widget

        self.upload = css(W.FileUpload(accept=".pdf,.docx,.txt,.md,.markdown", multiple=False, description="File"),
                          "wb-kb-upload")
        self.upload_button = css(W.Button(description="Upload", icon="upload", button_style="primary"),
                                 "wb-kb-upload-button")
        self.message = css(W.HTML(""), "wb-kb-message")
        self.docs_html = css(W.HTML(""), "wb-kb-documents")
        self.refresh_button = css(W.Button(description="Refresh", icon="refresh"), "wb-kb-refresh")
        self.doc_select = css(W.Dropdown(description="Document", options=[], layout={"width": "420px"}),
                              "wb-kb-doc-select")
        self.delete_button = css(W.Button(description="Delete", icon="trash", button_style="danger"),
                                 "wb-kb-delete")
        self.query = css(W.Text(placeholder="Ask the knowledge base…", layout={"width": "520px"}), "wb-kb-query")
        self.method = css(W.Dropdown(options=["hybrid", "vector", "keyword", "graph"], value="hybrid",
                                     description="Method"), "wb-kb-method")
        self.limit = css(W.BoundedIntText(5, min=1, max=50, description="Results"), "wb-kb-limit")
        self.search_button = css(W.Button(description="Search", icon="search", button_style="success"),
                                 "wb-kb-search")
        self.hits = css(W.HTML(""), "wb-kb-hits")
        self.hit_select = css(W.Dropdown(description="Hit", options=[]), "wb-kb-hit-select")
        self.neighbourhood_button = css(W.Button(description="Entity neighbourhood"), "wb-kb-neighbourhood-button")
        self.neighbourhood = css(W.HTML(""), "wb-kb-neighbourhood")

        self.upload_button.on_click(lambda _b: self.upload_file())
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.delete_button.on_click(lambda _b: self.delete())
        self.search_button.on_click(lambda _b: self.search())
        self.query.on_submit(lambda _w: self.search())
        self.neighbourhood_button.on_click(lambda _b: self.show_neighbourhood())

        self.widget = css(W.VBox([
            W.HTML(STYLE), W.HTML("<h4 style='margin:2px 0'>Documents</h4>"),
            W.HBox([self.upload, self.upload_button]), self.message,
            W.HBox([self.refresh_button]), self.docs_html, W.HBox([self.doc_select, self.delete_button]),
            W.HTML("<h4 style='margin:8px 0 2px'>Search</h4>"),
            W.HBox([self.query, self.method, self.limit, self.search_button]), self.hits,
            W.HBox([self.hit_select, self.neighbourhood_button]), self.neighbourhood,
        ]), "wb-kb-panel")
        self.refresh()

    def refresh(self) -> list[dict[str, Any]] | None:
        ok, docs = guarded(self.message, self.backend.documents)
        if not ok:
            return None
        self.docs_html.value = documents_html(docs)
        keep = self.doc_select.value
        self.doc_select.options = [(f"{d['filename']} ({d['id']})", d["id"]) for d in docs]
        ids = [d["id"] for d in docs]
        self.doc_select.value = keep if keep in ids else (ids[0] if ids else None)
        if any(d["status"] in ("queued", "processing") for d in docs):
            self._ensure_polling()
        return docs

    def upload_file(self) -> dict[str, Any] | None:
        files = self.upload.value
        if not files:
            self.message.value = error_html("choose a PDF, DOCX, TXT or MD file first")
            return None
        f = files[0]
        content = f["content"]
        data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
        self.message.value = info_html(f"uploading {f['name']}…")
        ok, doc = guarded(self.message, self.backend.upload_document, data, f["name"], None)
        if not ok:
            return None
        self.upload.value = ()
        self.message.value = ok_html(f"{doc['filename']} uploaded; processing in the background")
        self.refresh()
        return doc

    def delete(self) -> None:
        if not self.doc_select.value:
            return
        ok, out = guarded(self.message, self.backend.delete_document, self.doc_select.value)
        if ok:
            self.message.value = ok_html(f"deleted: {out['chunks']} chunks, {out['terms']} entities, "
                                         f"{out.get('episodes', 0)} episodes")
            self.refresh()

    def search(self) -> dict[str, Any] | None:
        q = self.query.value.strip()
        if not q:
            return None
        ok, result = guarded(self.hits, self.backend.search_knowledge, q, self.method.value, int(self.limit.value))
        if not ok:
            return None
        self.result = result
        self.hits.value = hits_html(result)
        self.hit_select.options = [(f"#{i} {s['heading'][:40]}", s["chunkId"])
                                   for i, s in enumerate(result["sources"], 1)]
        self.hit_select.value = result["sources"][0]["chunkId"] if result["sources"] else None
        self.neighbourhood.value = ""
        return result

    def show_neighbourhood(self) -> dict[str, Any] | None:
        if not self.hit_select.value:
            return None
        ok, n = guarded(self.neighbourhood, self.backend.neighbourhood, self.hit_select.value)
        if ok:
            self.neighbourhood.value = neighbourhood_html(n)
            return n
        return None

    def _ensure_polling(self) -> None:
        if not self._poll or (self._poller is not None and self._poller.is_alive()):
            return

        def loop() -> None:  # while documents process: their state and progress, live
            while True:
                threading.Event().wait(POLL_S)
                try:
                    docs = self.backend.documents()
                except Exception:  # noqa: BLE001 - the next tick tries again
                    continue
                self.docs_html.value = documents_html(docs)
                if not any(d["status"] in ("queued", "processing") for d in docs):
                    self.refresh()
                    return

        self._poller = threading.Thread(target=loop, name="wb-kb-status", daemon=True)
        self._poller.start()
