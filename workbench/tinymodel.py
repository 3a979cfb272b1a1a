"""``tiny-chat``: a small chat model built locally, so the workbench works with no hub access.

Real base models need a download; this machine kind (and CI) has no hub. ``tiny-chat`` is
built from files shipped in the package: a byte-level BPE tokenizer and a ~0.6M-parameter
Llama are trained for about 30 s on ``data/pretrain_corpus.txt`` (everyday English plus
generic ChatML dialogues). That is enough for LoRA fine-tuning on support chats to show a
real loss drop and readable output, while building in about half a minute on one CPU thread.

The folder is an ordinary Hugging Face model folder (``config.json``, safetensors,
``tokenizer.json``, ``chat_template.jinja``) plus ``workbench_model.json`` with the build
metadata, so every loader treats it like any other local model.

Special tokens: ``<|endoftext|>`` (bos, separates pretraining documents), ``<|im_start|>``,
``<|im_end|>`` (eos: ends every turn, so generation stops after the assistant's reply) and
``<|pad|>`` (its own id, so padding masks never hide an eos the model must learn).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any


from . import home
from .records import now_iso
from .store import build_folder_once

NAME = "tiny-chat"
RECIPE_VERSION = 1  # bump when the recipe changes: cached builds with another version are rebuilt
METADATA_FILE = "workbench_model.json"
CACHE_ENV = "WORKBENCH_TINY_CHAT_CACHE"
CORPUS_PATH = Path(__file__).parent / "data" / "pretrain_corpus.txt"

BOS, EOS, PAD = "<|endoftext|>", "<|im_end|>", "<|pad|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [BOS, IM_START, IM_END, PAD]

# ChatML with {% generation %} markers: apply_chat_template(return_assistant_tokens_mask=True)
# then marks exactly each assistant reply and its <|im_end|> — the tokens SFT should train on.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

VOCAB_SIZE = 512
MODEL_SHAPE: dict[str, int] = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
}
PRETRAIN: dict[str, float] = {
    "steps": 300,
    "batch_size": 8,
    "seq_len": 128,
    "lr": 2e-3,
    "min_lr_ratio": 0.1,
    "warmup_steps": 20,
    "weight_decay": 0.01,
    "seed": 1234,
}


# ----------------------------------------------------------------------------- paths, metadata

def default_path() -> Path:
    return home.models_dir() / NAME


def read_metadata(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / METADATA_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def is_built(path: Path) -> bool:
    """A complete build of the current recipe (the metadata file is written last)."""
    meta = read_metadata(path)
    return bool(meta) and meta.get("recipe_version") == RECIPE_VERSION and (path / "config.json").exists()


def approx_parameters() -> int:
    """Parameter count from the recipe, without importing torch (tied embeddings)."""
    h, i, n = MODEL_SHAPE["hidden_size"], MODEL_SHAPE["intermediate_size"], MODEL_SHAPE["num_hidden_layers"]
    kv = h * MODEL_SHAPE["num_key_value_heads"] // MODEL_SHAPE["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return VOCAB_SIZE * h + n * per_layer + h


# ----------------------------------------------------------------------------- the build

def read_corpus(path: Path = CORPUS_PATH) -> list[str]:
    """Documents of the corpus (separated by blank lines)."""
    return [d.strip() for d in path.read_text(encoding="utf-8").split("\n\n") if d.strip()]


def train_tokenizer(docs: list[str]) -> Any:
    """A byte-level BPE tokenizer as a transformers fast tokenizer with the ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    plain = [_strip_special(d) for d in docs]  # learn merges from the words, not the markers
    tok.train_from_iterator(plain, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END], model_max_length=MODEL_SHAPE["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def _strip_special(text: str) -> str:
    for token in SPECIAL_TOKENS:
        text = text.replace(token, "\n")
    return text


def token_stream(tokenizer: Any, docs: list[str]) -> list[int]:
    """All documents as one id stream, each preceded by bos, as causal-LM pretraining expects."""
    ids: list[int] = []
    for doc in docs:
        ids.append(tokenizer.bos_token_id)
        ids.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
    return ids


def new_model(tokenizer: Any) -> Any:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), tie_word_embeddings=True, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **MODEL_SHAPE,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.bos_token_id],  # end of turn, end of text
    )
    return model


