"""``POST /api/analytics/chat``: the real ``openai`` SDK against a scripted OpenAI-compatible server on
loopback (:mod:`fake_openai`). The tools run for real, as the caller, and their results are what the
model reads next; the reply streams as ``token_usage``, ``tools_metadata``, ``content``…, ``[DONE]``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from workbench.analytics import assistant, tools

from .fake_openai import FakeOpenAI, Script, Seen, Status
from .usage_rows import row, write

QUESTION = "Analyze my session costs"


@pytest.fixture
def model(monkeypatch) -> Callable[..., FakeOpenAI]:
    """Start a scripted model and point the assistant at it (``WORKBENCH_ANALYTICS_LLM_*``)."""
    started: list[FakeOpenAI] = []
    monkeypatch.delenv("WORKBENCH_ANALYTICS_LLM", raising=False)

    def start(script: Script, **kw) -> FakeOpenAI:
        fake = FakeOpenAI(script, **kw).__enter__()
        started.append(fake)
        monkeypatch.setenv("WORKBENCH_ANALYTICS_LLM_BASE_URL", fake.base_url)
        monkeypatch.setenv("WORKBENCH_ANALYTICS_LLM_MODEL", "analytics-model")
        monkeypatch.setenv("WORKBENCH_ANALYTICS_LLM_API_KEY", "sk-test-key")
        return fake

    yield start
    for fake in started:
        fake.__exit__()


def events(response) -> list:
    """The SSE stream as a list: each ``data:`` payload parsed, ``[DONE]`` kept as the string."""
    assert response.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in response.text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            payload = block[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def chat(api, who=None, **body):
    body.setdefault("messages", [{"role": "user", "content": QUESTION}])
    return api.client.post("/api/analytics/chat", headers=who or api.alice, json=body)


def cost_analyst(seen: Seen) -> dict:
    """The reference's conversation: session metrics, then the calculator on what they said, then the answer."""
    results = seen.tool_results
    if not results:
        return {"tool_calls": [("get_session_metrics", {"conversation_ids": ["conv-1", "conv-2"]})]}
    last = results[-1]["result"]
    if "sessions" in last:
        costs = [s["cost"] for s in sorted(last["sessions"], key=lambda s: s["conversation_id"])]
        return {"tool_calls": [("calculator", {"expression": " + ".join(map(str, costs))}),
                               ("calculator", {"expression": f"({' + '.join(map(str, costs))}) / {len(costs)}"})]}
    total, avg = results[-2]["result"]["result"], results[-1]["result"]["result"]
    return {"content": f"I analyzed your session and found: The total cost was ${total} across 2 conversations. "
                       f"Average cost per conversation: ${avg}."}


@pytest.fixture
def sessions(api) -> None:
    """conv-1: two replies, $0.0050 + $0.0073; conv-2: one, $0.0041; bob has a conv-1 of his own."""
    t = datetime.now(UTC).timestamp() - 3600
    write([row("a1", t, api.alice_id, conversation_id="conv-1", input_tokens=100, output_tokens=40, cost_micro=5000,
               latency_ms=800.0),
           row("a2", t + 60, api.alice_id, conversation_id="conv-1", input_tokens=300, output_tokens=60,
               cost_micro=7300, latency_ms=1200.0),
           row("a3", t + 120, api.alice_id, conversation_id="conv-2", input_tokens=50, output_tokens=25,
               cost_micro=4100, latency_ms=500.0, success=False, error="timeout"),
           row("b1", t, api.bob_id, conversation_id="conv-1", input_tokens=9, output_tokens=9, cost_micro=990_000)])


