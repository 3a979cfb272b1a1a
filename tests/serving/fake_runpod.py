"""A local fake of RunPod's API: a real HTTP server on 127.0.0.1 that the real ``runpod`` SDK talks to.

RunPod's cloud cannot be reached from tests, so :class:`FakeRunPod` stands in for both of its APIs:

* ``POST /graphql`` — the query text is parsed as real GraphQL with ``graphql-core``, so a string the
  SDK pasted in unescaped gives a syntax error, as RunPod would answer. Implemented: the mutations
  ``saveTemplate`` (create), ``saveEndpoint`` (create, or update with ``id``; ``name``, ``templateId``
  and ``gpuIds`` required on both, as RunPod documents), ``deleteEndpoint(id:)`` (refused unless
  ``workersMin`` and ``workersMax`` are both 0), and the query ``myself { endpoints … templates … }``.
  Input fields and selected fields are checked against the fields RunPod has; the API key must come as
  ``Authorization: Bearer <key>`` (what the SDK sends), a bare ``Authorization: <key>`` or
  ``?api_key=<key>`` (RunPod's documented curl form); otherwise 401.
* ``/v2/{endpoint}/run``, ``/runsync`` (``?wait=`` ms), ``/status/{job}``, ``/cancel/{job}``,
  ``/health``, ``/purge-queue`` — each job runs the pluggable :attr:`FakeRunPod.handler` (default: the
  real ``workbench.serving.runpod_worker.handler``) through ``runpod``'s own ``run_job``, so a returned
  ``{"error": …}`` or a raised exception makes the job FAILED exactly as on a RunPod worker. An
  endpoint with ``workersMax: 0`` never runs jobs: they stay ``IN_QUEUE``.

State (``templates``, ``endpoints``, ``jobs``) is kept in plain dicts and every request is recorded in
:attr:`FakeRunPod.requests` (with the GraphQL operations it carried) for assertions.

Use it as a context manager, with ``start()``/``stop()``, or through the ``fake_runpod`` fixture below
(import the fixture into a test module: ``from tests.serving.fake_runpod import fake_runpod``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

DEFAULT_KEY = "rp-test-key-0123456789"

TEMPLATE_INPUT = {"id", "name", "imageName", "dockerArgs", "containerDiskInGb", "volumeInGb", "volumeMountPath",
                  "ports", "env", "isServerless", "containerRegistryAuthId", "startSsh", "startJupyter",
                  "isPublic", "readme"}
ENDPOINT_INPUT = {"id", "name", "templateId", "gpuIds", "networkVolumeId", "locations", "idleTimeout",
                  "scalerType", "scalerValue", "workersMin", "workersMax", "allowedCudaVersions", "gpuCount",
                  "flashBootType", "executionTimeoutMs", "workersStandby", "type"}
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


class GraphQLFailure(Exception):
    pass


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any = None
    operations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (GraphQL field, arguments)
    status: int = 0


def _new_id(n: int = 14) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def echo_handler(job: dict[str, Any]) -> dict[str, Any]:
    """A handler that answers ``{"echo": <input>}``."""
    return {"echo": job["input"]}


class FakeEngine:
    """A stand-in for ``workbench.serving.inference``'s engine: records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []


def fake_answer(engine: FakeEngine, kind: str, body: dict[str, Any], *, model: str,
                adapter: str | None) -> dict[str, Any]:
    """``inference.answer``'s contract without a model: an OpenAI-shaped reply whose text echoes the
    request; ``InvalidInput`` for ``max_tokens < 1`` (as the real one raises on a bad body)."""
    from workbench.errors import InvalidInput

    engine.calls.append({"kind": kind, "body": body, "model": model, "adapter": adapter})
    max_tokens = body.get("max_tokens", 256)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidInput("max_tokens must be a positive integer", field="max_tokens")
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    if kind == "chat":
        text = f"echo: {body['messages'][-1]['content']}"
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}], "usage": usage, "adapter": adapter}
    return {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": model,
            "choices": [{"index": 0, "text": f"echo: {body['prompt']}", "finish_reason": "stop"}],
            "usage": usage, "adapter": adapter}


