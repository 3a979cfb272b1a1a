"""Padding, shared-attention packing and isolated (masked) packing on a skewed-length chat set.

Every run trains tiny-chat with the workbench engine in this process (InProcessExecutor),
same data, steps, batch size and threads; only ``training.packing`` and
``training.packing_attention`` differ. Isolated packing is what ``packing=true`` does: each
example attends only to itself (a block-diagonal causal mask from the restarting position ids);
shared is the old behaviour, where an example attends to those packed before it.
Goal: masked packing ≥ 2.5× the trained tokens/s of padding.

    python bench/packing.py [--steps 60] [--samples 600]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import scratch_home, table  # noqa: E402

WORDS = ("order refund shipping account password invoice delivery package product warranty "
         "battery screen replace support ticket charge card address email").split()


def skewed_chats(n: int, seed: int = 0) -> bytes:
    """85 % short exchanges, 15 % long ones: the shape of real support logs."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        long = rng.random() < 0.15
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 80) if long else rng.randint(3, 8)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(120, 220) if long else rng.randint(4, 10)))
        lines.append(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}))
    return ("\n".join(lines) + "\n").encode()


def run(dataset_id: str, mode: str, steps: int) -> dict:
    """``mode``: padding, shared (packing, one attention over the row) or isolated (masked packing)."""
    from workbench import home
    from workbench.jobs.executor import InProcessExecutor
    from workbench.jobfiles.summary import load_summary
    from workbench.jobs.service import JobService

    svc = JobService(executor=InProcessExecutor())
    job = svc.start("tiny-chat", dataset_id, "lora", overrides=[
        f"training.max_steps={steps}", f"training.packing={str(mode != 'padding').lower()}",
        f"training.packing_attention={'shared' if mode == 'shared' else 'isolated'}", "training.eval_split=0",
        "training.save_steps=100000", "training.logging_steps=10", "training.torch_threads=1",
        "training.per_device_train_batch_size=8", "training.max_seq_length=1024"])
    assert job["status"] == "completed", job.get("error")
    latest = load_summary(home.job_dir(job["id"]))["latest"]
    runtime = job["result"]["metrics"]["train_runtime"]
    return {"mode": mode, "steps": steps, "train_s": round(runtime, 2),
            "processed_tok": latest["num_tokens_processed"], "trained_tok": latest["num_tokens_trained"],
            "trained_tok/s": round(latest["num_tokens_trained"] / runtime, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--samples", type=int, default=600)
    args = ap.parse_args()
    scratch_home("packing")
    from workbench.datasets import DatasetService

    ds = DatasetService().register(skewed_chats(args.samples), name="skewed", filename="skewed.jsonl")
    rows = [run(ds["id"], mode, args.steps) for mode in ("padding", "shared", "isolated")]
    print(table(rows, ["mode", "steps", "train_s", "processed_tok", "trained_tok", "trained_tok/s"]))
    pad = rows[0]["trained_tok/s"]
    print(f"\nshared packing / padding trained tokens/s: {rows[1]['trained_tok/s'] / pad:.2f}x")
    print(f"masked packing / padding trained tokens/s: {rows[2]['trained_tok/s'] / pad:.2f}x (goal >= 2.5x)")


if __name__ == "__main__":
    main()
