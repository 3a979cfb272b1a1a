"""Helpers for tests and benchmarks of the workbench (public, like ``starlette.testclient``).

Everything here sets up real state the way the product makes it; nothing is mocked:

* :data:`FAST` and :func:`fast` — the training overrides that make tiny-chat jobs take seconds
  (1 torch thread, small batches, short sequences), with :func:`as_overrides` and
  :func:`as_cli_args` rendering them as ``KEY=VALUE`` overrides or ``workbench train --set`` args;
* :func:`scratch_home` — a scratch ``WORKBENCH_HOME`` with tiny-chat available, the environment
  restored afterwards;
* :func:`train_finished_job`, :func:`copy_job` and :func:`finished_job` — a finished tiny-chat job
  trained once into a cache folder, then copied (fresh id, any owner) into whichever home needs one;
* :func:`write_synthetic_history` — a long job's metrics log (100k steps and more) in the engine's
  event format, without training.

Used by ``tests/`` and ``bench/``; it imports torch and the engine only when a job is trained.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .jobfiles import JobFolder
from .records import LOCAL_USER

__all__ = ["FAST", "FINISHED_LORA", "TrainedJob", "as_cli_args", "as_overrides", "copy_job", "fast",
           "finished_job", "scratch_home", "serve_in_thread", "train_finished_job", "write_synthetic_history"]

# --- the fast training config ----------------------------------------------------------------------

FAST: dict[str, Any] = {"training": {
    "max_steps": 10, "logging_steps": 5, "logging_first_step": False, "save_steps": 5, "torch_threads": 1,
    "per_device_train_batch_size": 4, "max_seq_length": 256, "learning_rate": 1e-3,
}}
"""A 10-step tiny-chat run on 1 torch thread: a log line and a checkpoint every 5 steps (not step 1)."""


def fast(**changes: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`FAST` deep-merged with ``changes`` per section, as a new dict.

    ``fast(training={"max_steps": 20, "save_steps": 10})``; a value of ``None`` removes the key,
    so the template's default applies: ``fast(training={"learning_rate": None})``.
    """
    out = copy.deepcopy(FAST)
    _merge(out, changes)
    return out


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value) if not isinstance(value, Mapping) else _pruned(value)


