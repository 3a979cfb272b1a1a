"""Validation of a trained checkpoint on a test dataset: perplexity, accuracy and BLEU.

The model is named the way the checkpoints listing names it: ``checkpoint-40``, ``final``
or ``latest`` together with a job id, or ``JOB_ID/checkpoint-40`` on its own; ``base``
evaluates the job's untrained base model, the baseline a fine-tune should beat. Names
resolve inside the job's ``output/`` folder only.

Metrics, all over the *assistant* tokens of each sample — the labels of
:func:`workbench.training.data.encode_chat`, so exactly the tokens training put loss on:

* ``perplexity`` — ``exp(mean NLL)`` per label token, teacher-forced;
* ``accuracy`` — the fraction of label tokens that are the model's top-1 next-token guess;
* ``bleu`` — sacrebleu corpus BLEU (0..1, i.e. the usual score / 100) between greedy answers,
  generated from the messages before the last assistant turn, and that last assistant turn.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..jobfiles import job_folder
from ..jobfiles.summary import perplexity
from ..records import LOCAL_USER

METRICS = ("perplexity", "accuracy", "bleu")
DEFAULT_METRICS = list(METRICS)
DEFAULT_MAX_LEN = 2048
LOGITS_BUDGET = 1 << 26  # logits elements per teacher-forced batch (256 MB of float32)


# --- resolving what to evaluate -------------------------------------------------------------

def _check_metrics(metrics: Sequence[str] | None) -> list[str]:
    if metrics is None:
        return list(DEFAULT_METRICS)
    if isinstance(metrics, str) or not metrics:
        raise InvalidInput(f"metrics_to_compute must be a non-empty list of: {', '.join(METRICS)}",
                           field="metrics_to_compute")
    out: list[str] = []
    for name in metrics:
        key = str(name).strip().lower()
        if key not in METRICS:
            raise InvalidInput(f"unknown metric '{name}' (choose from {', '.join(METRICS)})",
                               field="metrics_to_compute")
        if key not in out:
            out.append(key)
    return out


def split_model_path(job_id: str | None, model_path: str) -> tuple[str, str]:
    """``(job_id, checkpoint name)`` from the two ways of naming a checkpoint."""
    ref = (model_path or "").strip()
    if job_id:
        if "/" in ref and ref.split("/", 1)[0] == job_id:  # "JOB/checkpoint-N" with the job given too
            ref = ref.split("/", 1)[1]
        return job_id, ref
    parts = ref.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1] or ref.startswith("/"):
        raise InvalidInput("model_path must be 'JOB_ID/CHECKPOINT' (e.g. 'job-3f9a1c2b7d/checkpoint-40'), "
                           "or a checkpoint name together with job_id", field="model_path")
    return parts[0], parts[1]


def resolve_model(job_id: str | None, model_path: str, owner: str = LOCAL_USER) -> dict[str, Any]:
    """The job, its spec and the checkpoint folder (None for ``base``) that ``model_path`` names."""
    import json

    from ..jobfiles.checkpoints import find_checkpoint
    from ..jobs.service import JobService

    job_id, ref = split_model_path(job_id, model_path)
    jd = JobService().job_dir(job_id, owner)  # NotFound for an unknown job or another owner's
    spec = json.loads(job_folder(jd).spec.read_text())
    if ref == "base":
        return {"job_id": job_id, "spec": spec, "checkpoint": None, "name": "base"}
    try:
        folder = find_checkpoint(jd, ref)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="model_path") from None
    return {"job_id": job_id, "spec": spec, "checkpoint": folder, "name": folder.name}


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()


def load_for_eval(resolved: dict[str, Any]) -> tuple[Any, Any]:
    """``(model, tokenizer)``: base + LoRA adapter (merged), a full fine-tune, or the base model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models import ensure_chat_ready, load_model, load_tokenizer

    spec, folder = resolved["spec"], resolved["checkpoint"]
    base, model_owner = spec["model"], spec.get("owner", LOCAL_USER)
    if folder is None:
        model = load_model(base, owner=model_owner)
    elif (folder / "adapter_config.json").is_file():
        import warnings

        from peft import PeftModel

        base_model = load_model(base, owner=model_owner)
        with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(base_model, str(folder))
            model = model.merge_and_unload()  # plain weights: faster inference
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder))
    if folder is not None and _has_tokenizer(folder):
        tokenizer = ensure_chat_ready(AutoTokenizer.from_pretrained(str(folder)))
    else:
        tokenizer = load_tokenizer(base, owner=model_owner)
    import torch

    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model, tokenizer


# --- the metrics ---------------------------------------------------------------------------

