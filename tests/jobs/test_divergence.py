"""A loss that becomes NaN: valid JSON everywhere, the readers keep going, the job fails with a reason.

tiny-chat diverges within a few steps with LoRA at scale alpha/r = 1e6, learning rate 1.0 and
clipping effectively off (max_grad_norm=1e9): the first update blows the adapter up, the gradient
norm goes NaN, and the step after that the loss itself is NaN.
"""

from __future__ import annotations

import orjson
import pytest

from workbench import home
from workbench.jobfiles import events as event_log, layout
from workbench.jobs.service import JobService
from workbench.jobs.watch import watch

from .conftest import FAST, wait_for

pytestmark = pytest.mark.slow

DIVERGE = FAST + ["training.max_steps=40", "training.logging_steps=5", "training.learning_rate=1.0",
                  "training.max_grad_norm=1e9", "training.lr_scheduler_type=constant", "lora.r=1",
                  "lora.lora_alpha=1000000"]


def test_a_diverging_loss_is_reported_and_fails_the_job_and_the_queue_moves_on(job_home, sample,
                                                                                monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_JOBS", "1")
    svc = JobService()
    bad = svc.start("tiny-chat", sample["id"], "lora", overrides=DIVERGE)
    nxt = svc.start("tiny-chat", sample["id"], "lora", overrides=FAST + ["training.max_steps=5"])
    assert svc.get(nxt["id"])["status"] == "queued"

    st = wait_for(svc, bad["id"], {"completed", "failed", "cancelled"})
    assert st["status"] == "failed"
    jd = home.job_dir(bad["id"])

    # every line of metrics.jsonl (and of history.jsonl) is valid JSON for orjson
    lines = (jd / "metrics.jsonl").read_bytes().splitlines()
    events = [orjson.loads(line) for line in lines]
    rows = [orjson.loads(line) for line in (jd / layout.ROWS).read_bytes().splitlines()]
    assert events == list(event_log.iter_events(jd / "metrics.jsonl")) == svc.metrics(bad["id"])

    train = [e for e in events if e["type"] == "train"]
    last = train[-1]
    step = last["step"]
    assert last["loss"] is None and "loss" in last["nonfinite"]  # NaN, kept as a fact
    assert step % 5 != 0 and step < 40  # logged at the step it happened, not the next boundary
    assert all(e["loss"] is not None for e in train[:-1])
    [diverged] = [e for e in events if e["type"] == "diverged"]
    assert diverged["step"] == step and diverged["metric"] == "loss" and diverged["value"] == "NaN"
    assert rows[-1]["step"] == step and rows[-1]["train_loss"] is None

    # the live stream (what SSE, the WebSocket and `jobs follow` read) replays every event
    items = list(watch(svc, bad["id"], timeout=30))
    assert items[0] == {"kind": "status", "status": "failed", "error": st["error"]}
    assert items[1:] == [{"kind": "metric", **e} for e in events]

    # the status says so, in words; the error is the same message
    assert st["diverged"] is True and st["diverged_at_step"] == step
    message = st["error"]
    assert message.startswith(f"loss became NaN at step {step} (exploding loss")
    for words in ("learning rate", "gradient clipping", "max_grad_norm", "data"):
        assert words in message
    assert st["warning"] == f"⚠️ {message}"
    assert st["loss"] is None
    assert not any(c["step"] >= step for c in svc.checkpoints(bad["id"])["checkpoints"])  # no NaN weights kept
    assert f"loss became NaN at step {step}" in "\n".join(svc.logs(bad["id"]))

    # the queue moves on
    assert wait_for(svc, nxt["id"], {"completed", "failed"})["status"] == "completed"
    assert svc.status(nxt["id"])["diverged"] is False