class FakeRunPod:
    """RunPod's GraphQL and endpoint APIs on ``127.0.0.1:<free port>``."""

    def __init__(self, api_key: str = DEFAULT_KEY, handler: Callable[[dict[str, Any]], Any] | None = None,
                 *, runsync_wait_s: float = 90.0):
        self.api_key = api_key
        self.handler = handler
        self.runsync_wait_s = runsync_wait_s  # RunPod holds /runsync up to 90 s unless ?wait= says otherwise
        self.runsync_wait_cap_s = 300.0  # lower it to make /runsync answer IN_PROGRESS and callers poll /status
        self.templates: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.crashes: list[str] = []  # tracebacks of the fake's own errors (answered 500)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeRunPod:
        fake = self

        class Handler(_RequestHandler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-runpod", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeRunPod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def endpoint_base(self) -> str:
        """What ``runpod.endpoint_url_base`` must be: ``{url}/v2``."""
        return f"{self.url}/v2"

    def env(self) -> dict[str, str]:
        """The variables that point the SDK here (``RUNPOD_API_BASE_URL`` is read on every GraphQL call;
        ``RUNPOD_ENDPOINT_BASE_URL`` only when ``runpod`` is imported)."""
        return {"RUNPOD_API_BASE_URL": self.url, "RUNPOD_ENDPOINT_BASE_URL": self.endpoint_base,
                "NO_PROXY": "127.0.0.1,localhost"}

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point this process's SDK at the fake: the variables, ``runpod.endpoint_url_base`` (the SDK read
        the variable at import already) and no global ``runpod.api_key`` left from elsewhere."""
        import runpod

        for key, value in self.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(runpod, "endpoint_url_base", self.endpoint_base)
        monkeypatch.setattr(runpod, "api_key", None)

    # ------------------------------------------------------------------ helpers for tests

    def graphql_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """Every GraphQL field the fake was asked to resolve, in order, with its arguments."""
        with self._lock:
            return [op for r in self.requests for op in r.operations]

    def mutations(self) -> list[str]:
        return [name for name, _ in self.graphql_calls() if name != "myself"]

    def add_endpoint(self, name: str = "seeded", *, workers_min: int = 0, workers_max: int = 1,
                     gpu_ids: str = "AMPERE_16", env: dict[str, str] | None = None) -> str:
        """A template and an endpoint put straight into the state (no request); the endpoint's id."""
        with self._lock:
            template = self._new_template({"name": f"{name}-template-{_new_id(4)}", "imageName": "fake/image",
                                           "isServerless": True,
                                           "env": [{"key": k, "value": v} for k, v in (env or {}).items()]})
            endpoint = self._new_endpoint({"name": name, "templateId": template["id"], "gpuIds": gpu_ids,
                                           "workersMin": workers_min, "workersMax": workers_max})
            return endpoint["id"]

    # ------------------------------------------------------------------ auth

    def authorized(self, headers: dict[str, str], query: dict[str, list[str]]) -> bool:
        auth = headers.get("authorization", "")
        auth = auth.removeprefix("Bearer ")
        if auth and secrets.compare_digest(auth.encode(), self.api_key.encode()):
            return True
        given = (query.get("api_key") or [""])[0]
        return bool(given) and secrets.compare_digest(given.encode(), self.api_key.encode())

    # ------------------------------------------------------------------ GraphQL

    def graphql(self, body: Any, record: Recorded) -> tuple[int, dict[str, Any]]:
        from graphql import (
            FieldNode,
            GraphQLError,
            GraphQLSyntaxError,
            OperationDefinitionNode,
            OperationType,
            parse,
            value_from_ast_untyped,
        )

        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 400, {"errors": [{"message": "Must provide query string."}]}
        variables = body.get("variables") or {}
        try:
            document = parse(body["query"])
        except GraphQLSyntaxError as exc:
            return 400, {"errors": [{"message": exc.message, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        wanted = body.get("operationName")
        if wanted:
            operations = [o for o in operations if o.name and o.name.value == wanted]
        if len(operations) != 1:
            return 400, {"errors": [{"message": "Provide exactly one operation (or operationName)."}]}
        operation = operations[0]
        kind = {OperationType.QUERY: "query", OperationType.MUTATION: "mutation"}.get(operation.operation)
        if kind is None:
            return 400, {"errors": [{"message": "Subscriptions are not supported."}]}

        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for selection in operation.selection_set.selections or ():
            if not isinstance(selection, FieldNode):
                return 400, {"errors": [{"message": "Fragments are not supported by the fake."}]}
            name = selection.name.value
            key = selection.alias.value if selection.alias else name
            try:
                args = {a.name.value: value_from_ast_untyped(a.value, variables) for a in selection.arguments or ()}
            except GraphQLError as exc:
                return 400, {"errors": [{"message": exc.message}]}
            record.operations.append((name, args))
            resolver = (MUTATIONS if kind == "mutation" else QUERIES).get(name)
            if resolver is None:
                type_name = "Mutation" if kind == "mutation" else "Query"
                return 400, {"errors": [{"message": f'Cannot query field "{name}" on type "{type_name}".'}]}
            try:
                with self._lock:
                    value = resolver(self, args)
                    data[key] = _project(value, selection.selection_set, [key])
            except GraphQLFailure as exc:
                data[key] = None
                errors.append({"message": str(exc), "path": [key]})
        out: dict[str, Any] = {"data": data}
        if errors:
            out["errors"] = errors
        return 200, out

    def _new_template(self, fields: dict[str, Any]) -> dict[str, Any]:
        template = {"id": _new_id(10), "name": None, "imageName": None, "dockerArgs": "", "containerDiskInGb": 10,
                    "volumeInGb": 0, "volumeMountPath": None, "ports": "", "env": [], "isServerless": False,
                    "containerRegistryAuthId": "", "startSsh": False, "startJupyter": False, "isPublic": False,
                    "readme": "", **fields}
        self.templates[template["id"]] = template
        return template

    def _new_endpoint(self, fields: dict[str, Any]) -> dict[str, Any]:
        endpoint = {"id": _new_id(14), "name": None, "templateId": None, "gpuIds": None, "networkVolumeId": "",
                    "locations": "", "idleTimeout": 5, "scalerType": "QUEUE_DELAY", "scalerValue": 4,
                    "workersMin": 0, "workersMax": 3, "workersStandby": 0, "allowedCudaVersions": "", "gpuCount": 1,
                    "flashBootType": "OFF", "executionTimeoutMs": 600000, "type": "QB", "userId": "user_fake",
                    "version": 0, "aiKey": None, "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "networkVolume": None, **fields}
        self.endpoints[endpoint["id"]] = endpoint
        return endpoint


def _input(args: dict[str, Any], allowed: set[str], type_name: str) -> dict[str, Any]:
    data = args.get("input")
    if not isinstance(data, dict):
        raise GraphQLFailure(f'Argument "input" of type "{type_name}!" is required.')
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise GraphQLFailure(f'Field "{unknown[0]}" is not defined by type "{type_name}".')
    return data


def _want(data: dict[str, Any], name: str, kind: type | tuple[type, ...], type_name: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise GraphQLFailure(f'Field "{type_name}.{name}" has a wrong or missing value: {value!r}')
    return value


def _save_template(fake: FakeRunPod, args: dict[str, Any]) -> dict[str, Any]:
    data = _input(args, TEMPLATE_INPUT, "SaveTemplateInput")
    for name in ("name", "imageName"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise GraphQLFailure(f'Field "SaveTemplateInput.{name}" of required type "String!" was not provided.')
    for name in ("containerDiskInGb", "volumeInGb"):
        if name in data:
            _want(data, name, int, "SaveTemplateInput")
    env = data.get("env", [])
    if not isinstance(env, list) or not all(
            isinstance(e, dict) and set(e) == {"key", "value"} and all(isinstance(v, str) for v in e.values())
            for e in env):
        raise GraphQLFailure("env must be a list of {key, value} strings")
    if data.get("isServerless") and data.get("volumeInGb", 0):
        raise GraphQLFailure("Serverless templates cannot have a volume (volumeInGb must be 0)")
    if "id" in data:
        template = fake.templates.get(data["id"])
        if template is None:
            raise GraphQLFailure(f"Template {data['id']} not found")
        template.update(data)
        return template
    if any(t["name"] == data["name"] for t in fake.templates.values()):
        raise GraphQLFailure("Template name must be unique")
    return fake._new_template(dict(data))


def _save_endpoint(fake: FakeRunPod, args: dict[str, Any]) -> dict[str, Any]:
    data = _input(args, ENDPOINT_INPUT, "EndpointInput")
    for name in ("name", "templateId", "gpuIds"):  # required on create and on update alike
        if not isinstance(data.get(name), str) or not data[name]:
            raise GraphQLFailure(f'Field "EndpointInput.{name}" of required type "String!" was not provided.')
    for name in ("idleTimeout", "scalerValue", "workersMin", "workersMax", "gpuCount"):
        if name in data:
            _want(data, name, int, "EndpointInput")
    if data["templateId"] not in fake.templates:
        raise GraphQLFailure(f"Template {data['templateId']} not found")
    current = fake.endpoints.get(data["id"]) if "id" in data else None
    if "id" in data and current is None:
        raise GraphQLFailure(f"Endpoint {data['id']} not found")
    merged = {**(current or {}), **data}
    workers_min, workers_max = merged.get("workersMin", 0), merged.get("workersMax", 3)
    if workers_min < 0 or workers_max < 0 or workers_min > workers_max:
        raise GraphQLFailure("workersMin must be between 0 and workersMax")
    if current is not None:
        current.update(data)
        return current
    return fake._new_endpoint(dict(data))


def _delete_endpoint(fake: FakeRunPod, args: dict[str, Any]) -> None:
    endpoint_id = args.get("id")
    endpoint = fake.endpoints.get(endpoint_id) if isinstance(endpoint_id, str) else None
    if endpoint is None:
        raise GraphQLFailure(f"Endpoint {endpoint_id} not found")
    if endpoint["workersMin"] != 0 or endpoint["workersMax"] != 0:
        raise GraphQLFailure("Endpoint must have min and max workers set to 0 before it can be deleted")
    del fake.endpoints[endpoint_id]


def _myself(fake: FakeRunPod, args: dict[str, Any]) -> dict[str, Any]:
    endpoints = []
    for endpoint in fake.endpoints.values():
        template = fake.templates.get(endpoint["templateId"]) or {}
        endpoints.append({**endpoint, "env": template.get("env", []), "template": template})
    return {"id": "user_fake", "email": "fake@example.com", "endpoints": endpoints,
            "podTemplates": list(fake.templates.values())}


MUTATIONS: dict[str, Callable[[FakeRunPod, dict[str, Any]], Any]] = {
    "saveTemplate": _save_template, "saveEndpoint": _save_endpoint, "deleteEndpoint": _delete_endpoint}
QUERIES: dict[str, Callable[[FakeRunPod, dict[str, Any]], Any]] = {"myself": _myself}


def _project(value: Any, selection_set: Any, path: list[str]) -> Any:
    """``value`` cut down to the selected fields; a field the object does not have is an error."""
    from graphql import FieldNode

    if selection_set is None:
        if isinstance(value, dict) or isinstance(value, list) and any(isinstance(v, dict) for v in value):
            raise GraphQLFailure(f'Field "{path[-1]}" of object type must have a selection of subfields.')
        return value
    if value is None:
        return None
    if isinstance(value, list):
        return [_project(v, selection_set, path) for v in value]
    if not isinstance(value, dict):
        raise GraphQLFailure(f'Field "{path[-1]}" must not have a selection since it is a scalar.')
    out: dict[str, Any] = {}
    for selection in selection_set.selections or ():
        if not isinstance(selection, FieldNode):
            raise GraphQLFailure("Fragments are not supported by the fake.")
        name = selection.name.value
        key = selection.alias.value if selection.alias else name
        if name == "__typename":
            out[key] = "Object"
            continue
        if name not in value:
            raise GraphQLFailure(f'Cannot query field "{name}" on "{path[-1]}".')
        out[key] = _project(value[name], selection.selection_set, [*path, key])
    return out


# ---------------------------------------------------------------------------------------------- jobs

def _run_job(fake: FakeRunPod, job: dict[str, Any]) -> None:
    from runpod.serverless.modules.rp_job import run_job  # the worker's own job runner: same semantics

    handler = fake.handler
    if handler is None:
        from workbench.serving.runpod_worker import handler
    with fake._lock:
        if job["status"] != "IN_QUEUE":
            job["done"].set()
            return
        job["status"] = "IN_PROGRESS"
        job["started"] = time.monotonic()
    result = asyncio.run(run_job(handler, {"id": job["id"], "input": job["input"]}))
    with fake._lock:
        if job["status"] == "CANCELLED":
            job["done"].set()
            return
        job["executionTime"] = int((time.monotonic() - job["started"]) * 1000)
        if result.get("error") is not None:
            job["status"] = "FAILED"
            job["error"] = result["error"]
        else:
            job["status"] = "COMPLETED"
        if "output" in result:
            job["output"] = result["output"]
        job["done"].set()


def _job_view(job: dict[str, Any]) -> dict[str, Any]:
    out = {"id": job["id"], "status": job["status"]}
    if job["status"] in FINAL:
        out["delayTime"] = job.get("delayTime", 0)
        out["executionTime"] = job.get("executionTime", 0)
        out["workerId"] = "fake-worker"
        for key in ("output", "error"):
            if key in job:
                out[key] = job[key]
    return out


def _submit(fake: FakeRunPod, endpoint: dict[str, Any], body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict) or "input" not in body:
        return None
    job = {"id": f"{_new_id(8)}-{_new_id(4)}-{_new_id(4)}-u1", "endpoint": endpoint["id"], "input": body["input"],
           "status": "IN_QUEUE", "created": time.monotonic(), "done": threading.Event()}
    with fake._lock:
        fake.jobs[job["id"]] = job
    if endpoint["workersMax"] > 0:  # scaled to zero: the job waits in the queue forever
        job["delayTime"] = 0
        threading.Thread(target=_run_job, args=(fake, job), name=f"fake-job-{job['id']}", daemon=True).start()
    return job


def _health(fake: FakeRunPod, endpoint: dict[str, Any]) -> dict[str, Any]:
    with fake._lock:
        jobs = [j for j in fake.jobs.values() if j["endpoint"] == endpoint["id"]]
    count = {s: sum(j["status"] == s for j in jobs) for s in ("COMPLETED", "FAILED", "IN_PROGRESS", "IN_QUEUE")}
    running = count["IN_PROGRESS"]
    idle = max(int(endpoint["workersMin"]) - running, 0)
    return {"jobs": {"completed": count["COMPLETED"], "failed": count["FAILED"], "inProgress": running,
                     "inQueue": count["IN_QUEUE"], "retried": 0},
            "workers": {"idle": idle, "initializing": 0, "ready": idle, "running": running, "throttled": 0,
                        "unhealthy": 0}}


def _route(fake: FakeRunPod, method: str, parts: list[str], query: dict[str, list[str]],
           body: Any) -> tuple[int, Any]:
    """``/v2/{endpoint}/{route}[/{job}]``."""
    if len(parts) < 2:
        return 404, {"error": "not found"}
    endpoint = fake.endpoints.get(parts[0])
    if endpoint is None:
        return 404, {"error": f"endpoint {parts[0]} not found"}
    route, rest = parts[1], parts[2:]
    if route in ("run", "runsync") and method == "POST" and not rest:
        job = _submit(fake, endpoint, body)
        if job is None:
            return 400, {"error": "the request body must be a JSON object with an 'input' key"}
        if route == "runsync":
            wait_s = fake.runsync_wait_s
            if query.get("wait"):
                wait_s = min(300.0, max(1.0, int(query["wait"][0]) / 1000))
            wait_s = min(wait_s, fake.runsync_wait_cap_s)
            if endpoint["workersMax"] > 0:
                job["done"].wait(wait_s)
        with fake._lock:
            return 200, _job_view(job)
    if route in ("status", "cancel") and len(rest) == 1:
        job = fake.jobs.get(rest[0])
        if job is None or job["endpoint"] != endpoint["id"]:
            return 404, {"error": f"job {rest[0]} not found"}
        with fake._lock:
            if route == "cancel" and job["status"] not in FINAL:
                job["status"] = "CANCELLED"
                job["done"].set()
            return 200, _job_view(job) if route == "status" else {"id": job["id"], "status": job["status"]}
    if route == "health" and method == "GET" and not rest:
        return 200, _health(fake, endpoint)
    if route == "purge-queue" and method == "POST" and not rest:
        with fake._lock:
            queued = [j for j in fake.jobs.values() if j["endpoint"] == endpoint["id"] and j["status"] == "IN_QUEUE"]
            for job in queued:
                job["status"] = "CANCELLED"
                job["done"].set()
        return 200, {"removed": len(queued), "status": "completed"}
    return 404, {"error": f"no route {method} /{route}"}


class _RequestHandler(BaseHTTPRequestHandler):
    owner: FakeRunPod
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        fake = self.owner
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        record = Recorded(method=method, path=split.path, query=query,
                          headers={k.lower(): v for k, v in self.headers.items()}, body=raw)
        try:
            record.json = json.loads(raw) if raw else None
        except ValueError:
            record.json = None
        with fake._lock:
            fake.requests.append(record)

        try:
            if not fake.authorized(record.headers, query):
                status, payload = 401, {"error": "Unauthorized"}
            elif split.path == "/graphql" and method == "POST":
                if raw and record.json is None:
                    status, payload = 400, {"errors": [{"message": "Body is not valid JSON"}]}
                else:
                    status, payload = fake.graphql(record.json, record)
            elif split.path.startswith("/v2/"):
                parts = [p for p in split.path[4:].split("/") if p]
                status, payload = _route(fake, method, parts, query, record.json)
            else:
                status, payload = 404, {"error": "not found"}
        except Exception as exc:  # noqa: BLE001 - a bug in the fake shows as a 500 the test can see
            import traceback

            fake.crashes.append(traceback.format_exc())
            status, payload = 500, {"error": f"fake crashed: {type(exc).__name__}: {exc}"}
        record.status = status
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_runpod(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    """A started :class:`FakeRunPod` (key :data:`DEFAULT_KEY`; jobs run the real worker handler unless a
    test sets ``fake_runpod.handler``) with this process's SDK pointed at it; stopped afterwards."""
    fake = FakeRunPod().start()
    fake.patch(monkeypatch)
    try:
        yield fake
    finally:
        fake.stop()
