"""tiny-chat: a local chat model built from bundled text, usable like any Hugging Face model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from workbench import tinymodel
from workbench.tinymodel import CACHE_ENV, ensure_tiny_chat

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi! How can I help you today?"},
    {"role": "user", "content": "What is 2 plus 3?"},
    {"role": "assistant", "content": "2 plus 3 is 5."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_chat_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_chat_dir)


@pytest.fixture(scope="module")
def model(tiny_chat_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_chat_dir).eval()


def test_build_is_a_hugging_face_model_folder_with_build_metadata(tiny_chat_dir: Path) -> None:
    for name in ["config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja",
                 "generation_config.json", "workbench_model.json"]:
        assert (tiny_chat_dir / name).is_file(), name
    meta = json.loads((tiny_chat_dir / "workbench_model.json").read_text())
    assert meta["recipe_version"] == tinymodel.RECIPE_VERSION
    assert meta["parameters"] == tinymodel.approx_parameters()
    assert meta["pretrain"]["steps"] == 300
    assert meta["pretrain"]["final_loss"] < meta["pretrain"]["first_loss"] / 2
    assert meta["build_seconds"] > 0
    assert tinymodel.is_built(tiny_chat_dir)


def test_tokenizer_has_chatml_special_tokens(tokenizer) -> None:
    assert len(tokenizer) == tinymodel.VOCAB_SIZE
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>", "<|im_end|>", "<|pad|>")
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    for marker in ["<|im_start|>", "<|im_end|>"]:
        assert len(tokenizer(marker, add_special_tokens=False)["input_ids"]) == 1
    text = "The weather was warm and sunny."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_chat_template_renders_chatml_and_generation_prompt(tokenizer) -> None:
    text = tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.apply_chat_template(CHAT[:2], tokenize=False).endswith("Hello!<|im_end|>\n")


def test_assistant_mask_covers_exactly_the_assistant_replies_and_their_im_end(tokenizer) -> None:
    enc = tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    assert len(ids) == len(mask)
    expected: list[int] = []
    for m in CHAT:
        if m["role"] == "assistant":
            expected += tokenizer(m["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert [i for i, keep in zip(ids, mask) if keep] == expected
    spans = sum(1 for a, b in zip([0] + mask, mask) if b and not a)
    assert spans == 2  # one contiguous span per assistant turn
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    assert ids[mask.index(1) - 1] == newline  # the "assistant\n" header is prompt, not target


def test_pretraining_taught_the_model_the_corpus(tokenizer, model) -> None:
    docs = tinymodel.read_corpus()[:40]
    ids = torch.tensor([tinymodel.token_stream(tokenizer, docs)[:512]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < math.log(len(tokenizer)) / 2, f"loss {loss:.2f} is not well below ln(vocab)"


def test_greedy_generation_produces_readable_text(tokenizer, model) -> None:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is a river?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=40, do_sample=False)
    reply = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    words = reply.split()
    assert len(words) >= 3
    assert sum(w.strip(".,!?:").isalpha() for w in words) >= len(words) * 0.7, reply


def test_a_cache_folder_is_copied_into_each_home_instead_of_rebuilt(
        tiny_chat_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(CACHE_ENV, str(tiny_chat_dir))
    started = time.perf_counter()
    path = ensure_tiny_chat()
    assert time.perf_counter() - started < 5
    assert path == tmp_path / "home" / "models" / "tiny-chat"
    assert tinymodel.read_metadata(path) == tinymodel.read_metadata(tiny_chat_dir)
    assert ensure_tiny_chat() == path  # second call: already there


def test_processes_racing_to_install_it_all_get_one_complete_folder(
        tiny_chat_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(CACHE_ENV, str(tiny_chat_dir))
    code = "from workbench.tinymodel import ensure_tiny_chat; print(ensure_tiny_chat())"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(3)]
    paths = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    models = tmp_path / "home" / "models"
    assert paths == {str(models / "tiny-chat")}
    assert tinymodel.is_built(models / "tiny-chat")
    assert not [p for p in models.iterdir() if ".build-" in p.name], "no temp build folders left"


def test_a_build_of_another_recipe_version_is_not_reused(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-chat"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "workbench_model.json").write_text(json.dumps({"recipe_version": tinymodel.RECIPE_VERSION - 1}))
    assert not tinymodel.is_built(folder)


def test_a_foreign_folder_in_the_way_is_not_overwritten(
        tiny_chat_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tiny_chat_dir))
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    from workbench.errors import Conflict

    with pytest.raises(Conflict):
        ensure_tiny_chat(dest)
    assert (dest / "notes.txt").read_text() == "keep me"