def test_the_scripted_tool_conversation_runs_the_real_tools_and_streams_in_order(api, sessions, model) -> None:
    fake = model(cost_analyst)
    r = chat(api, sessionId="session-abc-123", experimentName="Q4 Eval", conversationIds=["conv-1", "conv-2"])
    assert r.status_code == 200, r.text
    ev = events(r)

    # the order: token_usage, tools_metadata, content pieces, [DONE]
    assert ev[0] == {"type": "token_usage", "input_tokens": 3 * 100, "output_tokens": 3 * 10}  # three requests
    assert ev[1] == {"type": "tools_metadata", "tools_called": [
        {"name": "get_session_metrics", "success": True}, {"name": "calculator", "success": True},
        {"name": "calculator", "success": True}]}
    assert ev[-1] == "[DONE]"
    pieces = ev[2:-1]
    assert len(pieces) >= 2 and all(set(p) == {"content"} for p in pieces)
    assert "".join(p["content"] for p in pieces) == (
        "I analyzed your session and found: The total cost was $0.0164 across 2 conversations. "
        "Average cost per conversation: $0.0082.")

    # what the model received: the question with the tools, then each tool's real result
    first, second, third = fake.requests
    assert first.body["model"] == "analytics-model" and first.headers["authorization"] == "Bearer sk-test-key"
    assert {t["function"]["name"] for t in first.body["tools"]} == set(tools.TOOLS) and len(tools.TOOLS) == 8
    system = first.messages[0]
    assert system["role"] == "system" and "conv-1, conv-2" in system["content"] and "Q4 Eval" in system["content"]
    assert first.messages[1] == {"role": "user", "content": QUESTION}

    call = second.messages[-2]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"]["name"] == "get_session_metrics"
    metrics = second.result_of(call["tool_calls"][0]["id"])
    assert {s["conversation_id"]: s for s in metrics["sessions"]} == {
        "conv-1": {"conversation_id": "conv-1", "messages": 2, "input_tokens": 400, "output_tokens": 100,
                   "avg_latency_ms": 1000.0, "errors": 0, "cost": 0.0123},  # not bob's conv-1
        "conv-2": {"conversation_id": "conv-2", "messages": 1, "input_tokens": 50, "output_tokens": 25,
                   "avg_latency_ms": 500.0, "errors": 1, "cost": 0.0041}}
    assert [t["result"] for t in third.tool_results[1:]] == [
        {"expression": "0.0123 + 0.0041", "result": "0.0164", "fraction": "41/2500"},
        {"expression": "(0.0123 + 0.0041) / 2", "result": "0.0082", "fraction": "41/5000"}]

    # and the calls were recorded: the data endpoint's tools metric
    now = datetime.now(UTC)
    d = api.data(startDate=(now - timedelta(minutes=5)).isoformat(), endDate=(now + timedelta(minutes=1)).isoformat(),
                 metrics="tools", granularity="all")
    assert [t["toolName"] for t in d["metrics"]["tools"]] == ["get_session_metrics", "calculator", "calculator"]


def test_the_tools_run_with_the_callers_identity(api, sessions, model) -> None:
    fake = model(lambda seen: {"content": "done"} if seen.tool_results else
                 {"tool_calls": [("get_session_metrics", {"conversation_ids": ["conv-1"]})]})
    r = chat(api, who=api.bob)
    assert r.status_code == 200
    assert fake.requests[1].tool_results[0]["result"]["sessions"] == [
        {"conversation_id": "conv-1", "messages": 1, "input_tokens": 9, "output_tokens": 9, "avg_latency_ms": None,
         "errors": 0, "cost": 0.99}]


def test_a_model_that_always_calls_tools_stops_after_max_rounds_and_answers(api, model, monkeypatch) -> None:
    monkeypatch.setattr(assistant, "MAX_ROUNDS", 3)
    fake = model(lambda seen: {"tool_calls": [("datetime", {"operation": "now"})]} if seen.offers_tools
                 else {"content": "Out of rounds: it is now."})
    r = chat(api)
    assert r.status_code == 200, r.text
    ev = events(r)
    assert [s.offers_tools for s in fake.requests] == [True, True, True, False]
    last = fake.requests[-1].messages
    assert last[-1]["role"] == "system" and "Answer now" in last[-1]["content"]
    assert len([m for m in last if m["role"] == "tool"]) == 3  # every result went back
    assert ev[0]["input_tokens"] == 4 * 100
    assert ev[1]["tools_called"] == [{"name": "datetime", "success": True}] * 3
    assert "".join(e["content"] for e in ev[2:-1]) == "Out of rounds: it is now." and ev[-1] == "[DONE]"


def test_the_tool_rounds_are_bounded_in_time(api, model, monkeypatch) -> None:
    monkeypatch.setattr(assistant, "TIME_LIMIT_S", 0.6)
    fake = model(lambda seen: {"tool_calls": [("datetime", {"operation": "now"})]} if seen.offers_tools
                 else {"content": "Out of time."}, delay_s=0.25)
    t = time.monotonic()
    r = chat(api)
    assert r.status_code == 200, r.text
    rounds = sum(s.offers_tools for s in fake.requests)
    assert 1 <= rounds < assistant.MAX_ROUNDS and not fake.requests[-1].offers_tools
    assert events(r)[-2] == {"content": "Out of time."} and time.monotonic() - t < 10