def _batches(lengths: list[int], max_batch: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped by similar length (little padding), each batch within a token budget."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = lengths[i]  # sorted ascending: the newest is the longest
        if cur and (len(cur) >= max_batch or (len(cur) + 1) * width > max_tokens):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def teacher_forced(model: Any, examples: list[dict[str, list[int]]], pad_id: int, batch_size: int = 8) -> dict[str, float]:
    """Summed NLL, correct top-1 guesses and the count of label tokens (right-padded batches)."""
    import torch
    import torch.nn.functional as F

    from ..chat_encoding import IGNORE

    device = next(model.parameters()).device
    vocab = int(getattr(model.config, "vocab_size", 0) or model.get_output_embeddings().weight.shape[0])
    nll, correct, count = 0.0, 0, 0
    lengths = [len(e["input_ids"]) for e in examples]
    for batch in _batches(lengths, batch_size, max(LOGITS_BUDGET // max(vocab, 1), max(lengths, default=1))):
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            n = lengths[i]
            ids[row, :n] = torch.tensor(examples[i]["input_ids"])
            labels[row, :n] = torch.tensor(examples[i]["labels"])
            attn[row, :n] = 1
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits[:, :-1].float()
        target = labels[:, 1:].to(device)
        mask = target != IGNORE
        picked = logits[mask]
        gold = target[mask]
        nll += float(F.cross_entropy(picked, gold, reduction="sum"))
        correct += int((picked.argmax(-1) == gold).sum())
        count += int(mask.sum())
    return {"nll": nll, "correct": correct, "tokens": count}


def generate_answers(model: Any, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int,
                     batch_size: int = 8) -> list[str]:
    """Greedy answers for chat-template prompts, left-padded batches."""
    import torch
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                           pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id)
    answers: list[str] = [""] * len(prompts)
    lengths = [len(p) for p in prompts]
    for batch in _batches(lengths, batch_size, 1 << 62):
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            n = lengths[i]
            ids[row, width - n:] = torch.tensor(prompts[i])
            attn[row, width - n:] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=attn.to(device), generation_config=gen)
        for row, i in enumerate(batch):
            answers[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    return answers


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU on a 0..1 scale."""
    import sacrebleu

    return sacrebleu.corpus_bleu(hypotheses, [references]).score / 100.0


def _prompt_ids(tokenizer: Any, messages: list[dict[str, str]], keep: int) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=True)
    ids = list(ids["input_ids"])
    return ids[-keep:] if len(ids) > keep else ids


# --- the entry point ---------------------------------------------------------------------

def validate(job_id: str | None, model_path: str, test_dataset_id: str,
             metrics: Sequence[str] | None = None, owner: str = LOCAL_USER, max_samples: int = 200,
             max_new_tokens: int = 64, batch_size: int = 8) -> dict[str, Any]:
    """Evaluate a job's checkpoint on ``test_dataset_id``; the response of ``POST /validate``.

    Uses the first ``max_samples`` samples that have an assistant reply. Raises InvalidInput
    (bad ``model_path``/metric/limits), NotFound (unknown job, checkpoint or dataset).
    """
    import torch

    from ..chat_encoding import encode_chat
    from ..datasets import DatasetService, iter_chats

    wanted = _check_metrics(metrics)
    if not isinstance(max_samples, int) or max_samples < 1:
        raise InvalidInput("max_samples must be a positive integer", field="max_samples")
    if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= 4096:
        raise InvalidInput("max_new_tokens must be between 1 and 4096", field="max_new_tokens")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput("batch_size must be a positive integer", field="batch_size")
    resolved = resolve_model(job_id, model_path, owner)
    data = DatasetService().path(test_dataset_id, owner)
    chats = list(islice((c for c in iter_chats(data) if any(m["role"] == "assistant" for m in c)), max_samples))
    if not chats:
        raise InvalidInput(f"dataset '{test_dataset_id}' has no sample with an assistant reply to score",
                           field="test_dataset_id")

    started = time.perf_counter()
    model, tokenizer = load_for_eval(resolved)
    max_pos = getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_LEN
    max_len = min(resolved["spec"].get("config", {}).get("training", {}).get("max_seq_length", DEFAULT_MAX_LEN),
                  max_pos)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    results: dict[str, float] = {}
    label_tokens = None
    shown: list[dict[str, str]] = []
    with torch.inference_mode():
        if "perplexity" in wanted or "accuracy" in wanted:
            examples = [ex for c in chats if (ex := encode_chat(tokenizer, c, max_len)) is not None]
            tf = teacher_forced(model, examples, pad_id, batch_size)
            if not tf["tokens"]:
                raise InvalidInput("no label tokens to score within max_seq_length", field="test_dataset_id")
            label_tokens = tf["tokens"]
            if "perplexity" in wanted:
                results["perplexity"] = perplexity(tf["nll"] / tf["tokens"])
            if "accuracy" in wanted:
                results["accuracy"] = round(tf["correct"] / tf["tokens"], 4)
        if "bleu" in wanted:
            keep = max(1, max_pos - max_new_tokens)
            prompts, refs = [], []
            for c in chats:
                last = max(i for i, m in enumerate(c) if m["role"] == "assistant")
                prompts.append(_prompt_ids(tokenizer, c[:last], keep))
                refs.append(c[last]["content"].strip())
            hyps = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size)
            results["bleu"] = round(bleu(hyps, refs), 4)
            shown = [{"prompt": next((m["content"] for m in reversed(c) if m["role"] == "user"), ""),
                      "reference": r, "generated": h} for c, r, h in zip(chats, refs, hyps)][:3]
    ordered = {k: results[k] for k in wanted}
    return {
        "job_id": f"val-{uuid.uuid4()}",
        "status": "completed",
        "metrics": ordered,
        "message": f"Validation completed successfully with {len(ordered)} metric{'s' if len(ordered) != 1 else ''}",
        "model_path": f"{resolved['job_id']}/{resolved['name']}",
        "test_dataset_id": test_dataset_id,
        "samples": len(chats),
        "label_tokens": label_tokens,
        "examples": shown,
        "duration_seconds": round(time.perf_counter() - started, 3),
    }
