"""``runpod-serverless``: a RunPod Serverless endpoint running ``workbench.serving.runpod_worker``.

Deploy creates a template (the worker image, with the base model, adapter and model name in
its env) and an endpoint through RunPod's GraphQL API (:mod:`workbench.serving.runpod_api`,
over the real ``runpod`` SDK). Requests to the workbench's ``/v1`` routes are forwarded to the
endpoint's ``/runsync``, so every one is metered against the deployment's budget here; stop
scales the workers to 0 and deletes the endpoint. The API key is the user's
``RUNPOD_API_KEY`` secret, decrypted only for the call.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterator
from typing import Any

from ...errors import InvalidInput, Unauthenticated, Unavailable, WorkbenchError
from ...user_secrets import RUNPOD_API_KEY, reveal
from ..engine import Generation
from . import Event, Provider

DEFAULT_IMAGE = "ghcr.io/fine-tune-workbench/runpod-worker:latest"
# /runsync calls wait up to minutes on a cold worker: their own threads, never the event loop's shared pool
_POOL = ThreadPoolExecutor(32, thread_name_prefix="wb-runpod")
RUNSYNC_TIMEOUT_S = 120.0

# The reference's price per request for each GPU type, USD.
GPU_PRICES: dict[str, float] = {
    "NVIDIA RTX A4000": 0.0004,
    "NVIDIA RTX A5000": 0.0006,
    "NVIDIA RTX A6000": 0.0008,
    "NVIDIA A40": 0.0010,
    "NVIDIA A100 40GB": 0.0020,
    "NVIDIA A100 80GB": 0.0025,
    "NVIDIA H100": 0.0035,
}
DEFAULT_GPU = "NVIDIA RTX A4000"


class NoRunPodKey(Unauthenticated):
    code = "NO_RUNPOD_KEY"


def _client(owner: str) -> Any:
    from ..runpod_api import RunPodClient

    key = reveal(RUNPOD_API_KEY, owner)
    if not key:
        raise NoRunPodKey("No RunPod API key found. Please add your RunPod API key in Settings > Secrets "
                          f"(workbench secrets set {RUNPOD_API_KEY}, or PUT /api/secrets/{RUNPOD_API_KEY})",
                          field="provider")
    return RunPodClient(key)


def _unavailable(exc: Exception) -> WorkbenchError:
    """A RunPod failure as the workbench's error: a rejected key is a 401, bad input a 422, else a 503."""
    status = getattr(exc, "status", 503)
    message = getattr(exc, "message", str(exc))
    if status == 401:
        return NoRunPodKey(f"RunPod rejected the API key: {message}; set a valid {RUNPOD_API_KEY} secret",
                           field="provider")
    if status == 422:
        return InvalidInput(f"RunPod worker: {message}", field="body")
    return Unavailable(f"RunPod: {message}", field="provider")


class RunPodProvider(Provider):
    name = "runpod-serverless"

    def check_key(self, owner: str) -> None:
        _client(owner)

    def deploy(self, dep: dict[str, Any]) -> dict[str, Any]:
        from ..runpod_api import RunPodError, endpoint_url

        client = _client(dep["owner"])
        cfg = dep["config"]
        env = {"WORKBENCH_BASE_MODEL": dep["base_model"], "WORKBENCH_MODEL_NAME": dep["model_name"],
               "WORKBENCH_ADAPTER": cfg.get("adapter_uri") or "/models/adapter"}
        try:
            template = client.create_template(name=f"{dep['deployment_name']} ({dep['id']})",
                                              image=os.environ.get("WORKBENCH_RUNPOD_IMAGE", DEFAULT_IMAGE), env=env)
        except RunPodError as exc:
            raise _unavailable(exc) from None
        try:
            endpoint = client.create_endpoint(name=f"{dep['deployment_name']} ({dep['id']})",
                                              template_id=template["id"], gpu_type=cfg["gpu_type"],
                                              workers_min=cfg["min_workers"], workers_max=cfg["max_workers"])
        except RunPodError as exc:  # the template stays (templates cost nothing); its name says whose it is
            raise _unavailable(exc) from None
        return {"status": "deploying", "endpoint_id": endpoint["id"], "endpoint_url": endpoint_url(endpoint["id"]),
                "template_id": template["id"]}

    def status(self, dep: dict[str, Any]) -> dict[str, Any]:
        from ..runpod_api import RunPodError

        if not dep.get("endpoint_id") or dep["status"] in ("stopped", "failed"):
            return {}
        try:
            health = _client(dep["owner"]).health(dep["endpoint_id"])
        except (RunPodError, Unauthenticated) as exc:
            return {"provider_error": str(exc)}
        workers = health.get("workers") or {}
        ready = sum(int(workers.get(k) or 0) for k in ("idle", "ready", "running"))
        starting = int(workers.get("initializing") or 0)
        if ready:
            status = "active"
        elif starting:
            status = "scaling" if dep["status"] == "active" else "deploying"
        elif dep["config"]["min_workers"] == 0:
            status = "active"  # scaled to zero: it takes requests, the first one starts a worker
        else:
            status = dep["status"]
        return {"status": status, "workers": workers, "jobs": health.get("jobs") or {}}

    def stop(self, dep: dict[str, Any]) -> None:
        from ..runpod_api import RunPodError

        if dep.get("endpoint_id"):
            try:
                _client(dep["owner"]).stop(dep["endpoint_id"])
            except RunPodError as exc:
                raise _unavailable(exc) from None

    def usage(self, dep: dict[str, Any]) -> dict[str, Any]:
        return {"cost_per_request": GPU_PRICES[dep["config"]["gpu_type"]],
                "billed": "per request at the reference's GPU price; RunPod bills per second of worker time"}

    def prepare(self, dep: dict[str, Any], kind: str, body: Any) -> tuple[Any, dict[str, Any], str]:
        """The client (its key decrypted here, off the event loop) and the worker's input."""
        route = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
        try:
            client = _client(dep["owner"])
        except NoRunPodKey as exc:  # on /v1 a 401 would read as "your workbench token is wrong"
            raise Unavailable(f"this deployment cannot reach RunPod: {exc.message}", field="model") from None
        payload = {"input": {"openai_route": route,
                             "openai_input": {**body.model_dump(exclude_none=True), "stream": False}}}
        return client, payload, kind

    async def generate(self, dep: dict[str, Any], prepared: tuple[Any, dict[str, Any], str]) -> AsyncIterator[Event]:
        from ..runpod_api import RunPodError

        client, payload, kind = prepared
        t0 = time.perf_counter()
        try:
            out = await asyncio.wrap_future(_POOL.submit(client.run_sync, dep["endpoint_id"], payload,
                                                         RUNSYNC_TIMEOUT_S))
        except RunPodError as exc:
            raise _unavailable(exc) from None
        choice = (out.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content", "") if kind == "chat" else choice.get("text", "")
        use = out.get("usage") or {}
        took = time.perf_counter() - t0
        yield ("text", text)
        yield ("done", Generation(text=text, prompt_tokens=int(use.get("prompt_tokens") or 0),
                                  completion_tokens=int(use.get("completion_tokens") or 0),
                                  finish_reason=choice.get("finish_reason") or "stop", ttft_s=took, latency_s=took))
