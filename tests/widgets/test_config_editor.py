"""ConfigEditor: a schema-generated form kept in sync with raw JSON, inline validation,
templates, and save / load / duplicate through a real LocalBackend."""

from __future__ import annotations

import json
from pathlib import Path

import ipywidgets as w
import pytest

from workbench.configs import TEMPLATES, TrainingConfig, template
from workbench.widgets.backend import LocalBackend
from workbench.widgets.configs import ConfigEditor


@pytest.fixture
def backend(home: Path) -> LocalBackend:
    return LocalBackend()


@pytest.fixture
def editor(backend: LocalBackend) -> ConfigEditor:
    return ConfigEditor(backend)


def field(editor: ConfigEditor, path: str) -> w.ValueWidget:
    return editor.fields[path].widget


def error(editor: ConfigEditor, path: str) -> str:
    return editor.fields[path].error.value


def test_the_form_is_generated_from_the_schema_with_a_css_class_per_field(editor: ConfigEditor) -> None:
    for section, info in TrainingConfig.model_fields.items():
        for name in info.annotation.model_fields:
            f = editor.fields[f"{section}.{name}"]
            assert f"wb-field-{section}-{name}" in f.widget._dom_classes
            assert "wb-field-error" in f.error._dom_classes
    assert isinstance(field(editor, "model.trust_remote_code"), w.Checkbox)
    assert isinstance(field(editor, "training.method"), w.Dropdown)
    assert isinstance(field(editor, "training.max_steps"), w.IntText)
    assert isinstance(field(editor, "training.learning_rate"), w.FloatText)
    assert isinstance(field(editor, "model.base_model"), w.Text)
    checkpointing = field(editor, "training.gradient_checkpointing")
    assert isinstance(checkpointing, w.Dropdown) and list(checkpointing._options_values) == [True, False, "auto"]
    assert isinstance(field(editor, "training.torch_threads"), w.Text)
    assert isinstance(field(editor, "lora.target_modules"), w.Text)
    for widget, cls in {editor.widget: "wb-config-panel", editor.template: "wb-config-template",
                        editor.name: "wb-config-name", editor.save_button: "wb-config-save",
                        editor.configs: "wb-config-list", editor.load_button: "wb-config-load",
                        editor.duplicate_button: "wb-config-duplicate", editor.json: "wb-config-json",
                        editor.status: "wb-config-status"}.items():
        assert cls in widget._dom_classes


def test_it_starts_from_the_default_template(editor: ConfigEditor) -> None:
    assert editor.template.value == "default"
    assert editor.config_dict() == template("default")


