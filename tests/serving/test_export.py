"""Model export for deployments: a LoRA adapter merged into its base, the merge written as GGUF.

A deployment serves what these produce, so each step is checked against the model it came from:

* ``merge_adapter`` gives the same logits as base + adapter (``PeftModel``), and not the base's;
  it runs once per output folder, copies a full model as it is, and never overwrites other files;
* ``export_gguf`` writes a file that transformers' own GGUF loader reads back to the same model
  (logits within the precision of ``f16`` / ``q8_0``) and the same tokenizer (ids, specials,
  chat template), laid out as llama.cpp expects (names, tensor types, metadata);
* ``write_modelfile`` gives Ollama the file, a ChatML template and the stop token;
* importing either module, and exporting, pull in no torch.

Everything runs on tiny-chat (~361k parameters) on one torch thread: a few seconds in all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
gguf = pytest.importorskip("gguf")

from workbench.errors import Conflict
from workbench.serving.gguf_export import export_gguf, write_modelfile
from workbench.serving.merge import MARKER_FILE, merge_adapter

# Tolerances, as the largest |logit difference| over every position and vocab entry of the fixed
# prompt (CHAT rendered by its template; tiny-chat's logits there reach about 11 in magnitude):
#
# merged vs base+adapter: the same float32 weights, summed in another order (W·x + B·A·x·s vs
# (W + B·A·s)·x); measured 7e-6. A merge that lost the adapter is off by about 4.
MERGE_ATOL = 1e-4
# f16: each weight rounded to 11 significant bits (relative error <= 2^-11 = 4.9e-4); through two
# layers that moved the logits by 3.8e-3 (mean 6e-4). 5x headroom, still far below what a real
# mistake costs: a missing Q/K permutation is off by ~3, a lost adapter by ~4.
F16_ATOL = 2e-2
# q8_0: each block of 32 weights is int8 times one scale (absmax/127), so a weight is off by up to
# 1/254 of its block's largest value, about 8x f16's error and more for small weights; measured
# 0.096 (mean 0.013). 3x headroom, still >10x under the adapter's effect.
Q8_ATOL = 0.3
OUT_ATOL = {"f16": F16_ATOL, "q8_0": Q8_ATOL}

CHAT = [
    {"role": "system", "content": "You are a helpful support agent."},
    {"role": "user", "content": "Where is my order #1234?  It's late — ünïcode, 😀, tabs\tand\nnewlines."},
    {"role": "assistant", "content": "It ships tomorrow. Sorry for the wait!"},
]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(folder: Path, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs).eval()


def logits(model: Any, ids: Any) -> Any:
    with torch.no_grad():
        return model(input_ids=ids).logits


def max_diff(a: Any, b: Any) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def adapter_dir(tiny_chat_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on every projection, its B matrices perturbed (peft starts them at zero)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load(tiny_chat_dir), LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    out = tmp_path_factory.mktemp("adapter") / "final"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def merged_dir(tiny_chat_dir: Path, adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return merge_adapter(tiny_chat_dir, adapter_dir, tmp_path_factory.mktemp("merged") / "model")


@pytest.fixture(scope="module")
def tokenizer(merged_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(merged_dir)


@pytest.fixture(scope="module")
def prompt_ids(tokenizer: Any) -> Any:
    """The chat rendered by its template and encoded by the original tokenizer: the fixed prompt."""
    return torch.tensor([tokenizer(tokenizer.apply_chat_template(CHAT, tokenize=False))["input_ids"]])


@pytest.fixture(scope="module")
def merged_logits(merged_dir: Path, prompt_ids: Any) -> Any:
    return logits(load(merged_dir), prompt_ids)


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gguf")


@pytest.fixture(scope="module", params=["f16", "q8_0"])
def exported(request: pytest.FixtureRequest, merged_dir: Path, gguf_dir: Path) -> tuple[str, Path]:
    outtype = request.param
    return outtype, export_gguf(merged_dir, gguf_dir / f"tiny-{outtype}.gguf", outtype=outtype)


# ----------------------------------------------------------------------------- merge

def test_merged_model_gives_base_plus_adapter_logits(tiny_chat_dir: Path, adapter_dir: Path, merged_dir: Path,
                                                     prompt_ids: Any, merged_logits: Any) -> None:
    from peft import PeftModel

    with_adapter = logits(PeftModel.from_pretrained(load(tiny_chat_dir), adapter_dir).eval(), prompt_ids)
    base = logits(load(tiny_chat_dir), prompt_ids)

    assert max_diff(merged_logits, with_adapter) < MERGE_ATOL
    # The adapter must matter, by far more than any tolerance here, or the checks below prove nothing.
    assert max_diff(merged_logits, base) > 10 * Q8_ATOL
    assert "lora" not in json.dumps(json.loads((merged_dir / "config.json").read_text())).lower()
    assert not (merged_dir / "adapter_config.json").exists()


def test_merged_folder_holds_safetensors_tokenizer_and_chat_template(tiny_chat_dir: Path, merged_dir: Path,
                                                                     tokenizer: Any) -> None:
    from transformers import AutoTokenizer

    assert (merged_dir / "model.safetensors").is_file()
    assert not list(merged_dir.glob("*.bin"))
    marker = json.loads((merged_dir / MARKER_FILE).read_text())
    assert marker["kind"] == "lora" and marker["base"] == str(tiny_chat_dir.resolve())
    original = AutoTokenizer.from_pretrained(tiny_chat_dir)
    assert tokenizer.chat_template == original.chat_template
    assert tokenizer.apply_chat_template(CHAT, tokenize=True) == original.apply_chat_template(CHAT, tokenize=True)
    # Atomic build: no temp folder left next to the result.
    assert [p.name for p in merged_dir.parent.iterdir() if p.name.startswith(".model.build")] == []


def test_merging_again_returns_the_finished_folder_untouched(tiny_chat_dir: Path, adapter_dir: Path,
                                                             merged_dir: Path) -> None:
    weights = merged_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert merge_adapter(tiny_chat_dir, adapter_dir, merged_dir) == merged_dir
    assert weights.stat().st_mtime_ns == before


def test_merge_never_overwrites_other_files(tiny_chat_dir: Path, adapter_dir: Path, merged_dir: Path,
                                            tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(Conflict):
        merge_adapter(tiny_chat_dir, adapter_dir, mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    # A finished merge of other sources is not silently handed back for these either.
    with pytest.raises(Conflict):
        merge_adapter(tiny_chat_dir, tiny_chat_dir, merged_dir)


def test_a_full_model_is_copied_without_its_training_state(tiny_chat_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint-10"
    checkpoint.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (checkpoint / name).write_bytes((tiny_chat_dir / name).read_bytes())
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"):
        (checkpoint / name).write_bytes(b"training state")

    out = merge_adapter(tiny_chat_dir, checkpoint, tmp_path / "out")

    assert (out / "model.safetensors").read_bytes() == (tiny_chat_dir / "model.safetensors").read_bytes()
    assert json.loads((out / MARKER_FILE).read_text())["kind"] == "full"
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()  # from the base
    assert not {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
                "training_args.bin"} & {p.name for p in out.iterdir()}


# ----------------------------------------------------------------------------- GGUF

def test_gguf_loads_back_to_the_merged_model(exported: tuple[str, Path], prompt_ids: Any,
                                             merged_logits: Any) -> None:
    outtype, path = exported
    model = load(path.parent, gguf_file=path.name)

    assert type(model).__name__ == "LlamaForCausalLM" and model.config.tie_word_embeddings
    assert max_diff(logits(model, prompt_ids), merged_logits) < OUT_ATOL[outtype]


def test_gguf_tokenizer_encodes_like_the_original(exported: tuple[str, Path], tokenizer: Any) -> None:
    from transformers import AutoTokenizer

    _, path = exported
    loaded = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    text = tokenizer.apply_chat_template(CHAT, tokenize=False)

    ids = tokenizer(text)["input_ids"]
    assert loaded(text)["input_ids"] == ids
    assert loaded.decode(ids) == tokenizer.decode(ids) == text
    assert loaded.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True) == \
        tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(loaded, attr) == getattr(tokenizer, attr), attr


def test_gguf_is_laid_out_as_llama_cpp_expects(exported: tuple[str, Path], merged_dir: Path) -> None:
    outtype, path = exported
    reader = gguf.GGUFReader(path)
    meta = {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}
    config = json.loads((merged_dir / "config.json").read_text())

    assert meta["general.architecture"] == "llama"
    assert {key: meta[f"llama.{key}"] for key in (
        "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
        "attention.head_count_kv", "vocab_size", "rope.dimension_count")} == {
        "context_length": config["max_position_embeddings"], "embedding_length": config["hidden_size"],
        "block_count": config["num_hidden_layers"], "feed_forward_length": config["intermediate_size"],
        "attention.head_count": config["num_attention_heads"],
        "attention.head_count_kv": config["num_key_value_heads"], "vocab_size": config["vocab_size"],
        "rope.dimension_count": config["hidden_size"] // config["num_attention_heads"]}
    assert meta["llama.rope.freq_base"] == pytest.approx(config["rope_parameters"]["rope_theta"])
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(config["rms_norm_eps"])
    want_file_type = gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    assert meta["general.file_type"] == want_file_type

    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert len(meta["tokenizer.ggml.tokens"]) == len(meta["tokenizer.ggml.token_type"]) == config["vocab_size"]
    assert meta["tokenizer.ggml.tokens"][:4] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    assert meta["tokenizer.ggml.token_type"][:5] == [3, 3, 3, 3, 1]  # specials are CONTROL, the rest NORMAL
    assert meta["tokenizer.ggml.merges"][0].count(" ") == 1
    # transformers' {% generation %} training markers are neutralised (other Jinja engines reject them).
    template = meta["tokenizer.chat_template"]
    assert "<|im_start|>" in template and not re.search(r"\{%-?\s*(end)?generation", template)

    types = {t.name: t.tensor_type for t in reader.tensors}
    layers = config["num_hidden_layers"]
    per_block = ["attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                 "ffn_down"]
    assert set(types) == {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(layers) for n in per_block}  # tied: no output.weight
    matrix = gguf.GGMLQuantizationType.F16 if outtype == "f16" else gguf.GGMLQuantizationType.Q8_0
    for name, tensor_type in types.items():
        is_norm = name.endswith("norm.weight")
        assert tensor_type == (gguf.GGMLQuantizationType.F32 if is_norm else matrix), name
    assert not list(path.parent.glob(f".{path.name}.tmp-*"))


def test_gguf_size_matches_its_encoding(exported: tuple[str, Path], merged_dir: Path) -> None:
    outtype, path = exported
    weights_bytes = (merged_dir / "model.safetensors").stat().st_size  # float32
    ratio = path.stat().st_size / weights_bytes
    # f16 halves float32; q8_0 is 34 bytes per 32 weights (~0.27x); the tokenizer adds a little.
    low, high = (0.45, 0.55) if outtype == "f16" else (0.24, 0.32)
    assert low < ratio < high, ratio


def test_untied_output_head_is_exported_as_output(tiny_chat_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_chat_dir)
    config.tie_word_embeddings = False
    untied = AutoModelForCausalLM.from_config(config)
    untied.load_state_dict(load(tiny_chat_dir).state_dict(), strict=False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        untied.lm_head.weight.copy_(untied.model.embed_tokens.weight + 0.05 * torch.randn(
            untied.lm_head.weight.shape, generator=gen))
    folder = tmp_path / "untied"
    untied.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (folder / name).write_bytes((tiny_chat_dir / name).read_bytes())

    path = export_gguf(folder, tmp_path / "untied.gguf", outtype="f16")

    assert "output.weight" in {t.name for t in gguf.GGUFReader(path).tensors}
    loaded = load(path.parent, gguf_file=path.name)
    assert not loaded.config.tie_word_embeddings
    ids = torch.tensor([[1, 40, 41, 42, 2]])
    untied.eval()
    assert max_diff(logits(loaded, ids), logits(untied, ids)) < F16_ATOL


def test_a_tied_head_saved_anyway_is_left_out(merged_dir: Path, tmp_path: Path) -> None:
    """Some checkpoints store lm_head.weight although it is tied; an output tensor would untie it on load."""
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "tied-with-head"
    folder.mkdir()
    for item in merged_dir.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    weights = load_file(folder / "model.safetensors")
    save_file({**weights, "lm_head.weight": weights["model.embed_tokens.weight"]}, folder / "model.safetensors")

    path = export_gguf(folder, tmp_path / "tied.gguf", outtype="f16")

    assert "output.weight" not in {t.name for t in gguf.GGUFReader(path).tensors}


def test_export_refuses_what_the_mapping_does_not_cover(merged_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "other"
    folder.mkdir()
    for item in merged_dir.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    with pytest.raises(ValueError, match="Llama"):
        export_gguf(folder, tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="outtype"):
        export_gguf(merged_dir, tmp_path / "x.gguf", outtype="q4_0")  # type: ignore[arg-type]
    assert not (tmp_path / "x.gguf").exists()


# ----------------------------------------------------------------------------- Ollama

def test_modelfile_names_the_file_the_template_and_the_stop_token(merged_dir: Path, tmp_path: Path) -> None:
    path = export_gguf(merged_dir, tmp_path / "support-bot.gguf", outtype="q8_0")

    modelfile = write_modelfile(path, system="Answer briefly.")  # template read from the GGUF

    assert modelfile == tmp_path / "Modelfile"
    text = modelfile.read_text()
    lines = text.splitlines()
    assert lines[0] == "FROM ./support-bot.gguf"
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert 'SYSTEM """Answer briefly."""' in lines
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert "{{ range .Messages }}" in template.replace("{{- range", "{{ range")
    assert "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n" in template
    assert template.count("{{") == template.count("}}")


def test_modelfile_refuses_a_chat_format_it_has_no_template_for(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="ChatML"):
        write_modelfile(path, chat_template_hint="{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}")
    assert not (tmp_path / "Modelfile").exists()


# ----------------------------------------------------------------------------- import cost

def test_the_export_modules_and_a_gguf_export_need_no_torch(merged_dir: Path, tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "import workbench.serving.merge, workbench.serving.gguf_export as g\n"
        "after_import = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        f"g.export_gguf(Path({str(merged_dir)!r}), Path({str(tmp_path / 'n.gguf')!r}), outtype='q8_0')\n"
        "after_export = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "print(json.dumps([after_import, after_export]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[], []]
    assert (tmp_path / "n.gguf").stat().st_size > 0
