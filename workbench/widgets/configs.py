"""ConfigEditor: a form generated from the TrainingConfig schema, kept in sync with raw JSON.

The form is built from ``TrainingConfig.model_fields`` (one box per section, one widget per
field chosen by its annotation); every change is checked with the pure core function
:func:`workbench.configs.validate_config` and each field shows its own message. Saving,
loading and templates go through a :class:`~workbench.widgets.backend.Backend`.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import ipywidgets as w
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..configs import TrainingConfig, validate_config
from .backend import Backend
from .common import css, error_html, esc, guarded, info_html, ok_html

DEFAULT_TEMPLATE = "default"
ALL_LINEAR = "all-linear"


class _Unrepresentable(ValueError):
    """A JSON value the field's widget cannot hold."""


def _literal_values(annotation: Any) -> list[Any]:
    return list(get_args(annotation)) if get_origin(annotation) is Literal else []


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (typing.Union, types.UnionType)


@dataclass
class Field:
    """One schema field and the widget that edits it."""

    section: str
    name: str
    alias: str | None
    kind: str  # bool | choice | int | float | str | optional_int | str_list
    widget: w.ValueWidget
    error: w.HTML
    default: Any

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    # widget value → config value
    def read(self) -> Any:
        v = self.widget.value
        if self.kind == "optional_int":
            text = str(v).strip()
            if text == "" or text.lower() == "none":
                return None
            try:
                return int(text)
            except ValueError:
                return text  # left for validation to report
        if self.kind == "str_list":
            text = str(v).strip()
            if text == ALL_LINEAR:
                return ALL_LINEAR
            return [part.strip() for part in text.split(",") if part.strip()]
        return v

    # config value → widget value (raises _Unrepresentable)
    def to_widget(self, value: Any) -> Any:
        bad = _Unrepresentable(f"{self.path}: {json.dumps(value)} cannot be shown in the form")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind == "choice":
            choices = getattr(self.widget, "_options_values", ())
            if not any(type(o) is type(value) and o == value for o in choices):
                raise bad
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad
            return value
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad
            return float(value)
        if self.kind == "str":
            if not isinstance(value, str):
                raise bad
            return value
        if self.kind == "optional_int":
            if value is None:
                return ""
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise bad
            return str(value)
        if self.kind == "str_list":
            if value == ALL_LINEAR:
                return ALL_LINEAR
            if isinstance(value, list) and all(isinstance(x, str) for x in value):
                return ", ".join(value)
            raise bad
        raise bad  # pragma: no cover

    def errors_for(self, errors: dict[str, str]) -> list[str]:
        keys = {self.path} | ({f"{self.section}.{self.alias}"} if self.alias else set())
        return [msg for key, msg in errors.items()
                if key in keys or any(key.startswith(k + ".") for k in keys)]


def _default(info: FieldInfo) -> Any:
    if info.default is not PydanticUndefined:
        return info.default
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None


def make_widget(annotation: Any, default: Any) -> tuple[str, w.ValueWidget]:
    """The widget kind and widget for one field's annotation."""
    layout = w.Layout(width="360px")
    style = {"description_width": "0px"}
    if annotation is bool:
        return "bool", w.Checkbox(value=bool(default), indent=False)
    literal = _literal_values(annotation)
    if literal:
        return "choice", w.Dropdown(options=literal, value=default, layout=layout, style=style)
    if annotation is int:
        return "int", w.IntText(value=default, layout=layout, style=style)
    if annotation is float:
        return "float", w.FloatText(value=default, layout=layout, style=style)
    if annotation is str:
        return "str", w.Text(value=default or "", layout=layout, style=style)
    if _is_union(annotation):
        args = get_args(annotation)
        literals = [v for a in args for v in _literal_values(a)]
        if bool in args:
            options = [("true", True), ("false", False)] + [(str(v), v) for v in literals]
            return "choice", w.Dropdown(options=options, value=default, layout=layout, style=style)
        if int in args and type(None) in args:
            return "optional_int", w.Text(value="" if default is None else str(default),
                                          placeholder="empty = none", layout=layout, style=style)
        if any(get_origin(a) is list for a in args):
            text = default if isinstance(default, str) else ", ".join(default or [])
            return "str_list", w.Text(value=text, placeholder=f"{ALL_LINEAR} or q_proj, v_proj",
                                      layout=layout, style=style)
    return "str", w.Text(value="" if default is None else str(default), layout=layout, style=style)


