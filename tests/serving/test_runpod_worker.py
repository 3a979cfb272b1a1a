"""The RunPod worker: request parsing and dispatch in-process, then the real ``runpod.serverless`` loop in a
subprocess (``--test_input`` local mode, and the job-take/job-done loop against a loopback job queue).

Until ``workbench.serving.inference`` exists the engine is a stand-in (``FakeEngine``/``fake_answer`` from
``fake_runpod``: the same ``answer`` contract, no model); the one test with the real inference module and
tiny-chat is skipped while that module is missing.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from workbench.errors import InvalidInput
from workbench.serving import runpod_worker
from workbench.serving.runpod_worker import ADAPTER_KEY, handler, parse_input

from .fake_runpod import FakeEngine, fake_answer

REPO = Path(__file__).resolve().parents[2]
CHAT = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}

# Runs the real worker module's main() with the stand-in engine installed first.
WRAPPER = """
import sys
sys.path.insert(0, {repo!r})
from tests.serving.fake_runpod import FakeEngine, fake_answer
from workbench.serving import runpod_worker
runpod_worker._engine = FakeEngine()
runpod_worker._answer = fake_answer
runpod_worker.main()
"""


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setattr(runpod_worker, "_engine", fake)
    monkeypatch.setattr(runpod_worker, "_answer", fake_answer)
    for name in ("WORKBENCH_BASE_MODEL", "WORKBENCH_ADAPTER", "WORKBENCH_MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    return fake


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "WORKBENCH_"))}
    env.update({"HF_HUB_OFFLINE": "1", "WORKBENCH_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


def _job_result(stdout: str) -> dict[str, Any]:
    """The ``Job result: {...}`` line runpod's local mode prints."""
    line = next(line for line in stdout.splitlines() if "Job result: " in line)
    return ast.literal_eval(line.split("Job result: ", 1)[1])


# ---------------------------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("job_input,kind", [
    (CHAT, "chat"),
    ({"prompt": "Once", "max_tokens": 4, "stop": ["\n"]}, "completion"),
    ({"openai_route": "/v1/chat/completions", "openai_input": CHAT}, "chat"),
    ({"openai_route": "/v1/completions", "openai_input": {"prompt": "Once", "stream": False}}, "completion"),
    ({"openai_route": "/v1/models"}, "models"),
])
def test_parse_input_recognises_each_request_form(job_input: dict[str, Any], kind: str) -> None:
    got_kind, body = parse_input(job_input)
    assert got_kind == kind
    assert "openai_route" not in body and "openai_input" not in body and "stream" not in body
    if kind == "chat":
        assert body["messages"] == CHAT["messages"] and body["max_tokens"] == 8
    if kind == "completion":
        assert body["prompt"] == "Once"


