"""RunPodClient over the real ``runpod`` SDK, against a local fake of RunPod's GraphQL and endpoint APIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from workbench.serving import runpod_api
from workbench.serving.runpod_api import (
    GPU_IDS,
    GPU_POOLS,
    RunPodClient,
    RunPodError,
    endpoint_url,
    gpu_pool,
    gql_string,
)

from .fake_runpod import DEFAULT_KEY, FakeEngine, FakeRunPod, echo_handler, fake_answer, fake_runpod  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
HOSTILE = 'my "prod" model\n} ) { mutation { deleteEndpoint(id: "x") } \\" \\\\n \t\r\x00\x1f\x7f é 🚀'
SECRET = "hf_SeCrEt-token-value"


@pytest.fixture
def client(fake_runpod: FakeRunPod) -> RunPodClient:
    return RunPodClient(DEFAULT_KEY)


def _deployed(client: RunPodClient, name: str = "bot", workers_max: int = 2) -> dict[str, Any]:
    template = client.create_template(f"{name}-template", "registry.example/worker:1", {"WORKBENCH_MODEL_NAME": name})
    return client.create_endpoint(name, template["id"], "NVIDIA RTX A4000", 0, workers_max)


# ---------------------------------------------------------------------------------------------- escaping

@pytest.mark.parametrize("value", [HOSTILE, "", "plain", "\\", '"', "\\\"", "}", "a\nb", "".join(map(chr, range(32))),
                                   "\u0080\u009f\u2028\u2029", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and 中文"])
def test_gql_string_round_trips_through_a_real_graphql_parser(value: str) -> None:
    from graphql import parse, value_from_ast_untyped

    doc = parse('mutation { f(a: "' + gql_string(value) + '") }')
    argument = doc.definitions[0].selection_set.selections[0].arguments[0]
    assert value_from_ast_untyped(argument.value) == value


def test_gql_string_refuses_what_graphql_cannot_carry() -> None:
    with pytest.raises(ValueError):
        gql_string("half a pair \ud800")
    with pytest.raises(TypeError):
        gql_string(3)  # type: ignore[arg-type]


def test_the_sdk_itself_pastes_a_hostile_name_unescaped(fake_runpod: FakeRunPod) -> None:
    """Why gql_string exists: the raw SDK call makes RunPod (here: the fake's real parser) reject the query."""
    import runpod
    from runpod.error import QueryError

    runpod.api_key = DEFAULT_KEY
    with pytest.raises(QueryError, match="Syntax Error"):
        runpod.create_template(name=HOSTILE, image_name="x", is_serverless=True)
    assert fake_runpod.templates == {}


# ---------------------------------------------------------------------------------------------- GPU pools

def test_every_reference_gpu_maps_to_a_documented_pool() -> None:
    assert set(GPU_IDS) == {"NVIDIA RTX A4000", "NVIDIA RTX A5000", "NVIDIA RTX A6000", "NVIDIA A40",
                            "NVIDIA A100 40GB", "NVIDIA A100 80GB", "NVIDIA H100"}
    assert set(GPU_IDS.values()) <= GPU_POOLS
    assert GPU_IDS["NVIDIA RTX A4000"] == "AMPERE_16" and GPU_IDS["NVIDIA H100"] == "ADA_80_PRO"
    assert gpu_pool("AMPERE_48") == "AMPERE_48"
    assert gpu_pool("NVIDIA H100, NVIDIA A100 80GB, AMPERE_80") == "ADA_80_PRO,AMPERE_80"
    with pytest.raises(RunPodError) as err:
        gpu_pool("NVIDIA GTX 480")
    assert err.value.status == 400 and "GTX 480" in err.value.message


# ---------------------------------------------------------------------------------------------- create, get

def test_create_template_and_endpoint_keep_hostile_strings_exact(client: RunPodClient,
                                                                 fake_runpod: FakeRunPod) -> None:
    env = {"WORKBENCH_MODEL_NAME": HOSTILE, "HF_TOKEN": SECRET, "EMPTY": ""}
    template = client.create_template(HOSTILE, "registry.example/worker:1", env, container_disk_gb=30)
    stored = fake_runpod.templates[template["id"]]
    assert stored["name"] == HOSTILE and template["name"] == HOSTILE
    assert stored["env"] == [{"key": k, "value": v} for k, v in env.items()]
    assert stored["isServerless"] is True and stored["containerDiskInGb"] == 30 and stored["volumeInGb"] == 0

    endpoint = client.create_endpoint(HOSTILE, template["id"], "NVIDIA A40", workers_min=1, workers_max=4,
                                      idle_timeout=7)
    stored = fake_runpod.endpoints[endpoint["id"]]
    assert stored["name"] == HOSTILE and stored["templateId"] == template["id"]
    assert (stored["gpuIds"], stored["workersMin"], stored["workersMax"], stored["idleTimeout"]) == ("AMPERE_48", 1, 4, 7)

    # Only saveTemplate and saveEndpoint reached the fake: the "deleteEndpoint" in the name stayed data.
    assert fake_runpod.mutations() == ["saveTemplate", "saveEndpoint"]
    graphql = [r for r in fake_runpod.requests if r.path == "/graphql"]
    assert all(r.headers["authorization"] == f"Bearer {DEFAULT_KEY}" and "api_key" not in r.query for r in graphql)


def test_get_endpoint_finds_it_by_id_or_answers_none(client: RunPodClient) -> None:
    endpoint = _deployed(client)
    got = client.get_endpoint(endpoint["id"])
    assert got is not None
    assert (got["id"], got["name"], got["gpuIds"], got["workersMax"]) == (endpoint["id"], "bot", "AMPERE_16", 2)
    assert got["env"] == [{"key": "WORKBENCH_MODEL_NAME", "value": "bot"}]
    assert client.get_endpoint("doesnotexist00") is None


def test_bad_arguments_are_refused_before_any_request(client: RunPodClient, fake_runpod: FakeRunPod) -> None:
    with pytest.raises(RunPodError) as err:
        client.create_endpoint("x", "t", "AMPERE_16", workers_min=3, workers_max=1)
    assert err.value.status == 400
    with pytest.raises(RunPodError):
        client.create_template("x", "img", {"A": 1})  # type: ignore[dict-item]
    with pytest.raises(RunPodError) as err:
        client.create_template("half a pair \ud800", "img", {})
    assert err.value.status == 400 and "surrogate" in err.value.message
    with pytest.raises(RunPodError):
        client.health("../../graphql")
    assert fake_runpod.requests == []


def test_refusals_from_runpod_become_runpod_errors_without_the_query(client: RunPodClient) -> None:
    client.create_template("same", "img", {"HF_TOKEN": SECRET})
    with pytest.raises(RunPodError) as err:
        client.create_template("same", "img", {"HF_TOKEN": SECRET})
    assert err.value.status == 400 and "unique" in err.value.message
    assert SECRET not in str(err.value) and DEFAULT_KEY not in str(err.value)
    with pytest.raises(RunPodError) as err:
        client.create_endpoint("x", "no-such-template", "AMPERE_16", 0, 1)
    assert err.value.status == 400 and "not found" in err.value.message


# ---------------------------------------------------------------------------------------------- endpoint routes

def test_health_reads_the_endpoint_route(client: RunPodClient, fake_runpod: FakeRunPod) -> None:
    endpoint = _deployed(client)
    health = client.health(endpoint["id"])
    assert set(health) == {"jobs", "workers"}
    assert health["jobs"]["completed"] == 0 and "idle" in health["workers"] and "running" in health["workers"]
    fake_runpod.handler = echo_handler
    client.run_sync(endpoint["id"], {"prompt": "hi"}, timeout=10)
    assert client.health(endpoint["id"])["jobs"]["completed"] == 1
    request = fake_runpod.requests[-1]
    assert request.path == f"/v2/{endpoint['id']}/health" and request.headers["authorization"] == f"Bearer {DEFAULT_KEY}"
    with pytest.raises(RunPodError) as err:
        client.health("doesnotexist00")
    assert err.value.status == 404


def test_run_sync_returns_the_worker_output(client: RunPodClient, fake_runpod: FakeRunPod) -> None:
    endpoint = _deployed(client)
    fake_runpod.handler = echo_handler
    assert client.run_sync(endpoint["id"], {"prompt": "hi"}, timeout=10) == {"echo": {"prompt": "hi"}}
    request = fake_runpod.requests[-1]
    assert request.path == f"/v2/{endpoint['id']}/runsync" and request.query["wait"] == ["10000"]
    assert request.json == {"input": {"prompt": "hi"}}
    # Already wrapped (what the SDK's run_sync also accepts): sent as it is, not wrapped twice.
    assert client.run_sync(endpoint["id"], {"input": {"prompt": "hi"}}, timeout=10) == {"echo": {"prompt": "hi"}}
    assert fake_runpod.requests[-1].json == {"input": {"prompt": "hi"}}


def test_run_sync_through_the_real_worker_handler(client: RunPodClient, fake_runpod: FakeRunPod,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.serving import runpod_worker

    engine = FakeEngine()
    monkeypatch.setattr(runpod_worker, "_engine", engine)
    monkeypatch.setattr(runpod_worker, "_answer", fake_answer)
    monkeypatch.setenv("WORKBENCH_MODEL_NAME", "support-bot")
    monkeypatch.delenv("WORKBENCH_ADAPTER", raising=False)
    fake_runpod.handler = None  # the default: workbench.serving.runpod_worker.handler
    endpoint = _deployed(client)

    out = client.run_sync(endpoint["id"], {"messages": [{"role": "user", "content": "Hello"}]}, timeout=10)
    assert out["object"] == "chat.completion" and out["model"] == "support-bot"
    assert out["choices"][0]["message"]["content"] == "echo: Hello"
    assert engine.calls[0]["kind"] == "chat"

    with pytest.raises(RunPodError) as err:  # the worker refuses the input: the job FAILED
        client.run_sync(endpoint["id"], {"prompt": "x", "max_tokens": 0}, timeout=10)
    assert err.value.status == 422 and "max_tokens" in err.value.message


def test_run_sync_end_to_end_with_the_real_worker_and_tiny_chat(client: RunPodClient, fake_runpod: FakeRunPod,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 tiny_chat_dir: Path) -> None:
    """Client → /runsync → the real handler → workbench.serving.inference on tiny-chat, in the provider's form."""
    import torch

    from workbench.serving import runpod_worker
    from workbench.serving.engine import unload_all

    torch.set_num_threads(1)
    monkeypatch.setattr(runpod_worker, "_engine", None)
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", str(tiny_chat_dir))
    monkeypatch.setenv("WORKBENCH_MODEL_NAME", "tiny-bot")
    monkeypatch.delenv("WORKBENCH_ADAPTER", raising=False)
    fake_runpod.handler = None  # the real workbench.serving.runpod_worker.handler
    endpoint = _deployed(client)
    try:
        payload = {"input": {"openai_route": "/v1/chat/completions",
                             "openai_input": {"messages": [{"role": "user", "content": "Hello!"}],
                                              "max_tokens": 6, "temperature": 0, "stream": False}}}
        out = client.run_sync(endpoint["id"], payload, timeout=120)
        assert out["object"] == "chat.completion" and out["model"] == "tiny-bot"
        assert 0 < out["usage"]["completion_tokens"] <= 6
        with pytest.raises(RunPodError) as err:
            client.run_sync(endpoint["id"], {"prompt": "x", "temperature": 9}, timeout=60)
        assert err.value.status == 422 and "temperature" in err.value.message
    finally:
        unload_all()


def test_run_sync_reports_a_crashing_handler(client: RunPodClient, fake_runpod: FakeRunPod) -> None:
    def boom(job: dict[str, Any]) -> Any:
        raise RuntimeError("kaboom")

    fake_runpod.handler = boom
    endpoint = _deployed(client)
    with pytest.raises(RunPodError) as err:
        client.run_sync(endpoint["id"], {"prompt": "x"}, timeout=10)
    assert err.value.status == 502 and "kaboom" in err.value.message


def test_run_sync_polls_status_when_runsync_returns_early(client: RunPodClient, fake_runpod: FakeRunPod) -> None:
    def slow(job: dict[str, Any]) -> Any:
        time.sleep(0.6)
        return {"done": True}

    fake_runpod.handler = slow
    fake_runpod.runsync_wait_cap_s = 0.1
    endpoint = _deployed(client)
    assert client.run_sync(endpoint["id"], {"x": 1}, timeout=10) == {"done": True}
    assert any(r.path.startswith(f"/v2/{endpoint['id']}/status/") for r in fake_runpod.requests)


def test_run_sync_times_out_and_cancels_the_job(client: RunPodClient, fake_runpod: FakeRunPod) -> None:
    endpoint_id = fake_runpod.add_endpoint(workers_max=0)  # scaled to zero: the job never starts
    started = time.monotonic()
    with pytest.raises(RunPodError) as err:
        client.run_sync(endpoint_id, {"x": 1}, timeout=1.2)
    assert err.value.status == 504 and 1.1 < time.monotonic() - started < 5
    assert fake_runpod.requests[-1].path.startswith(f"/v2/{endpoint_id}/cancel/")
    assert [j["status"] for j in fake_runpod.jobs.values()] == ["CANCELLED"]


# ---------------------------------------------------------------------------------------------- stop

def test_stop_scales_to_zero_then_deletes(client: RunPodClient, fake_runpod: FakeRunPod) -> None:
    endpoint = _deployed(client, workers_max=3)
    before = len(fake_runpod.graphql_calls())
    client.stop(endpoint["id"])
    calls = fake_runpod.graphql_calls()[before:]
    assert [name for name, _ in calls] == ["myself", "saveEndpoint", "deleteEndpoint"]
    save = calls[1][1]["input"]
    assert save == {"id": endpoint["id"], "name": "bot", "templateId": endpoint["templateId"],
                    "gpuIds": "AMPERE_16", "workersMin": 0, "workersMax": 0}
    assert calls[2][1] == {"id": endpoint["id"]}
    assert endpoint["id"] not in fake_runpod.endpoints and client.get_endpoint(endpoint["id"]) is None
    client.stop(endpoint["id"])  # already gone: nothing more is sent
    assert fake_runpod.mutations()[-2:] == ["saveEndpoint", "deleteEndpoint"]


def test_stop_keeps_a_hostile_name(client: RunPodClient, fake_runpod: FakeRunPod) -> None:
    template = client.create_template("t", "img", {})
    endpoint = client.create_endpoint(HOSTILE, template["id"], "AMPERE_16", 0, 1)
    client.stop(endpoint["id"])
    assert fake_runpod.graphql_calls()[-2][1]["input"]["name"] == HOSTILE
    assert fake_runpod.endpoints == {}


def test_the_fake_refuses_deleting_an_endpoint_with_workers(client: RunPodClient) -> None:
    """What makes the order in stop() matter (RunPod: min and max workers must both be zero)."""
    from runpod.api.graphql import run_graphql_query
    from runpod.error import QueryError

    endpoint = _deployed(client)
    with pytest.raises(QueryError, match="set to 0"):
        run_graphql_query(f'mutation {{ deleteEndpoint(id: "{endpoint["id"]}") }}', api_key=DEFAULT_KEY)
    with pytest.raises(QueryError, match="required"):  # saveEndpoint needs name, templateId and gpuIds, even to update
        run_graphql_query(f'mutation {{ saveEndpoint(input: {{id: "{endpoint["id"]}", workersMax: 0}}) {{ id }} }}',
                          api_key=DEFAULT_KEY)


# ---------------------------------------------------------------------------------------------- keys

def test_a_wrong_key_is_a_runpod_error_that_does_not_show_the_key(fake_runpod: FakeRunPod) -> None:
    good = RunPodClient(DEFAULT_KEY)
    endpoint = _deployed(good)
    wrong_key = "rp-WRONG-key-must-never-show"
    bad = RunPodClient(wrong_key)
    calls = [lambda: bad.create_template("t2", "img", {}), lambda: bad.create_endpoint("e", "t", "AMPERE_16", 0, 1),
             lambda: bad.get_endpoint(endpoint["id"]), lambda: bad.health(endpoint["id"]),
             lambda: bad.run_sync(endpoint["id"], {"x": 1}, timeout=5), lambda: bad.stop(endpoint["id"])]
    for call in calls:
        with pytest.raises(RunPodError) as err:
            call()
        assert err.value.status == 401
        assert wrong_key not in str(err.value) and wrong_key not in repr(err.value)
    assert wrong_key not in repr(bad)
    assert endpoint["id"] in fake_runpod.endpoints


def test_the_global_sdk_key_is_set_per_call_and_put_back(fake_runpod: FakeRunPod) -> None:
    import runpod

    endpoint = _deployed(RunPodClient(DEFAULT_KEY))
    results: dict[str, list[Any]] = {"good": [], "bad": []}

    def worker(kind: str) -> None:
        client = RunPodClient(DEFAULT_KEY if kind == "good" else "another-accounts-key")
        for _ in range(5):
            try:
                results[kind].append(client.get_endpoint(endpoint["id"])["id"])
            except RunPodError as exc:
                results[kind].append(exc.status)

    threads = [threading.Thread(target=worker, args=(k,)) for k in ("good", "bad", "good", "bad")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["good"] == [endpoint["id"]] * 10 and results["bad"] == [401] * 10
    assert runpod.api_key is None


def test_an_unreachable_api_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpod

    with FakeRunPod() as fake:
        url = fake.url
    monkeypatch.setenv("RUNPOD_API_BASE_URL", url)  # stopped: nothing listens there now
    monkeypatch.setattr(runpod, "endpoint_url_base", f"{url}/v2")
    client = RunPodClient(DEFAULT_KEY)
    for call in (lambda: client.get_endpoint("abc"), lambda: client.health("abc")):
        with pytest.raises(RunPodError) as err:
            call()
        assert err.value.status == 503


# ---------------------------------------------------------------------------------------------- URLs, imports

def test_endpoint_url_follows_the_sdk_base(fake_runpod: FakeRunPod) -> None:
    assert endpoint_url("abc123") == f"{fake_runpod.url}/v2/abc123/runsync"
    assert endpoint_url("abc123", "health") == f"{fake_runpod.url}/v2/abc123/health"


def test_importing_the_client_or_the_worker_does_not_import_runpod(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import workbench.serving.runpod_api as api\n"
        "import workbench.serving.runpod_worker\n"
        "light = [m for m in ('runpod', 'requests', 'aiohttp') if m in sys.modules]\n"
        "default = api.endpoint_url('abc')\n"
        "import os; os.environ['RUNPOD_ENDPOINT_BASE_URL'] = 'http://127.0.0.1:9/v2'\n"
        "from_env = api.endpoint_url('abc')\n"
        "import runpod\n"
        "print(json.dumps({'light': light, 'default': default, 'from_env': from_env,\n"
        "                  'sdk_base': runpod.endpoint_url_base, 'after': api.endpoint_url('abc')}))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update({"HF_HUB_OFFLINE": "1", "WORKBENCH_HOME": str(tmp_path)})
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["light"] == []
    assert got["default"] == "https://api.runpod.ai/v2/abc/runsync"
    assert got["from_env"] == "http://127.0.0.1:9/v2/abc/runsync"
    assert got["sdk_base"] == "http://127.0.0.1:9/v2"  # the SDK reads the same variable (at import)
    assert got["after"] == got["from_env"]
    assert runpod_api.DEFAULT_ENDPOINT_BASE == "https://api.runpod.ai/v2"
