"""The RunPod Serverless worker: a fine-tuned model (base + LoRA adapter) answering OpenAI-style jobs.

Run inside the image built from ``deploy/runpod/Dockerfile`` (``python -m workbench.serving.runpod_worker``),
or locally with RunPod's test mode::

    WORKBENCH_BASE_MODEL=/models/base WORKBENCH_ADAPTER=/models/adapter WORKBENCH_MODEL_NAME=support-bot \\
        python -m workbench.serving.runpod_worker --test_input '{"input": {"messages": [{"role": "user", "content": "Hi"}]}}'

Environment:

* ``WORKBENCH_BASE_MODEL`` (required) — a model folder or a hub id, given to ``from_pretrained`` as is;
* ``WORKBENCH_ADAPTER`` (optional) — the LoRA adapter folder;
* ``WORKBENCH_MODEL_NAME`` (optional) — the ``model`` the replies carry (default: the adapter's or the
  base's folder name).

The model is loaded once per process, before the worker takes its first job (RunPod bills from worker
start either way). A job's ``input`` is one of:

* ``{"messages": [...], "max_tokens"?, "temperature"?, "top_p"?, "stop"?, ...}`` — a chat completion;
* ``{"prompt": "...", ...}`` — a text completion;
* ``{"openai_route": "/v1/chat/completions" | "/v1/completions" | "/v1/models", "openai_input": {...}}``
  — the form worker-vllm accepts (RunPod's ``/openai/v1/...`` routes send it).

The generation and the reply's shape (``chat.completion`` / ``text_completion`` with ``usage``) come from
``workbench.serving.inference``, shared with the local server. A bad request or a failure is answered as
``{"error": "<message>", "code": "<code>"}``: RunPod marks the job FAILED with that message (and
``--test_input`` exits 1). Streaming is not offered: the handler answers each job whole.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from pathlib import Path
from typing import Any, Literal

from workbench.errors import InvalidInput, ModelUnavailable, WorkbenchError

__all__ = ["ADAPTER_ENV", "ADAPTER_KEY", "BASE_ENV", "NAME_ENV", "ROUTES", "get_engine", "handler", "main",
           "model_name", "parse_input"]

BASE_ENV = "WORKBENCH_BASE_MODEL"
ADAPTER_ENV = "WORKBENCH_ADAPTER"
NAME_ENV = "WORKBENCH_MODEL_NAME"
ADAPTER_KEY = "adapter"  # the adapter's name inside the engine (a plain identifier: PEFT forbids dots)

Kind = Literal["chat", "completion"]
ROUTES: dict[str, str] = {"/v1/chat/completions": "chat", "/v1/completions": "completion", "/v1/models": "models"}

log = logging.getLogger("workbench.runpod_worker")

_engine: Any = None  # the loaded engine; tests may set it to a stand-in
_engine_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------- model

def _load_engine(base: str, adapters: dict[str, str] | None) -> Any:
    from workbench.serving import inference

    return inference.load_engine(base, adapters)


def _answer(engine: Any, kind: Kind, body: dict[str, Any], *, model: str, adapter: str | None) -> dict[str, Any]:
    from workbench.serving import inference

    return inference.answer(engine, kind, body, model=model, adapter=adapter)


def _adapter_path() -> str | None:
    return os.environ.get(ADAPTER_ENV, "").strip() or None


def model_name() -> str:
    """The ``model`` replies carry: ``$WORKBENCH_MODEL_NAME``, else the adapter's or base's last path part."""
    name = os.environ.get(NAME_ENV, "").strip()
    if name:
        return name
    source = _adapter_path() or os.environ.get(BASE_ENV, "").strip() or "workbench-model"
    return Path(source.rstrip("/")).name or source


def get_engine() -> Any:
    """The engine, loaded on first use from the environment (once per process; retried after a failure)."""
    global _engine
    if _engine is not None:
        return _engine
    with _engine_lock:
        if _engine is None:
            base = os.environ.get(BASE_ENV, "").strip()
            if not base:
                raise ModelUnavailable(f"{BASE_ENV} is not set: give the base model's folder or hub id")
            adapter = _adapter_path()
            if adapter is not None and not Path(adapter).is_dir():
                raise ModelUnavailable(f"{ADAPTER_ENV}={adapter} is not a folder", field=ADAPTER_ENV)
            log.info("loading %s%s", base, f" with adapter {adapter}" if adapter else "")
            try:
                _engine = _load_engine(base, {ADAPTER_KEY: adapter} if adapter else None)
            except WorkbenchError:
                raise
            except Exception as exc:
                log.error("loading %s failed:\n%s", base, traceback.format_exc())
                raise ModelUnavailable(f"could not load the model {base}"
                                       f"{f' with adapter {adapter}' if adapter else ''}: "
                                       f"{type(exc).__name__}: {exc}") from exc
    return _engine


# ---------------------------------------------------------------------------------------------- jobs

def parse_input(job_input: Any) -> tuple[str, dict[str, Any]]:
    """``(kind, body)`` for a job's ``input``: kind ``"chat"``, ``"completion"`` or ``"models"``."""
    if not isinstance(job_input, dict):
        raise InvalidInput("the job's input must be a JSON object", field="input")
    if "openai_route" in job_input:
        route = job_input["openai_route"]
        kind = ROUTES.get(route) if isinstance(route, str) else None
        if kind is None:
            raise InvalidInput(f"unsupported openai_route {route!r}; supported: {', '.join(ROUTES)}",
                               field="openai_route")
        body = job_input.get("openai_input")
        if body is None and kind == "models":
            body = {}
        if not isinstance(body, dict):
            raise InvalidInput("openai_input must be a JSON object (the OpenAI request body)", field="openai_input")
        body = dict(body)
        if kind == "chat" and "messages" not in body:
            raise InvalidInput("a /v1/chat/completions request needs messages", field="messages")
        if kind == "completion" and "prompt" not in body:
            raise InvalidInput("a /v1/completions request needs a prompt", field="prompt")
    else:
        has_messages, has_prompt = "messages" in job_input, "prompt" in job_input
        if has_messages and has_prompt:
            raise InvalidInput("give either messages (chat) or prompt (completion), not both", field="input")
        if not has_messages and not has_prompt:
            raise InvalidInput("the input needs messages (chat) or prompt (completion), or openai_route "
                               "with openai_input", field="input")
        kind = "chat" if has_messages else "completion"
        body = dict(job_input)
    if kind != "models" and body.get("stream"):
        raise InvalidInput("streaming is not supported by this worker; send stream: false", field="stream")
    body.pop("stream", None)
    return kind, body