@pytest.mark.parametrize("job_input,field", [
    ("a string", "input"),
    ({}, "input"),
    ({"messages": [], "prompt": "x"}, "input"),
    ({"openai_route": "/v1/embeddings", "openai_input": {}}, "openai_route"),
    ({"openai_route": "/v1/chat/completions", "openai_input": "nope"}, "openai_input"),
    ({"openai_route": "/v1/chat/completions", "openai_input": {"prompt": "x"}}, "messages"),
    ({"openai_route": "/v1/completions", "openai_input": {"messages": []}}, "prompt"),
    ({"prompt": "x", "stream": True}, "stream"),
])
def test_parse_input_refuses_malformed_requests(job_input: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_input(job_input)
    assert err.value.field == field


# ---------------------------------------------------------------------------------------------- handler

def test_handler_delegates_chat_and_completion(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_MODEL_NAME", "support-bot")
    chat = handler({"id": "j1", "input": CHAT})
    assert chat["object"] == "chat.completion" and chat["model"] == "support-bot"
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "echo: Hello"}
    completion = handler({"id": "j2", "input": {"openai_route": "/v1/completions",
                                                "openai_input": {"prompt": "Once", "temperature": 0}}})
    assert completion["object"] == "text_completion" and completion["choices"][0]["text"] == "echo: Once"
    assert [(c["kind"], c["model"], c["adapter"]) for c in engine.calls] == [
        ("chat", "support-bot", None), ("completion", "support-bot", None)]
    assert engine.calls[1]["body"] == {"prompt": "Once", "temperature": 0, "model": "support-bot"}


def test_handler_names_the_adapter_when_one_is_configured(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    (tmp_path / "my-adapter").mkdir()
    monkeypatch.setenv("WORKBENCH_ADAPTER", str(tmp_path / "my-adapter"))
    out = handler({"id": "j", "input": CHAT})
    assert out["model"] == "my-adapter"  # no WORKBENCH_MODEL_NAME: the adapter folder's name
    assert engine.calls[0]["adapter"] == ADAPTER_KEY


def test_handler_lists_the_model(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_MODEL_NAME", "support-bot")
    out = handler({"id": "j", "input": {"openai_route": "/v1/models"}})
    assert out == {"object": "list", "data": [{"id": "support-bot", "object": "model", "owned_by": "workbench"}]}
    assert engine.calls == []


def test_handler_answers_errors_instead_of_raising(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    assert handler({"id": "j", "input": {"nothing": 1}}) == {
        "error": "the input needs messages (chat) or prompt (completion), or openai_route with openai_input",
        "code": "INVALID_INPUT"}
    assert handler({"id": "j", "input": {"prompt": "x", "max_tokens": 0}}) == {
        "error": "max_tokens must be a positive integer", "code": "INVALID_INPUT"}  # raised by answer()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(runpod_worker, "_answer", broken)
    out = handler({"id": "j", "input": CHAT})
    assert out == {"error": "internal error: RuntimeError: CUDA out of memory", "code": "INTERNAL"}


def test_the_engine_loads_once_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loads: list[tuple[str, Any]] = []
    attempts = {"n": 0}

    def load(base: str, adapters: dict[str, str] | None) -> FakeEngine:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise OSError("disk hiccup")
        loads.append((base, adapters))
        return FakeEngine()

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    monkeypatch.setattr(runpod_worker, "_engine", None)
    monkeypatch.setattr(runpod_worker, "_load_engine", load)
    monkeypatch.setattr(runpod_worker, "_answer", fake_answer)
    monkeypatch.delenv("WORKBENCH_MODEL_NAME", raising=False)
    monkeypatch.delenv("WORKBENCH_BASE_MODEL", raising=False)
    monkeypatch.setenv("WORKBENCH_ADAPTER", str(adapter))

    out = handler({"id": "j", "input": CHAT})
    assert out["code"] == "MODEL_UNAVAILABLE" and "WORKBENCH_BASE_MODEL" in out["error"]

    monkeypatch.setenv("WORKBENCH_BASE_MODEL", "org/base-model")
    out = handler({"id": "j", "input": CHAT})
    assert out["code"] == "MODEL_UNAVAILABLE" and "disk hiccup" in out["error"]  # failed load: retried next job
    for _ in range(3):
        assert handler({"id": "j", "input": CHAT})["object"] == "chat.completion"
    assert loads == [("org/base-model", {ADAPTER_KEY: str(adapter)})]

    monkeypatch.setattr(runpod_worker, "_engine", None)
    monkeypatch.setenv("WORKBENCH_ADAPTER", str(tmp_path / "missing"))
    out = handler({"id": "j", "input": CHAT})
    assert out["code"] == "MODEL_UNAVAILABLE" and "is not a folder" in out["error"]


# ---------------------------------------------------------------------------------------------- local mode

def _wrapper(tmp_path: Path) -> Path:
    path = tmp_path / "worker_with_fake_engine.py"
    path.write_text(WRAPPER.format(repo=str(REPO)))
    return path


def test_local_test_input_runs_one_job_and_exits_0(tmp_path: Path) -> None:
    job = json.dumps({"input": {"openai_route": "/v1/chat/completions", "openai_input": CHAT}})
    out = subprocess.run([sys.executable, str(_wrapper(tmp_path)), "--test_input", job],
                         env=_env(tmp_path, WORKBENCH_MODEL_NAME="support-bot"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    result = _job_result(out.stdout)
    assert result["output"]["object"] == "chat.completion" and result["output"]["model"] == "support-bot"


def test_local_test_input_exits_1_when_the_handler_fails(tmp_path: Path) -> None:
    job = json.dumps({"input": {"prompt": "x", "stream": True}})
    out = subprocess.run([sys.executable, str(_wrapper(tmp_path)), "--test_input", job], env=_env(tmp_path),
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "streaming is not supported" in out.stdout


# ---------------------------------------------------------------------------------------------- worker loop

class JobQueue:
    """RunPod's job-take / job-done webhooks for one worker, on loopback."""

    def __init__(self, jobs: list[dict[str, Any]]):
        self.pending = list(jobs)
        self.expected = len(jobs)
        self.takes: list[str] = []
        self.results: list[dict[str, Any]] = []
        self.all_done = threading.Event()
        self.lock = threading.Lock()
        queue = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if "/job-take/" in path:
                    with queue.lock:
                        queue.takes.append(self.path)
                        job = queue.pending.pop(0) if queue.pending else None
                    if job is not None:
                        return self._send(200, json.dumps(job).encode())
                time.sleep(0.3)  # the real queue long-polls; answering at once would make the worker spin
                self._send(204)

            def do_POST(self) -> None:
                split = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with queue.lock:
                    queue.results.append({"path": split.path, "query": parse_qs(split.query),
                                          "content_type": self.headers.get("Content-Type"),
                                          "body": json.loads(raw)})
                    if len(queue.results) >= queue.expected:
                        queue.all_done.set()
                self._send(200, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_worker_loop_takes_jobs_and_posts_their_results(tmp_path: Path) -> None:
    queue = JobQueue([{"id": "job-ok", "input": CHAT},
                      {"id": "job-bad", "input": {"prompt": "x", "max_tokens": -1}}])
    env = _env(tmp_path, WORKBENCH_MODEL_NAME="support-bot", RUNPOD_POD_ID="worker-under-test",
               RUNPOD_WEBHOOK_GET_JOB=f"{queue.url}/v2/ep1/job-take/$ID?gpu=TEST",
               RUNPOD_WEBHOOK_POST_OUTPUT=f"{queue.url}/v2/ep1/job-done/$RUNPOD_POD_ID/$ID?gpu=TEST",
               # the real loop runs fitness checks first (one dials 8.8.8.8:53): not on a test machine
               RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true", RUNPOD_SKIP_GPU_CHECK="true")
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen([sys.executable, str(_wrapper(tmp_path))], env=env, cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        finished = queue.all_done.wait(90)
        assert finished, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)  # the worker's graceful shutdown
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        queue.close()

    by_job = {r["path"].rsplit("/", 1)[1]: r for r in queue.results}
    assert set(by_job) == {"job-ok", "job-bad"}
    ok, bad = by_job["job-ok"], by_job["job-bad"]
    assert ok["path"] == "/v2/ep1/job-done/worker-under-test/job-ok" and ok["query"]["isStream"] == ["false"]
    assert ok["body"]["output"]["object"] == "chat.completion" and ok["body"]["output"]["model"] == "support-bot"
    assert "error" not in ok["body"]
    assert bad["body"]["error"] == "max_tokens must be a positive integer"
    assert bad["body"]["output"] == {"code": "INVALID_INPUT"}
    assert all("/job-take/worker-under-test" in t and "job_in_progress=" in t for t in queue.takes)


# ---------------------------------------------------------------------------------------------- the real model

def _make_adapter(base: Path, dest: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(dest)
    return dest


def test_the_real_worker_answers_with_tiny_chat_and_an_adapter(request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    """``python -m workbench.serving.runpod_worker --test_input`` with the real inference module."""
    pytest.importorskip("workbench.serving.inference")  # skipped until that module lands
    tiny_chat: Path = request.getfixturevalue("tiny_chat_dir")  # built only when the test runs
    adapter = _make_adapter(tiny_chat, tmp_path / "adapter")
    job = json.dumps({"input": {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8,
                                "temperature": 0}})
    env = _env(tmp_path, WORKBENCH_BASE_MODEL=str(tiny_chat), WORKBENCH_ADAPTER=str(adapter),
               WORKBENCH_MODEL_NAME="support-bot")
    out = subprocess.run([sys.executable, "-m", "workbench.serving.runpod_worker", "--test_input", job],
                         env={**env, "PYTHONPATH": str(REPO)}, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    reply = _job_result(out.stdout)["output"]
    assert reply["object"] == "chat.completion" and reply["model"] == "support-bot"
    assert isinstance(reply["choices"][0]["message"]["content"], str)
    assert 0 < reply["usage"]["completion_tokens"] <= 8