def test_form_changes_update_the_json(editor: ConfigEditor) -> None:
    field(editor, "training.learning_rate").value = 1e-3
    field(editor, "training.packing").value = True
    field(editor, "training.torch_threads").value = "4"
    field(editor, "lora.target_modules").value = "q_proj, v_proj"
    data = json.loads(editor.json.value)
    assert data["training"]["learning_rate"] == 1e-3 and data["training"]["packing"] is True
    assert data["training"]["torch_threads"] == 4
    assert data["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert data == editor.config_dict()


def test_json_edits_update_the_form(editor: ConfigEditor) -> None:
    data = editor.config_dict()
    data["training"]["learning_rate"] = 5e-5
    data["training"]["gradient_checkpointing"] = True
    data["lora"]["target_modules"] = ["k_proj"]
    data["lora"]["alpha"] = data["lora"].pop("lora_alpha")  # the schema's alias works too
    editor.json.value = json.dumps(data)
    assert field(editor, "training.learning_rate").value == 5e-5
    assert field(editor, "training.gradient_checkpointing").value is True
    assert field(editor, "lora.target_modules").value == "k_proj"
    assert field(editor, "lora.lora_alpha").value == data["lora"]["alpha"]
    assert editor.json_error.value == ""


def test_partial_json_fills_the_rest_with_schema_defaults(editor: ConfigEditor) -> None:
    editor.json.value = '{"training": {"num_train_epochs": 3}}'
    assert editor.config_dict() == TrainingConfig.model_validate({"training": {"num_train_epochs": 3}}).dump()


def test_bad_json_shows_a_parse_error_and_leaves_the_form_unchanged(editor: ConfigEditor) -> None:
    field(editor, "training.learning_rate").value = 1e-3
    before = editor.config_dict()
    editor.json.value = '{"training": {"learning_rate": 0.5,'
    assert "JSON parse error" in editor.json_error.value and "wb-error" in editor.json_error.value
    assert editor.config_dict() == before

    editor.json.value = '{"training": {"learning_rate": "fast", "seed": 1}}'
    assert "training.learning_rate" in editor.json_error.value
    assert editor.config_dict() == before  # all or nothing

    editor.json.value = json.dumps(before)
    assert editor.json_error.value == ""


def test_inline_field_error_appears_and_disappears(editor: ConfigEditor) -> None:
    assert error(editor, "training.learning_rate") == ""
    field(editor, "training.learning_rate").value = -1
    assert "greater than 0" in error(editor, "training.learning_rate")
    assert error(editor, "training.seed") == ""  # only the bad field
    field(editor, "training.learning_rate").value = 1e-4
    assert error(editor, "training.learning_rate") == ""


def test_unparseable_optional_int_is_reported_inline(editor: ConfigEditor) -> None:
    field(editor, "training.torch_threads").value = "many"
    assert "integer" in error(editor, "training.torch_threads")
    field(editor, "training.torch_threads").value = ""
    assert error(editor, "training.torch_threads") == "" and editor.config_dict()["training"]["torch_threads"] is None


def test_switching_template_loads_it(editor: ConfigEditor, backend: LocalBackend) -> None:
    assert set(editor.template.options) == set(TEMPLATES)
    editor.template.value = "lora"
    assert editor.config_dict() == backend.templates()["lora"]
    assert field(editor, "lora.r").value == 16 and field(editor, "training.learning_rate").value == 3e-4
    assert json.loads(editor.json.value) == backend.templates()["lora"]
    editor.template.value = "full"
    assert field(editor, "training.method").value == "full"


def test_save_load_duplicate_round_trip(editor: ConfigEditor, backend: LocalBackend) -> None:
    editor.template.value = "sft"
    editor.name.value = "My SFT"
    editor.description.value = "three epochs"
    field(editor, "training.learning_rate").value = 1e-4
    editor.save_button.click()

    [saved] = backend.list_configs()
    assert saved["name"] == "My SFT" and saved["template_type"] == "sft" and saved["is_validated"]
    assert saved["config_json"]["training"]["learning_rate"] == 1e-4
    assert f"Saved {saved['id']} (validated)" in editor.status.value
    assert editor.configs.value == saved["id"]

    # saving again updates the loaded config instead of creating another
    field(editor, "training.seed").value = 7
    editor.save_button.click()
    [updated] = backend.list_configs()
    assert updated["id"] == saved["id"] and updated["config_json"]["training"]["seed"] == 7

    editor.duplicate_button.click()
    configs = backend.list_configs()
    assert [c["name"] for c in configs] == ["My SFT", "My SFT (copy)"]
    assert configs[1]["config_json"] == configs[0]["config_json"]
    assert "Saved copy" in editor.status.value

    # load the original into a fresh editor
    other = ConfigEditor(backend)
    assert [v for _, v in other.configs.options] == [c["id"] for c in configs]
    other.configs.value = saved["id"]
    other.load_button.click()
    assert other.name.value == "My SFT" and other.description.value == "three epochs"
    assert other.template.value == "sft"
    assert other.config_dict() == updated["config_json"]  # the template switch did not overwrite it
    assert other.config_id == saved["id"]


def test_saving_an_invalid_config_lists_its_validation_errors(editor: ConfigEditor, backend: LocalBackend) -> None:
    editor.name.value = "broken"
    field(editor, "training.learning_rate").value = -1
    editor.save_button.click()
    [saved] = backend.list_configs()
    assert not saved["is_validated"]
    assert "training.learning_rate" in editor.status.value and "validation errors" in editor.status.value


def test_save_without_a_name_is_an_error_message(editor: ConfigEditor, backend: LocalBackend) -> None:
    editor.save_button.click()
    assert "wb-error" in editor.status.value and backend.list_configs() == []


def test_backend_errors_are_shown_not_raised(editor: ConfigEditor) -> None:
    editor.load("config-does-not-exist")
    assert "wb-error" in editor.status.value
