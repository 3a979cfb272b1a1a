"""``POST /api/analytics/chat``: an OpenAI-compatible chat model with the analytics tools, streamed as SSE.

The loop: ask the model with the tools; run every tool call it makes (for real, with the caller's
identity) and give it the results; repeat until it answers in words, at most :data:`MAX_ROUNDS` rounds
and :data:`TIME_LIMIT_S` seconds, no request waiting past that (then it is asked once more, without
tools and for at most :data:`FINAL_TIMEOUT_S`, to answer with what it has). A tool's failure, or a
tool name the model made up, is an ``{"error": ...}`` result the model reads, never a failed reply. The reply comes as the reference's events, in order: ``token_usage``, ``tools_metadata``,
``content`` pieces, then ``[DONE]``.

The model: the request's ``model`` (a custom model entry id, or ``deployment:<name>``), else
``WORKBENCH_ANALYTICS_LLM``, else ``WORKBENCH_ANALYTICS_LLM_BASE_URL``/``_MODEL``/``_API_KEY``. With none,
the endpoint answers 503 and says how to configure one; the tools stay callable on their own
(``POST /api/analytics/tools/{name}``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidInput, Unavailable
from ..llm_endpoints import client_kwargs, resolve
from . import tools

MAX_ROUNDS = 6
TIME_LIMIT_S = 120.0  # for the tool rounds; then the last answer gets FINAL_TIMEOUT_S
REQUEST_TIMEOUT_S = 60.0
FINAL_TIMEOUT_S = 30.0
SYSTEM = ("You are the analytics assistant of a fine-tuning workbench. Answer from the caller's data: call the "
          "tools for every figure (never guess a number), use the calculator for arithmetic, and say which tool a "
          "figure came from. Be brief.")
HOW_TO = ("no LLM is configured for the analytics assistant: set WORKBENCH_ANALYTICS_LLM to a custom model id of "
          "/api/models or to deployment:<name>, or WORKBENCH_ANALYTICS_LLM_BASE_URL (and _MODEL, _API_KEY), or pass "
          "\"model\" in the request")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=50_000)


class AnalyticsChat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    sessionId: str | None = Field(None, max_length=200)
    experimentName: str | None = Field(None, max_length=200)
    conversationIds: list[str] = Field(default_factory=list, max_length=200)
    model: str | None = Field(None, max_length=200, description="a custom model id, or deployment:<name>")


def llm_for(body: AnalyticsChat, owner: str, self_url: str | None, token: str | None) -> dict[str, Any]:
    ref = body.model or os.environ.get("WORKBENCH_ANALYTICS_LLM", "")
    try:
        llm = resolve(ref, owner, env_prefix="WORKBENCH_ANALYTICS_LLM", self_url=self_url, token=token)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="model") from None
    if llm is None:
        raise Unavailable(HOW_TO, field="model")
    return llm


def _pieces(text: str) -> list[str]:
    """The answer as content events, a sentence (and its trailing space) each."""
    return [p for p in re.split(r"(?<=[.!?:])(?=\s)", text) if p] or [text]


async def chat(body: AnalyticsChat, owner: str, llm: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    from openai import APITimeoutError, AsyncOpenAI

    client = AsyncOpenAI(**client_kwargs(llm), timeout=REQUEST_TIMEOUT_S, max_retries=0)
    context = []
    if body.conversationIds:
        context.append(f"The conversations in question: {', '.join(body.conversationIds)}.")
    if body.experimentName:
        context.append(f"Experiment: {body.experimentName}.")
    messages: list[dict[str, Any]] = [{"role": "system", "content": " ".join([SYSTEM, *context])}]
    messages += [m.model_dump() for m in body.messages]
    called: list[dict[str, Any]] = []
    used = {"input_tokens": 0, "output_tokens": 0}
    deadline = time.monotonic() + TIME_LIMIT_S
    answer: str | None = None
    try:
        for _ in range(MAX_ROUNDS):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # each request waits at most for the time left: a model that hangs cannot stretch the limit;
            # cut off by it, the loop goes on to the last answer (so the whole is TIME_LIMIT_S + FINAL_TIMEOUT_S)
            try:
                resp = await client.chat.completions.create(model=llm["model"], messages=messages,
                                                            tools=tools.openai_tools(), tool_choice="auto",
                                                            timeout=min(REQUEST_TIMEOUT_S, left))
            except APITimeoutError:
                if left >= REQUEST_TIMEOUT_S:
                    raise
                break
            _count(used, resp)
            msg = resp.choices[0].message
            if not msg.tool_calls:
                answer = msg.content or ""
                break
            messages.append({"role": "assistant", "content": msg.content or "",
                             "tool_calls": [tc.model_dump() for tc in msg.tool_calls]})
            for tc in msg.tool_calls:
                try:
                    args = json.loads(tc.function.arguments or "{}")
                except json.JSONDecodeError:
                    args = None
                if not isinstance(args, dict):
                    result = {"error": "the arguments were not a JSON object"}
                elif tc.function.name not in tools.TOOLS:  # a name the model made up: its error to read
                    result = {"error": f"unknown tool {tc.function.name!r}; tools: {', '.join(tools.TOOLS)}"}
                else:
                    result = await asyncio.to_thread(tools.call, owner, tc.function.name, args, body.sessionId)
                called.append({"name": tc.function.name, "success": "error" not in result})
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": json.dumps(result, default=str)[:20_000]})
        if answer is None:  # out of rounds or time: one last answer, without tools
            messages.append({"role": "system", "content": "Answer now with what the tools returned."})
            resp = await client.chat.completions.create(model=llm["model"], messages=messages,
                                                        timeout=FINAL_TIMEOUT_S)
            _count(used, resp)
            answer = resp.choices[0].message.content or ""
    except Exception as exc:
        from openai import APIError

        if isinstance(exc, APIError):
            raise Unavailable(f"the assistant's model failed: {exc}", field="model") from exc
        raise
    finally:
        await client.close()
    yield {"type": "token_usage", **used}
    yield {"type": "tools_metadata", "tools_called": called}
    for piece in _pieces(answer):
        yield {"content": piece}


def _count(used: dict[str, int], resp: Any) -> None:
    if resp.usage is not None:
        used["input_tokens"] += resp.usage.prompt_tokens or 0
        used["output_tokens"] += resp.usage.completion_tokens or 0
