"""OpenAI-compatible requests and replies over an :class:`~workbench.serving.engine.Engine`.

The one home of the OpenAI shapes: the request models the ``/v1`` routes validate, the prompt
built from a chat (the model's own chat template), and the ``chat.completion``,
``chat.completion.chunk`` and ``text_completion`` bodies. The server's routes and the RunPod
worker both answer through here, so a reply looks the same wherever the model runs.

``max_tokens`` defaults to :data:`DEFAULT_MAX_TOKENS` on both routes: OpenAI's legacy
completions (and worker-vllm) stop at 16 tokens when a request names none, which cuts a
fine-tuned answer mid-sentence.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import InvalidInput
from .engine import Engine, Generation, GenRequest, engine_for

DEFAULT_MAX_TOKENS = 256
MAX_TOKENS = 8192
Kind = Literal["chat", "completion"]


class _OpenAIBody(BaseModel):
    """Unknown fields are ignored, as OpenAI-compatible servers do (SDKs send more than we use)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = Field(None, max_length=256)
    metadata: dict[str, Any] | None = None
    ignore_eos: bool = Field(False, description="vLLM's extension: generate max_tokens whatever the model says")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return value

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))

    @property
    def conversation_id(self) -> str | None:
        raw = (self.metadata or {}).get("conversation_id")
        return str(raw)[:256] if raw else None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = ""

    @property
    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: only text ones mean anything to a text model
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class KnowledgeOptions(BaseModel):
    """Ground the reply in the caller's knowledge base: the last user message is searched, and the
    passages found lead the prompt as a system message, as many as the context holds; the reply names
    them (``knowledge.sources``) and counts the ones left out (``knowledge.left_out``)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(3, ge=1, le=10)
    method: Literal["hybrid", "vector", "keyword", "graph"] = "hybrid"
    document_ids: list[str] | None = Field(None, max_length=100)


class ChatRequest(_OpenAIBody):
    messages: list[Message] = Field(min_length=1, max_length=1000)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    knowledge_base: KnowledgeOptions | None = Field(None, description="add knowledge-base context to the prompt")


class CompletionRequest(_OpenAIBody):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("prompt takes one string (or a list of one)")
        return value

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


def parse(kind: Kind, body: dict[str, Any]) -> ChatRequest | CompletionRequest:
    """A raw body (the worker's input) as a request model; errors name the field."""
    try:
        return (ChatRequest if kind == "chat" else CompletionRequest).model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise InvalidInput(f"{where}: {err['msg']}", field=where) from None


def new_id(kind: Kind) -> str:
    """The reply's id, also the usage record's (and the analytics' message) id."""
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(12)


def prompt_ids(engine: Engine, kind: Kind, body: ChatRequest | CompletionRequest) -> list[int]:
    tok = engine.tokenizer
    if kind == "chat":
        assert isinstance(body, ChatRequest)
        chat = [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in body.messages]
        text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    else:
        assert isinstance(body, CompletionRequest)
        text = body.text
    ids = tok(text, add_special_tokens=kind == "completion").input_ids
    if not ids:
        raise InvalidInput("the prompt is empty", field="messages" if kind == "chat" else "prompt")
    return ids


class PromptTooLong(InvalidInput):
    """The prompt leaves no room in the model's context (422): grounding drops passages on it."""


def request(engine: Engine, kind: Kind, body: ChatRequest | CompletionRequest, *,
            adapter: str | None) -> GenRequest:
    """The engine request for a body: the prompt's ids and a token budget that fits the context."""
    ids = prompt_ids(engine, kind, body)
    wanted = (getattr(body, "max_completion_tokens", None) or body.max_tokens or DEFAULT_MAX_TOKENS)
    context = _context_length(engine)
    if context and len(ids) >= context:
        raise PromptTooLong(f"the prompt is {len(ids)} tokens; this model's context is {context}",
                            field="messages" if kind == "chat" else "prompt")
    budget = min(wanted, context - len(ids)) if context else wanted
    return GenRequest(prompt_ids=ids, max_tokens=budget, sink=_unset, temperature=body.temperature,
                      top_p=body.top_p, stop=body.stops, adapter=adapter, ignore_eos=body.ignore_eos)


def usage_of(gen: Generation) -> dict[str, int]:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens}


def reply(kind: Kind, reply_id: str, model: str, gen: Generation, created: int | None = None) -> dict[str, Any]:
    """The whole (non-streamed) OpenAI reply body."""
    created = created or int(time.time())
    if kind == "chat":
        return {"id": reply_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                             "logprobs": None, "finish_reason": gen.finish_reason}],
                "usage": usage_of(gen)}
    return {"id": reply_id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": gen.text, "logprobs": None, "finish_reason": gen.finish_reason}],
            "usage": usage_of(gen)}


def chunk(kind: Kind, reply_id: str, model: str, created: int, *, text: str | None = None,
          finish_reason: str | None = None, first: bool = False, usage: dict[str, int] | None = None) -> dict[str, Any]:
    """One streamed event body; ``usage`` makes the final usage-only chunk (``choices: []``)."""
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    out: dict[str, Any] = {"id": reply_id, "object": obj, "created": created, "model": model}
    if usage is not None:
        out.update(choices=[], usage=usage)
        return out
    if kind == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text is not None:
            delta["content"] = text
        out["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    else:
        out["choices"] = [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}]
    return out


def load_engine(base: str | Path, adapters: dict[str, str] | None = None) -> Engine:
    """The engine for a base model (a folder or a hub id, via ``from_pretrained``) with these adapters."""
    key = str(base)

    def load() -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models import ensure_chat_ready

        import torch

        tokenizer = ensure_chat_ready(AutoTokenizer.from_pretrained(key))
        if torch.cuda.is_available():  # a GPU (a RunPod worker): bf16 weights on it
            model = AutoModelForCausalLM.from_pretrained(key, dtype=torch.bfloat16, device_map="cuda")
        else:
            model = AutoModelForCausalLM.from_pretrained(key)
        return model, tokenizer

    engine = engine_for(key, load)
    for name, path in (adapters or {}).items():
        engine.add_adapter(name, path)
    return engine


def answer(engine: Engine, kind: Kind, body: dict[str, Any] | ChatRequest | CompletionRequest, *, model: str,
           adapter: str | None) -> dict[str, Any]:
    """Blocking: the whole OpenAI reply for a body (the RunPod worker's path)."""
    parsed = parse(kind, body) if isinstance(body, dict) else body
    gen = engine.generate(request(engine, kind, parsed, adapter=adapter))
    return reply(kind, new_id(kind), model, gen)


def _context_length(engine: Engine) -> int | None:
    cfg = getattr(engine.model, "config", None)
    return getattr(cfg, "max_position_embeddings", None)


def _unset(item: tuple[str, Any]) -> None:  # replaced by the caller's sink before submit
    raise RuntimeError("request submitted without a sink")