def _models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model_name(), "object": "model", "owned_by": "workbench"}]}


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """One RunPod job → the OpenAI response, or ``{"error": …, "code": …}``."""
    try:
        kind, body = parse_input(job.get("input") if isinstance(job, dict) else None)
        if kind == "models":
            return _models()
        name = model_name()
        body.setdefault("model", name)  # RunPod inputs rarely name one; the OpenAI body requires it
        engine = get_engine()
        adapter = ADAPTER_KEY if _adapter_path() else None
        return _answer(engine, kind, body, model=name, adapter=adapter)  # type: ignore[arg-type]
    except WorkbenchError as exc:
        return {"error": exc.message, "code": exc.code}
    except Exception as exc:  # noqa: BLE001 - the job fails with a message; the worker lives on
        log.error("job %s failed:\n%s", job.get("id") if isinstance(job, dict) else "?", traceback.format_exc())
        return {"error": f"internal error: {type(exc).__name__}: {exc}", "code": "INTERNAL"}


def main() -> None:
    """Load the model, then hand :func:`handler` to ``runpod.serverless.start`` (the job loop, or
    ``--test_input`` locally)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import runpod

    try:
        get_engine()
    except Exception as exc:  # noqa: BLE001 - jobs will answer the error (and retry the load)
        log.error("the model could not be loaded: %s", exc)
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
