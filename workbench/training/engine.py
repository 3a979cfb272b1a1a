"""``run_job``: one training run of a job folder, with a real HF ``Trainer``.

Reads ``job.json`` (written when the job was started), trains with LoRA (peft) or
full fine-tuning, streams events to ``metrics.jsonl`` and ``training.log``, and writes
``result.json`` so the runner learns whether the run completed or paused.

With ``training.num_processes`` > 1 the same run happens in that many data-parallel ranks
(:mod:`.distributed`): every rank builds the same Trainer; rank 0 alone writes the job folder.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from ..chat_encoding import IGNORE, encode_all, pack
from ..configs import TrainingConfig
from ..jobfiles import events, job_folder, summary
from ..store import DiskFull, atomic_write_json
from . import hardware
from .callbacks import ControlCallback, MetricsCallback, RetentionCallback, TokenCounter
from .data import NUM_TOKENS, Collator
from .distributed import any_rank, launch, mean_over_ranks, world

log = logging.getLogger("workbench.training")


LOGGING_WINDOW = "logging_window.json"


def logging_window_path(checkpoint: str | Path, process_index: int = 0, world_size: int = 1) -> Path:
    name = LOGGING_WINDOW if world_size <= 1 else f"logging_window-{process_index}.json"
    return Path(checkpoint) / name


class WorkbenchTrainer(Trainer):
    """A Trainer that counts processed and trained tokens, honours a changed LR on resume, keeps
    the partial logging window in each checkpoint, and logs the step where the loss went non-finite.

    The logging window: between two logs the Trainer sums the step losses in ``_tr_loss`` (a
    float32 tensor) and logs ``_tr_loss / (step - _globalstep_last_logged)`` at the next logging
    step. A checkpoint taken between two logs (a pause, or ``save_steps`` off the logging grid)
    stores both in ``logging_window.json``; resuming from it puts them back before the first
    step, so each logged loss is the same float as in an uninterrupted run.
    """

    def __init__(self, *args: Any, counter: TokenCounter, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.counter = counter
        self._resume_dir: str | None = None
        self._nonfinite_step_loss = False
        self.add_callback(_LoggingWindowCallback(self))

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        if resume_from_checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        self._resume_dir = str(resume_from_checkpoint) if resume_from_checkpoint else None
        return super().train(resume_from_checkpoint or None, *args, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        real = inputs.pop(NUM_TOKENS, None)  # isolated packed rows carry no attention_mask to count
        self.counter.processed += int(real) if real is not None else int(inputs["attention_mask"].sum())
        self.counter.trained += int((inputs["labels"][:, 1:] != IGNORE).sum())
        self.counter.samples += int(inputs["input_ids"].shape[0])
        return super().training_step(model, inputs, num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs.pop(NUM_TOKENS, None)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, model, trial, epoch, ignore_keys_for_eval, start_time,
                                 learning_rate=None):
        # With ``logging_nan_inf_filter`` off, a NaN/inf step loss stays in the window's sum until it
        # is logged: one check per optimizer step (one device sync, as the filter's own check costs).
        # Data-parallel ranks agree on it (one tiny all-reduce), so they all log, and stop, together.
        if not self._nonfinite_step_loss and self.state.global_step > self._globalstep_last_logged:
            bad = not bool(torch.isfinite(tr_loss).all())
            self._nonfinite_step_loss = any_rank(bad) if self.args.world_size > 1 else bad
        if self._nonfinite_step_loss:
            # Log the window that went non-finite at its own step (the MetricsCallback then reports
            # the divergence and stops training); never evaluate or checkpoint the broken weights.
            self.control.should_log = True
            self.control.should_evaluate = False
            self.control.should_save = False
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, model, trial, epoch, ignore_keys_for_eval, start_time,
                                         learning_rate=learning_rate)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        ckpt = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        ckpt.mkdir(parents=True, exist_ok=True)
        # tr_loss.item() is the float32 sum exactly (a Python float holds any float32)
        window = {"global_step": self.state.global_step, "tr_loss": self._tr_loss.item(),
                  # what the next log adds to the run's total: the mean over the ranks (every rank saves now)
                  "tr_loss_mean": mean_over_ranks(self._tr_loss.item()) if self.args.world_size > 1 else None,
                  "globalstep_last_logged": self._globalstep_last_logged,
                  "dtype": str(self._tr_loss.dtype).removeprefix("torch.")}
        atomic_write_json(logging_window_path(ckpt, self.args.process_index, self.args.world_size), window)

    def _restore_logging_window(self) -> None:
        """Called once the training loop has set up its logging state (``on_train_begin``)."""
        if not self._resume_dir:
            return
        path = logging_window_path(self._resume_dir, self.args.process_index, self.args.world_size)
        try:
            window = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):  # a checkpoint from before the window was kept
            return
        if window.get("global_step") != self.state.global_step:
            return
        last = int(window["globalstep_last_logged"])
        if not 0 <= last <= self.state.global_step:
            return
        cur = self._tr_loss
        dtype = getattr(torch, window.get("dtype") or "", None)
        self._tr_loss = torch.tensor(float(window["tr_loss"]), dtype=dtype if isinstance(dtype, torch.dtype)
                                     else cur.dtype, device=cur.device)
        self._globalstep_last_logged = last
        # ``train_loss`` of this call stays the mean over this call's steps: the restored window's
        # steps ran in the previous call.
        self._total_loss_scalar -= float(window.get("tr_loss_mean") or window["tr_loss"])
        if last < self.state.global_step:
            log.info("logging window restored: loss of steps %d-%d carried over", last + 1, self.state.global_step)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        sched = self.lr_scheduler
        new_lr = self.args.learning_rate
        if checkpoint is None or sched is None or not hasattr(sched, "lr_lambdas"):
            return
        if all(abs(b - new_lr) < 1e-15 for b in sched.base_lrs):
            return
        log.info("learning rate changed on resume: %s -> %s", sched.base_lrs[0], new_lr)
        sched.base_lrs = [new_lr for _ in sched.base_lrs]
        for group, fn in zip(self.optimizer.param_groups, sched.lr_lambdas):
            group["initial_lr"] = new_lr
            group["lr"] = new_lr * fn(sched.last_epoch)
        sched._last_lr = [g["lr"] for g in self.optimizer.param_groups]


class _LoggingWindowCallback(TrainerCallback):
    """Restores a checkpoint's logging window right after the Trainer has reset its own."""

    def __init__(self, trainer: WorkbenchTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kw):
        self.trainer._restore_logging_window()


