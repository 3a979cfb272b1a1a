"""Non-finite numbers and corrupt lines never break a writer or a reader of a job's files.

Writers make NaN/inf null and name the keys in ``nonfinite``; every reader of ``metrics.jsonl``,
``history.jsonl`` and ``summary.json`` skips a line it cannot parse (a bare ``NaN`` written
before the fix is still read, as null). The last tests follow such a job through the SSE and
WebSocket streams and ``workbench jobs follow``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from workbench import home as wb_home
from workbench.jobfiles import events as event_log, layout, rows as step_rows, summary as summaries
from workbench.jobs.state import TABLE
from workbench.jobs.status import build_status
from workbench.jobs.watch import watch
from workbench.records import LOCAL_USER, now_iso
from workbench.store import get_store
from workbench.jobfiles.events import append_event

from workbench.testing import IdleExecutor

JOB = "job-0123456789"


def train(step: int, loss: Any) -> dict[str, Any]:
    return {"timestamp": f"2026-01-01T00:00:{step:02d}Z", "type": "train", "step": step, "epoch": step / 100,
            "total_steps": 20, "loss": loss, "learning_rate": 1e-3, "grad_norm": 0.5, "tokens_per_second": 900.0}


# the file as an old engine (json.dumps) plus a torn and a foreign line leave it
LINES = [
    json.dumps({"timestamp": "2026-01-01T00:00:00Z", "type": "status", "status": "running",
                "total_steps": 20}).encode(),
    json.dumps(train(5, 2.5)).encode(),
    json.dumps(train(7, float("nan"))).encode(),  # a bare NaN: orjson rejects it
    b'{"timestamp": "2026-01-01T00:00:08Z", "type": "train", "step": 8, "lo',  # torn
    b"[1, 2, 3]",  # valid JSON, but not an event
    b"42",
    b"\x00\xff\xfe garbage",  # not even UTF-8
    json.dumps(train(10, 2.0)).encode(),
    json.dumps({"timestamp": "2026-01-01T00:00:11Z", "type": "eval", "step": 10, "epoch": 0.1,
                "eval_loss": float("inf"), "eval_perplexity": float("inf")}).encode(),
]


@pytest.fixture
def job_dir(home: Path) -> Path:
    jd = wb_home.job_dir(JOB)
    jd.mkdir(parents=True)
    (jd / "metrics.jsonl").write_bytes(b"\n".join(LINES) + b"\n")
    now = now_iso()
    get_store().insert(TABLE, {
        "id": JOB, "owner": LOCAL_USER, "name": "diverged", "model": "tiny-chat", "dataset_id": None,
        "config_id": None, "config": {}, "status": "failed", "run": 1, "resume_from": None, "queued_at": 0.0,
        "created_at": now, "updated_at": now, "started_at": now, "finished_at": now,
        "error": "loss became NaN at step 7", "history": []})
    return jd


def test_writers_emit_valid_json_with_a_nonfinite_marker(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append_event(path, train(3, float("nan")) | {"grad_norm": float("inf"), "rss_gb": -math.inf})
    append_event(path, train(4, 1.5))
    first, second = (orjson.loads(line) for line in path.read_bytes().splitlines())
    assert first["loss"] is None and first["grad_norm"] is None and first["rss_gb"] is None
    assert first["nonfinite"] == ["grad_norm", "loss", "rss_gb"]
    assert second["loss"] == 1.5 and "nonfinite" not in second

    s = summaries.empty_summary()
    s["latest"] = {"loss": float("nan")}
    s["losses"] = [1.0, float("inf")]
    summaries.save_summary(tmp_path, s)
    saved = orjson.loads(summaries.summary_path(tmp_path).read_bytes())
    assert saved["latest"] == {"loss": None} and saved["losses"] == [1.0, None]

    other = tmp_path / "job-b"
    other.mkdir()
    writer = step_rows.RowWriter(other)
    writer.add(train(5, float("nan")))  # a raw event, as a caller that skipped finite_event would pass it
    writer.flush()
    [row] = [orjson.loads(line) for line in (other / layout.ROWS).read_bytes().splitlines()]
    assert row["step"] == 5 and row["train_loss"] is None


def test_a_corrupt_line_is_skipped_by_every_reader(job_dir: Path) -> None:
    events = list(event_log.iter_events(job_dir / "metrics.jsonl"))
    assert [(e["type"], e.get("step")) for e in events] == [("status", None), ("train", 5), ("train", 7),
                                                             ("train", 10), ("eval", 10)]
    old_nan = events[2]
    assert old_nan["loss"] is None and old_nan["nonfinite"] == ["loss"]  # the legacy NaN line, made finite
    assert events[4]["eval_loss"] is None and events[4]["nonfinite"] == ["eval_loss", "eval_perplexity"]
    assert [e["step"] for e in event_log.iter_events(job_dir / "metrics.jsonl", {"train"})] == [5, 7, 10]

    summary = summaries.load_summary(job_dir)  # no summary.json: a replay of the log
    assert summary == summaries.rebuild(job_dir)
    assert summary["points"] == 3 and summary["latest"]["step"] == 10 and summary["eval_loss"] is None
    assert summary["best_eval_loss"] is None and summary["evals"] == []
    assert summary["diverged"]["step"] == 7 and summary["diverged"]["metric"] == "loss"
    (job_dir / "summary.json").write_text('{"points": 3, "latest": {"loss": NaN')  # torn
    assert summaries.load_summary(job_dir) == summary

    rows = step_rows.tail_rows(job_dir / "metrics.jsonl", None, JOB)
    assert [(r["step"], r["train_loss"], r["eval_loss"]) for r in rows] == [(5, 2.5, None), (7, None, None),
                                                                           (10, 2.0, None)]
    assert step_rows.tail_rows(job_dir / "metrics.jsonl", 7, JOB) == rows[2:]
    writer = step_rows.RowWriter(job_dir, JOB)  # rebuilds history.jsonl from the log
    hist = job_dir / layout.ROWS
    assert [orjson.loads(line) for line in hist.read_bytes().splitlines()] == step_rows.fold_rows(events, JOB)
    assert writer.last == 10
    with open(hist, "ab") as fh:
        fh.write(b'{"id": "job-0123456789-11", "step": 1')  # a torn last row
    assert step_rows.last_step(hist) == 10

    st = build_status(get_store().get(TABLE, JOB))
    assert st["diverged"] is True and st["diverged_at_step"] == 7
    assert st["warning"].startswith("⚠️ loss became NaN or infinite at step 7 (exploding loss")
    assert st["loss"] == 2.0 and st["status"] == "failed"


class _Jobs:
    def get(self, job_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        return get_store().require(TABLE, job_id, owner)

    def status(self, job_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        return build_status(self.get(job_id, owner))


def test_watch_and_jobs_follow_skip_corrupt_lines(job_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli import follow

    items = list(watch(_Jobs(), JOB, timeout=10))
    assert items[0] == {"kind": "status", "status": "failed", "error": "loss became NaN at step 7"}
    assert [(i["type"], i.get("step")) for i in items[1:]] == [("status", None), ("train", 5), ("train", 7),
                                                               ("train", 10), ("eval", 10)]
    st = follow(_Jobs(), JOB)
    assert st["status"] == "failed" and st["diverged"] is True
    assert "error: loss became NaN at step 7" in capsys.readouterr().err


def test_sse_and_websocket_stream_past_nan_and_corrupt_lines(job_dir: Path) -> None:
    from starlette.testclient import TestClient

    from workbench.server.app import create_app
    from workbench.users import local_token

    with TestClient(create_app(multi_user=False, executor=IdleExecutor()),
                    headers={"Authorization": f"Bearer {local_token()}"}) as client:
        r = client.get(f"/api/training/{JOB}/events")
        assert r.status_code == 200
        blocks = [b for b in r.text.strip().split("\n\n") if not b.startswith(":")]
        sse = [(dict(line.split(": ", 1) for line in b.splitlines())) for b in blocks]
        assert [s["event"] for s in sse] == ["metric"] * 5 + ["status"]  # the final status last, no error
        metrics = [orjson.loads(s["data"]) for s in sse[:-1]]
        assert [(m["type"], m.get("step")) for m in metrics] == [("status", None), ("train", 5), ("train", 7),
                                                                 ("train", 10), ("eval", 10)]
        assert metrics[2]["loss"] is None and metrics[2]["nonfinite"] == ["loss"]

        frames = []
        with client.websocket_connect(f"/ws/training/{JOB}") as ws:
            while True:
                message = ws.receive()
                if message["type"] == "websocket.close":
                    break
                frames.append(orjson.loads(message["text"]))
        assert frames[-1] == {"kind": "status", "status": "failed", "error": "loss became NaN at step 7"}
        assert frames[:-1] == metrics
