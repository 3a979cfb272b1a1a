"""Workbench job vs a bare Hugging Face Trainer script: trained tokens per second.

The workbench side is a real job: papermill notebook, detached runner, metrics callback,
control polling, checkpoint retention. The baseline is a plain ``Trainer`` script with the
same model, tokenised data, config, seed and threads, run in its own process. Both count
trained (label) tokens over the same batches and divide by the Trainer's ``train_runtime``.
Goal: ratio ≥ 0.95 on a job of at least 2 minutes.

    python bench/training_overhead.py [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import scratch_home, table  # noqa: E402

OVERRIDES = ["training.eval_split=0", "training.save_steps=100000", "training.logging_steps=10",
             "training.torch_threads=1", "training.per_device_train_batch_size=8", "training.learning_rate=2e-3"]

BARE = r'''
import json, sys, time, torch
from pathlib import Path
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
from workbench.datasets import load_chats
from workbench.chat_encoding import IGNORE, encode_all
from workbench.training.data import Collator

spec = json.loads(Path(sys.argv[1]).read_text()); out = sys.argv[2]; model_dir = sys.argv[3]
t, lc = spec["config"]["training"], spec["config"]["lora"]
torch.set_num_threads(t["torch_threads"])
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
model = get_peft_model(model, LoraConfig(r=lc["r"], lora_alpha=lc["lora_alpha"], lora_dropout=lc["lora_dropout"],
                                         target_modules=lc["target_modules"], task_type="CAUSAL_LM"))
train = encode_all(tok, load_chats(spec["dataset"]["path"]), t["max_seq_length"])
collate = Collator(tok.pad_token_id)
per_batch = []  # the dataloader prefetches one batch past the last step: count only the trained ones
def counting(batch):
    b = collate(batch); per_batch.append(int((b["labels"][:, 1:] != IGNORE).sum())); return b
args = TrainingArguments(output_dir=out, max_steps=t["max_steps"], per_device_train_batch_size=t["per_device_train_batch_size"],
    learning_rate=t["learning_rate"], lr_scheduler_type=t["lr_scheduler_type"], logging_steps=t["logging_steps"],
    save_strategy="no", seed=t["seed"], data_seed=t["seed"], use_cpu=True, report_to="none",
    remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0)
res = Trainer(model=model, args=args, train_dataset=train, data_collator=counting).train()
print(json.dumps({"train_runtime": res.metrics["train_runtime"], "trained": sum(per_batch[:t["max_steps"]])}))
'''


def workbench_job(dataset_id: str, steps: int) -> tuple[dict, dict]:
    from workbench import home
    from workbench.jobfiles.summary import load_summary
    from workbench.jobs.service import JobService

    svc = JobService()
    t0 = time.perf_counter()
    job = svc.start("tiny-chat", dataset_id, "lora", overrides=OVERRIDES + [f"training.max_steps={steps}"])
    while (job := svc.get(job["id"]))["status"] not in ("completed", "failed", "cancelled"):
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    assert job["status"] == "completed", job.get("error")
    jd = home.job_dir(job["id"])
    runtime = job["result"]["metrics"]["train_runtime"]
    trained = load_summary(jd)["latest"]["num_tokens_trained"]
    spec = json.loads((jd / "job.json").read_text())
    return spec, {"run": "workbench job (papermill)", "wall_s": round(wall, 1), "train_s": round(runtime, 1),
                  "trained_tok": trained, "trained_tok/s": round(trained / runtime, 1)}


def bare(spec: dict, model_dir: Path, work: Path) -> dict:
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", BARE, str(spec_path), str(work / "bare-out"), str(model_dir)],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"run": "bare HF Trainer script", "wall_s": round(wall, 1), "train_s": round(res["train_runtime"], 1),
            "trained_tok": res["trained"], "trained_tok/s": round(res["trained"] / res["train_runtime"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args()
    home = scratch_home("overhead")
    from workbench.datasets import DatasetService
    from workbench.tinymodel import default_path

    ds = DatasetService().register_sample()
    spec, ours = workbench_job(ds["id"], args.steps)
    base = bare(spec, default_path(), home)
    print(table([base, ours], ["run", "wall_s", "train_s", "trained_tok", "trained_tok/s"]))
    assert base["trained_tok"] == ours["trained_tok"], "the two runs did not train on the same batches"
    print(f"\nworkbench / bare trained tokens/s: {ours['trained_tok/s'] / base['trained_tok/s']:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