def _close_logging() -> None:
    root = logging.getLogger("workbench")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()


def _setup_logging(job_dir: Path, rank: int = 0) -> None:
    """``training.log`` and stdout; a rank other than 0 adds only its warnings and errors, marked."""
    root = logging.getLogger("workbench")
    root.setLevel(logging.INFO)
    _close_logging()
    fmt = logging.Formatter("[%(asctime)s] " + (f"[rank {rank}] " if rank else "") + "%(message)s", "%Y-%m-%d %H:%M:%S")
    fh = logging.FileHandler(job_folder(job_dir).log)
    fh.setFormatter(fmt)
    if rank:
        fh.setLevel(logging.WARNING)
    sh = logging.StreamHandler(sys.stdout)
    sh.setFormatter(fmt)
    if rank:
        sh.setLevel(logging.WARNING)
    root.addHandler(fh)
    root.addHandler(sh)


def build_datasets(spec: dict[str, Any], tokenizer: Any, cfg: TrainingConfig) -> tuple[list, list]:
    from ..datasets import load_chats, split_indices

    t = cfg.training
    chats = load_chats(Path(spec["dataset"]["path"]))
    if spec.get("eval_dataset"):
        train_chats, eval_chats = chats, load_chats(Path(spec["eval_dataset"]["path"]))
    elif t.eval_split > 0 and len(chats) >= 2:
        tr, ev = split_indices(len(chats), t.eval_split, t.seed)
        train_chats, eval_chats = [chats[i] for i in tr], [chats[i] for i in ev]
    else:
        train_chats, eval_chats = chats, []
    train = encode_all(tokenizer, train_chats, t.max_seq_length)
    evals = encode_all(tokenizer, eval_chats, t.max_seq_length)
    if t.packing:
        train = pack(train, t.max_seq_length)
    return train, evals


