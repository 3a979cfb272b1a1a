"""``GET /api/training/suggestions``: hyperparameters learned from the caller's finished jobs.

Which jobs teach, best first:

1. finished jobs on the same model and the same dataset (any version of its name) — a sweep's trials
   among them, so after a sweep the suggestion is its best trial's values;
2. else similar ones: the same model family (the name without its size), or a dataset within 2× the
   number of samples;
3. else no history: documented defaults by model size (:data:`DEFAULTS`).

Among the jobs of the first tier that has any, the one with the lowest best eval loss (else the
lowest final train loss) gives its values.
"""

from __future__ import annotations

import re
from typing import Any

from ..records import LOCAL_USER

KEYS = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
        "warmup_ratio", "weight_decay")
LORA_KEYS = ("r", "lora_alpha", "lora_dropout")
# by parameter count: (up to, learning rate, batch size, gradient accumulation, LoRA r) — the common
# LoRA starting points (QLoRA paper, HF PEFT docs): smaller models take larger rates and batches
DEFAULTS = [(1.5e9, 2e-4, 8, 1, 16), (4e9, 2e-4, 4, 2, 16), (9e9, 1e-4, 2, 4, 16), (float("inf"), 1e-4, 1, 8, 16)]
_SIZE = re.compile(r"[-_]?(\d+(\.\d+)?)([bm])\b", re.I)


def family(model: str) -> str:
    """``meta-llama/Llama-3.2-1B`` → ``meta-llama/llama-3.2``: the name without its size."""
    return _SIZE.sub("", model.lower()).rstrip("-_")


def size_of(model: str) -> float | None:
    m = _SIZE.search(model)
    if not m:
        return None
    return float(m.group(1)) * (1e9 if m.group(3).lower() == "b" else 1e6)


def _score(job: dict[str, Any]) -> tuple[float, str] | None:
    from ..jobs.service import JobService

    rows = JobService().rows(job["id"], job["owner"])
    evals = [r["eval_loss"] for r in rows if r.get("eval_loss") is not None]
    if evals:
        return min(evals), "eval_loss"
    train = [r["train_loss"] for r in rows if r.get("train_loss") is not None]
    return (train[-1], "train_loss") if train else None


def suggest(model: str | None, dataset: str | None, owner: str = LOCAL_USER) -> dict[str, Any]:
    from ..datasets import DatasetService
    from ..jobs.service import JobService

    jobs = [j for j in JobService().list(owner) if j["status"] == "completed"]
    datasets = {d["id"]: d for d in DatasetService().list(owner)}
    want = datasets.get(dataset or "")
    tiers: list[tuple[str, list[dict[str, Any]]]] = []
    if model and want:
        tiers.append(("the same model and dataset", [
            j for j in jobs if j["model"] == model and datasets.get(j["dataset_id"], {}).get("name") == want["name"]]))
    if model:
        near = [j for j in jobs if family(j["model"]) == family(model) or (
            want and j["dataset_id"] in datasets and
            0.5 <= datasets[j["dataset_id"]]["samples"] / max(want["samples"], 1) <= 2)]
        tiers.append(("a similar model (family) or a dataset of similar size", near))
    for label, pool in tiers:
        scored = [(s, j) for j in pool if (s := _score(j)) is not None]
        if not scored:
            continue
        (value, metric), best = min(scored, key=lambda p: p[0][0])
        cfg = best["config"]
        fragment: dict[str, Any] = {"training": {k: cfg["training"][k] for k in KEYS if k in cfg["training"]}}
        if cfg.get("lora"):
            fragment["lora"] = {k: cfg["lora"][k] for k in LORA_KEYS if k in cfg["lora"]}
        where = f" (trial of sweep {best['sweep_id']})" if best.get("sweep_id") else ""
        return {"suggestion": fragment, "source": "sweep" if best.get("sweep_id") else "history",
                "reasons": [f"{len(scored)} finished job(s) on {label}; {best['id']}{where} had the lowest "
                            f"{metric} ({value:.4f}), so its values are proposed"],
                "learned_from": [j["id"] for _, j in sorted(scored, key=lambda p: p[0][0])],
                "best_job": {"job_id": best["id"], metric: value}}
    size = size_of(model or "") or 1e9
    _, lr, batch, accum, r = next(d for d in DEFAULTS if size <= d[0])
    return {"suggestion": {"training": {"learning_rate": lr, "per_device_train_batch_size": batch,
                                        "gradient_accumulation_steps": accum}, "lora": {"r": r, "lora_alpha": 2 * r}},
            "source": "defaults", "learned_from": [],
            "reasons": [f"no finished jobs to learn from; defaults for a model of about {size / 1e9:.1f}B parameters"
                        + ("" if size_of(model or "") else " (size unknown: 1B assumed)")]}
