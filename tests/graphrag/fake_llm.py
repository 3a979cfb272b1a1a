"""A scripted OpenAI-compatible LLM for graphiti: a real HTTP server on 127.0.0.1, in a thread.

graphiti's ``OpenAIGenericClient`` sends ``POST /v1/chat/completions`` with ``response_format`` =
``{"type": "json_schema", "json_schema": {"name": <response model>, "schema": ...}}``. The fake
answers by that name, reading what it needs from the prompt's tagged sections:

==========================  ===============================================================
``ExtractedEntities``       the capitalised names in the episode text (``<TEXT>`` or
                            ``<CURRENT MESSAGE>``), entity type 0
``NodeResolutions``         every entity of ``<ENTITIES>`` is new (``duplicate_candidate_id`` -1)
``NodeDuplicate``           the same, for one entity
``ExtractedEdges``          one ``RELATES_TO`` fact between the first two ``<ENTITIES>``: the
                            sentence of ``<CURRENT_MESSAGE>`` that names both (else the first)
``EdgeDuplicate``           neither duplicates nor contradictions
``SummarizedEntities``      one short sentence per entity of ``<ENTITIES>``
``EntitySummary`` …         a short sentence; any other schema gets a minimal valid object
==========================  ===============================================================

A prompt containing :attr:`FakeLLM.refuse_if` is answered 400, for the failure paths.
Every request is recorded (:attr:`FakeLLM.requests`: path, Authorization and all headers, body,
the response model's name), so a test can tell the LLM was called, with which model and key.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Self

from workbench.testing import LoopbackJSON

NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:[- ][A-Z][A-Za-z0-9]*)*(?:-\d+)?\b")
STOP = {"The", "A", "An", "It", "Its", "This", "That", "These", "Those", "And", "But", "Or", "In", "On", "At",
        "From", "With", "For", "Every", "Each", "Also", "When", "Then", "There", "They", "He", "She", "We", "I"}


@dataclass
class Seen:
    path: str
    authorization: str | None
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names

    @property
    def schema_name(self) -> str | None:
        fmt = self.body.get("response_format") or {}
        return (fmt.get("json_schema") or {}).get("name")

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


@dataclass
class FakeLLM:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    refuse_if: str | None = None  # a prompt that contains this text gets a 400 (which nobody retries)

    def __post_init__(self) -> None:
        self._server = LoopbackJSON(self._respond, name="fake-llm", host=self.host, port=self.port)
        self.port = self._server.port

    def _respond(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict]:
        seen = Seen(path, headers.get("authorization"), body, headers)
        self.requests.append(seen)
        if method == "GET":
            if path.rstrip("/") == "/v1/models":
                return 200, {"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0,
                                                         "owned_by": "fake"}]}
            return 404, {"error": {"message": f"no route {path}"}}
        if path.rstrip("/") != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}
        if self.refuse_if and self.refuse_if in seen.prompt:
            return 400, {"error": {"message": "scripted refusal", "type": "invalid_request_error"}}
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(answer(seen))}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> FakeLLM:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def chat_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.rstrip("/") == "/v1/chat/completions"]

    def schema_names(self) -> list[str | None]:
        return [r.schema_name for r in self.chat_requests()]


# ---- the scripted answers --------------------------------------------------------------------------

def section(prompt: str, tag: str) -> str | None:
    m = re.search(rf"<{re.escape(tag)}>\s*(.*?)\s*</{re.escape(tag)}>", prompt, re.DOTALL)
    return m.group(1) if m else None


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # a section may hold several JSON values on lines of their own (previous episodes, then the current)
        return None


def names_in(text: str) -> list[str]:
    """Capitalised names in ``text``, in order, once each (leading stop words dropped)."""
    out: list[str] = []
    for m in NAME.finditer(text):
        words = m.group(0).split(" ")
        while words and words[0] in STOP:
            words = words[1:]
        name = " ".join(words)
        if name and name not in STOP and name not in out:
            out.append(name)
    return out


def episode_text(prompt: str) -> str:
    for tag in ("TEXT", "CURRENT MESSAGE", "CURRENT_MESSAGE"):
        found = section(prompt, tag)
        if found is not None:
            return found
    return ""


def entity_names(prompt: str) -> list[str]:
    listed = _json(section(prompt, "ENTITIES")) or []
    return [e["name"] for e in listed if isinstance(e, dict) and "name" in e] if isinstance(listed, list) else []


def fact_sentence(text: str, a: str, b: str) -> str:
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    for s in sentences:
        if a in s and b in s:
            return s
    return sentences[0] if sentences else f"{a} relates to {b}."


def answer(seen: Seen) -> dict[str, Any]:
    name, prompt = seen.schema_name, seen.prompt
    if name in ("ExtractedEntities", "CombinedExtraction"):
        entities = [{"name": n, "entity_type_id": 0, "episode_indices": [0]} for n in names_in(episode_text(prompt))]
        if name == "ExtractedEntities":
            return {"extracted_entities": entities}
        return {"extracted_entities": entities, "edges": _edges([e["name"] for e in entities], episode_text(prompt))}
    if name == "NodeResolutions":
        listed = _json(section(prompt, "ENTITIES")) or []
        return {"entity_resolutions": [{"id": e.get("id", i), "name": e.get("name", ""), "duplicate_candidate_id": -1}
                                       for i, e in enumerate(listed)]}
    if name == "NodeDuplicate":
        new = _json(section(prompt, "NEW ENTITY")) or {}
        return {"id": 0, "name": new.get("name", "") if isinstance(new, dict) else "", "duplicate_candidate_id": -1}
    if name == "ExtractedEdges":
        return {"edges": _edges(entity_names(prompt), episode_text(prompt))}
    if name == "EdgeDuplicate":
        return {"duplicate_facts": [], "contradicted_facts": []}
    if name == "SummarizedEntities":
        return {"summaries": [{"name": n, "summary": f"{n} is mentioned in the document."}
                              for n in entity_names(prompt)]}
    if name in ("EntitySummary", "Summary", "SagaSummary"):
        return {"summary": "A short summary from the document."}
    if name == "SummaryDescription":
        return {"description": "A short description."}
    if name == "BatchEdgeTimestamps":
        facts = _json(section(prompt, "FACTS")) or []
        return {"timestamps": [{"valid_at": None, "invalid_at": None} for _ in facts]}
    schema = ((seen.body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    return minimal(schema, schema) if schema else {}


def _edges(names: list[str], text: str) -> list[dict[str, Any]]:
    if len(names) < 2:
        return []
    a, b = names[0], names[1]
    return [{"source_entity_name": a, "target_entity_name": b, "relation_type": "RELATES_TO",
             "fact": fact_sentence(text, a, b), "valid_at": None, "invalid_at": None, "episode_indices": [0]}]


def minimal(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """The smallest value valid for a JSON schema (required fields only; nullable ones None)."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        return minimal(root.get("$defs", {}).get(ref, {}), root)
    if "anyOf" in schema:
        options = schema["anyOf"]
        if any(o.get("type") == "null" for o in options):
            return None
        return minimal(options[0], root)
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: minimal(props[k], root) for k in schema.get("required", []) if k in props}
    return {"array": [], "string": "", "integer": 0, "number": 0, "boolean": False, "null": None}.get(kind, None)