def build_trainer(spec: dict[str, Any], job_dir: Path, on_event: Any = None) -> tuple[WorkbenchTrainer, ControlCallback]:
    from ..models import load_model, load_tokenizer

    cfg = TrainingConfig.model_validate(spec["config"])
    t = cfg.training
    hardware.check_settings(cfg)
    threads = hardware.threads_per_process(cfg)
    if threads:
        torch.set_num_threads(threads)
    set_seed(t.seed)
    owner = spec.get("owner", "local")
    gc = hardware.auto(t.gradient_checkpointing, cfg)
    load = hardware.load_kwargs(cfg)
    log.info("Loading model %s (attention %s%s)...", spec["model"], load["attn_implementation"],
             f", {t.quantization} quantized" if t.quantization != "none" else "")
    tokenizer = load_tokenizer(spec["model"], owner=owner)
    model = load_model(spec["model"], owner=owner, **load)
    log.info("Model loaded successfully (%s parameters)", f"{sum(p.numel() for p in model.parameters()):,}")
    if t.quantization != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    if t.method == "lora":
        from peft import LoraConfig, get_peft_model

        lc = cfg.lora
        model = get_peft_model(model, LoraConfig(r=lc.r, lora_alpha=lc.lora_alpha, lora_dropout=lc.lora_dropout,
                                                 target_modules=lc.target_modules, task_type="CAUSAL_LM"))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("LoRA r=%d alpha=%d: %s trainable parameters", lc.r, lc.lora_alpha, f"{trainable:,}")
    if gc and t.method == "lora":
        model.enable_input_require_grads()  # checkpointed blocks need a grad-carrying input under frozen embeddings
    train, evals = build_datasets(spec, tokenizer, cfg)
    log.info("Dataset: %d training rows, %d eval rows (packing=%s)", len(train), len(evals), t.packing)
    out = job_folder(job_dir).output
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=t.num_train_epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm, logging_steps=t.logging_steps,
        logging_first_step=t.logging_first_step,
        logging_nan_inf_filter=False,  # a NaN/inf step loss is logged as such (and stops the job), never averaged away
        eval_strategy="steps" if evals else "no", eval_steps=t.eval_steps or t.save_steps,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=None, seed=t.seed, data_seed=t.seed,
        auto_find_batch_size=hardware.auto(t.auto_find_batch_size, cfg), use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=gc, activation_checkpointing_kwargs={"use_reentrant": False} if gc else None,
        ddp_backend=("nccl" if torch.cuda.is_available() else "gloo") if world()[1] > 1 else None,
        ddp_find_unused_parameters=False,
        report_to=hardware.reporting(cfg, job_dir), dataloader_num_workers=0, remove_unused_columns=False,
        disable_tqdm=True,
        **hardware.precision(cfg),
    )
    counter = TokenCounter()
    if args.process_index == 0:  # job totals survive pause/resume; the other ranks add only their own share
        latest = summary.load_summary(job_dir).get("latest") or {}
        counter.processed = latest.get("num_tokens_processed", 0)
        counter.trained = latest.get("num_tokens_trained", 0)
    metrics = MetricsCallback(job_folder(job_dir).events, counter, on_event, rank=args.process_index,
                              world_size=args.world_size)
    control = ControlCallback(job_folder(job_dir).control, world_size=args.world_size)
    trainer = WorkbenchTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=evals or None,
        data_collator=Collator(tokenizer.pad_token_id, isolate=t.packing_attention == "isolated", count_tokens=True),
        processing_class=tokenizer, counter=counter,
        callbacks=[metrics, control, RetentionCallback(out, t.save_total_limit, metrics)],
    )
    trainer.metrics_callback = metrics
    return trainer, control


