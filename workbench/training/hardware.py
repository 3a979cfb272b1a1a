"""What the machine makes of a config: precision, attention kernel, base dtype, QLoRA, threads.

:func:`check_settings` runs before anything loads, so a setting this machine cannot honour
(``quantization`` without a CUDA GPU and bitsandbytes, ``flash_attention_2`` without flash-attn,
more processes than GPUs) fails the job at once, with an error that names the setting.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch

from ..configs import TrainingConfig


class SettingUnavailable(RuntimeError):
    """A config setting this machine cannot run; the message names it and how to change it."""


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_settings(cfg: TrainingConfig) -> None:
    t = cfg.training
    if t.report_to != "none" and not _installed(t.report_to):  # the reporter's module: tensorboard, mlflow
        raise SettingUnavailable(f"training.report_to={t.report_to} needs {t.report_to}, which is not installed: "
                                 "pip install 'workbench[experiments]', or set report_to=none")
    cuda = torch.cuda.is_available()
    if t.quantization != "none":
        fix = "set training.quantization=none to train the unquantized base"
        if not cuda:
            raise SettingUnavailable(f"training.quantization={t.quantization} needs bitsandbytes on a CUDA GPU, and "
                                     f"this machine has no CUDA GPU; {fix}")
        if not _installed("bitsandbytes"):
            raise SettingUnavailable(f"training.quantization={t.quantization} needs bitsandbytes, which is not "
                                     f"installed (pip install bitsandbytes); or {fix}")
    if t.attn_implementation == "flash_attention_2" and not (cuda and _installed("flash_attn")):
        why = "flash-attn is not installed (pip install flash-attn)" if cuda else "this machine has no CUDA GPU"
        raise SettingUnavailable(f"training.attn_implementation=flash_attention_2 needs flash-attn on a CUDA GPU: "
                                 f"{why}; use training.attn_implementation=sdpa")
    if cuda and t.num_processes > torch.cuda.device_count():
        raise SettingUnavailable(f"training.num_processes={t.num_processes}, but this machine has "
                                 f"{torch.cuda.device_count()} CUDA GPU(s): one process per GPU")


def reporting(cfg: TrainingConfig, job_dir: Any) -> str:
    """``report_to`` for TrainingArguments, with its files under the job folder: TensorBoard's events in
    ``tensorboard/``, MLflow's runs in ``mlflow.db`` (SQLite: MLflow 3 refuses its old file store) unless
    ``MLFLOW_TRACKING_URI`` names a tracking server or database."""
    to = cfg.training.report_to
    if to == "tensorboard":
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(job_dir / "tensorboard")
    elif to == "mlflow":
        _default_env("MLFLOW_TRACKING_URI", f"sqlite:///{(job_dir / 'mlflow.db').resolve()}")
        _default_env("MLFLOW_EXPERIMENT_NAME", job_dir.name)
    return to


_set_here: dict[str, str] = {}


def _default_env(name: str, value: str) -> None:
    """Set ``name`` unless the user did: a value this module set for an earlier job in the same process
    (the in-process executor) is replaced, so one job's run never lands in another's folder."""
    if name not in os.environ or os.environ[name] == _set_here.get(name):
        os.environ[name] = _set_here[name] = value


def attn_implementation(cfg: TrainingConfig) -> str:
    """``auto``: flash_attention_2 on a CUDA GPU when flash-attn is installed, else sdpa."""
    choice = cfg.training.attn_implementation
    if choice != "auto":
        return choice
    return "flash_attention_2" if torch.cuda.is_available() and _installed("flash_attn") else "sdpa"


def precision(cfg: TrainingConfig) -> dict[str, bool]:
    """TrainingArguments' ``bf16``/``fp16``: ``auto`` is bf16 on a GPU that has it, fp16 on older GPUs, fp32 on CPU."""
    p = cfg.training.precision
    if p == "auto":
        p = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if torch.cuda.is_available() else "fp32"
    return {"bf16": p == "bf16", "fp16": p == "fp16"}


def auto(value: bool | str, cfg: TrainingConfig | None = None) -> bool:
    """``auto`` switches (gradient checkpointing, automatic batch size): on with a GPU and one process."""
    if value != "auto":
        return bool(value)
    return torch.cuda.is_available() and (cfg is None or cfg.training.num_processes == 1)


def load_kwargs(cfg: TrainingConfig) -> dict[str, Any]:
    """``from_pretrained`` arguments: attention kernel; bf16 base weights for LoRA on a bf16 GPU; QLoRA."""
    kw: dict[str, Any] = {"attn_implementation": attn_implementation(cfg)}
    t = cfg.training
    if not torch.cuda.is_available():
        return kw
    bf16 = torch.cuda.is_bf16_supported()
    if t.method == "lora" and bf16:
        kw["dtype"] = torch.bfloat16  # frozen base weights: half the memory; the adapters stay fp32
    if t.quantization != "none":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if bf16 else torch.float16
        kw["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=compute)
            if t.quantization == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
        kw["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}  # a quantized base is placed as it loads
        kw["dtype"] = compute
    return kw


def threads_per_process(cfg: TrainingConfig) -> int | None:
    """``torch_threads``, else on CPU the cores shared out among the processes (None: torch's default)."""
    t = cfg.training
    if t.torch_threads:
        return t.torch_threads
    if t.num_processes > 1 and not torch.cuda.is_available():
        return max(1, (os.cpu_count() or 1) // t.num_processes)
    return None
