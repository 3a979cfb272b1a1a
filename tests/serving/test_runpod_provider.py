"""``runpod-serverless`` end to end through the workbench: the real ``runpod`` SDK against a fake of
RunPod's API on loopback, whose endpoint runs the real worker handler on tiny-chat.

Deploy (template + endpoint over GraphQL, names quoted safely), status, chat through the
workbench's ``/v1`` (forwarded to ``/runsync``, metered here at the GPU's price), the auto-stop
(workers to 0, then the endpoint deleted) and a manual stop.
"""

from __future__ import annotations

import openai
import pytest

from workbench.serving import budget, runpod_worker

from .conftest import Served
from .fake_runpod import DEFAULT_KEY, FakeRunPod, fake_runpod  # noqa: F401  (the fixture)

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
HOSTILE = 'RP "prod" bot\\n} mutation { deleteEndpoint(id: "x") }'


@pytest.fixture
def worker_env(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the template's env says inside RunPod, for the in-process fake worker: tiny-chat + the job's adapter."""
    monkeypatch.setattr(runpod_worker, "_engine", None)
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", str(served.home / "models" / "tiny-chat"))
    monkeypatch.setenv("WORKBENCH_ADAPTER", str(served.home / "jobs" / served.job_id / "output" / "final"))


def test_deploy_chat_and_stop_on_runpod_serverless(served: Served, fake_runpod: FakeRunPod,  # noqa: F811
                                                   worker_env: None) -> None:
    with served.client() as c:
        assert c.set_secret("RUNPOD_API_KEY", DEFAULT_KEY)["has_value"] is True
        assert DEFAULT_KEY not in str(c.list_secrets())
        dep = c.deploy(served.job_id, HOSTILE, provider="runpod-serverless", budget_limit=1.0,
                       gpu_type="NVIDIA RTX A5000", min_workers=0, max_workers=2)
        assert dep["status"] == "deploying" and dep["cost_per_request"] == 0.0006
        assert dep["estimated_requests"] == 1666 and dep["endpoint_url"].endswith(f"/{dep['endpoint_id']}/runsync")
        endpoint = fake_runpod.endpoints[dep["endpoint_id"]]
        assert endpoint["workersMax"] == 2 and endpoint["gpuIds"] == "AMPERE_24"
        template = fake_runpod.templates[endpoint["templateId"]]
        assert HOSTILE in template["name"]  # arrived intact: quoted, not injected
        env = {e["key"]: e["value"] for e in template["env"]}
        assert env["WORKBENCH_MODEL_NAME"] == dep["model_name"] and env["WORKBENCH_BASE_MODEL"] == "tiny-chat"
        assert "deleteEndpoint" not in fake_runpod.mutations()

        reply = served.openai().chat.completions.create(model=dep["model_name"], messages=CHAT, max_tokens=8,
                                                        temperature=0)
        assert reply.choices[0].message.content and reply.usage.completion_tokens >= 1
        st = c.deployment_status(dep["deployment_id"])
        assert st["status"] == "active" and st["current_spend"] == 0.0006 and st["request_count"] == 1
        assert st["provider_status"]["workers"] is not None and st["metrics"]["successful_requests"] == 1

        out = c.stop_deployment(dep["deployment_id"])
        assert out["final_status"]["final_spend"] == 0.0006
        assert fake_runpod.mutations()[-2:] == ["saveEndpoint", "deleteEndpoint"]
        assert dep["endpoint_id"] not in fake_runpod.endpoints


def test_the_budget_auto_stop_tears_the_endpoint_down(served: Served, fake_runpod: FakeRunPod,  # noqa: F811
                                                      worker_env: None) -> None:
    with served.client() as c:
        c.set_secret("RUNPOD_API_KEY", DEFAULT_KEY)
        dep = c.deploy(served.job_id, "rp-budget", provider="runpod-serverless", budget_limit=1.0)
    conn = budget.connect()  # as if 2499 requests at $0.0004 had been served: one more fits exactly
    conn.execute("UPDATE ledger SET spend_micro = 999600, request_count = 2499 WHERE deployment_id = ?",
                 (dep["deployment_id"],))
    oa = served.openai()
    oa.completions.create(model="rp-budget", prompt="Hello", max_tokens=4)
    with pytest.raises(openai.APIStatusError) as err:
        oa.completions.create(model="rp-budget", prompt="Hello", max_tokens=4)
    assert err.value.status_code == 402
    assert dep["endpoint_id"] not in fake_runpod.endpoints  # workers to 0, then deleted
    with served.client() as c:
        st = c.deployment_status(dep["deployment_id"])
    assert st["status"] == "stopped" and st["current_spend"] == 1.0 and st["request_count"] == 2500
    # one request crossed all three thresholds: each alert fires, once
    assert [a["threshold"] for a in st["alerts"] if a["kind"] == "budget_alert"] == [50, 80, 100]


def test_a_rejected_key_is_a_clear_401_and_leaves_nothing(served: Served, fake_runpod: FakeRunPod) -> None:  # noqa: F811
    with served.client() as c:
        c.set_secret("RUNPOD_API_KEY", "rp-wrong-key")
        before = len(c.list_deployments())
        r = c._transport.http.post("/api/inference/deploy", json={
            "provider": "runpod-serverless", "deployment_name": "nope", "training_job_id": served.job_id,
            "budget_limit": 5})
        assert r.status_code == 401 and r.json()["error"]["code"] == "NO_RUNPOD_KEY"
        assert "rp-wrong-key" not in r.text
        assert len(c.list_deployments()) == before  # nothing recorded
        c.delete_secret("RUNPOD_API_KEY")
