"""Data-parallel runs (``training.num_processes`` > 1), launched from the job's kernel by accelerate.

Why accelerate's ``notebook_launcher`` rather than ``torchrun`` in a subprocess:

* the kernel has already imported torch, transformers and peft; the launcher forks it, so every
  rank starts in milliseconds instead of re-importing the stack for 8-13 s;
* underneath is torch's elastic agent, torchrun's own: it sets ``RANK``/``WORLD_SIZE``/``MASTER_*``,
  watches every rank every 0.1 s and, when one dies, stops the others and raises
  ``ChildFailedError`` naming the rank and its reason (exit code, signal or traceback). That is the
  job's crash detection: :class:`RankFailed` carries the reason into the notebook, and the runner
  fails the job with it;
* multi-node runs take their machine count, rank and rendezvous address from accelerate's own
  config file (``accelerate config``; :func:`cluster_options`), as ``accelerate launch`` would.

The forked ranks stay in the kernel's process group, so a cancel's group SIGKILL reaches them all.
Each rank also dies with the kernel (``PR_SET_PDEATHSIG``) and records its pid in
``ranks/rank-<i>.json`` for the executor's stop. Ranks agree through collectives, never through
files: :func:`any_rank` makes a pause land on the same step in every process. The backend is
gloo on CPU and NCCL on GPUs (``TrainingArguments.ddp_backend``, set by the engine).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..jobfiles import job_folder
from ..store import atomic_write_json

log = logging.getLogger("workbench.training")


class RankFailed(RuntimeError):
    """A rank of a data-parallel run died or raised; the message says which and why."""


def world() -> tuple[int, int]:
    """(global rank, world size) of this process: (0, 1) outside a data-parallel run."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _reduce(values: list[float], op: Any) -> list[float]:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.tolist()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (one tiny all-reduce; free with one process)."""
    return bool(_reduce([float(flag)], torch.distributed.ReduceOp.MAX)[0])


def sum_ranks(values: list[int]) -> list[int]:
    """Element-wise sums over the ranks (token counters: the job's totals, not rank 0's share)."""
    return [int(v) for v in _reduce([float(v) for v in values], torch.distributed.ReduceOp.SUM)]


def mean_over_ranks(value: float) -> float:
    """The mean of ``value`` over the ranks (every rank must call it)."""
    return _reduce([value], torch.distributed.ReduceOp.SUM)[0] / world()[1]


def cluster_options(path: str | Path | None = None) -> dict[str, Any]:
    """``notebook_launcher``'s multi-node arguments from accelerate's config file, when it names > 1 machine.

    The file is ``ACCELERATE_CONFIG_FILE``, else accelerate's default (``accelerate config`` writes it).
    On one machine, or without the file, nothing: a local run on 127.0.0.1.
    """
    import yaml

    if path is None:
        from accelerate.commands.config.config_args import default_config_file

        path = os.environ.get("ACCELERATE_CONFIG_FILE") or default_config_file
    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except (FileNotFoundError, IsADirectoryError):
        return {}
    if int(cfg.get("num_machines") or 1) <= 1:
        return {}
    out: dict[str, Any] = {"num_nodes": int(cfg["num_machines"]), "node_rank": int(cfg.get("machine_rank") or 0)}
    if cfg.get("main_process_ip"):
        out["master_addr"] = str(cfg["main_process_ip"])
    if cfg.get("main_process_port"):
        out["use_port"] = str(cfg["main_process_port"])
    if cfg.get("rdzv_backend"):
        out["rdzv_backend"] = str(cfg["rdzv_backend"])
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(fn: Callable[..., Any], num_processes: int, job_dir: Path, *args: Any,
           on_start: Callable[[], Any] | None = None) -> None:
    """Run ``fn(job_dir, *args, started)`` in ``num_processes`` forked ranks; returns when all have ended.

    ``started()``, called in a rank, makes this process call ``on_start`` (through a marker file,
    so the store is written by this process and never with a lock inherited across the fork).
    Raises :class:`RankFailed` with the first failed rank's reason.
    """
    from accelerate import notebook_launcher
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    opts = {"use_port": str(_free_port()), **cluster_options()}
    log.info("Launching %d data-parallel processes (%s)", num_processes,
             "NCCL" if torch.cuda.is_available() else "gloo")
    folder = job_folder(job_dir)
    folder.ranks.mkdir(exist_ok=True)
    for old in folder.ranks.glob("rank-*.json"):
        old.unlink(missing_ok=True)
    if not torch.distributed.is_initialized():
        # A single-process run earlier in this process (the in-process executor, a bench) left
        # accelerate's process-wide state behind, which the launcher refuses to fork; it holds
        # nothing a new run needs (accelerate's own tests reset it the same way).
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    marker = folder.ranks / "started"
    marker.unlink(missing_ok=True)
    done = threading.Event()
    if on_start is not None:
        threading.Thread(target=_call_when, args=(marker, on_start, done), daemon=True).start()
    try:
        with contextlib.redirect_stdout(sys.__stdout__ or sys.stdout):  # accelerate's banner: not a cell output
            notebook_launcher(_rank_entry, (fn, job_dir, *args, marker.touch), num_processes=num_processes, **opts)
    except ChildFailedError as exc:
        raise RankFailed(describe_failure(exc, job_dir)) from None
    finally:
        done.set()


