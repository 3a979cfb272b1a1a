"""Training configuration: the pydantic schema, templates, and CRUD with validation results.

Keys follow Hugging Face ``TrainingArguments`` names wherever one exists
(``num_train_epochs``, ``per_device_train_batch_size``, ``learning_rate`` …) so a
config reads the same as the HF docs and maps onto ``TrainingArguments`` one-to-one.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .errors import Conflict, InvalidInput
from .records import LOCAL_USER, new_id, now_iso
from .store import Store, get_store

TABLE = "configs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSection(_Section):
    base_model: str = "tiny-chat"
    model_type: Literal["causal-lm"] = "causal-lm"
    trust_remote_code: bool = False


class TrainingSection(_Section):
    method: Literal["lora", "full"] = "lora"
    num_train_epochs: float = Field(1.0, gt=0, le=1000)
    max_steps: int = Field(-1, ge=-1, description="-1: use num_train_epochs")
    per_device_train_batch_size: int = Field(8, ge=1, le=4096)
    per_device_eval_batch_size: int = Field(8, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096)
    learning_rate: float = Field(2e-4, gt=0, le=1.0)
    lr_scheduler_type: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ] = "linear"
    warmup_steps: float = Field(0, ge=0, description="steps, or a ratio of total steps when < 1")
    weight_decay: float = Field(0.0, ge=0, le=1.0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_seq_length: int = Field(512, ge=8, le=131072)
    packing: bool = False
    packing_attention: Literal["isolated", "shared"] = Field(
        "isolated", description="isolated: each packed example attends only to itself (block-diagonal causal "
        "mask); shared: the whole row (the old behaviour, kept for comparisons)")
    eval_split: float = Field(0.1, ge=0, lt=1, description="fraction held out for eval when no eval set is given")
    eval_steps: int | None = Field(None, ge=1, description="None: evaluate at each save")
    save_steps: int = Field(50, ge=1)
    save_total_limit: int = Field(2, ge=1, description="keep the last K checkpoints, plus always the best")
    logging_steps: int = Field(5, ge=1)
    logging_first_step: bool = Field(True, description="log step 1 too, so the first loss shows at once")
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    auto_find_batch_size: bool | Literal["auto"] = "auto"
    torch_threads: int | None = Field(None, ge=1, le=512, description="per process; None: the cores shared out")
    num_processes: int = Field(1, ge=1, le=1024, description="data-parallel processes on this machine "
                               "(accelerate's name): gloo on CPU, NCCL on GPUs; one per GPU")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="auto: flash_attention_2 on a CUDA GPU when flash-attn is installed, else sdpa")
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="QLoRA: load the base with bitsandbytes (needs a CUDA GPU) and train LoRA on it")
    report_to: Literal["none", "tensorboard", "mlflow"] = Field(
        "none", description="also log to TensorBoard (<job>/tensorboard) or MLflow (SQLite in <job>/mlflow.db, "
        "unless MLFLOW_TRACKING_URI is set); the experiments extra")

    @field_validator("num_processes")
    @classmethod
    def _one_batch_size(cls, value: int, info: ValidationInfo) -> int:
        if value > 1 and info.data.get("auto_find_batch_size") is True:
            raise ValueError("auto_find_batch_size cannot shrink the batch of every process together: "
                             "use num_processes=1 with it")
        return value

    @field_validator("quantization")
    @classmethod
    def _lora_only(cls, value: str, info: ValidationInfo) -> str:
        if value != "none" and info.data.get("method") != "lora":
            raise ValueError(f"quantization={value} trains LoRA adapters on a frozen quantized base: it needs method=lora")
        return value


class LoraSection(_Section):
    r: int = Field(8, ge=1, le=1024)
    lora_alpha: int = Field(16, ge=1, alias="alpha")
    lora_dropout: float = Field(0.05, ge=0, lt=1, alias="dropout")
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainingConfig(_Section):
    model: ModelSection = Field(default_factory=ModelSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    lora: LoraSection = Field(default_factory=LoraSection)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=False)


# Hyperparameters that can change on a paused job without invalidating its checkpoint.
RESUME_SAFE_KEYS = {
    "training.learning_rate",
    "training.weight_decay",
    "training.max_grad_norm",
    "training.logging_steps",
    "training.logging_first_step",
    "training.eval_steps",
    "training.save_steps",
    "training.save_total_limit",
}

TEMPLATES: dict[str, dict[str, Any]] = {
    "default": {},
    "sft": {"training": {"method": "lora", "num_train_epochs": 3, "learning_rate": 2e-4, "packing": True}},
    "lora": {
        "training": {"method": "lora", "num_train_epochs": 1, "learning_rate": 3e-4},
        "lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"},
    },
    "full": {"training": {"method": "full", "num_train_epochs": 1, "learning_rate": 5e-5, "weight_decay": 0.01}},
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def template(name: str) -> dict[str, Any]:
    if name not in TEMPLATES:
        raise InvalidInput(f"unknown template '{name}' (choose from {', '.join(TEMPLATES)})", field="template_type")
    return TrainingConfig.model_validate(TEMPLATES[name]).dump()


def validate_config(data: Any) -> tuple[TrainingConfig | None, dict[str, str] | None]:
    """Parse a config dict; on failure return ``{"training.learning_rate": "message", …}``."""
    if not isinstance(data, dict):
        return None, {"config_json": "must be a JSON object"}
    try:
        return TrainingConfig.model_validate(data), None
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "config_json"
            errors.setdefault(path, err["msg"])
        return None, errors


def parse_config(data: Any) -> TrainingConfig:
    """Like :func:`validate_config` but raising one error that names the first bad field."""
    cfg, errors = validate_config(data)
    if errors:
        field, msg = next(iter(errors.items()))
        raise InvalidInput(f"invalid config: {field}: {msg}", field=field, details=errors)
    assert cfg is not None
    return cfg


def dotted_key(key: str, field: str | None = None) -> str:
    """``learning_rate`` → ``training.learning_rate`` (the section that has the field); dotted keys as they are."""
    if "." in key:
        return key
    sections = {"model": ModelSection, "training": TrainingSection, "lora": LoraSection}
    owner = next((s for s, m in sections.items() if key in m.model_fields or any(
        f.alias == key for f in m.model_fields.values())), None)
    if owner is None:
        raise InvalidInput(f"{field + ': ' if field else ''}unknown config key '{key}'", field=field or key)
    return f"{owner}.{key}"


def apply_overrides(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (``training.learning_rate=1e-4`` or just ``learning_rate=1e-4``)."""
    import json

    out = copy.deepcopy(config)
    for item in assignments:
        if "=" not in item:
            raise InvalidInput(f"expected key=value, got '{item}'", field=item)
        key, raw = item.split("=", 1)
        key = dotted_key(key)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


