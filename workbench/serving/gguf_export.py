"""A merged Llama-architecture model folder written as one GGUF file, plus an Ollama Modelfile.

Why: llama.cpp, Ollama and LM Studio run GGUF files, not Hugging Face folders. llama.cpp's
converter (``convert_hf_to_gguf.py``) is not on PyPI; the ``gguf`` package is (the writer and
numpy quantizers), so the Llama mapping is done here with :class:`gguf.GGUFWriter`:

* metadata under llama.cpp's ``llama.*`` keys (what its loader and transformers' GGUF loader read);
* tensors renamed to llama.cpp's names (``token_embd``, ``blk.N.attn_q``...); no ``output`` tensor
  when the embeddings are tied, which is how both loaders recognise tied embeddings;
* Q and K rows permuted per head the way llama.cpp's converter does: HF's rotary embedding
  rotates the two halves of each head, llama.cpp rotates adjacent pairs. transformers' GGUF
  loader undoes the permutation, so the round trip gives back the HF weights;
* the byte-level BPE tokenizer as ``tokenizer.ggml.model = "gpt2"``: tokens, types, merges,
  special ids and the chat template.

Only numpy, ``gguf`` and ``tokenizers`` are used (imported inside the functions): weights are
read straight from the safetensors files, so exporting needs no torch and importing this module
stays cheap. Files are written to a temp name and renamed, so a half-written GGUF never exists
under its real name.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

__all__ = ["OutType", "chatml_template", "export_gguf", "write_modelfile"]

OutType = Literal["f16", "q8_0"]
ARCH = "llama"
MODELFILE = "Modelfile"
# llama.cpp's token types (gguf.TokenType): NORMAL, CONTROL (special), USER_DEFINED (added, not special), UNUSED.
_NORMAL, _CONTROL, _USER_DEFINED, _UNUSED = 1, 3, 4, 5
_Q8_0_BLOCK = 32

# HF Llama parameter names -> llama.cpp tensor names (per block: ``{i}`` is the layer index).
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_BLOCK_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_BLOCK_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


# ----------------------------------------------------------------------------- export

def export_gguf(model_dir: Path, out_path: Path, *, outtype: OutType = "q8_0") -> Path:
    """Write the Llama model in ``model_dir`` (a merged HF folder) to the GGUF file ``out_path``.

    ``outtype`` picks the matrices' encoding: ``"f16"`` (half the size of float32, near
    lossless) or ``"q8_0"`` (about a quarter, llama.cpp's standard "almost lossless" quant).
    1-D tensors (the RMSNorm weights) always stay float32, as llama.cpp keeps them. Raises
    ``ValueError`` for what this mapping does not cover (another architecture, biases, RoPE
    scaling, a tokenizer that is not byte-level BPE) rather than writing a file that would
    load but answer wrongly.
    """
    import gguf

    if outtype not in ("f16", "q8_0"):
        raise ValueError(f"outtype must be 'f16' or 'q8_0', not {outtype!r}")
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = json.loads((model_dir / "config.json").read_text())
    params = _llama_params(config)
    tokenizer = _read_tokenizer(model_dir, config, params["vocab_size"])
    weights = _read_safetensors_dir(model_dir)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        writer = gguf.GGUFWriter(tmp, ARCH)
        _add_metadata(writer, model_dir.name, params, outtype)
        _add_tokenizer(writer, tokenizer)
        for name, array, raw_dtype in _gguf_tensors(weights, params, outtype):
            writer.add_tensor(name, array, raw_dtype=raw_dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _llama_params(config: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters the GGUF needs, after checking the model is a plain Llama."""
    if config.get("model_type") != ARCH:
        raise ValueError(f"only Llama-architecture models can be exported, not {config.get('model_type')!r}")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ValueError("Llama models with attention or MLP biases are not supported by this export")
    if config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"unsupported activation {config.get('hidden_act')!r} (llama.cpp's Llama uses silu)")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"RoPE scaling {rope_type!r} is not supported by this export")
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    return {
        "context_length": int(config["max_position_embeddings"]),
        "hidden_size": hidden,
        "block_count": int(config["num_hidden_layers"]),
        "intermediate_size": int(config["intermediate_size"]),
        "heads": heads,
        "kv_heads": int(config.get("num_key_value_heads") or heads),
        "head_dim": int(config.get("head_dim") or hidden // heads),
        "rope_theta": float(theta),
        "rms_eps": float(config.get("rms_norm_eps", 1e-6)),
        "vocab_size": int(config["vocab_size"]),
        "tied": bool(config.get("tie_word_embeddings", False)),
    }


def _add_metadata(writer: Any, name: str, p: dict[str, Any], outtype: OutType) -> None:
    import gguf

    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(p["context_length"])
    writer.add_embedding_length(p["hidden_size"])
    writer.add_block_count(p["block_count"])
    writer.add_feed_forward_length(p["intermediate_size"])
    writer.add_head_count(p["heads"])
    writer.add_head_count_kv(p["kv_heads"])
    writer.add_rope_dimension_count(p["head_dim"])
    if p["head_dim"] != p["hidden_size"] // p["heads"]:
        writer.add_key_length(p["head_dim"])  # llama.cpp assumes hidden/heads unless told
        writer.add_value_length(p["head_dim"])
    writer.add_rope_freq_base(p["rope_theta"])
    writer.add_layer_norm_rms_eps(p["rms_eps"])
    writer.add_vocab_size(p["vocab_size"])
    file_type = gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _gguf_tensors(weights: dict[str, np.ndarray], p: dict[str, Any],
                  outtype: OutType) -> list[tuple[str, np.ndarray, Any]]:
    """``(gguf name, data, raw dtype)`` for every weight, renamed, permuted and encoded."""
    out = []
    for hf_name in sorted(weights, key=_tensor_order):
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed from rope.freq_base by every loader
        if hf_name == "lm_head.weight" and p["tied"]:
            continue  # tied: both loaders reuse token_embd, and no output tensor says so
        name = _gguf_name(hf_name)
        data = weights[hf_name]
        if name.endswith("attn_q.weight"):
            data = _permute_qk(data, p["heads"])
        elif name.endswith("attn_k.weight"):
            data = _permute_qk(data, p["kv_heads"])
        out.append((name, *_encode(data, outtype)))
    names = {name for name, _, _ in out}
    if "token_embd.weight" not in names:
        raise ValueError("the model has no model.embed_tokens.weight")
    if not p["tied"] and "output.weight" not in names:
        raise ValueError("tie_word_embeddings is false but the model has no lm_head.weight")
    return out


def _tensor_order(hf_name: str) -> tuple[int, str]:
    match = _BLOCK_RE.match(hf_name)
    if match:
        return int(match.group(1)) + 1, match.group(2)
    return (0 if "embed_tokens" in hf_name else 1 << 30), hf_name


def _gguf_name(hf_name: str) -> str:
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    match = _BLOCK_RE.match(hf_name)
    if match and match.group(2) in _BLOCK_NAMES:
        return f"blk.{match.group(1)}.{_BLOCK_NAMES[match.group(2)]}"
    raise ValueError(f"no GGUF name for tensor {hf_name!r} (not a plain Llama weight)")


def _permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half row order -> llama.cpp's interleaved pairs, per head (as llama.cpp's converter).

    Each head's rows ``[x0..x(d/2-1), y0..y(d/2-1)]`` become ``[x0, y0, x1, y1, ...]``;
    transformers' GGUF loader applies the inverse (``_reverse_permute_weights``).
    """
    rows = weights.shape[0]
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _encode(data: np.ndarray, outtype: OutType) -> tuple[np.ndarray, Any]:
    """1-D in float32; matrices in f16, or Q8_0 when each row splits into 32-value blocks."""
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    if data.ndim == 1:
        return np.ascontiguousarray(data, dtype=np.float32), None
    if outtype == "q8_0" and data.shape[-1] % _Q8_0_BLOCK == 0:
        q8 = GGMLQuantizationType.Q8_0
        return quantize(np.ascontiguousarray(data, dtype=np.float32), q8), q8
    return np.ascontiguousarray(data, dtype=np.float16), None  # also llama.cpp's fallback for odd rows


# ----------------------------------------------------------------------------- weights

_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": "<u2"}


def _read_safetensors_dir(model_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of the folder's safetensors files (one file or shards), as numpy arrays."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors weights in {model_dir}")
    weights: dict[str, np.ndarray] = {}
    for file in files:
        weights.update(_read_safetensors(file))
    return weights


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file read with numpy alone (the format is a JSON header and raw little-endian data).

    Not ``safetensors.numpy``: numpy has no bfloat16, and bf16 is how most models are saved;
    here bf16 is widened to float32 exactly (its bits are float32's upper half).
    """
    import numpy as np

    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{path.name}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=_ST_DTYPES[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        out[name] = array
    return out


# ----------------------------------------------------------------------------- tokenizer

def _read_tokenizer(model_dir: Path, config: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """The byte-level BPE tokenizer of ``tokenizer.json`` in llama.cpp's ``gpt2`` form."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json in {model_dir}")
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not _is_byte_level(spec.get("pre_tokenizer")):
        raise ValueError("only byte-level BPE tokenizers can be exported (tokenizer.ggml.model 'gpt2')")
    tok_config = _read_json(model_dir / "tokenizer_config.json")

    by_id: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    types: dict[int, int] = {}
    for added in spec.get("added_tokens") or []:
        by_id[added["id"]] = added["content"]
        types[added["id"]] = _CONTROL if added.get("special") else _USER_DEFINED
    size = max(vocab_size, max(by_id) + 1)
    if size != vocab_size:
        raise ValueError(f"the tokenizer has {size} tokens but the model's vocab_size is {vocab_size}")
    tokens, token_types = [], []
    for i in range(size):  # llama.cpp needs one entry per embedding row; padding rows are UNUSED
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        token_types.append(types.get(i, _NORMAL if i in by_id else _UNUSED))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    ids = {t: i for i, t in by_id.items()}
    special = {key: _special_id(key, tok_config, config, ids) for key in ("bos", "eos", "pad", "unk")}
    add_bos, add_eos = _adds_special(path, special)
    return {
        "tokens": tokens, "types": token_types, "merges": merges, "special": special,
        "add_bos": bool(tok_config.get("add_bos_token", add_bos)),
        "add_eos": bool(tok_config.get("add_eos_token", add_eos)),
        "chat_template": _chat_template(model_dir, tok_config),
    }


def _is_byte_level(pre: dict[str, Any] | None) -> bool:
    """A lone ByteLevel pre-tokenizer with GPT-2's split regex: what llama.cpp calls ``gpt-2``."""
    return bool(pre) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _special_id(key: str, tok_config: dict[str, Any], config: dict[str, Any], ids: dict[str, int]) -> int | None:
    token = tok_config.get(f"{key}_token")
    if isinstance(token, dict):
        token = token.get("content")
    if isinstance(token, str) and token in ids:
        return ids[token]
    value = config.get(f"{key}_token_id")
    if isinstance(value, list):
        value = value[0] if value else None
    return int(value) if value is not None else None


def _adds_special(path: Path, special: dict[str, int | None]) -> tuple[bool, bool]:
    """Whether encoding adds bos / eos by itself (the tokenizer's post-processor), so llama.cpp does too."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(path)).encode("a", add_special_tokens=True).ids
    bos, eos = special["bos"], special["eos"]
    return bool(ids) and bos is not None and ids[0] == bos, bool(ids) and eos is not None and ids[-1] == eos


_GENERATION_TAG = re.compile(r"\{%(-?)\s*(end)?generation\s*(-?)%\}")


def _chat_template(model_dir: Path, tok_config: dict[str, Any]) -> str | None:
    """The HF chat template, with transformers-only ``{% generation %}`` markers made neutral.

    The markers only tell ``apply_chat_template`` which tokens are the assistant's (a training
    mask); other Jinja engines (llama.cpp's) may reject the unknown tag. ``{% if true %}`` /
    ``{% endif %}`` render the same text, whitespace control included.
    """
    path = model_dir / "chat_template.jinja"
    template = path.read_text(encoding="utf-8") if path.is_file() else tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default") or next(iter(named.values()), None)
    if not template:
        return None
    return _GENERATION_TAG.sub(lambda m: "{%" + m.group(1) + (" endif " if m.group(2) else " if true ")
                               + m.group(3) + "%}", template)


def _add_tokenizer(writer: Any, tok: dict[str, Any]) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # GPT-2's split regex, which a lone ByteLevel pre-tokenizer uses
    writer.add_token_list(tok["tokens"])
    writer.add_token_types(tok["types"])
    writer.add_token_merges(tok["merges"])
    adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id,
              "pad": writer.add_pad_token_id, "unk": writer.add_unk_token_id}
    for key, add in adders.items():
        if tok["special"][key] is not None:
            add(tok["special"][key])
    writer.add_add_bos_token(tok["add_bos"])
    writer.add_add_eos_token(tok["add_eos"])
    if tok["chat_template"]:
        writer.add_chat_template(tok["chat_template"])


# ----------------------------------------------------------------------------- Ollama

def chatml_template() -> str:
    """Ollama's Go-template form of ChatML (``<|im_start|>role\\n...<|im_end|>\\n`` per turn)."""
    return (
        "{{- if .Messages }}\n"
        "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}\n"
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n"
        "{{ else }}\n"
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
        "{{- end }}"
    )


def write_modelfile(gguf_path: Path, *, chat_template_hint: str | None = None, system: str | None = None) -> Path:
    """An Ollama ``Modelfile`` next to ``gguf_path``, so ``ollama create NAME -f Modelfile`` works there.

    Ollama does not run the HF Jinja template; it needs its own Go template. The model's chat
    format is read from ``chat_template_hint`` (an HF chat template) or, when ``None``, from the
    GGUF's ``tokenizer.chat_template``. Only ChatML is supported; anything else raises
    ``ValueError`` rather than writing a template that would garble every prompt.
    """
    gguf_path = Path(gguf_path)
    if re.search(r'[\s"]', gguf_path.name):
        raise ValueError(f"the GGUF file name {gguf_path.name!r} has spaces or quotes; Ollama's FROM needs a plain one")
    hint = chat_template_hint if chat_template_hint is not None else _gguf_chat_template(gguf_path)
    if not hint or "<|im_start|>" not in hint:
        raise ValueError("only ChatML models (<|im_start|>role ... <|im_end|>) get an Ollama template")
    if system is not None and '"""' in system:
        raise ValueError('the system prompt cannot contain """ (the Modelfile quotes it that way)')
    lines = [f"FROM ./{gguf_path.name}", "", f'TEMPLATE """{chatml_template()}"""', "",
             'PARAMETER stop "<|im_start|>"', 'PARAMETER stop "<|im_end|>"']
    if system is not None:
        lines += ["", f'SYSTEM """{system}"""']
    out = gguf_path.with_name(MODELFILE)
    tmp = out.with_name(f".{MODELFILE}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def _gguf_chat_template(gguf_path: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).fields.get("tokenizer.chat_template")
    return field.contents() if field is not None else None
