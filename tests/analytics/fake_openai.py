"""A scripted OpenAI-compatible chat model: a real HTTP server on 127.0.0.1, in a thread.

``POST /v1/chat/completions`` is answered by the ``script``: a function of the request (a :class:`Seen`,
with the messages the client sent, tool results included) returning what the model "says" next, either

* ``{"content": "..."}`` — an answer in words, or
* ``{"tool_calls": [("tool_name", {arguments}), ...]}`` — a round of tool calls (``arguments`` may be a
  string, sent as is, for malformed-argument cases).

Each reply reports ``usage`` of :attr:`FakeOpenAI.prompt_tokens` / :attr:`completion_tokens`. A script may
raise :class:`Status` to answer with an HTTP error, and :attr:`FakeOpenAI.delay_s` slows every answer.
Every request is recorded in :attr:`FakeOpenAI.requests` (path, headers, JSON body), so a test asserts on
what the model received.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from workbench.testing import LoopbackJSON


class Status(Exception):
    def __init__(self, code: int, message: str = "scripted failure") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Seen:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The ``role: tool`` messages, their content parsed as JSON."""
        return [{**m, "result": json.loads(m["content"])} for m in self.messages if m.get("role") == "tool"]

    @property
    def offers_tools(self) -> bool:
        return bool(self.body.get("tools"))

    def result_of(self, tool_call_id: str) -> Any:
        return next(t["result"] for t in self.tool_results if t["tool_call_id"] == tool_call_id)


Script = Callable[[Seen], dict[str, Any]]


@dataclass
class FakeOpenAI:
    script: Script
    prompt_tokens: int = 100
    completion_tokens: int = 10
    delay_s: float = 0.0
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = LoopbackJSON(self._respond, name="fake-openai")
        self.port = self._server.port

    def _respond(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict]:
        if method != "POST":
            return 404, {"error": {"message": f"no route {method} {path}"}}
        seen = Seen(path, headers, body)
        self.requests.append(seen)
        if self.delay_s:
            time.sleep(self.delay_s)
        if path.rstrip("/") != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}
        try:
            said = self.script(seen)
        except Status as exc:
            return exc.code, {"error": {"message": exc.message, "type": "server_error"}}
        n = len(self.requests)
        message: dict[str, Any] = {"role": "assistant", "content": said.get("content")}
        if said.get("tool_calls"):
            message["tool_calls"] = [
                {"id": f"call_{n}_{i}", "type": "function",
                 "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                for i, (name, args) in enumerate(said["tool_calls"])]
        return 200, {
            "id": f"chatcmpl-fake-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if said.get("tool_calls") else "stop"}],
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                      "total_tokens": self.prompt_tokens + self.completion_tokens}}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