def run_job(job_dir: str | Path, resume_from_checkpoint: str | None = None,
            on_start: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Train one run of the job in ``job_dir``; ``on_start`` is called when training begins.

    The engine knows the job folder only: whoever runs it (the notebook, the in-process
    executor) tells the store, through ``on_start``, that the job is running. With
    ``training.num_processes`` > 1 this process launches the ranks and waits for them; rank 0
    writes ``result.json``, which is then this call's answer.
    """
    job_dir = Path(job_dir)
    _setup_logging(job_dir)
    try:
        cfg = TrainingConfig.model_validate(json.loads(job_folder(job_dir).spec.read_text())["config"])
        hardware.check_settings(cfg)  # before anything loads: a setting this machine cannot run fails at once
        n = cfg.training.num_processes
        if n > 1 and world()[1] == 1:
            job_folder(job_dir).result.unlink(missing_ok=True)
            launch(_rank_main, n, job_dir, resume_from_checkpoint, on_start=on_start)
            return json.loads(job_folder(job_dir).result.read_text())
        return _run(job_dir, resume_from_checkpoint, on_start)
    except BaseException as exc:
        log.exception("Training failed")
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and not isinstance(exc, DiskFull):
            raise DiskFull(errno.ENOSPC, f"disk full: {exc.strerror}", exc.filename) from exc
        raise
    finally:
        _close_logging()


def _rank_main(job_dir: Path, resume_from_checkpoint: str | None, started: Callable[[], Any]) -> None:
    """One data-parallel rank (a forked child of the launching process, which calls ``on_start``
    when rank 0 calls ``started``: the store's lock is never used across a fork)."""
    rank, _ = world()
    _setup_logging(job_dir, rank)
    try:
        _run(job_dir, resume_from_checkpoint, started if rank == 0 else None)
    except BaseException:
        log.exception("Training failed")
        raise
    finally:
        _close_logging()


def _run(job_dir: Path, resume_from_checkpoint: str | None, on_start: Callable[[], Any] | None) -> dict[str, Any]:
    spec = json.loads(job_folder(job_dir).spec.read_text())
    # kernel.json (pid, connection file, run) is written by the runner, which started this kernel
    started = time.time()
    trainer, control = build_trainer(spec, job_dir)
    ckpt = resume_from_checkpoint or None
    if ckpt and not Path(ckpt).is_absolute():
        ckpt = str(job_folder(job_dir).output / ckpt)
    if on_start is not None:
        on_start()
    if ckpt:
        log.info("Resuming from %s...", ckpt)
    else:
        log.info("Starting training...")
    out = trainer.train(resume_from_checkpoint=ckpt)
    state = trainer.state
    diverged = trainer.metrics_callback.diverged
    if diverged is not None:  # the loss went NaN/inf: nothing useful is left to train, the job fails
        result = {"status": "failed", "error": diverged["message"], "diverged": diverged,
                  "step": state.global_step, "total_steps": state.max_steps}
        log.error("Training stopped at step %d: %s", state.global_step, diverged["message"])
    elif control.paused_at is not None:
        result = {"status": "paused", "step": state.global_step,
                  "checkpoint": f"checkpoint-{state.global_step}", "total_steps": state.max_steps}
        log.info("Training paused at step %d", state.global_step)
    else:
        final = job_folder(job_dir).final
        trainer.save_model(str(final))
        result = {"status": "completed", "step": state.global_step, "total_steps": state.max_steps,
                  "train_loss": out.training_loss, "final_dir": "final", "metrics": out.metrics}
        log.info("Training completed: %d steps, train_loss %.4f", state.global_step, out.training_loss)
    result["run_seconds"] = round(time.time() - started, 3)
    result["world_size"] = trainer.args.world_size
    if trainer.is_world_process_zero():
        atomic_write_json(job_folder(job_dir).result, events.finite_json(result))
    return result
