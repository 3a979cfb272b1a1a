"""JobService: start, inspect and control training jobs. The one API every front-end uses."""

from __future__ import annotations

import json
import platform
import threading
import time
from collections import deque
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import home
from ..configs import (
    RESUME_SAFE_KEYS,
    ConfigService,
    apply_overrides,
    deep_merge,
    parse_config,
)
from ..errors import Conflict, InvalidInput
from ..job_states import ACTIVE, FINAL, LIVE
from ..jobfiles import checkpoints as ckpts
from ..jobfiles import events, job_folder
from ..records import LOCAL_USER, new_id, now_iso
from ..store import Store, atomic_write_json, get_store
from .executor import (
    Executor,
    dispatch,
    executor_of,
    get_executor,
    launch_expired,
    register_executor,
    run_alive,
)
from .state import TABLE, set_state, try_set_state
from .status import build_status, cached_status_json, status_json


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("workbench", "torch", "transformers", "peft", "accelerate", "tokenizers", "papermill"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class JobService:
    def __init__(self, store: Store | None = None, executor: Executor | None = None):
        self.store = store or get_store()
        self.executor = executor or get_executor()  # where this service launches new runs
        register_executor(self.executor)
        self.configs = ConfigService(self.store)

    # ---- starting -------------------------------------------------------------------------
    def start(self, model: str | None, dataset: str, config: str | dict[str, Any] | None = None, *,
              overrides: dict[str, Any] | list[str] | None = None, name: str | None = None,
              eval_dataset: str | None = None, owner: str = LOCAL_USER,
              lineage: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a job: write its reproducibility record into ``jobs/<id>/`` and dispatch.

        ``lineage``: where it comes from — ``parent_job_id`` (a duplicate), ``sweep_id`` and ``trial``."""
        from ..datasets import DatasetService
        from ..models import resolve
        from ..quotas import check_active_jobs

        check_active_jobs(self.store, owner)
        datasets = DatasetService(self.store)
        ds = datasets.get(dataset, owner)
        ev = datasets.get(eval_dataset, owner) if eval_dataset else None
        cfg = self.configs.resolve(config, owner).dump()
        if isinstance(overrides, list):
            cfg = apply_overrides(cfg, overrides)
        elif overrides:
            cfg = deep_merge(cfg, overrides)
        if model:
            cfg["model"]["base_model"] = model
        cfg = parse_config(cfg).dump()
        model = cfg["model"]["base_model"]
        resolve(model, owner=owner)  # unknown model → clear error now, not minutes later
        job_id = new_id("job")
        jd = home.job_dir(job_id)
        jd.mkdir(parents=True)
        ds_path = Path(ds["path"])
        spec = {
            "job_id": job_id, "owner": owner, "model": model, "config": cfg, "initial_config": cfg,
            "config_ref": config if isinstance(config, str) else None,
            "dataset": {"id": ds["id"], "name": ds["name"], "version": ds.get("version", 1), "path": str(ds_path),
                        "sha256": _sha256(ds_path)},
            "eval_dataset": {"id": ev["id"], "path": ev["path"], "sha256": _sha256(Path(ev["path"]))} if ev else None,
            "seed": cfg["training"]["seed"], "versions": _versions(), "created_at": now_iso(),
        }
        atomic_write_json(job_folder(jd).spec, spec)
        now = now_iso()
        record = {
            "id": job_id, "owner": owner, "name": name or f"{model} on {ds['name']}", "model": model,
            "dataset_id": ds["id"], "config_id": config if isinstance(config, str) else None,
            "config": cfg, "status": "queued", "run": 1, "resume_from": None, "queued_at": time.time(),
            "created_at": now, "updated_at": now, "started_at": None, "finished_at": None,
            "error": None, "history": [{"at": now, "action": "queued"}],
            "dataset_version": ds.get("version", 1), "parent_job_id": (lineage or {}).get("parent_job_id"),
            "sweep_id": (lineage or {}).get("sweep_id"), "trial": (lineage or {}).get("trial"),
        }
        self.store.insert(TABLE, record)
        dispatch(self.executor, self.store)
        return self.get(job_id, owner)

    def execute(self, config: str | dict[str, Any] | None, data: bytes | Path, *, name: str | None = None,
                dataset_name: str = "execute", filename: str | None = None, owner: str = LOCAL_USER,
                max_bytes: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Register ``data`` (JSONL bytes, or a file) as a dataset and start a job on it: both or neither.

        Returns ``(job, dataset)``. When the job cannot start (a bad config, an unknown model, a
        quota), the dataset just made is deleted again, so a failure leaves nothing behind.
        """
        from ..datasets import DatasetService

        datasets = DatasetService(self.store)
        dataset = datasets.register(data, name=dataset_name, filename=filename, owner=owner, max_bytes=max_bytes)
        try:
            job = self.start(None, dataset["id"], config, name=name, owner=owner)
        except BaseException:
            datasets.delete(dataset["id"], owner)
            raise
        return job, dataset

    # ---- reading --------------------------------------------------------------------------
    def get(self, job_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        rec = self.store.require(TABLE, job_id, owner)
        return self._reconcile(rec)

    def list(self, owner: str = LOCAL_USER) -> list[dict[str, Any]]:
        jobs = [self._reconcile(j) for j in self.store.all(TABLE, owner)]
        return sorted(jobs, key=lambda j: j["queued_at"])

    def status(self, job_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        return build_status(self.get(job_id, owner))

    def status_json(self, job_id: str, owner: str = LOCAL_USER) -> bytes:
        """The status rendered as JSON; a settled job's is served from a cache while its files are unchanged."""
        return status_json(lambda: self.status(job_id, owner), job_id, owner)

    @staticmethod
    def cached_status_json(job_id: str, owner: str = LOCAL_USER) -> bytes | None:
        """The rendered status when the cache knows it for the files as they are now (a few stat calls)."""
        return cached_status_json(job_id, owner)

    def rows(self, job_id: str, owner: str = LOCAL_USER) -> list[dict[str, Any]]:
        """One row per logged step (train values with the step's eval merged in), in step order."""
        from ..jobfiles.rows import read_rows

        return read_rows(self.job_dir(job_id, owner))

    def metrics_json(self, job_id: str, owner: str = LOCAL_USER, kind: str = "local") -> bytes:
        """The metrics history rendered as JSON: ``local`` step rows, or ``train`` events."""
        from ..jobfiles.views import BODIES

        return BODIES.body(kind, job_id, job_folder(self.job_dir(job_id, owner)).events)

    def job_dir(self, job_id: str, owner: str = LOCAL_USER) -> Path:
        self.get(job_id, owner)
        return home.job_dir(job_id)

    def metrics(self, job_id: str, owner: str = LOCAL_USER, types: set[str] | None = None) -> list[dict[str, Any]]:
        return list(events.iter_events(job_folder(self.job_dir(job_id, owner)).events, types))

    def logs(self, job_id: str, owner: str = LOCAL_USER, tail: int | None = 500) -> list[str]:
        path = job_folder(self.job_dir(job_id, owner)).log
        try:
            with open(path, errors="replace") as fh:
                lines = deque(fh, maxlen=tail) if tail else list(fh)
        except FileNotFoundError:
            return []
        return [line.rstrip("\n") for line in lines]

    def checkpoints(self, job_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        return ckpts.describe(job_id, job_folder(self.job_dir(job_id, owner)).output)

    # ---- control --------------------------------------------------------------------------
    def pause(self, job_id: str, owner: str = LOCAL_USER, wait: float = 0.0) -> dict[str, Any]:
        """Ask the job to checkpoint and stop after its current optimizer step.

        Returns at once by default (the record as it stands: still ``running`` until the
        checkpoint is written); ``wait`` > 0 polls up to that many seconds for ``paused``.
        """
        rec = self.get(job_id, owner)
        if rec["status"] not in LIVE:
            raise Conflict(f"job '{job_id}' is {rec['status']}; only a pending or running job can be paused",
                           field="status")
        job_folder(job_id).control.write_text("pause")
        self._history(job_id, "pause requested")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            rec = self.get(job_id, owner)
            if rec["status"] not in LIVE:
                break
            time.sleep(0.2)
        return rec

    def update_hyperparameters(self, job_id: str, changes: dict[str, Any], owner: str = LOCAL_USER) -> dict[str, Any]:
        """Change resume-safe hyperparameters of a paused job; recorded in its history."""
        rec = self.get(job_id, owner)
        if rec["status"] != "paused":
            raise Conflict(f"job '{job_id}' is {rec['status']}; hyperparameters change only while paused",
                           field="status")
        flat = {k if "." in k else f"training.{k}": v for k, v in changes.items()}
        for key in flat:
            if key not in RESUME_SAFE_KEYS:
                raise InvalidInput(f"'{key}' cannot change on a paused job (safe: {', '.join(sorted(RESUME_SAFE_KEYS))})",
                                   field=key)
        cfg = rec["config"]
        for key, value in flat.items():
            section, name = key.split(".", 1)
            cfg = deep_merge(cfg, {section: {name: value}})
        cfg = parse_config(cfg).dump()
        jd = home.job_dir(job_id)
        spec = json.loads(job_folder(jd).spec.read_text())
        old = {k: spec["config"][k.split(".")[0]].get(k.split(".")[1]) for k in flat}
        spec["config"] = cfg
        atomic_write_json(job_folder(jd).spec, spec)
        self.store.update(TABLE, job_id, {"config": cfg})
        self._history(job_id, "hyperparameters changed", changes={k: {"from": old[k], "to": v} for k, v in flat.items()})
        return self.get(job_id, owner)

    def resume(self, job_id: str, owner: str = LOCAL_USER, changes: dict[str, Any] | None = None) -> dict[str, Any]:
        rec = self.get(job_id, owner)
        if rec["status"] != "paused":
            raise Conflict(f"job '{job_id}' is {rec['status']}; only a paused job can be resumed", field="status")
        if changes:
            self.update_hyperparameters(job_id, changes, owner)
        jd = home.job_dir(job_id)
        saved = ckpts.checkpoint_dirs(job_folder(jd).output)
        if not saved:
            raise Conflict(f"job '{job_id}' has no checkpoint to resume from", field="checkpoint")
        job_folder(jd).control.unlink(missing_ok=True)
        set_state(job_id, "queued", store=self.store, expect={"paused"}, resume_from=saved[-1].name,
                  run=rec.get("run", 1) + 1, queued_at=time.time())
        self._history(job_id, "resumed", checkpoint=saved[-1].name)
        dispatch(self.executor, self.store)
        return self.get(job_id, owner)

    def cancel(self, job_id: str, owner: str = LOCAL_USER, grace: float = 5.0, wait: bool = True,
               reason: str | None = None) -> dict[str, Any]:
        """Mark the job cancelled (final at once), then SIGINT, a grace period and SIGKILL of the
        runner's and kernel's groups. ``wait=False`` stops the processes in a background thread,
        so a server answers at once; the queue is dispatched when they are gone."""
        rec = self.get(job_id, owner)
        if rec["status"] in FINAL:
            raise Conflict(f"job '{job_id}' is already {rec['status']}", field="status")
        job_folder(job_id).control.write_text("cancel")
        rec = set_state(job_id, "cancelled", store=self.store, error=None, **({"reason": reason} if reason else {}))
        self._history(job_id, "cancelled", **({"reason": reason} if reason else {}))

        def stop() -> None:
            (executor_of(rec) or self.executor).stop(rec, grace=grace)
            dispatch(self.executor, self.store)

        if wait:
            stop()
        else:
            threading.Thread(target=stop, name=f"cancel-{job_id}", daemon=True).start()
        return self.get(job_id, owner)

    def delete(self, job_id: str, owner: str = LOCAL_USER) -> None:
        rec = self.get(job_id, owner)
        if rec["status"] in ACTIVE:
            raise Conflict(f"job '{job_id}' is {rec['status']}; cancel it first", field="status")
        import shutil

        self.store.delete(TABLE, job_id)
        shutil.rmtree(home.job_dir(job_id), ignore_errors=True)

    # ---- internals ------------------------------------------------------------------------
    def _history(self, job_id: str, action: str, **details: Any) -> None:
        with self.store.transaction() as tx:
            rec = tx.get(TABLE, job_id)
            if rec is not None:
                tx.update(TABLE, job_id, {"history": rec.get("history", []) + [{"at": now_iso(), "action": action, **details}]})

    def _reconcile(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Mark a job failed when its process is gone without having reported an outcome.

        Whoever notices a dead job frees its slot: the queue is dispatched right away.
        """
        if rec["status"] not in LIVE:
            return rec
        if rec.get("launching"):
            if not launch_expired(rec):
                return rec
            # Its dispatcher died between claim and launch: dispatch fails the stale claim (in the
            # same transaction that re-checks it) and hands the slot to the next queued job.
            dispatch(self.executor, self.store)
            return self.store.get(TABLE, rec["id"]) or rec
        if run_alive(rec):
            return rec
        time.sleep(0.2)  # the runner may be writing its outcome right now
        fresh = self.store.get(TABLE, rec["id"]) or rec
        if fresh["status"] not in LIVE or fresh.get("launching"):
            return fresh
        if fresh.get("runner_pid") != rec.get("runner_pid") and run_alive(fresh):
            return fresh
        failed = try_set_state(rec["id"], "failed", store=self.store, expect=set(LIVE),
                               error=f"the job process (pid {rec.get('runner_pid')}) died without reporting "
                                     "a result (killed, or out of memory)")
        if failed is None:
            return self.store.get(TABLE, rec["id"]) or fresh
        dispatch(self.executor, self.store)
        return self.store.get(TABLE, rec["id"]) or failed

    def reconcile_all(self) -> list[str]:
        """Called when a workbench process starts: re-attach to live jobs, fail dead ones."""
        failed = []
        for rec in self.store.all(TABLE):
            if self._reconcile(rec)["status"] == "failed" and rec["status"] != "failed":
                failed.append(rec["id"])
        dispatch(self.executor, self.store)
        return failed
