"""A small blocking client for RunPod Serverless, over the real ``runpod`` SDK (1.12).

What it does: create a serverless template and an endpoint from it, look an endpoint up, read
its ``/health``, run one job synchronously, and stop (scale to zero, then delete) an endpoint.

``runpod`` costs about 2 s to import, so it is imported inside the calls that need it: importing
this module imports neither ``runpod`` nor ``requests``.

How the SDK behaves, and what this module does about it:

* The GraphQL calls (``runpod.create_template``, ``runpod.create_endpoint``, ``runpod.get_endpoints``)
  read the module global ``runpod.api_key`` and send it as ``Authorization: Bearer <key>`` to
  ``$RUNPOD_API_BASE_URL/graphql`` (read on every call; default ``https://api.runpod.io``). The client
  sets the global under a process-wide lock for each call and puts the old value back.
* The SDK pastes names, image names and env values into the GraphQL text unescaped
  (``runpod/api/mutations/templates.py``, ``endpoints.py``); every string is passed through
  :func:`gql_string` first, so quotes, backslashes, newlines or braces stay data.
* The SDK raises ``AuthenticationError`` only on a 401, ``QueryError`` when the answer has
  ``errors``, and otherwise lets ``requests`` errors, non-JSON bodies and missing keys escape; all of
  them become :class:`RunPodError`, whose message never contains the key.
* ``runpod.Endpoint(...).run_sync`` returns ``None`` for a FAILED job (the error is dropped), so
  :meth:`RunPodClient.run_sync` talks to ``/runsync`` and ``/status`` itself.
* The endpoint routes use ``runpod.endpoint_url_base``, which the SDK reads from
  ``$RUNPOD_ENDPOINT_BASE_URL`` once, when ``runpod`` is imported (default ``https://api.runpod.ai/v2``).
  :func:`endpoint_url` uses the module attribute when ``runpod`` is loaded, else that variable.
* There is no delete call in the SDK. :meth:`RunPodClient.stop` sends the documented mutations:
  ``saveEndpoint`` with ``workersMin: 0, workersMax: 0`` (RunPod requires ``name``, ``templateId`` and
  ``gpuIds`` on every ``saveEndpoint``, an update included, so they are read from the endpoint first),
  then ``deleteEndpoint(id: …)``, which RunPod refuses unless both worker counts are zero.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["DEFAULT_ENDPOINT_BASE", "GPU_IDS", "GPU_POOLS", "RunPodClient", "RunPodError", "endpoint_url",
           "gpu_pool", "gql_string"]

DEFAULT_ENDPOINT_BASE = "https://api.runpod.ai/v2"
ENDPOINT_BASE_ENV = "RUNPOD_ENDPOINT_BASE_URL"

# RunPod Serverless GPU pool ids (the ``gpuIds`` of ``saveEndpoint``). Source: RunPod's docs,
# "GPU types" for Serverless/Flash (docs.runpod.io/flash/configuration/gpu-types, the GpuGroup table:
# AMPERE_16 = RTX A4000/A4500/RTX 4000 Ada, AMPERE_24 = L4/RTX A5000/RTX 3090, ADA_24 = RTX 4090,
# ADA_32_PRO = RTX 5090, AMPERE_48 = A40/RTX A6000, ADA_48_PRO = RTX 6000 Ada, AMPERE_80 = A100 80GB
# PCIe/SXM4, ADA_80_PRO = H100 80GB HBM3, HOPPER_141 = H200) and "Manage Endpoints" for GraphQL
# (docs.runpod.io/sdks/graphql/manage-endpoints: "options for gpuIds are AMPERE_16, AMPERE_24, ADA_24,
# AMPERE_48, ADA_48_PRO, AMPERE_80, ADA_80_PRO"). Note that the H100 pool is ADA_80_PRO, not HOPPER_*.
GPU_POOLS = frozenset({"AMPERE_16", "AMPERE_24", "ADA_24", "ADA_32_PRO", "AMPERE_48", "ADA_48_PRO",
                       "AMPERE_80", "ADA_80_PRO", "HOPPER_141"})

GPU_IDS: dict[str, str] = {
    "NVIDIA RTX A4000": "AMPERE_16",
    "NVIDIA RTX A5000": "AMPERE_24",
    "NVIDIA RTX A6000": "AMPERE_48",
    "NVIDIA A40": "AMPERE_48",
    # Serverless has no 40 GB A100 pool; AMPERE_80 is the A100 pool (80 GB PCIe and SXM4).
    "NVIDIA A100 40GB": "AMPERE_80",
    "NVIDIA A100 80GB": "AMPERE_80",
    "NVIDIA H100": "ADA_80_PRO",
}
"""The reference's GPU names → RunPod Serverless GPU pool ids."""

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
_SDK_LOCK = threading.Lock()  # runpod.api_key is one global for the whole process