def _call_when(marker: Path, on_start: Callable[[], Any], done: threading.Event) -> None:
    while not done.wait(0.1):
        if marker.exists():
            on_start()
            return


def describe_failure(exc: Any, job_dir: Path | None = None) -> str:
    """Which rank failed first, and why: the cause, not its echo in the peers.

    When a rank dies (SIGKILL, out of memory) its peers fail in their next collective
    ("connection reset by peer"), often before the agent sees the death, and the agent reports
    only the first failure it sees. So each rank records how it ended in ``ranks/rank-<i>.json``:
    a rank that recorded nothing was killed, and it is named first.
    """
    records = _rank_records(job_dir) if job_dir is not None else []
    killed = [r for r in records if "exit" not in r]
    if killed:
        r = killed[0]
        return (f"rank {r['rank']} (pid {r['pid']}) was killed without a word (a signal such as SIGKILL, "
                "e.g. from the out-of-memory killer); the other ranks were stopped")
    errors = [r for r in records if r.get("exit") == "error" and not _peer_echo(r.get("error", ""))]
    if errors:
        r = errors[0]
        return f"rank {r['rank']} (pid {r['pid']}) failed: {r['error']}"
    rank, failure = exc.get_first_failure()
    who = f"rank {rank} (pid {failure.pid})"
    if failure.exitcode is not None and failure.exitcode < 0:
        return f"{who} was killed by {failure.signal_name()} (out of memory, or killed)"
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    lines = [line for line in str(message or "").strip().splitlines() if line.strip()]
    reason = lines[-1].strip() if lines and "error_file" not in lines[-1] else f"exit code {failure.exitcode}"
    return f"{who} failed: {reason}"


def _peer_echo(error: str) -> bool:
    """A collective that failed because a peer went away (gloo, NCCL), or the agent's stop."""
    return any(k in error for k in ("Connection reset by peer", "Connection closed by peer", "NCCL", "got signal"))


def _rank_records(job_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(job_folder(job_dir).ranks.glob("rank-*.json")):
        with contextlib.suppress(FileNotFoundError, ValueError):
            out.append(json.loads(path.read_text()))
    return out


def _rank_entry(fn: Callable[..., Any], job_dir: Path, *args: Any) -> Any:
    """The first thing every forked rank runs: die with the kernel, record itself, then ``fn``."""
    with contextlib.suppress(Exception):  # Linux only; elsewhere the process group still reaches it
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    sys.stdout, sys.stderr = sys.__stdout__ or sys.stdout, sys.__stderr__ or sys.stderr  # not the kernel's streams
    rank = int(os.environ.get("RANK", 0))
    import psutil

    me = psutil.Process()
    path = job_folder(job_dir).rank_file(rank)
    record = {"rank": rank, "local_rank": int(os.environ.get("LOCAL_RANK", rank)),
              "world_size": int(os.environ.get("WORLD_SIZE", 1)), "pid": me.pid, "create_time": me.create_time(),
              "started_at": time.time()}
    atomic_write_json(path, record)
    try:
        fn(job_dir, *args)
        atomic_write_json(path, {**record, "exit": "ok"})
    except BaseException as exc:  # recorded for describe_failure, then the agent sees it too
        atomic_write_json(path, {**record, "exit": "error", "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            with contextlib.suppress(Exception):
                torch.distributed.destroy_process_group()
