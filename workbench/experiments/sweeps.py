"""Hyperparameter sweeps: every trial a normal job, driven by one thread per sweep in the process that
runs it (the server, the CLI, a notebook), resumed when a server starts.

``grid`` walks every combination, ``random`` samples ``max_trials`` points (seeded), ``optuna`` asks
optuna's TPE sampler for each trial and prunes bad ones from their intermediate eval losses (a
median pruner: a trial whose eval loss at a step is worse than the median of the finished trials' at
that step is cancelled, with the reason ``pruned``). The metric is minimised: ``eval_loss`` (the
trial's best) by default, or ``train_loss`` (its last).

The sweep's record (TinyDB ``sweeps``) holds the trials and is the whole state: a restarted driver
reads it, re-tells optuna the finished trials, and goes on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from ..errors import InvalidInput, NotFound, QuotaExceeded, Unavailable
from ..job_states import FINAL
from ..records import LOCAL_USER, new_id, now_iso
from ..store import Store, get_store
from . import space as sp

TABLE = "sweeps"
STRATEGIES = ("grid", "random", "optuna")
METRICS = ("eval_loss", "train_loss")
POLL_S = 0.5
PRUNED = "pruned"
log = logging.getLogger("workbench.experiments")
_running: dict[str, threading.Thread] = {}
_lock = threading.Lock()


def _metric(job_id: str, owner: str, metric: str) -> tuple[float | None, list[tuple[int, float]]]:
    """The trial's value (best eval loss, or last train loss) and its eval losses by step."""
    from ..jobs.service import JobService

    rows = JobService().rows(job_id, owner)
    evals = [(int(r["step"]), float(r["eval_loss"])) for r in rows if r.get("eval_loss") is not None]
    if metric == "eval_loss":
        return (min(v for _, v in evals) if evals else None), evals
    train = [float(r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    return (train[-1] if train else None), evals


class SweepService:
    def __init__(self, store: Store | None = None):
        self.store = store or get_store()

    # ---- creating and reading ----------------------------------------------------------------
    def create(self, spec: sp.SweepSpec, owner: str = LOCAL_USER, *, start: bool = True) -> dict[str, Any]:
        """Check everything a trial needs (dataset, model, config, every parameter value), then start driving."""
        from ..configs import ConfigService
        from ..datasets import DatasetService

        if spec.strategy not in STRATEGIES:
            raise InvalidInput(f"strategy must be one of {', '.join(STRATEGIES)}", field="strategy")
        if spec.metric not in METRICS:
            raise InvalidInput(f"metric must be one of {', '.join(METRICS)}", field="metric")
        if spec.strategy == "optuna":
            try:
                import optuna  # noqa: F401
            except ImportError:
                raise Unavailable("strategy optuna needs optuna: pip install 'workbench[experiments]'",
                                  field="strategy") from None
        DatasetService(self.store).get(spec.dataset, owner)
        base = ConfigService(self.store).resolve(spec.config, owner).dump()
        if spec.model:
            base["model"]["base_model"] = spec.model
        space = sp.check(spec.parameters, base, spec.strategy)
        points = sp.grid(space) if spec.strategy == "grid" else None
        max_trials = spec.max_trials or (len(points) if points is not None else 10)
        if points is not None:
            max_trials = min(max_trials, len(points))
        now = now_iso()
        rec = {"id": new_id("sweep"), "owner": owner, "name": spec.name or f"sweep of {', '.join(space)}",
               "model": spec.model, "dataset": spec.dataset, "eval_dataset": spec.eval_dataset, "config": base,
               "config_ref": spec.config if isinstance(spec.config, str) else None, "strategy": spec.strategy,
               "parameters": sp.as_json(space), "metric": spec.metric, "max_trials": max_trials,
               "max_concurrent": spec.max_concurrent, "seed": spec.seed, "status": "running", "trials": [],
               "error": None, "created_at": now, "updated_at": now, "finished_at": None}
        self.store.insert(TABLE, rec)
        if start:
            self.drive(rec["id"])
        return self.get(rec["id"], owner)

    def get(self, sweep_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        rec = self.store.get(TABLE, sweep_id)
        if rec is None or rec["owner"] != owner:
            raise NotFound(f"sweep '{sweep_id}' not found", field="id")
        return public(rec)

    def list(self, owner: str = LOCAL_USER) -> list[dict[str, Any]]:
        return [public(r) for r in sorted(self.store.all(TABLE, owner), key=lambda r: r["created_at"])]

    def wait(self, sweep_id: str, owner: str = LOCAL_USER, timeout: float = 3600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.get(sweep_id, owner)
            if rec["status"] != "running":
                return rec
            time.sleep(0.2)
        raise TimeoutError(f"sweep {sweep_id} still running after {timeout} s")

    # ---- driving ------------------------------------------------------------------------------
    def drive(self, sweep_id: str) -> None:
        """Run the sweep's driver thread in this process (once)."""
        with _lock:
            t = _running.get(sweep_id)
            if t is not None and t.is_alive():
                return
            t = threading.Thread(target=self._drive_safely, args=(sweep_id,), name=f"sweep-{sweep_id}", daemon=True)
            _running[sweep_id] = t
            t.start()

    def resume(self) -> list[str]:
        """Drive every sweep left running (a server start)."""
        ids = [r["id"] for r in self.store.all(TABLE) if r["status"] == "running"]
        for i in ids:
            self.drive(i)
        return ids

    def _drive_safely(self, sweep_id: str) -> None:
        try:
            Driver(self.store, sweep_id).run()
        except Exception as exc:  # noqa: BLE001 - a broken sweep says why in its record
            log.exception("sweep %s failed", sweep_id)
            self.store.update(TABLE, sweep_id, {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                                "finished_at": now_iso()})


class Driver:
    """One pass of the loop every :data:`POLL_S`: follow the trials, prune, launch, finish."""

    def __init__(self, store: Store, sweep_id: str):
        from ..jobs.service import JobService

        self.store, self.id = store, sweep_id
        self.jobs = JobService(store)
        rec = store.get(TABLE, sweep_id)
        assert rec is not None
        self.owner = rec["owner"]
        self.space = {k: v if isinstance(v, list) else sp.Range.model_validate(v) for k, v in rec["parameters"].items()}
        self.points = sp.grid(self.space) if rec["strategy"] == "grid" else None
        self.rng = random.Random(rec["seed"])
        for _ in rec["trials"]:  # the same random points after a restart
            if rec["strategy"] == "random":
                sp.sample(self.space, self.rng)
        self.study = None
        self.asked: dict[int, Any] = {}  # optuna trial number → its Trial (this process's only)
        self.reported: dict[int, int] = {}  # trial number → the last step reported
        if rec["strategy"] == "optuna":
            self._study(rec)

    def _study(self, rec: dict[str, Any]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.dists = sp.distributions(self.space)
        self.study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=rec["seed"]),
                                         pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
        for t in rec["trials"]:  # re-tell what earlier drivers learned
            if t["status"] == "completed" and t.get("value") is not None:
                self.study.add_trial(optuna.trial.create_trial(params=t["params"], distributions=self.dists,
                                                               value=t["value"],
                                                               intermediate_values=dict(t.get("intermediate", []))))

    def run(self) -> None:
        while True:
            rec = self.store.get(TABLE, self.id)
            if rec is None or rec["status"] != "running":
                return
            trials = [self._follow(rec, t) for t in rec["trials"]]
            active = sum(1 for t in trials if t["status"] not in FINAL)
            while active < rec["max_concurrent"] and len(trials) < rec["max_trials"]:
                try:
                    trials.append(self._launch(rec, len(trials)))
                except QuotaExceeded:  # the user's active-job quota is full: the next tick tries again
                    break
                active += 1
            done = len(trials) >= rec["max_trials"] and active == 0
            self.store.update(TABLE, self.id, {"trials": trials, "updated_at": now_iso(),
                                               **({"status": "completed", "finished_at": now_iso()} if done else {})})
            if done:
                return
            time.sleep(POLL_S)

    def _launch(self, rec: dict[str, Any], n: int) -> dict[str, Any]:
        number = None
        if self.points is not None:
            params = self.points[n]
        elif self.study is not None:
            trial = self.study.ask(self.dists)
            number, params = trial.number, dict(trial.params)
            self.asked[number] = trial
        else:
            params = sp.sample(self.space, self.rng)
        job = self.jobs.start(rec["model"], rec["dataset"], rec["config"], overrides=sp.nested(params),
                              eval_dataset=rec["eval_dataset"], name=f"{rec['name']} #{n + 1}", owner=self.owner,
                              lineage={"sweep_id": self.id, "trial": n + 1})
        return {"number": n + 1, "optuna_number": number, "job_id": job["id"], "params": params,
                "status": job["status"], "value": None, "eval_loss": None, "intermediate": []}

    def _follow(self, rec: dict[str, Any], t: dict[str, Any]) -> dict[str, Any]:
        if t["status"] in FINAL:
            return t
        job = self.jobs.get(t["job_id"], self.owner)
        value, evals = _metric(t["job_id"], self.owner, rec["metric"])
        t = {**t, "status": job["status"], "intermediate": evals, "value": value,
             "eval_loss": min((v for _, v in evals), default=None)}
        trial = self.asked.get(t["optuna_number"]) if t["optuna_number"] is not None else None
        if trial is not None and job["status"] not in FINAL:
            for step, loss in evals:
                if step > self.reported.get(trial.number, -1):
                    trial.report(loss, step)
                    self.reported[trial.number] = step
            if evals and trial.should_prune():
                from optuna.trial import TrialState

                self.jobs.cancel(t["job_id"], self.owner, wait=False, reason=PRUNED)
                self.study.tell(trial, state=TrialState.PRUNED)  # type: ignore[union-attr]
                self.asked.pop(trial.number)
                return {**t, "status": "cancelled", "pruned": True, "reason": PRUNED}
        if job["status"] in FINAL and trial is not None:
            import optuna

            ok = job["status"] == "completed" and value is not None
            self.study.tell(trial, value if ok else None,  # type: ignore[union-attr]
                            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL)
            self.asked.pop(trial.number)
        return t


def best_trial(rec: dict[str, Any]) -> dict[str, Any] | None:
    done = [t for t in rec["trials"] if t["status"] == "completed" and t.get("value") is not None]
    if not done:
        return None
    b = min(done, key=lambda t: t["value"])
    return {"job_id": b["job_id"], "params": b["params"], rec["metric"]: b["value"], "eval_loss": b.get("eval_loss")}


def public(rec: dict[str, Any]) -> dict[str, Any]:
    trials = [{"number": t["number"], "job_id": t["job_id"], "params": t["params"], "status": t["status"],
               "eval_loss": t.get("eval_loss"), "value": t.get("value"),
               **({"reason": t["reason"]} if t.get("reason") else {})} for t in rec["trials"]]
    return {"sweep_id": rec["id"], "id": rec["id"], "name": rec["name"], "status": rec["status"],
            "strategy": rec["strategy"], "metric": rec["metric"], "parameters": rec["parameters"],
            "model": rec["model"] or rec["config"]["model"]["base_model"], "dataset": rec["dataset"],
            "max_trials": rec["max_trials"], "max_concurrent": rec["max_concurrent"], "trials": trials,
            "best_trial": best_trial(rec), "error": rec.get("error"), "created_at": rec["created_at"],
            "finished_at": rec.get("finished_at")}