T = TypeVar("T")


class RunPodError(Exception):
    """A RunPod call failed. ``status`` is HTTP-like: 401 key rejected, 404 not found, 400 refused by
    RunPod (GraphQL error), 422 the worker refused the input, 502 the job failed or RunPod answered
    nonsense, 503 RunPod unreachable, 504 timed out. The message never carries the API key."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (status {self.status})"

    def __repr__(self) -> str:
        return f"RunPodError({self.status!r}, {self.message!r})"


def gql_string(value: str) -> str:
    """``value`` escaped for the inside of a GraphQL string literal ``"…"``.

    Escapes backslash, double quote, the line terminators and every other control character
    (GraphQL source text may not contain them raw); other characters, non-ASCII included, stay as
    they are. Lone surrogates cannot be sent at all and raise ``ValueError``.
    """
    if not isinstance(value, str):
        raise TypeError(f"expected a str, got {type(value).__name__}")
    out: list[str] = []
    for ch in value:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError("string contains a lone surrogate, which GraphQL cannot carry")
        else:
            out.append(ch)
    return "".join(out)


def _escaped(value: Any, what: str) -> str:
    try:
        return gql_string(value)
    except (TypeError, ValueError) as exc:
        raise RunPodError(400, f"bad {what}: {exc}") from None


def gpu_pool(gpu_type: str) -> str:
    """The RunPod pool id for a reference GPU name (``"NVIDIA A40"``), a pool id (``"AMPERE_48"``) or a
    comma-separated priority list of either (``"NVIDIA H100,AMPERE_80"``)."""
    pools: list[str] = []
    for part in str(gpu_type).split(","):
        name = part.strip()
        pool = GPU_IDS.get(name) or (name if name in GPU_POOLS else None)
        if pool is None:
            known = ", ".join([*GPU_IDS, *sorted(GPU_POOLS)])
            raise RunPodError(400, f"unknown GPU type {name!r}; known: {known}")
        if pool not in pools:
            pools.append(pool)
    return ",".join(pools)


def _runpod() -> Any:
    try:
        import runpod  # lazy: about 2 s
    except ImportError:
        raise RunPodError(503, "the runpod package is not installed (pip install 'workbench[serve]')") from None
    return runpod


def _requests() -> Any:
    try:
        import requests  # a dependency of runpod
    except ImportError:
        raise RunPodError(503, "the requests package is not installed (pip install 'workbench[serve]')") from None
    return requests


def _endpoint_base() -> str:
    runpod = sys.modules.get("runpod")
    base = getattr(runpod, "endpoint_url_base", None) if runpod is not None else None
    if not base:
        base = os.environ.get(ENDPOINT_BASE_ENV, DEFAULT_ENDPOINT_BASE)
    return str(base).rstrip("/")


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise RunPodError(400, f"invalid {what} {value!r}")
    return value


def endpoint_url(endpoint_id: str, route: str = "runsync") -> str:
    """``{runpod.endpoint_url_base}/{endpoint_id}/{route}``, without importing ``runpod``.

    The base is ``runpod.endpoint_url_base`` when ``runpod`` is already imported (what the SDK itself
    uses), else ``$RUNPOD_ENDPOINT_BASE_URL`` (what the SDK would read at import), else
    ``https://api.runpod.ai/v2``.
    """
    return f"{_endpoint_base()}/{_check_id(endpoint_id, 'endpoint id')}/{route}"


class RunPodClient:
    """Blocking calls to RunPod with one account's API key (kept private: never logged, never shown)."""

    def __init__(self, api_key: str, *, http_timeout: float = 30.0):
        if not isinstance(api_key, str) or not api_key.strip():
            raise RunPodError(401, "no RunPod API key given")
        self._api_key = api_key.strip()
        self.http_timeout = http_timeout

    def __repr__(self) -> str:
        return "RunPodClient(api_key=***)"

    # ------------------------------------------------------------------ templates and endpoints

    def create_template(self, name: str, image: str, env: dict[str, str],
                        container_disk_gb: int = 20) -> dict[str, Any]:
        """A serverless template running ``image`` with ``env``; RunPod's answer (``id``, ``name``, …)."""
        env = dict(env or {})
        for key, value in env.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise RunPodError(400, f"env must map non-empty names to strings (bad entry {key!r})")
        if int(container_disk_gb) < 1:
            raise RunPodError(400, "container_disk_gb must be at least 1")

        name_q, image_q = _escaped(name, "name"), _escaped(image, "image")
        env_q = {_escaped(k, "env name"): _escaped(v, f"env {k}") for k, v in env.items()}

        def call(runpod: Any) -> Any:
            return runpod.create_template(name=name_q, image_name=image_q, env=env_q,
                                          container_disk_in_gb=int(container_disk_gb), is_serverless=True)

        return self._result(self._sdk(call, "create the template"), "saveTemplate")

    def create_endpoint(self, name: str, template_id: str, gpu_type: str, workers_min: int,
                        workers_max: int, idle_timeout: int = 5) -> dict[str, Any]:
        """A serverless endpoint on ``template_id``; ``gpu_type`` is a name from :data:`GPU_IDS` or a pool id."""
        pools = gpu_pool(gpu_type)
        workers_min, workers_max, idle_timeout = int(workers_min), int(workers_max), int(idle_timeout)
        if workers_min < 0 or workers_max < 1 or workers_min > workers_max:
            raise RunPodError(400, f"need 0 <= workers_min <= workers_max and workers_max >= 1 "
                                   f"(got {workers_min}, {workers_max})")
        if idle_timeout < 1:
            raise RunPodError(400, "idle_timeout must be at least 1 second")

        name_q, template_q = _escaped(name, "name"), _escaped(template_id, "template id")

        def call(runpod: Any) -> Any:
            return runpod.create_endpoint(name=name_q, template_id=template_q, gpu_ids=pools,
                                          idle_timeout=idle_timeout, workers_min=workers_min,
                                          workers_max=workers_max)

        return self._result(self._sdk(call, "create the endpoint"), "saveEndpoint")

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        """The endpoint as ``myself { endpoints }`` lists it, or ``None`` when the account has none by that id."""
        endpoints = self._sdk(lambda runpod: runpod.get_endpoints(), "list the endpoints")
        if not isinstance(endpoints, list):
            raise RunPodError(502, "RunPod answered the endpoint list with something that is not a list")
        return next((e for e in endpoints if isinstance(e, dict) and e.get("id") == endpoint_id), None)

    def stop(self, endpoint_id: str) -> None:
        """Scale the endpoint to zero workers, then delete it. Does nothing when it is already gone."""
        _check_id(endpoint_id, "endpoint id")
        endpoint = self.get_endpoint(endpoint_id)
        if endpoint is None:
            return
        fields = [f'id: "{gql_string(endpoint_id)}"', f'name: "{gql_string(str(endpoint.get("name") or ""))}"',
                  f'templateId: "{gql_string(str(endpoint.get("templateId") or ""))}"',
                  f'gpuIds: "{gql_string(str(endpoint.get("gpuIds") or ""))}"', "workersMin: 0", "workersMax: 0"]
        self._graphql("mutation { saveEndpoint(input: { " + ", ".join(fields) + " }) { id workersMin workersMax } }",
                      "scale the endpoint to zero")
        self._graphql(f'mutation {{ deleteEndpoint(id: "{gql_string(endpoint_id)}") }}', "delete the endpoint")

    # ------------------------------------------------------------------ the endpoint's routes

    def health(self, endpoint_id: str) -> dict[str, Any]:
        """The endpoint's ``/health``: ``{"jobs": {"completed", "failed", "inProgress", "inQueue", "retried"},
        "workers": {"idle", "running", …}}``."""
        return self._http("GET", endpoint_url(endpoint_id, "health"), timeout=self.http_timeout)

    def run_sync(self, endpoint_id: str, payload: dict[str, Any], timeout: float) -> Any:
        """Run one job and return the worker's output.

        ``payload`` is the job's input, sent as ``{"input": payload}``; like the SDK's ``run_sync``, a
        payload that already has a (non-empty) ``input`` is sent as it is. Posts to ``/runsync`` (asking RunPod to hold the request up to ``timeout``), then polls
        ``/status/{job}`` if the job is still queued or running. A FAILED job raises
        :class:`RunPodError` with the worker's error (422 when the worker refused the input, else
        502); past ``timeout`` the job is cancelled (best effort) and 504 is raised.
        """
        if not isinstance(payload, dict):
            raise RunPodError(400, "payload must be a dict (the job's input)")
        deadline = time.monotonic() + float(timeout)
        wait_ms = max(1000, min(300_000, int(float(timeout) * 1000)))
        url = endpoint_url(endpoint_id, "runsync") + f"?wait={wait_ms}"
        body = payload if payload.get("input") else {"input": payload}
        job = self._http("POST", url, json=body, timeout=float(timeout) + 10)
        polls = 0
        while True:
            status = job.get("status") if isinstance(job, dict) else None
            if status in _FINAL:
                return self._job_output(job)
            job_id = job.get("id") if isinstance(job, dict) else None
            if not isinstance(job_id, str):
                raise RunPodError(502, f"RunPod answered /runsync without a job id (status {status!r})")
            left = deadline - time.monotonic()
            if left <= 0:
                self._cancel(endpoint_id, job_id)
                raise RunPodError(504, f"job {job_id} did not finish within {timeout:g} s (last status {status})")
            time.sleep(min(0.1 * 2 ** polls, 1.0, left))  # 0.1, 0.2, 0.4, 0.8, then every second
            polls += 1
            job = self._http("GET", endpoint_url(endpoint_id, f"status/{_check_id(job_id, 'job id')}"),
                             timeout=self.http_timeout)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _job_output(job: dict[str, Any]) -> Any:
        status = job["status"]
        if status == "COMPLETED":
            return job.get("output")
        error = job.get("error")
        output = job.get("output")
        code = output.get("code") if isinstance(output, dict) else None
        detail = error if isinstance(error, str) else (repr(error) if error is not None else "no error message")
        if status == "FAILED":
            http = 422 if code == "INVALID_INPUT" else 502
            raise RunPodError(http, f"job {job.get('id')} failed: {detail}")
        raise RunPodError(504 if status == "TIMED_OUT" else 502, f"job {job.get('id')} ended {status}: {detail}")

    def _cancel(self, endpoint_id: str, job_id: str) -> None:
        try:
            self._http("POST", endpoint_url(endpoint_id, f"cancel/{_check_id(job_id, 'job id')}"), timeout=10)
        except RunPodError:
            pass

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    @contextmanager
    def _global_key(self) -> Iterator[Any]:
        runpod = _runpod()
        with _SDK_LOCK:
            previous = runpod.api_key
            runpod.api_key = self._api_key
            try:
                yield runpod
            finally:
                runpod.api_key = previous

    def _sdk(self, call: Callable[[Any], T], what: str) -> T:
        """Run ``call(runpod)`` with this client's key set globally; SDK and HTTP errors → RunPodError."""
        try:
            with self._global_key() as runpod:
                return call(runpod)
        except RunPodError:
            raise
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a RunPodError
            raise self._mapped(exc, what) from None

    def _graphql(self, query: str, what: str) -> dict[str, Any]:
        _runpod()
        from runpod.api.graphql import run_graphql_query

        try:
            return run_graphql_query(query, api_key=self._api_key)
        except Exception as exc:  # noqa: BLE001
            raise self._mapped(exc, what) from None

    def _mapped(self, exc: Exception, what: str) -> RunPodError:
        import requests
        from runpod import error as rp_error

        if isinstance(exc, rp_error.AuthenticationError):
            return RunPodError(401, f"RunPod rejected the API key (could not {what})")
        if isinstance(exc, rp_error.QueryError):  # exc.query holds the query text (env values!): not shown
            return RunPodError(400, f"RunPod refused to {what}: {self._scrub(str(exc.message or exc))}")
        if isinstance(exc, requests.exceptions.JSONDecodeError):
            return RunPodError(502, f"RunPod answered with something that is not JSON (could not {what})")
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else 502
            return RunPodError(status, f"RunPod answered HTTP {status} (could not {what})")
        if isinstance(exc, requests.Timeout):
            return RunPodError(504, f"RunPod did not answer in time (could not {what})")
        if isinstance(exc, requests.ConnectionError):
            return RunPodError(503, f"cannot reach RunPod (could not {what})")
        if isinstance(exc, (KeyError, TypeError, IndexError)):
            return RunPodError(502, f"RunPod answered without the expected data (could not {what})")
        return RunPodError(502, f"could not {what}: {type(exc).__name__}: {self._scrub(str(exc))}")

    def _result(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict) or not value.get("id"):
            raise RunPodError(502, f"RunPod answered {what} without an id")
        return value

    def _http(self, method: str, url: str, *, json: Any = None, timeout: float) -> dict[str, Any]:
        requests = _requests()
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json",
                   "Accept": "application/json", "User-Agent": "workbench-runpod-client"}
        try:
            response = requests.request(method, url, headers=headers, json=json, timeout=timeout)
        except requests.Timeout:
            raise RunPodError(504, f"RunPod did not answer {method} {url} in time") from None
        except requests.ConnectionError:
            raise RunPodError(503, f"cannot reach RunPod at {url}") from None
        if response.status_code == 401:
            raise RunPodError(401, f"RunPod rejected the API key ({method} {url})")
        if response.status_code == 404:
            raise RunPodError(404, f"no such endpoint or job ({method} {url})")
        if response.status_code >= 400:
            raise RunPodError(response.status_code, f"RunPod answered HTTP {response.status_code} "
                                                    f"to {method} {url}: {self._scrub(response.text[:300])}")
        try:
            body = response.json()
        except ValueError:
            raise RunPodError(502, f"RunPod answered {method} {url} with something that is not JSON") from None
        if not isinstance(body, dict):
            raise RunPodError(502, f"RunPod answered {method} {url} with a {type(body).__name__}, not an object")
        return body
