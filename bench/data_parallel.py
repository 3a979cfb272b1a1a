"""2 data-parallel processes against 1 process at the same global batch: time and tokens per second.

Both runs train tiny-chat with the workbench engine in this process (InProcessExecutor; the
2-process run forks its ranks through accelerate, gloo on CPU), same data, steps, seed and
global batch. Each process gets ``--threads`` torch threads (default 1: on a shared 2-core
machine a 2-thread process loses 4-10x to contention, which would flatter data parallelism);
``--threads 0`` gives the single process all the cores and each rank its share instead.

    python bench/data_parallel.py [--steps 30] [--global-batch 16] [--seq 512] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import scratch_home, table  # noqa: E402
from packing import skewed_chats  # noqa: E402


def run(dataset_id: str, processes: int, args: argparse.Namespace) -> dict:
    from workbench import home
    from workbench.jobfiles.summary import load_summary
    from workbench.jobs.executor import InProcessExecutor
    from workbench.jobs.service import JobService

    threads = args.threads or max(1, (os.cpu_count() or 1) // processes)
    svc = JobService(executor=InProcessExecutor())
    t0 = time.perf_counter()
    job = svc.start("tiny-chat", dataset_id, "lora", overrides=[
        f"training.max_steps={args.steps}", f"training.num_processes={processes}",
        f"training.per_device_train_batch_size={args.global_batch // processes}", f"training.torch_threads={threads}",
        f"training.max_seq_length={args.seq}", "training.eval_split=0", "training.save_steps=100000",
        "training.logging_steps=10", "lora.lora_dropout=0"])
    wall = time.perf_counter() - t0
    assert job["status"] == "completed", job.get("error")
    latest = load_summary(home.job_dir(job["id"]))["latest"]
    runtime = job["result"]["metrics"]["train_runtime"]
    return {"processes": processes, "threads_each": threads, "per_device": args.global_batch // processes,
            "steps": args.steps, "wall_s": round(wall, 2), "train_s": round(runtime, 2),
            "final_loss": round(latest["loss"], 4), "tokens": latest["num_tokens_processed"],
            "tok/s": round(latest["num_tokens_processed"] / runtime, 1),
            "trained_tok/s": round(latest["num_tokens_trained"] / runtime, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process; 0: the cores shared out")
    ap.add_argument("--global-batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--samples", type=int, default=800)
    args = ap.parse_args()
    scratch_home("data-parallel")
    from workbench.datasets import DatasetService

    ds = DatasetService().register(skewed_chats(args.samples), name="skewed", filename="skewed.jsonl")
    rows = [run(ds["id"], 1, args), run(ds["id"], 2, args)]
    print(table(rows, ["processes", "threads_each", "per_device", "steps", "wall_s", "train_s", "final_loss",
                       "tokens", "tok/s", "trained_tok/s"]))
    print(f"\n2 processes / 1 process: {rows[1]['tok/s'] / rows[0]['tok/s']:.2f}x tokens/s, "
          f"{rows[0]['train_s'] / rows[1]['train_s']:.2f}x training speed-up, same tokens: "
          f"{rows[0]['tokens'] == rows[1]['tokens']} ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
