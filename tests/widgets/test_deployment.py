"""DeploymentPanel: deploy a finished job's checkpoint, see the gauge and alerts, chat, stop.

In-process (LocalBackend over the same core as the routes); the browser test drives the same
panel in the Voila app.
"""

from __future__ import annotations

from pathlib import Path

from workbench.testing import TrainedJob, copy_job
from workbench.widgets.backend import LocalBackend
from workbench.widgets.deployment import DeploymentPanel, gauge_html


def test_deploy_chat_watch_the_budget_and_stop(home: Path, tiny_chat_dir: Path, monkeypatch,
                                               finished_lora_job_source: TrainedJob) -> None:
    from workbench.serving.engine import unload_all

    monkeypatch.setenv("WORKBENCH_TINY_CHAT_CACHE", str(tiny_chat_dir))
    job = copy_job(finished_lora_job_source)
    panel = DeploymentPanel(LocalBackend(), poll=False)
    try:
        assert panel.job.value == job["id"] and "checkpoint-5" in panel.checkpoint.options
        assert panel.runpod_box.layout.display == "none"  # local: no GPU, workers or key
        panel.provider.value = "runpod-serverless"
        assert panel.runpod_box.layout.display == "" and panel.body()["gpu_type"] == "NVIDIA RTX A4000"
        panel.provider.value = "local"

        panel.name.value = "Panel Bot"
        panel.checkpoint.value = "final"
        panel.budget.value, panel.cost.value = 1.0, 0.5
        out = panel.deploy()
        assert out and out["model_name"] == "panel-bot" and panel.deployment.value == out["deployment_id"]
        assert "panel-bot" in panel.status_html.value and "$0.0000</b> of $1.00" in panel.status_html.value

        panel.temperature.value, panel.max_tokens.value = 0.0, 12
        panel.prompt.value = "What is the capital of France?"
        reply = panel.send_message()
        assert reply and reply["id"] in panel.transcript.value and " tokens · " in panel.transcript.value
        assert panel.status["current_spend"] == 0.5 and "50%" in panel.status_html.value
        assert "50% of the $1.00 budget used" in panel.status_html.value  # the alert shows

        assert not panel.thumb_up.disabled  # a reply to rate: thumbs and stars, into the analytics' quality
        panel.feedback_comment.value = "right, and quick"
        panel.stars.value = 4
        panel.thumb_up.click()
        assert reply["id"] in panel.feedback_msg.value and "👍" in panel.feedback_msg.value
        from workbench.analytics.data import query

        quality = query("local", start="2000-01-01", end="2100-01-01", metrics="quality", granularity="all")
        rated = [q for q in quality["data"]["metrics"]["quality"] if q["messageId"] == reply["id"]]
        assert len(rated) == 1 and rated[0]["successStatus"] == "success" and rated[0]["rating"] == 4
        assert rated[0]["comment"] == "right, and quick"

        panel.prompt.value = "And of Germany?"
        panel.send_message()  # the second turn carries the first: a conversation
        assert len(panel.history) == 4 and panel.status["current_spend"] == 1.0
        panel.prompt.value = "One more?"
        assert panel.send_message() is None and "budget" in panel.chat_error.value  # 402, shown in the panel
        assert panel.status["status"] == "stopped" and panel.send.disabled

        panel.deployment.value = out["deployment_id"]
        assert panel.stop_button.disabled  # stopped for good
        from workbench.serving.engine import loaded

        assert not loaded()  # the auto-stop unloaded the adapter, and nothing else used the base: freed
    finally:
        panel.close()
        unload_all()


def test_the_gauge_turns_red_at_the_budget() -> None:
    status = {"model_name": "m", "status": "stopped", "provider": "local", "checkpoint": "final",
              "budget_limit": 1.0, "current_spend": 1.0, "budget_utilization_percent": 100.0, "request_count": 4,
              "estimated_requests_remaining": 0, "alerts": [{"kind": "budget_alert", "message": "100% used",
                                                             "at": "2026-12-01T00:00:00Z"}], "metrics": {}}
    html = gauge_html(status)
    assert "width:100.0%;background:#c62828" in html and "100% used" in html
