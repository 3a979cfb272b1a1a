"""Trainer callbacks: metrics to ``metrics.jsonl``, pause control, checkpoint retention.

They are the only channel between a job's kernel and the rest of the workbench:
other processes tail ``metrics.jsonl`` and write ``control``; nothing is shared in memory.

In a data-parallel run every rank runs them; rank 0 alone writes the job folder, and the
ranks agree through collectives (token totals, a pause) so that they stay in step.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import psutil
import torch
from transformers import TrainerCallback

from ..jobfiles import events, summary
from ..jobfiles.checkpoints import prune_checkpoints
from ..jobfiles.events import append_event
from ..jobfiles.rows import RowWriter
from ..records import now_iso
from .distributed import any_rank, sum_ranks

log = logging.getLogger("workbench.training")


class TokenCounter:
    """Processed (non-padding) and trained (label) tokens, counted by the Trainer subclass."""

    def __init__(self) -> None:
        self.processed = 0
        self.trained = 0
        self.samples = 0


class MetricsCallback(TrainerCallback):
    """Train, eval and status events from rank 0; token counts are the sums over all ranks."""

    def __init__(self, metrics_path: Path, counter: TokenCounter, on_event: Any = None, rank: int = 0,
                 world_size: int = 1):
        self.path = metrics_path
        self.rank = rank
        self.world_size = world_size
        self.counter = counter
        self.on_event = on_event
        self.proc = psutil.Process()
        self._mark = (time.perf_counter(), 0, 0, 0)
        self.last_train_loss: float | None = None
        self.eval_by_step: dict[int, float] = {}
        self.diverged: dict[str, Any] | None = None  # step, metric, value, message
        self.summary = summary.load_summary(metrics_path.parent)
        self.history = RowWriter(metrics_path.parent) if rank == 0 else None  # it may write as it opens

    def _emit(self, event: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        event = events.finite_event({"timestamp": now_iso(), **event})  # NaN/inf: null + "nonfinite"
        append_event(self.path, event)
        self.history.add(event)
        summary.save_summary(self.path.parent, summary.fold(self.summary, event))
        if self.on_event:
            self.on_event(event)

    def on_train_begin(self, args, state, control, **kw):
        self._emit({"type": "status", "status": "running", "total_steps": state.max_steps,
                    "total_epochs": args.num_train_epochs, "total_samples": len(kw["train_dataloader"].dataset)
                    if kw.get("train_dataloader") is not None else None, "resumed_step": state.global_step,
                    "world_size": self.world_size})
        self._mark = (time.perf_counter(), *self._totals())

    def _totals(self) -> tuple[int, int, int]:
        c = self.counter
        if self.world_size == 1:
            return c.processed, c.trained, c.samples
        processed, trained, samples = sum_ranks([c.processed, c.trained, c.samples])  # every rank calls this
        return processed, trained, samples

    def on_train_end(self, args, state, control, **kw):
        if self.history is not None:
            self.history.flush()

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "eval_loss" in logs:
            self.eval_by_step[state.global_step] = logs["eval_loss"]
            self._emit({"type": "eval", "step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                        "eval_loss": logs["eval_loss"], "eval_perplexity": summary.perplexity(logs["eval_loss"])})
        elif "loss" in logs:
            self._train_event(args, state, logs)
        else:
            return
        self._check_divergence(state, control, logs)

    def _check_divergence(self, state, control, logs: dict[str, Any]) -> None:
        """A NaN or infinite loss: report it once, and stop (nothing useful is left to train).

        No checkpoint and no evaluation of the broken weights: the engine fails the job with
        the message, so the queue moves on.
        """
        for metric in ("loss", "eval_loss"):
            value = events.nonfinite_value(logs.get(metric))
            if value and self.diverged is None:
                message = summary.divergence_message(metric, state.global_step, value)
                self.diverged = {"step": state.global_step, "metric": metric, "value": value, "message": message}
                self._emit({"type": "diverged", **self.diverged})
                log.error(message)
        if self.diverged is not None:
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False

    def _train_event(self, args, state, logs: dict[str, Any]) -> None:
        epoch = round(state.epoch or 0.0, 4)
        now = time.perf_counter()
        t0, p0, tr0, s0 = self._mark
        dt = max(now - t0, 1e-9)
        processed, trained, samples = self._totals()
        self._mark = (now, processed, trained, samples)
        cuda = torch.cuda.is_available()
        self.last_train_loss = logs["loss"]
        self._emit({
            "type": "train", "step": state.global_step, "epoch": epoch, "total_steps": state.max_steps,
            "loss": logs["loss"], "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
            "train_perplexity": summary.perplexity(logs["loss"]),
            "samples_per_second": round((samples - s0) / dt, 3),
            "tokens_per_second": round((processed - p0) / dt, 1),
            "trained_tokens_per_second": round((trained - tr0) / dt, 1),
            "num_tokens_processed": processed, "num_tokens_trained": trained,
            "rss_gb": round(self.proc.memory_info().rss / 2**30, 4),
            "gpu_memory_allocated_gb": round(torch.cuda.memory_allocated() / 2**30, 3) if cuda else None,
            "gpu_memory_reserved_gb": round(torch.cuda.memory_reserved() / 2**30, 3) if cuda else None,
            "gpu_utilization_percent": _gpu_util() if cuda else None,
        })
        if self.rank == 0:
            log.info("step %d/%d epoch %.2f loss %.4f lr %.3g", state.global_step, state.max_steps, epoch,
                     logs["loss"], logs.get("learning_rate") or 0)


def _gpu_util() -> float | None:
    try:
        return float(torch.cuda.utilization())
    except Exception:  # pynvml missing or unsupported device
        return None


class ControlCallback(TrainerCallback):
    """Reads the job's ``control`` file; on ``pause`` saves a checkpoint and stops.

    The pause lands at the end of the next optimizer step, whatever ``logging_steps`` is. In a
    data-parallel run the ranks agree on it after every step (one tiny all-reduce), so all of them
    stop at the same step and save one checkpoint together.
    The logged loss curve after resume is still identical to an uninterrupted run's: the
    checkpoint keeps the partial logging window (the Trainer's loss accumulated since its
    last log, and that log's step), and the resumed run continues it
    (``WorkbenchTrainer._save_checkpoint`` and ``_restore_logging_window`` in the engine).
    """

    def __init__(self, control_path: Path, world_size: int = 1):
        self.path = control_path
        self.world_size = world_size
        self.paused_at: int | None = None

    def requested(self) -> str:
        try:
            return self.path.read_text().strip()
        except FileNotFoundError:
            return ""

    def on_step_end(self, args, state, control, **kw):
        pause = self.requested() == "pause"
        if self.world_size > 1:
            pause = any_rank(pause)
        if pause and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.paused_at = state.global_step
            log.info("pause requested: saving checkpoint at step %d and stopping", state.global_step)
        return control


class RetentionCallback(TrainerCallback):
    """Keeps the best checkpoint by eval_loss plus the last K; a limit never deletes the best."""

    def __init__(self, output_dir: Path, keep_last: int, metrics: MetricsCallback):
        self.output_dir = output_dir
        self.keep_last = keep_last
        self.metrics = metrics

    def on_save(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        step = state.global_step
        eval_loss = self.metrics.eval_by_step.get(step)
        ckpt = self.output_dir / f"checkpoint-{step}"
        append_event(self.metrics.path, {"type": "checkpoint", "step": step, "epoch": round(state.epoch or 0, 4),
                                         "path": ckpt.name, "eval_loss": eval_loss,
                                         "train_loss": self.metrics.last_train_loss})
        prune_checkpoints(self.output_dir, self.keep_last)