def _lr_at(step: int) -> float:
    """Linear warmup, then cosine decay to ``min_lr_ratio`` of the peak."""
    p = PRETRAIN
    if step < p["warmup_steps"]:
        return p["lr"] * (step + 1) / p["warmup_steps"]
    frac = (step - p["warmup_steps"]) / max(1, p["steps"] - p["warmup_steps"])
    return p["lr"] * (p["min_lr_ratio"] + (1 - p["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * frac)))


def pretrain(model: Any, stream: list[int], progress: bool = True) -> list[float]:
    """A plain seeded AdamW loop on random windows of the stream; returns the loss per step."""
    import torch
    from tqdm import tqdm

    p = PRETRAIN
    steps, batch, seq = int(p["steps"]), int(p["batch_size"]), int(p["seq_len"])
    data = torch.tensor(stream, dtype=torch.long)
    gen = torch.Generator().manual_seed(int(p["seed"]))
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"], betas=(0.9, 0.95))
    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc=f"building {NAME}", file=sys.stderr, disable=not progress, mininterval=1.0)
    for step in bar:
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
        x = torch.stack([data[s : s + seq] for s in starts.tolist()])
        for group in opt.param_groups:
            group["lr"] = _lr_at(step)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    return losses


def build_tiny_chat(out: Path, progress: bool = True) -> dict[str, Any]:
    """Build tiny-chat into the empty folder ``out``; returns the metadata written there.

    Runs on one torch thread (restored afterwards) so the build is the same on every machine
    and does not fight other work for the cores.
    """
    import torch
    import transformers

    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(int(PRETRAIN["seed"]))
        docs = read_corpus()
        tokenizer = train_tokenizer(docs)
        stream = token_stream(tokenizer, docs)
        model = new_model(tokenizer)
        losses = pretrain(model, stream, progress)
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {
        "name": NAME, "recipe_version": RECIPE_VERSION, "created_at": now_iso(),
        "parameters": sum(t.numel() for t in model.parameters()),
        "vocab_size": len(tokenizer), "corpus_tokens": len(stream), "corpus_documents": len(docs),
        "pretrain": {**PRETRAIN, "first_loss": round(losses[0], 4),
                     "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)},
        "build_seconds": round(time.perf_counter() - started, 2),
        "model_shape": MODEL_SHAPE, "torch": torch.__version__, "transformers": transformers.__version__,
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=1))
    return meta


# ----------------------------------------------------------------------------- caching

def ensure_tiny_chat(dest: Path | None = None, *, progress: bool = True) -> Path:
    """The tiny-chat folder, built (or copied from ``$WORKBENCH_TINY_CHAT_CACHE``) on first use.

    Safe across processes: a file lock makes one process build while the others wait, and
    the build goes to a temp folder that is renamed into place, so ``dest`` is either absent
    or complete. A cache folder named by the environment variable is itself built on first
    use, so tests and developers share one build across many workbench homes.
    """
    dest = Path(dest).expanduser().resolve() if dest else default_path()

    def build(tmp: Path) -> None:
        cache = _cache_dir()
        if cache is not None and cache != dest:
            _copy_build(ensure_tiny_chat(cache, progress=progress), tmp)
        else:
            if progress:
                print(f"Building {NAME} into {dest} (first use, about 30 s)...", file=sys.stderr)
            build_tiny_chat(tmp, progress)

    return build_folder_once(dest, build, is_built=is_built, replaceable=_replaceable, what=f"{NAME} build")


def _cache_dir() -> Path | None:
    raw = os.environ.get(CACHE_ENV)
    return Path(raw).expanduser().resolve() if raw else None


def _copy_build(src: Path, tmp: Path) -> None:
    for item in src.iterdir():
        if item.is_file():
            shutil.copy2(item, tmp / item.name)


def _replaceable(dest: Path) -> bool:
    """An older tiny-chat build or an empty folder; never a user's own files."""
    if dest.is_symlink() or not dest.is_dir():
        return False
    return read_metadata(dest) is not None or not any(dest.iterdir())
