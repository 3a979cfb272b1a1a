"""A job's checkpoints (``output/checkpoint-<step>/``) and final model (``output/final/``).

One rule for "best" (the lowest eval_loss logged at a checkpoint's own step, else the latest)
serves retention, listings, analytics, downloads, validation and serving.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, NotFound
from .layout import FINAL, OUTPUT

_STEP = re.compile(r"^(?:step-|checkpoint-)(\d+)$")


def trainer_state(ckpt: Path) -> dict[str, Any]:
    try:
        return json.loads((ckpt / "trainer_state.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return {}


def step_of(ckpt: Path) -> int:
    return int(ckpt.name.split("-")[-1])


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """The ``checkpoint-<step>`` folders, oldest step first."""
    dirs = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(dirs, key=step_of)


def checkpoint_eval_loss(ckpt: Path) -> float | None:
    """The eval_loss logged at this checkpoint's own step (None when none was)."""
    state = trainer_state(ckpt)
    step = state.get("global_step", 0)
    evals = [e for e in state.get("log_history", []) if "eval_loss" in e and e.get("step", 0) <= step]
    return evals[-1]["eval_loss"] if evals and evals[-1].get("step") == step else None


def best_checkpoint(ckpts: list[Path]) -> Path | None:
    """The checkpoint with the lowest eval_loss, else the latest (None when there are none)."""
    scored = [(loss, c) for c in ckpts if (loss := checkpoint_eval_loss(c)) is not None]
    if scored:
        return min(scored, key=lambda t: t[0])[1]
    return ckpts[-1] if ckpts else None


def prune_checkpoints(output_dir: Path, keep_last: int) -> list[str]:
    """Delete all but the last ``keep_last`` checkpoints and the best one."""
    ckpts = checkpoint_dirs(output_dir)
    keep = set(ckpts[-keep_last:])
    best = best_checkpoint(ckpts)
    if best is not None:
        keep.add(best)
    removed = []
    for c in ckpts:
        if c not in keep:
            shutil.rmtree(c, ignore_errors=True)
            removed.append(c.name)
    return removed


def find_checkpoint(job_dir: Path, ref: str | None) -> Path:
    """A checkpoint (or the final model) of the job by name, inside its output folder.

    ``ref``: ``checkpoint-N`` or ``step-N``; ``final`` (and its alias ``checkpoint-final``);
    ``best`` (``checkpoint-best``: the lowest eval_loss, else the latest checkpoint);
    ``latest``, empty or None: the final model when there is one, else the latest checkpoint.
    """
    out = (job_dir / OUTPUT).resolve()
    ref = (ref or "").strip()
    if ref.startswith("checkpoint-") and ref[len("checkpoint-"):] in ("final", "best", "latest"):
        ref = ref[len("checkpoint-"):]
    if ref in ("", "latest"):
        dirs = checkpoint_dirs(out)
        cand = out / FINAL if (out / FINAL).is_dir() else (dirs[-1] if dirs else None)
        if cand is None:
            raise NotFound("job has no checkpoints", field="checkpoint")
        return cand
    if ref == "best":
        best = best_checkpoint(checkpoint_dirs(out))
        if best is None:
            raise NotFound("job has no checkpoints", field="checkpoint")
        return best
    if "/" in ref or "\\" in ref or ref.startswith("."):
        raise InvalidInput(f"invalid checkpoint name '{ref}'", field="checkpoint")
    m = _STEP.match(ref)
    path = (out / (f"checkpoint-{m.group(1)}" if m else ref)).resolve()
    if path.parent != out or not path.is_dir():
        raise NotFound(f"checkpoint '{ref}' not found", field="checkpoint")
    return path


def describe(job_id: str, output_dir: Path) -> dict[str, Any]:
    """The listing the API returns: each checkpoint's step, epoch, losses, size; which is best."""
    dirs = checkpoint_dirs(output_dir)
    best_dir = best_checkpoint(dirs)
    best = best_dir.name if best_dir else None
    items = []
    for c in dirs:
        state = trainer_state(c)
        step = step_of(c)
        losses = [e["loss"] for e in state.get("log_history", []) if "loss" in e and e.get("step", 0) <= step]
        size = sum(f.stat().st_size for f in c.rglob("*") if f.is_file())
        items.append({"path": c.name, "step": step, "epoch": state.get("epoch"),
                      "eval_loss": checkpoint_eval_loss(c), "train_loss": losses[-1] if losses else None,
                      "size_mb": round(size / 2**20, 2),
                      "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c.stat().st_mtime)),
                      "is_best": c.name == best})
    return {"job_id": job_id, "checkpoints": items, "best_checkpoint": best, "total": len(items)}
