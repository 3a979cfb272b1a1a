"""2 processes × batch b train like 1 process × batch 2b: the same samples per step, the same loss curve.

Tolerance: 1e-4 absolute on losses near 5 (2e-5 relative). Both runs see exactly the same
samples at each step (accelerate hands batch 2k to rank 0 and 2k+1 to rank 1 from the same
seeded order), and transformers 5 divides each rank's summed loss by the token count of the
whole global batch, so the gradients are the same sums taken in another order: gloo's all-reduce
and each rank padding to its own longest row change float32 rounding only (about 1e-7 per
operation, compounded over the Adam steps; measured here: 1.5e-6). A real mistake — ranks on the
same data, a loss averaged per rank rather than per token, half the global batch — moves the
curve by 1e-2 or more, which the control run (1 process × b) shows the test would catch.
"""

from __future__ import annotations

from typing import Any

import pytest

from workbench.jobs.executor import InProcessExecutor
from workbench.jobs.service import JobService
from workbench.testing import as_overrides, fast

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4
STEPS = 8


def curve(sample: dict[str, Any], processes: int, batch: int) -> list[tuple[int, float, int]]:
    svc = JobService(executor=InProcessExecutor())
    job = svc.start("tiny-chat", sample["id"], "lora", overrides=as_overrides(fast(
        training={"max_steps": STEPS, "logging_steps": 1, "eval_split": 0, "save_steps": 1000,
                  "num_processes": processes, "per_device_train_batch_size": batch},
        lora={"lora_dropout": 0})))  # deterministic: seed 42, no dropout (tiny-chat has none of its own)
    assert job["status"] == "completed", job["error"]
    assert svc.status(job["id"])["world_size"] == processes
    return [(e["step"], e["loss"], e["num_tokens_processed"]) for e in svc.metrics(job["id"], types={"train"})]


def test_2_processes_of_batch_b_give_the_loss_curve_of_1_process_of_batch_2b(engine_home, sample) -> None:
    one = curve(sample, 1, 8)
    two = curve(sample, 2, 4)
    assert [s for s, _, _ in one] == list(range(1, STEPS + 1)) == [s for s, _, _ in two]
    assert [n for _, _, n in one] == [n for _, _, n in two]  # the same tokens, step by step, summed over ranks
    gap = max(abs(a - b) for (_, a, _), (_, b, _) in zip(one, two))
    assert gap < TOLERANCE, f"2x4 vs 1x8: max loss gap {gap:.2e}"
    assert one[-1][1] < one[0][1]  # it learns

    control = curve(sample, 1, 4)  # half the global batch: the curve the tolerance must tell apart
    off = max(abs(a - b) for (_, a, _), (_, b, _) in zip(one, control))
    assert off > 100 * TOLERANCE, f"the control run is only {off:.2e} away: the tolerance proves nothing"