class ConfigEditor:
    """Edit, validate, save and load training configs through ``backend``."""

    def __init__(self, backend: Backend, template: str = DEFAULT_TEMPLATE):
        self.backend = backend
        self.config_id: str | None = None
        self._syncing = False
        self._template_quiet = False
        self.fields: dict[str, Field] = {}

        ok, templates = guarded(w.HTML(), backend.templates)
        self.templates: dict[str, Any] = templates if ok and templates else {DEFAULT_TEMPLATE: {}}
        first = template if template in self.templates else next(iter(self.templates))
        self.template = css(w.Dropdown(options=list(self.templates), value=first, description="Template"),
                            "wb-config-template")
        self.name = css(w.Text(placeholder="config name", description="Name"), "wb-config-name")
        self.description = css(w.Text(placeholder="optional", description="Description"), "wb-config-description")
        self.save_button = css(w.Button(description="Save", icon="save"), "wb-config-save")
        self.new_button = css(w.Button(description="New"), "wb-config-new")
        self.duplicate_button = css(w.Button(description="Duplicate"), "wb-config-duplicate")
        self.configs = css(w.Dropdown(options=[], description="Saved"), "wb-config-list")
        self.load_button = css(w.Button(description="Load"), "wb-config-load")
        self.status = css(w.HTML(), "wb-config-status")
        self.editing = css(w.HTML(), "wb-config-editing")
        self.json = css(w.Textarea(layout=w.Layout(width="100%", height="320px"), continuous_update=False),
                        "wb-config-json")
        self.json_error = css(w.HTML(), "wb-config-json-error")

        sections = [self._section_box(section, info) for section, info in TrainingConfig.model_fields.items()]

        self.template.observe(lambda change: self.apply_template(change["new"]), names="value")
        self.json.observe(lambda change: self._json_changed(change["new"]), names="value")
        self.save_button.on_click(lambda _: self.save())
        self.new_button.on_click(lambda _: self.new())
        self.duplicate_button.on_click(lambda _: self.duplicate())
        self.load_button.on_click(lambda _: self.load())

        form = w.VBox(sections, layout=w.Layout(width="560px"))
        raw = w.VBox([w.HTML("<b>Raw JSON</b> (applied when you leave the box)"), self.json, self.json_error],
                     layout=w.Layout(flex="1"))
        self.widget = css(w.VBox([
            w.HBox([self.template, self.configs, self.load_button]),
            w.HBox([self.name, self.description]),
            w.HBox([self.save_button, self.duplicate_button, self.new_button, self.editing]),
            self.status,
            w.HBox([form, raw]),
        ]), "wb-config-panel")

        self.load_dict(self.templates[first])
        self._show_editing()
        self.refresh()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- the generated form --

    def _section_box(self, section: str, info: FieldInfo) -> w.Widget:
        model: type[BaseModel] = info.annotation  # type: ignore[assignment]
        rows: list[w.Widget] = [w.HTML(f"<h4 style='margin:0.5em 0 0.2em'>{esc(section)}</h4>")]
        for name, finfo in model.model_fields.items():
            default = _default(finfo)
            kind, widget = make_widget(finfo.annotation, default)
            css(widget, "wb-field", f"wb-field-{section}-{name}")
            error = css(w.HTML(), "wb-field-error", f"wb-field-error-{section}-{name}")
            field = Field(section, name, finfo.alias, kind, widget, error, default)
            self.fields[field.path] = field
            widget.observe(lambda _: self._form_changed(), names="value")
            label = w.HTML(f"<span title='{esc(finfo.description or '')}'>{esc(name)}</span>",
                           layout=w.Layout(width="190px"))
            rows.append(w.VBox([w.HBox([label, widget]), error], layout=w.Layout(margin="0 0 2px 0")))
        return css(w.VBox(rows), f"wb-config-section-{section}")

    def config_dict(self) -> dict[str, Any]:
        """The config as the form holds it (field names, JSON-ready)."""
        out: dict[str, dict[str, Any]] = {section: {} for section in TrainingConfig.model_fields}
        for field in self.fields.values():
            out[field.section][field.name] = field.read()
        return out

    def load_dict(self, data: dict[str, Any]) -> None:
        """Put ``data`` (a full or partial config) into the form; missing keys get schema defaults.

        All or nothing: raises ValueError naming the field when a value cannot be shown.
        """
        if not isinstance(data, dict):
            raise ValueError("a config must be a JSON object")
        values: dict[str, Any] = {}
        for path, field in self.fields.items():
            section = data.get(field.section) or {}
            if not isinstance(section, dict):
                raise ValueError(f"{field.section}: must be an object")
            if field.name in section:
                raw = section[field.name]
            elif field.alias and field.alias in section:
                raw = section[field.alias]
            else:
                raw = field.default
            values[path] = field.to_widget(raw)
        self._syncing = True
        try:
            for path, value in values.items():
                self.fields[path].widget.value = value
        finally:
            self._syncing = False
        self._form_changed()

    def unknown_keys(self, data: dict[str, Any]) -> list[str]:
        known = {p for f in self.fields.values() for p in (f.path, f"{f.section}.{f.alias}" if f.alias else f.path)}
        out = []
        for key, value in data.items():
            if key not in TrainingConfig.model_fields:
                out.append(key)
            elif isinstance(value, dict):
                out += [f"{key}.{k}" for k in value if f"{key}.{k}" not in known]
        return out

    def validate(self) -> dict[str, str]:
        """Show each field's validation message under it; returns all the errors."""
        _, errors = validate_config(self.config_dict())
        errors = errors or {}
        for field in self.fields.values():
            messages = field.errors_for(errors)
            field.error.value = (f'<span class="wb-error" style="color:#b00020;font-size:small">'
                                 f'{esc(messages[0])}</span>' if messages else "")
        return errors

    def _form_changed(self) -> None:
        if self._syncing:
            return
        self.validate()
        self._syncing = True
        try:
            self.json.value = json.dumps(self.config_dict(), indent=2)
        finally:
            self._syncing = False

    def _json_changed(self, text: str) -> None:
        if self._syncing:
            return
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("the config must be a JSON object")
            unknown = self.unknown_keys(data)
            self.load_dict(data)
        except json.JSONDecodeError as exc:
            self.json_error.value = error_html(f"JSON parse error: {exc.msg} (line {exc.lineno}, column {exc.colno})"
                                               " — the form is unchanged")
            return
        except ValueError as exc:
            self.json_error.value = error_html(f"{exc} — the form is unchanged")
            return
        self.json_error.value = (error_html(f"unknown keys ignored: {', '.join(unknown)}") if unknown else "")

    # -- templates, records --

    def apply_template(self, name: str) -> None:
        if name in self.templates and not self._template_quiet:
            self.load_dict(self.templates[name])
            self.json_error.value = ""

    def refresh(self, select: str | None = None) -> None:
        ok, records = guarded(self.status, self.backend.list_configs)
        if not ok:
            return
        options = [(f"{r['name']} · {r['id']}", r["id"]) for r in records or []]
        ids = [v for _, v in options]
        current = select if select in ids else (self.configs.value if self.configs.value in ids else None)
        self.configs.options = options
        self.configs.value = current if current is not None else (ids[-1] if ids else None)

    def _show_editing(self) -> None:
        self.editing.value = (f"<i>editing {esc(self.config_id)}</i>" if self.config_id
                              else "<i>new config (Save creates it)</i>")

    def _saved_status(self, record: dict[str, Any], verb: str = "Saved") -> str:
        if record.get("is_validated"):
            return ok_html(f"{verb} {record['id']} (validated)")
        errors = record.get("validation_errors") or {}
        items = "".join(f"<li><code>{esc(k)}</code>: {esc(v)}</li>" for k, v in errors.items())
        return error_html(f"{verb} {record['id']} with validation errors") + f"<ul class='wb-error'>{items}</ul>"

    def _name(self) -> str | None:
        name = self.name.value.strip()
        if not name:
            self.status.value = error_html("enter a name first")
            return None
        return name

    def save(self) -> dict[str, Any] | None:
        """Create a config, or update the one being edited."""
        name = self._name()
        if name is None:
            return None
        config, template_type = self.config_dict(), self.template.value
        if self.config_id:
            config_id = self.config_id
            ok, record = guarded(self.status, lambda: self.backend.update_config(
                config_id, name=name, description=self.description.value, config_json=config,
                template_type=template_type))
        else:
            ok, record = guarded(self.status, lambda: self.backend.create_config(
                name, config, template_type, description=self.description.value))
        if not ok or not record:
            return None
        self.config_id = record["id"]
        self.status.value = self._saved_status(record)
        self._show_editing()
        self.refresh(select=record["id"])
        return record

    def duplicate(self) -> dict[str, Any] | None:
        """Save the form as a new config named ``<name> (copy)`` and edit the copy."""
        name = self._name()
        if name is None:
            return None
        ok, record = guarded(self.status, lambda: self.backend.create_config(
            f"{name} (copy)", self.config_dict(), self.template.value, description=self.description.value))
        if not ok or not record:
            return None
        self.config_id = record["id"]
        self.name.value = record["name"]
        self.status.value = self._saved_status(record, "Saved copy")
        self._show_editing()
        self.refresh(select=record["id"])
        return record

    def load(self, config_id: str | None = None) -> dict[str, Any] | None:
        """Load a saved config (the one picked in the list by default) into the form."""
        config_id = config_id or self.configs.value
        if not config_id:
            self.status.value = error_html("no saved config selected")
            return None
        ok, record = guarded(self.status, lambda: self.backend.get_config(config_id))
        if not ok or not record:
            return None
        try:
            self.load_dict(record.get("config_json") or {})
        except ValueError as exc:
            self.status.value = error_html(f"cannot show {config_id} in the form: {exc}")
            return None
        self.config_id = record["id"]
        self.name.value = record.get("name") or ""
        self.description.value = record.get("description") or ""
        if record.get("template_type") in self.templates:
            self._set_template_quietly(record["template_type"])
        self.json_error.value = ""
        self.status.value = (info_html(f"Loaded {record['id']}") if record.get("is_validated")
                             else self._saved_status(record, "Loaded"))
        self._show_editing()
        return record

    def _set_template_quietly(self, name: str) -> None:
        self._template_quiet = True
        try:
            self.template.value = name
        finally:
            self._template_quiet = False

    def new(self) -> None:
        """Stop editing the loaded config: the next Save creates a new one."""
        self.config_id = None
        self.status.value = ""
        self._show_editing()


__all__ = ["ConfigEditor", "Field", "make_widget"]
