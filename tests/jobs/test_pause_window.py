"""A pause lands at the next optimizer step, not the next logging boundary, and the curve is unchanged.

The jobs run in this process (``InProcessExecutor``), so a callback can ask for the pause at an
exact step: the control file is written when step 8 begins, mid-way through the logging window
6..10 (``logging_steps=5``), and the pause must land when that step ends.
"""

from __future__ import annotations

import json
from typing import Any

from transformers import TrainerCallback

from workbench import home
from workbench.jobs.executor import InProcessExecutor
from workbench.jobs.service import JobService
from workbench.training import engine

from .conftest import FAST


STEPS = FAST + ["training.max_steps=20", "training.logging_steps=5", "training.save_steps=10",
                "training.eval_steps=10"]
REQUEST_DURING_STEP = 8  # the pause is asked for while step 8 runs: 8 is not a multiple of 5


class _AskForPause(TrainerCallback):
    """Writes ``pause`` to the job's control file as step ``step`` begins (as another process would)."""

    def __init__(self, control_path: Any, step: int):
        self.path, self.step, self.requested_after = control_path, step, None

    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == self.step - 1 and self.requested_after is None:
            self.path.write_text("pause")
            self.requested_after = state.global_step


def _curves(svc: JobService, job_id: str) -> tuple[list, list]:
    train = [(e["step"], e["loss"], e["learning_rate"], e["grad_norm"]) for e in svc.metrics(job_id, types={"train"})]
    evals = [(e["step"], e["eval_loss"]) for e in svc.metrics(job_id, types={"eval"})]
    return train, evals


def test_a_pause_lands_within_one_step_and_the_resumed_curve_is_identical(job_home, sample, monkeypatch) -> None:
    svc = JobService(executor=InProcessExecutor())
    straight = svc.start("tiny-chat", sample["id"], "lora", overrides=STEPS)  # runs to its end right here
    assert svc.get(straight["id"])["status"] == "completed", svc.get(straight["id"])["error"]

    asked: list[_AskForPause] = []
    real_build = engine.build_trainer

    def build_with_a_pause_request(spec, job_dir, on_event=None):
        trainer, control = real_build(spec, job_dir, on_event)
        if not asked:  # the first run only: the resumed run trains undisturbed
            asked.append(_AskForPause(control.path, REQUEST_DURING_STEP))
            trainer.add_callback(asked[0])
        return trainer, control

    monkeypatch.setattr(engine, "build_trainer", build_with_a_pause_request)
    paused = svc.start("tiny-chat", sample["id"], "lora", overrides=STEPS)
    rec = svc.get(paused["id"])
    assert rec["status"] == "paused", rec["error"]

    step = int(rec["checkpoint"].split("-")[-1])
    assert step == REQUEST_DURING_STEP and step % 5 != 0  # not a logging boundary
    assert step - asked[0].requested_after == 1  # at the end of the step during which it was asked for
    assert svc.status(paused["id"])["current_step"] == step
    ckpt = home.job_dir(paused["id"]) / "output" / rec["checkpoint"]
    window = json.loads((ckpt / engine.LOGGING_WINDOW).read_text())
    assert window["global_step"] == 8 and window["globalstep_last_logged"] == 5 and window["tr_loss"] > 0
    assert window["dtype"] == "float32"
    assert [e["step"] for e in svc.metrics(paused["id"], types={"train"})] == [5]  # 6..8 not logged yet

    svc.resume(paused["id"])  # runs the second run to its end right here
    done = svc.get(paused["id"])
    assert done["status"] == "completed", done["error"]

    a_train, a_eval = _curves(svc, straight["id"])
    b_train, b_eval = _curves(svc, paused["id"])
    assert [s for s, *_ in a_train] == [5, 10, 15, 20]
    assert b_train == a_train  # every logged (step, loss, lr, grad_norm), float for float
    assert [s for s, _ in a_eval] == [10, 20] and b_eval == a_eval
    assert a_train[-1][1] < a_train[0][1]  # it learns