class ConfigService:
    """CRUD for saved configs; every save records ``is_validated`` and per-field errors."""

    def __init__(self, store: Store | None = None):
        self.store = store or get_store()

    def _validated(self, config_json: Any) -> dict[str, Any]:
        from .quotas import check_config_size

        check_config_size(config_json, "config_json")
        cfg, errors = validate_config(config_json)
        return {
            "config_json": cfg.dump() if cfg else config_json,
            "is_validated": errors is None,
            "validation_errors": errors,
        }

    def create(self, name: str, config_json: dict[str, Any] | None = None, *, template_type: str = "sft",
               description: str = "", owner: str = LOCAL_USER) -> dict[str, Any]:
        if not name or not str(name).strip():
            raise InvalidInput("name is required", field="name")
        base = template(template_type)
        merged = deep_merge(base, config_json or {}) if isinstance(config_json, dict) else config_json
        now = now_iso()
        record = {"id": new_id("config"), "owner": owner, "user_id": owner, "name": name,
                  "description": description, "template_type": template_type,
                  "created_at": now, "updated_at": now, **self._validated(merged)}
        return self.store.insert(TABLE, record)

    def get(self, config_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        return self.store.require(TABLE, config_id, owner)

    def list(self, owner: str = LOCAL_USER) -> list[dict[str, Any]]:
        return sorted(self.store.all(TABLE, owner), key=lambda r: r["created_at"])

    def update(self, config_id: str, fields: dict[str, Any], owner: str = LOCAL_USER) -> dict[str, Any]:
        self.get(config_id, owner)
        allowed = {"name", "description", "template_type", "config_json"}
        unknown = set(fields) - allowed
        if unknown:
            raise InvalidInput(f"unknown field '{sorted(unknown)[0]}'", field=sorted(unknown)[0])
        changes = {k: v for k, v in fields.items() if k != "config_json"}
        if "template_type" in changes:
            template(changes["template_type"])
        if "config_json" in fields:
            changes.update(self._validated(fields["config_json"]))
        changes["updated_at"] = now_iso()
        return self.store.update(TABLE, config_id, changes)

    def delete(self, config_id: str, owner: str = LOCAL_USER) -> None:
        self.get(config_id, owner)
        from .job_states import ACTIVE

        in_use = [j for j in self.store.all("jobs") if j.get("config_id") == config_id and j["status"] in ACTIVE]
        if in_use:
            raise Conflict(f"config '{config_id}' is used by an active job", field="id")
        self.store.delete(TABLE, config_id)

    def resolve(self, ref: str | dict[str, Any] | None, owner: str = LOCAL_USER) -> TrainingConfig:
        """A saved config id, a template name, or an inline dict → a validated config."""
        if ref is None or ref == "":
            return parse_config(template("default"))
        if isinstance(ref, dict):
            from .quotas import check_config_size

            check_config_size(ref)
            return parse_config(deep_merge(template("default"), ref))
        if ref in TEMPLATES:
            return parse_config(template(ref))
        rec = self.get(ref, owner)
        return parse_config(rec["config_json"])