def _pruned(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _merge(out, value)
    return out


def as_overrides(cfg: Mapping[str, Any]) -> list[str]:
    """``cfg`` as ``section.key=value`` strings (``JobService.start(overrides=[...])``, ``--set``)."""
    out = []
    for section, values in cfg.items():
        for key, value in values.items():
            out.append(f"{section}.{key}={value if isinstance(value, str) else json.dumps(value)}")
    return out


def as_cli_args(cfg: Mapping[str, Any]) -> list[str]:
    """``cfg`` as ``workbench train`` arguments: ``["--set", "training.max_steps=10", ...]``."""
    return [arg for item in as_overrides(cfg) for arg in ("--set", item)]


# --- a scratch home -------------------------------------------------------------------------------

@contextmanager
def scratch_home(path: Path | None = None, *, tiny_chat: Path | None = None,
                 env: Mapping[str, str | None] | None = None, prefix: str = "wb-home-",
                 install: bool = False) -> Iterator[Path]:
    """Point ``WORKBENCH_HOME`` at ``path`` (a new temp folder when ``None``) for the ``with`` block.

    ``tiny_chat`` names the tiny-chat build (``WORKBENCH_TINY_CHAT_CACHE``) that every home
    copies instead of building its own; ``None`` leaves that variable as it is. Sets
    ``HF_HUB_OFFLINE=1``; ``env`` adds variables (``None`` unsets one). With ``install``,
    tiny-chat is copied (or built) into the home now rather than on the first job.
    Every variable is restored when the block ends, also on an error.
    """
    from .tinymodel import CACHE_ENV

    home = Path(path) if path is not None else Path(tempfile.mkdtemp(prefix=prefix))
    home.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, str | None] = {"WORKBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    if tiny_chat is not None:
        wanted[CACHE_ENV] = str(tiny_chat)
    wanted.update(env or {})
    saved = {name: os.environ.get(name) for name in wanted}
    try:
        for name, value in wanted.items():
            _set_env(name, value)
        if install:
            from .tinymodel import ensure_tiny_chat

            ensure_tiny_chat(progress=False)
        yield home
    finally:
        for name, value in saved.items():
            _set_env(name, value)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


# --- finished jobs --------------------------------------------------------------------------------

FINISHED_LORA = fast(training={"eval_steps": 5})
"""The shared finished job's overrides: LoRA, 10 steps, an eval and a checkpoint at 5 and 10 (+ ``final``)."""


@dataclass(frozen=True)
class TrainedJob:
    """A finished job in a home of its own (the cache), to be copied with :func:`copy_job`."""

    home: Path
    job_id: str

    @property
    def folder(self) -> Path:
        return self.home / "jobs" / self.job_id

    def record(self) -> dict[str, Any]:
        """Its store record, read from the cache's ``store.json``."""
        from .jobs.state import TABLE

        rows = json.loads((self.home / "store.json").read_text()).get(TABLE, {})
        return next(r for r in rows.values() if r["id"] == self.job_id)


def train_finished_job(cache: Path, *, config: str = "lora", overrides: Mapping[str, Any] | None = None,
                       tiny_chat: Path | None = None) -> TrainedJob:
    """A completed tiny-chat job on the bundled sample, trained in this process into ``cache``.

    Trained once per ``(config, overrides)``: the job lives in its own home under ``cache``
    (``<cache>/<config>-<hash>/``) and later calls, from any process, find it there. ``overrides``
    default to :data:`FINISHED_LORA`. Nothing of the caller's environment changes.
    """
    from filelock import FileLock

    overrides = dict(FINISHED_LORA if overrides is None else overrides)
    key = hashlib.sha256(json.dumps([config, overrides], sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache) / f"{config}-{key}"
    marker = root / "finished.json"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock"), timeout=900):
        if marker.is_file():
            return TrainedJob((root / "home").resolve(), json.loads(marker.read_text())["job_id"])
        shutil.rmtree(root, ignore_errors=True)  # a run that died half-way
        with scratch_home(root / "home", tiny_chat=tiny_chat) as home:
            import torch

            from .datasets import DatasetService
            from .jobs.executor import InProcessExecutor
            from .jobs.service import JobService

            torch.set_num_threads(1)
            sample = DatasetService().register_sample()
            job = JobService(executor=InProcessExecutor()).start("tiny-chat", sample["id"], config,
                                                                 overrides=copy.deepcopy(overrides))
            if job["status"] != "completed":
                raise RuntimeError(f"the shared job did not complete: {job.get('status')}: {job.get('error')}")
        marker.write_text(json.dumps({"job_id": job["id"], "config": config, "overrides": overrides}))
        return TrainedJob(home.resolve(), job["id"])


TEXT_SUFFIXES = {".json", ".jsonl", ".log", ".md", ".txt", ".jinja"}


def copy_job(source: TrainedJob, *, owner: str = LOCAL_USER, name: str | None = None) -> dict[str, Any]:
    """Copy ``source`` into the current ``WORKBENCH_HOME`` as a new job of ``owner``; returns its record.

    The copy is the job as if trained here: the whole folder (``job.json``, ``metrics.jsonl``,
    ``history.jsonl``, ``summary.json``, the log, every checkpoint and ``final``) and the store
    record with its status, result and config. The job id, the home's path and the dataset are
    rewritten wherever they appear in those files, in each checkpoint's ``training_args.bin``
    and in the record (owner set to ``owner``). The job's dataset is the bundled
    sample, registered for ``owner`` here when it is not yet; tiny-chat is installed here too.
    """
    from . import home
    from .datasets import DatasetService
    from .jobs.state import TABLE
    from .records import new_id
    from .store import atomic_write_json, get_store
    from .tinymodel import ensure_tiny_chat

    record = source.record()
    spec = json.loads(JobFolder(source.folder).spec.read_text())
    ensure_tiny_chat(progress=False)
    sample = DatasetService().register_sample(owner)
    new = new_id("job")
    swaps = [(source.job_id, new), (str(source.home.resolve()), str(home.home())),
             (spec["dataset"]["id"], sample["id"])]

    def rewrite(text: str) -> str:
        for old, repl in swaps:
            text = text.replace(old, repl)
        return text

    dest = home.job_dir(new)
    shutil.copytree(source.folder, dest)  # file times kept (copy2), as the job left them
    for path in sorted(dest.rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            text = path.read_text()
            if rewrite(text) != text:
                path.write_text(rewrite(text))
        elif path.name == "training_args.bin":
            _rewrite_training_args(path, rewrite)
    spec = json.loads(JobFolder(dest).spec.read_text())
    spec["owner"] = owner
    spec["dataset"] = {"id": sample["id"], "name": sample["name"], "path": sample["path"], "sha256": sample["sha256"]}
    atomic_write_json(JobFolder(dest).spec, spec)
    copied = json.loads(rewrite(json.dumps(record)))
    copied.update({"owner": owner, "dataset_id": sample["id"]})
    if name is not None:
        copied["name"] = name
    return get_store().insert(TABLE, copied)


def _rewrite_training_args(path: Path, rewrite: Any) -> None:
    """The pickled ``TrainingArguments`` of a checkpoint, its paths (``output_dir``) rewritten."""
    import torch

    args = torch.load(path, weights_only=False)
    for field, value in vars(args).items():
        if isinstance(value, str) and rewrite(value) != value:
            setattr(args, field, rewrite(value))
    torch.save(args, path)


def finished_job(cache: Path, *, owner: str = LOCAL_USER, config: str = "lora",
                 overrides: Mapping[str, Any] | None = None, tiny_chat: Path | None = None) -> dict[str, Any]:
    """A completed tiny-chat job of ``owner`` in the current home: trained once into ``cache``, then copied."""
    return copy_job(train_finished_job(cache, config=config, overrides=overrides, tiny_chat=tiny_chat), owner=owner)


# --- a real server in this process ---------------------------------------------------------------

def serve_in_thread(app: Any) -> tuple[Any, Any, int]:
    """uvicorn serving ``app`` on a free loopback port in a daemon thread: ``(server, thread, port)``.

    The socket is bound here (no port race); stop with ``server.should_exit = True; thread.join()``."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5,
                            ws_ping_interval=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return server, thread, port


class LoopbackJSON:
    """A JSON-over-HTTP test double of a remote service (an OpenAI-compatible API) on 127.0.0.1, in a
    daemon thread: the real client and SDK stay in the path, only the far end is scripted.

    ``respond(method, path, headers, body)`` returns ``(status, payload)``; ``headers`` are lower-cased,
    ``body`` is the request's JSON (``{}`` for a GET)."""

    def __init__(self, respond: Any, *, name: str = "loopback", host: str = "127.0.0.1", port: int = 0):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if method == "POST" else {}
                status, payload = respond(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# --- a long synthetic history ---------------------------------------------------------------------

FIXED_TIMESTAMP = "2026-01-01T00:00:00.000Z"


def write_synthetic_history(path: Path, points: int, *, start: int = 1, writer: Any = None,
                            detailed: bool = False) -> None:
    """Append ``points`` train events (steps ``start`` on, an eval every 100 steps) to the log at ``path``.

    The engine's format; the loss decays from 5 to 0.4 over ``points`` steps. ``writer`` (a
    ``jobfiles.rows.RowWriter``) is fed each event as the training callback does, and flushed at
    the end when ``detailed``. Plain (the default): constant learning rate and perplexities,
    every event stamped :data:`FIXED_TIMESTAMP`. ``detailed``: a run's opening status event, a
    linearly decaying learning rate, perplexities from the losses, token counters, and one
    second per step, ending now.
    """
    def emit(fh: Any, ev: dict[str, Any]) -> None:
        fh.write(json.dumps(ev) + "\n")
        if writer is not None:
            fh.flush()
            writer.add(ev)

    t0 = time.time() - points

    def stamp(step: int) -> str:
        return _iso(t0 + step) if detailed else FIXED_TIMESTAMP

    with Path(path).open("a") as fh:
        if detailed:
            emit(fh, {"type": "status", "status": "running", "message": "synthetic", "total_steps": points,
                      "total_epochs": 1, "total_samples": points * 8, "timestamp": _iso(t0)})
        for step in range(start, start + points):
            loss = 0.4 + 4.6 * math.exp(-step / (points / 5))
            train: dict[str, Any] = {
                "type": "train", "step": step, "epoch": round(step / points, 5), "total_steps": points,
                "loss": round(loss, 4)}
            if detailed:
                train.update({"learning_rate": 2e-4 * (1 - step / points), "grad_norm": 0.8,
                              "train_perplexity": round(math.exp(loss), 4), "samples_per_second": 12.5,
                              "tokens_per_second": 1600.0, "trained_tokens_per_second": 700.0,
                              "num_tokens_processed": step * 1600, "num_tokens_trained": step * 700})
            else:
                train.update({"learning_rate": 2e-4, "grad_norm": 0.8, "train_perplexity": 2.0,
                              "samples_per_second": 12.5, "tokens_per_second": 1600.0,
                              "trained_tokens_per_second": 700.0})
            train.update({"rss_gb": 1.2, "gpu_memory_allocated_gb": None, "gpu_memory_reserved_gb": None,
                          "gpu_utilization_percent": None, "timestamp": stamp(step)})
            emit(fh, train)
            if step % 100 == 0:
                emit(fh, {"type": "eval", "step": step, "epoch": round(step / points, 5),
                          "eval_loss": round(loss * 1.05, 4),
                          "eval_perplexity": round(math.exp(loss * 1.05), 4) if detailed else 3.0,
                          "timestamp": stamp(step)})
    if detailed and writer is not None:
        writer.flush()  # the run ended


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class IdleExecutor:
    """Accepts every launch and runs nothing: a started job stays ``pending`` (launching).

    Enough for control-flow and conflict tests, in milliseconds.
    """

    name = "idle"

    def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        return {}

    def is_alive(self, job: dict[str, Any]) -> bool:
        return False

    def stop(self, job: dict[str, Any], grace: float = 5.0) -> None:
        pass
