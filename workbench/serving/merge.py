"""A fine-tuned checkpoint as one self-contained model folder, ready to serve or export.

Why: a LoRA job's ``final`` folder holds only the adapter (a few hundred kB); serving it
needs the base model too, and GGUF/Ollama know nothing of adapters. Merging folds the
low-rank update into the base weights once (``W + B·A·scale``), so every later step loads a
plain Hugging Face folder: merged weights (safetensors), tokenizer and chat template.

The folder is built in a temp sibling and renamed into place under a file lock (as tiny-chat
is), so a reader never sees half a model; ``merge.json``, written last, marks a finished merge
and names its sources. torch, transformers and peft are imported only inside the functions:
importing this module must stay cheap for the CLI and the server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..records import now_iso
from ..store import build_folder_once

__all__ = ["MARKER_FILE", "is_merged", "merge_adapter"]

MARKER_FILE = "merge.json"
ADAPTER_CONFIG = "adapter_config.json"

# What a Trainer checkpoint holds besides the model: training state, never part of a deployment.
_TRAINING_STATE = {"optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin",
                   "logging_window.json"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """``out_dir`` holding ``base_dir`` with the LoRA adapter of ``adapter_dir`` merged in.

    When ``adapter_dir`` is a full model (no ``adapter_config.json``, e.g. a full fine-tune),
    its model files are copied instead. The tokenizer comes from ``adapter_dir`` when it has
    one (a job saves the tokenizer it trained with), else from ``base_dir``. Done once: a
    complete merge of the same sources already at ``out_dir`` is returned as it is; anything
    else there raises :class:`~workbench.errors.Conflict` rather than being overwritten.
    """
    base_dir, adapter_dir = Path(base_dir).resolve(), Path(adapter_dir).resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    if not (adapter_dir / ADAPTER_CONFIG).is_file() and not (adapter_dir / "config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} holds neither a LoRA adapter ({ADAPTER_CONFIG}) nor a model "
                                "(config.json)")
    sources = {"base": str(base_dir), "adapter": str(adapter_dir)}

    def build(tmp: Path) -> None:
        if (adapter_dir / ADAPTER_CONFIG).is_file():
            kind = "lora"
            _merge_lora(base_dir, adapter_dir, tmp)
        else:
            kind = "full"
            _copy_model(adapter_dir, tmp)
        _save_tokenizer(adapter_dir if _has_tokenizer(adapter_dir) else base_dir, base_dir, tmp)
        marker = {**sources, "kind": kind, "created_at": now_iso()}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=1))  # last: marks a complete merge

    return build_folder_once(out_dir, build, is_built=lambda d: is_merged(d, **sources),
                             replaceable=_is_empty_dir, what="merge of these sources")


def is_merged(path: Path, *, base: str | None = None, adapter: str | None = None) -> bool:
    """A complete merge at ``path`` (of ``base`` and ``adapter`` when given)."""
    try:
        marker: dict[str, Any] = json.loads((Path(path) / MARKER_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return False
    if not (Path(path) / "config.json").is_file():
        return False
    return all(want is None or marker.get(key) == want for key, want in (("base", base), ("adapter", adapter)))


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _merge_lora(base_dir: Path, adapter_dir: Path, out: Path) -> None:
    """Load in float32 so the merged weights carry the update without bf16/f16 rounding."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir)
    merged = model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)


def _copy_model(src: Path, out: Path) -> None:
    """The model files of a full checkpoint, without its optimizer and RNG state."""
    for item in src.iterdir():
        if item.is_file() and item.name not in _TRAINING_STATE and not item.name.startswith("rng_state"):
            shutil.copy2(item, out / item.name)
    if not any(out.glob("*.safetensors")):
        raise FileNotFoundError(f"{src} has a config.json but no safetensors weights")


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in _TOKENIZER_FILES)


def _save_tokenizer(src: Path, base_dir: Path, out: Path) -> None:
    """The tokenizer of ``src``; the chat template falls back to the base's when ``src`` has none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src)
    if not tokenizer.chat_template and src != base_dir:
        tokenizer.chat_template = AutoTokenizer.from_pretrained(base_dir).chat_template
    tokenizer.save_pretrained(out)
