"""``/api/graphrag``: the knowledge base (upload, list, search, delete), thin over :mod:`workbench.graphrag`."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request

from ...errors import InvalidInput
from ..common import Body, Loose, call, call_long, owner, settings
from ..multipart import receive_upload
from ..openapi import Registry

api = Registry("graphrag", "the knowledge base (GraphRAG)")


def _service() -> Any:
    from ...graphrag.service import KnowledgeBaseService

    return KnowledgeBaseService()


class UploadForm(Body):
    """``multipart/form-data``: the document and its metadata (a JSON object, as text)."""

    file: bytes = Field(description="PDF, DOCX, TXT or MD")
    metadata: str | None = Field(None, description='a JSON object, e.g. {"title": "My Document"}')


class DocumentOut(Loose):
    id: str
    filename: str
    fileType: str
    processed: bool
    status: str


class UploadResponse(Loose):
    success: Literal[True]
    document: DocumentOut
    message: str


class DocumentList(Loose):
    documents: list[DocumentOut]
    total: int


class SearchBody(Body):
    query: str = Field(min_length=1, max_length=4000)
    limit: int = Field(5, ge=1, le=50)
    method: Literal["hybrid", "vector", "keyword", "graph"] = "hybrid"
    document_ids: list[str] | None = Field(None, max_length=100, description="search only these documents")


class SearchResponse(Loose):
    context: str
    sources: list[dict[str, Any]]
    metadata: dict[str, Any]


class Deleted(Loose):
    success: Literal[True]
    id: str
    message: str


@api.post("/api/graphrag/upload", summary="Upload a document", form=UploadForm, response=UploadResponse,
          errors=(400, 413, 415, 422))
async def upload(request: Request) -> dict[str, Any]:
    """Parsed at once (a corrupt or unsupported file is refused and nothing is kept), then chunked,
    embedded and written to the knowledge graph in the background: ``processed`` turns true."""
    limit = settings(request).max_upload_bytes
    up = await receive_upload(request, limit)
    try:
        raw = up.fields.get("metadata")
        try:
            metadata = json.loads(raw) if raw else None
        except ValueError:
            raise InvalidInput("metadata: not valid JSON", field="metadata") from None
        doc = await call_long(_service().upload, up.filename, up.path, owner(request), metadata, max_bytes=limit)
    finally:
        up.path.unlink(missing_ok=True)
    return {"success": True, "document": doc, "message": "Document uploaded successfully, processing started"}


@api.get("/api/graphrag/documents", summary="List documents", response=DocumentList)
async def list_documents(request: Request) -> dict[str, Any]:
    """The caller's documents with their processing state (``status``, ``progress``, ``error``)."""
    docs = await call(_service().list, owner(request))
    return {"documents": docs, "total": len(docs)}


@api.post("/api/graphrag/search", summary="Search the knowledge graph", body=SearchBody, response=SearchResponse,
          errors=(404, 409, 422))
async def search(request: Request, body: SearchBody) -> dict[str, Any]:
    """Hybrid by default: vector and keyword fused by reciprocal rank, then expanded through the entities
    the hits mention. ``context`` is ready to paste into a prompt."""
    return await call_long(_service().search, body.query, owner(request), method=body.method, limit=body.limit,
                           document_ids=body.document_ids)


@api.get("/api/graphrag/chunks/{id}/neighbourhood", summary="The entities of a passage and where else they appear",
         errors=(404,))
async def neighbourhood(request: Request) -> dict[str, Any]:
    """For a search hit: the entities it mentions and the other passages that mention them."""
    return await call(_service().neighbourhood, request.path_params["id"], owner(request))


@api.delete("/api/graphrag/delete/{id}", summary="Delete a document", response=Deleted, errors=(404,))
async def delete(request: Request) -> dict[str, Any]:
    """The file, its chunks, graphiti's episodes, and the entities only it mentioned; permanent."""
    removed = await call_long(_service().delete, request.path_params["id"], owner(request))
    return {"success": True, "id": request.path_params["id"], "removed": removed,
            "message": "Document and knowledge graph entries deleted successfully"}