def test_a_hanging_model_is_cut_off_at_the_time_limits(api, model, monkeypatch) -> None:
    monkeypatch.setattr(assistant, "TIME_LIMIT_S", 1.0)
    monkeypatch.setattr(assistant, "FINAL_TIMEOUT_S", 1.0)
    fake = model(lambda seen: {"content": "too late"}, delay_s=8)
    t = time.monotonic()
    r = chat(api)
    assert r.status_code == 503 and r.json()["error"]["field"] == "model"
    assert time.monotonic() - t < 6  # the tool rounds' limit, then the last answer's: not 60 s a request
    assert [s.offers_tools for s in fake.requests] == [True, False]  # cut off, it was still asked to answer


def test_a_failing_tool_becomes_an_error_result_for_the_model(api, model) -> None:
    def script(seen: Seen) -> dict:
        if not seen.tool_results:
            return {"tool_calls": [("evaluation_metrics", {"operation": "astrology"}),
                                   ("calculator", {"expression": "__import__('os').system('true')"}),
                                   ("rm_rf", {"path": "/"}),  # a tool that does not exist
                                   ("datetime", "{not json"),
                                   ("calculator", {"expression": "2**10"})]}
        return {"content": "Some tools failed; 2**10 is 1024."}

    fake = model(script)
    r = chat(api)
    assert r.status_code == 200, r.text
    ev = events(r)
    assert ev[1]["tools_called"] == [{"name": "evaluation_metrics", "success": False},
                                     {"name": "calculator", "success": False}, {"name": "rm_rf", "success": False},
                                     {"name": "datetime", "success": False}, {"name": "calculator", "success": True}]
    results = [t["result"] for t in fake.requests[1].tool_results]
    assert results[0]["field"] == "operation" and results[1]["field"] == "expression"
    assert "unknown tool" in results[2]["error"] and "JSON" in results[3]["error"]
    assert results[4] == {"expression": "2**10", "result": "1024"}
    assert ev[-2:] == [{"content": "Some tools failed; 2**10 is 1024."}, "[DONE]"]


def test_a_failing_model_is_a_503_naming_it(api, model) -> None:
    def broken(seen: Seen) -> dict:
        raise Status(500, "the GPU caught fire")

    model(broken)
    r = chat(api)
    assert r.status_code == 503 and r.json()["error"]["field"] == "model"
    assert "model failed" in r.json()["error"]["message"]


def test_without_an_llm_the_chat_is_a_503_that_says_how_to_configure_one(api, monkeypatch) -> None:
    for name in ("WORKBENCH_ANALYTICS_LLM", "WORKBENCH_ANALYTICS_LLM_BASE_URL", "WORKBENCH_ANALYTICS_LLM_MODEL",
                 "WORKBENCH_ANALYTICS_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    r = chat(api)
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert "WORKBENCH_ANALYTICS_LLM_BASE_URL" in message and "/api/models" in message and "deployment:" in message
    ok = api.client.post("/api/analytics/tools/calculator", headers=api.alice, json={"arguments": {"expression": "1+1"}})
    assert ok.status_code == 200 and ok.json()["result"]["result"] == "2"  # the tools stay callable


def test_a_custom_model_entry_is_called_with_its_key_which_is_never_shown(api, model, monkeypatch) -> None:
    fake = model(lambda seen: {"content": "Hello from the custom entry."})
    for name in ("WORKBENCH_ANALYTICS_LLM_BASE_URL", "WORKBENCH_ANALYTICS_LLM_MODEL", "WORKBENCH_ANALYTICS_LLM_API_KEY"):
        monkeypatch.delenv(name)
    created = api.client.post("/api/models", headers=api.alice, json={
        "name": "analyst", "base_url": fake.base_url, "model_id": "gpt-fake", "api_key": "sk-secret-123"})
    assert created.status_code in (200, 201), created.text
    assert "sk-secret-123" not in created.text
    model_id = (created.json().get("model") or created.json())["id"]
    r = chat(api, model=model_id)
    assert r.status_code == 200, r.text
    assert events(r)[-2] == {"content": "Hello from the custom entry."}
    seen = fake.requests[-1]
    assert seen.headers["authorization"] == "Bearer sk-secret-123" and seen.body["model"] == "gpt-fake"
    assert "sk-secret-123" not in api.client.get("/api/models", headers=api.alice).text
    assert chat(api, who=api.bob, model=model_id).status_code == 404  # alice's entry, alice's key


@pytest.mark.parametrize(("body", "field"), [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 2}, "temperature"),
])
def test_a_bad_chat_request_is_a_422_naming_the_field(api, model, body, field) -> None:
    fake = model(lambda seen: {"content": "never"})
    r = api.client.post("/api/analytics/chat", headers=api.alice, json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field
    assert fake.requests == []
