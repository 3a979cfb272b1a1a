"""Local deployments, end to end: a finished job, deployed, answers the official ``openai`` SDK.

Everything real: the trained tiny-chat LoRA checkpoint, uvicorn on a loopback socket, the
workbench token as the SDK's ``api_key``, the usage rows in SQLite, Prometheus' text format.
"""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from workbench import usage
from workbench.client import APIError
from workbench.serving.engine import loaded

from .conftest import Served

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def _deploy(served: Served, name: str, **fields) -> dict:
    with served.client() as c:
        return c.deploy(served.job_id, name, **fields)


def test_a_finished_job_answers_the_openai_sdk_plain_streamed_and_as_completions(served: Served) -> None:
    with served.client() as c:
        dep = c.deploy_training(served.job_id, checkpoint="checkpoint-final", deployment_name="Support Bot")
    assert dep["success"] is True and dep["model_name"] == "support-bot" and dep["status"] == "active"
    assert dep["endpoint_url"] == f"{served.base_url}/v1" and dep["checkpoint"] == "final"
    oa = served.openai()

    plain = oa.chat.completions.create(model="support-bot", messages=CHAT, temperature=0, max_tokens=24)
    text = plain.choices[0].message.content
    assert plain.id.startswith("chatcmpl-") and plain.model == "support-bot" and text.strip()
    assert plain.usage.completion_tokens >= 1 and plain.usage.prompt_tokens > 5
    assert plain.choices[0].finish_reason in ("stop", "length")

    chunks = list(oa.chat.completions.create(model="support-bot", messages=CHAT, temperature=0, max_tokens=24,
                                             stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy: the stream is the same answer, piece by piece
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens and not chunks[-1].choices
    assert len({c.id for c in chunks}) == 1

    done = oa.completions.create(model="support-bot", prompt="The capital of France is", temperature=0)
    assert done.id.startswith("cmpl-") and done.choices[0].text
    assert done.usage.completion_tokens > 16 or done.choices[0].finish_reason == "stop"  # not a 16-token cut

    listed = {m.id: m for m in oa.models.list().data}
    assert listed["support-bot"].parent == "tiny-chat"

    rows = {r["id"]: r for r in usage.rows(deployment_id=dep["deployment_id"])}
    assert set(rows) == {plain.id, chunks[0].id, done.id}
    assert rows[plain.id]["output_tokens"] == plain.usage.completion_tokens
    assert rows[plain.id]["input_tokens"] == plain.usage.prompt_tokens and rows[plain.id]["success"]
    assert rows[chunks[0].id]["stream"] and rows[chunks[0].id]["ttft_ms"] > 0
    assert rows[done.id]["route"] == "completion" and rows[done.id]["checkpoint"] == "final"
    assert all(r["job_id"] == served.job_id for r in rows.values())


def test_the_budget_alerts_at_50_80_100_then_stops_and_refuses_with_402(served: Served) -> None:
    dep = _deploy(served, "budgeted", checkpoint_selection="best", budget_limit=1.0, cost_per_request=0.25)
    assert dep["estimated_requests"] == 4 and dep["budget_limit"] == 1.0
    oa = served.openai()
    for _ in range(4):
        oa.chat.completions.create(model="budgeted", messages=CHAT, temperature=0, max_tokens=4)
    for _ in range(2):  # the fifth trips the auto-stop; the sixth finds it stopped
        with pytest.raises(openai.APIStatusError) as err:
            oa.chat.completions.create(model="budgeted", messages=CHAT, temperature=0, max_tokens=4)
        assert err.value.status_code == 402
        assert err.value.body["code"] == "BUDGET_EXCEEDED" and "budget" in err.value.body["message"]

    with served.client() as c:
        st = c.deployment_status(dep["deployment_id"])
    assert st["current_spend"] == 1.0 and st["request_count"] == 4 and st["status"] == "stopped"
    assert st["budget_utilization_percent"] == 100.0 and st["estimated_requests_remaining"] == 0
    assert [a["threshold"] for a in st["alerts"] if a["kind"] == "budget_alert"] == [50, 80, 100]
    assert st["budget_alert"] == "100%" and st["stop_reason"] == "budget"
    assert st["metrics"]["total_requests"] == 4 and st["metrics"]["successful_requests"] == 4
    assert st["metrics"]["p95_latency_ms"] > 0 and st["metrics"]["avg_latency_ms"] > 0
    assert len(usage.rows(deployment_id=dep["deployment_id"])) == 4  # refused requests are not recorded


def test_without_auto_stop_the_budget_only_alerts(served: Served) -> None:
    dep = _deploy(served, "lenient", budget_limit=1.0, cost_per_request=0.5, auto_stop_on_budget=False)
    oa = served.openai()
    for _ in range(3):
        oa.completions.create(model="lenient", prompt="Hi", max_tokens=2)
    with served.client() as c:
        st = c.deployment_status(dep["deployment_id"])
    assert st["status"] == "active" and st["current_spend"] == 1.5 and st["budget_utilization_percent"] == 150.0


def test_two_adapters_share_one_loaded_base_and_both_answer(served: Served) -> None:
    a = _deploy(served, "step-five", checkpoint_selection="step-5")
    b = _deploy(served, "final-one", checkpoint_selection="final")
    assert (a["checkpoint"], b["checkpoint"]) == ("checkpoint-5", "final")
    bases = [e for e in loaded().values() if a["deployment_id"] in e.adapters]
    assert len(bases) == 1 and b["deployment_id"] in bases[0].adapters
    oa = served.openai()
    for name in ("step-five", "final-one"):
        assert oa.chat.completions.create(model=name, messages=CHAT, max_tokens=8).choices[0].message.content


def test_concurrent_requests_are_batched_and_answer_as_alone(served: Served) -> None:
    _deploy(served, "batched", checkpoint_selection="final")
    oa = served.openai()
    prompts = [f"Tell me about {w}." for w in ("cats", "rivers", "Paris", "music", "bread", "trains")]
    alone = {p: oa.completions.create(model="batched", prompt=p, temperature=0, max_tokens=12).choices[0].text
             for p in prompts}
    engine = next(e for e in loaded().values() if e.adapters)
    together: dict[str, str] = {}
    barrier = threading.Barrier(len(prompts))

    def ask(p: str) -> None:
        barrier.wait()
        together[p] = oa.completions.create(model="batched", prompt=p, temperature=0, max_tokens=12).choices[0].text

    # the engine is busy with a long request when the six arrive, so they queue up and go together
    before = engine.batches
    busy = threading.Thread(target=oa.completions.create,
                            kwargs={"model": "batched", "prompt": "Once", "temperature": 0.5, "max_tokens": 600})
    busy.start()
    while engine.batches == before:
        time.sleep(0.005)
    threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads + [busy]:
        t.join()
    assert engine.batches - before < len(prompts) + 1  # some requests shared a generate() call
    assert together == alone  # left padding and per-row stops change nothing


def test_a_stopped_deployment_refuses_and_cannot_restart(served: Served) -> None:
    dep = _deploy(served, "short-lived")
    with served.client() as c:
        out = c.stop_deployment(dep["deployment_id"])
        assert out["final_status"]["status"] == "stopped" and out["final_status"]["total_requests"] == 0
        with pytest.raises(APIError) as again:
            c.stop_deployment(dep["deployment_id"])
        assert again.value.status_code == 409 and again.value.code == "DEPLOYMENT_STOPPED"
    with pytest.raises(openai.APIStatusError) as err:
        served.openai().chat.completions.create(model="short-lived", messages=CHAT)
    assert err.value.status_code == 409 and err.value.body["code"] == "DEPLOYMENT_STOPPED"
    assert "short-lived" not in {m.id for m in served.openai().models.list().data}


def test_bad_requests_are_clear_errors_that_change_nothing(served: Served) -> None:
    _deploy(served, "strict")
    oa = served.openai()
    with pytest.raises(openai.NotFoundError) as nf:
        oa.chat.completions.create(model="nope", messages=CHAT)
    assert nf.value.body["field"] == "model"
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        oa.chat.completions.create(model="strict", messages=CHAT, n=2)
    assert bad.value.body["field"] == "n"
    with pytest.raises(openai.AuthenticationError):
        served.openai().with_options(api_key="wrong").models.list()

    h = {"Authorization": f"Bearer {served.token}"}
    cases = [({"provider": "local", "deployment_name": "x", "training_job_id": served.job_id, "budget_limit": 0.5},
              400, "INVALID_CONFIG", "budget_limit"),
             ({"provider": "runpod-serverless", "deployment_name": "x", "training_job_id": served.job_id},
              400, "INVALID_CONFIG", "budget_limit"),
             ({"provider": "runpod-serverless", "deployment_name": "x", "training_job_id": served.job_id,
               "budget_limit": 10}, 401, "NO_RUNPOD_KEY", None),
             ({"deployment_name": "x", "training_job_id": "job-nope"}, 404, "JOB_NOT_FOUND", None),
             ({"deployment_name": "x", "training_job_id": served.job_id, "checkpoint_selection": "step-999"},
              404, "JOB_NOT_FOUND", None),
             ({"deployment_name": "strict", "training_job_id": served.job_id}, 400, "INVALID_CONFIG",
              "deployment_name")]
    with served.client() as c:
        before = len(c.list_deployments())
    for body, status, code, field in cases:
        r = httpx.post(f"{served.base_url}/api/inference/deploy", json=body, headers=h)
        assert r.status_code == status, (body, r.text)
        err = r.json()["error"]
        assert err["code"] == code and (field is None or err["field"] == field), r.text
    with served.client() as c:
        assert len(c.list_deployments()) == before


def test_metrics_are_prometheus_text_behind_the_token(served: Served) -> None:
    dep = _deploy(served, "metered")
    served.openai().chat.completions.create(model="metered", messages=CHAT, max_tokens=3)
    assert httpx.get(f"{served.base_url}/metrics").status_code == 401
    with served.client() as c:
        text = c.metrics()
    line = next(x for x in text.splitlines() if x.startswith("workbench_inference_requests_total{")
                and dep["deployment_id"] in x and 'outcome="success"' in x)
    assert float(line.rsplit(" ", 1)[1]) == 1.0
    assert f'workbench_inference_time_to_first_token_seconds_count{{deployment="{dep["deployment_id"]}"' in text
    assert "workbench_inference_tokens_total" in text and "workbench_inference_latency_seconds_bucket" in text


def test_merged_and_gguf_exports_download_next_to_the_adapter_and_a_merged_model_serves(served: Served) -> None:
    import io
    import zipfile

    h = {"Authorization": f"Bearer {served.token}"}
    r = httpx.get(f"{served.base_url}/api/training/{served.job_id}/download/merged", params={"checkpoint": "final"},
                  headers=h, timeout=120)
    assert r.status_code == 200, r.text
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "model.safetensors" in names and "config.json" in names and "adapter_config.json" not in names
    r = httpx.get(f"{served.base_url}/api/training/{served.job_id}/download/gguf",
                  params={"checkpoint": "final", "quantization": "q8_0"}, headers=h, timeout=120)
    assert r.status_code == 200, r.text
    z = zipfile.ZipFile(io.BytesIO(r.content))
    gguf = next(n for n in z.namelist() if n.endswith(".gguf"))
    assert z.read(gguf)[:4] == b"GGUF" and f"FROM ./{gguf}" in z.read("Modelfile").decode()
    bad = httpx.get(f"{served.base_url}/api/training/{served.job_id}/download/gguf",
                    params={"quantization": "q2"}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "quantization"

    dep = _deploy(served, "merged-one", checkpoint_selection="final", merged=True)
    with served.client() as c:
        st = c.deployment_status(dep["deployment_id"])
    assert st["merged"] is True
    oa = served.openai()
    merged = oa.completions.create(model="merged-one", prompt="Tell me about cats.", temperature=0, max_tokens=12)
    _deploy(served, "unmerged-one", checkpoint_selection="final")
    plain = oa.completions.create(model="unmerged-one", prompt="Tell me about cats.", temperature=0, max_tokens=12)
    assert merged.choices[0].text == plain.choices[0].text  # the same model, merged or not


def test_a_refused_prompt_is_never_charged_and_other_users_see_nothing(served: Served) -> None:
    from workbench.users import add_user

    dep = _deploy(served, "careful", budget_limit=1.0, cost_per_request=0.25)
    oa = served.openai()
    with pytest.raises(openai.UnprocessableEntityError) as long:
        oa.chat.completions.create(model="careful", messages=[{"role": "user", "content": "word " * 5000}])
    assert long.value.body["field"] == "messages" and "context" in long.value.body["message"]
    with served.client() as c:
        st = c.deployment_status(dep["deployment_id"])
    assert st["request_count"] == 0 and st["current_spend"] == 0 and st["alerts"] == []

    _, bob = add_user("bob-serving")
    other = served.openai().with_options(api_key=bob)
    assert "careful" not in {m.id for m in other.models.list().data}
    with pytest.raises(openai.NotFoundError):
        other.chat.completions.create(model="careful", messages=CHAT)
    assert httpx.get(f"{served.base_url}/api/inference/deployments/{dep['deployment_id']}/status",
                     headers={"Authorization": f"Bearer {bob}"}).status_code == 404
    assert httpx.get(f"{served.base_url}/metrics", headers={"Authorization": f"Bearer {bob}"}).status_code == 403


def test_a_client_that_hangs_up_stops_its_generation(served: Served) -> None:
    dep = _deploy(served, "hang-up", checkpoint_selection="final")
    h = {"Authorization": f"Bearer {served.token}"}
    body = {"model": "hang-up", "prompt": "Once", "max_tokens": 1000, "ignore_eos": True, "temperature": 0}
    engine = next(e for e in loaded().values() if dep["deployment_id"] in e.adapters)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{served.base_url}/v1/completions", json=body, headers=h, timeout=0.4)
    t0 = time.monotonic()
    # the row is written once the engine has dropped the request: wait for both, on a slow machine too
    while (engine._pending or not usage.rows(deployment_id=dep["deployment_id"])) and time.monotonic() - t0 < 10:
        time.sleep(0.02)
    stopped_after = time.monotonic() - t0
    rows = usage.rows(deployment_id=dep["deployment_id"])
    assert len(rows) == 1 and not rows[0]["success"] and "disconnected" in rows[0]["error"]
    full = time.perf_counter()
    httpx.post(f"{served.base_url}/v1/completions", json=body, headers=h, timeout=120)
    full = time.perf_counter() - full
    assert stopped_after < full / 2  # the abandoned row ended long before a whole one takes


def test_a_chat_can_be_grounded_in_the_knowledge_base_and_names_its_sources(served: Served) -> None:
    from workbench.graphrag.service import KnowledgeBaseService

    kb = KnowledgeBaseService()
    doc = kb.wait(kb.upload("catering.md", b"# Orbital Catering\n\n## Staff\n\nChef Marisol Ventura leads the "
                                          b"Orbital Catering kitchen on deck nine.\n")["id"])
    _deploy(served, "grounded", checkpoint_selection="final")
    oa = served.openai()
    ask = [{"role": "user", "content": "Who leads the Orbital Catering kitchen?"}]
    plain = oa.chat.completions.create(model="grounded", messages=ask, max_tokens=4, temperature=0)
    rich = oa.chat.completions.create(model="grounded", messages=ask, max_tokens=4, temperature=0,
                                      extra_body={"knowledge_base": {"limit": 2}})
    sources = rich.model_extra["knowledge"]["sources"]
    assert sources and sources[0]["documentId"] == doc["id"] and sources[0]["filename"] == "catering.md"
    assert rich.usage.prompt_tokens > plain.usage.prompt_tokens + 10  # the passages went into the prompt
    assert "knowledge" not in (plain.model_extra or {})
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        oa.chat.completions.create(model="grounded", messages=ask, extra_body={"knowledge_base": {"limit": 99}})
    assert bad.value.body["field"].startswith("knowledge_base")
    kb.delete(doc["id"])


def test_a_grounded_chat_takes_as_many_passages_as_the_context_holds(served: Served) -> None:
    from workbench.graphrag.service import KnowledgeBaseService

    kb = KnowledgeBaseService()
    words = " ".join(f"zephyrine{i} quillwort{i}" for i in range(30))  # 60 words, several hundred tokens for tiny-chat
    text = "".join(f"## Deck {n}\n\nThe Orbital Catering kitchen on deck {n} keeps {words}.\n\n" for n in range(6))
    doc = kb.wait(kb.upload("decks.md", f"# Orbital Catering\n\n{text}".encode())["id"])
    _deploy(served, "fitted", checkpoint_selection="final")
    ask = [{"role": "user", "content": "What does the Orbital Catering kitchen keep?"}]
    reply = served.openai().chat.completions.create(model="fitted", messages=ask, max_tokens=4, temperature=0,
                                                    extra_body={"knowledge_base": {"limit": 6}})
    knowledge = reply.model_extra["knowledge"]
    assert knowledge["left_out"] >= 1 and len(knowledge["sources"]) == 6 - knowledge["left_out"] >= 1
    assert reply.usage.prompt_tokens < 1024  # tiny-chat's context: what went in fits
    kb.delete(doc["id"])
