"""``GET /api/training/{jobId}/lineage`` and ``POST /api/training/{jobId}/duplicate``.

A job's lineage: where it came from (``parent_job_id`` — the job it duplicates — and ``sweep_id``),
what it trained on (the dataset's id, version and SHA-256; the config's id, SHA-256 of its canonical
JSON and the changes from the parent's), what changed while it was paused, its runs (each resume, with
the checkpoint it resumed from), and its children (the jobs duplicated from it).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..records import LOCAL_USER


def config_sha256(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def changes(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, dict[str, Any]]:
    a, b = flatten(parent), flatten(child)
    return {k: {"from": a.get(k), "to": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _spec(job_id: str) -> dict[str, Any]:
    from .. import home
    from ..jobfiles.layout import job_folder

    try:
        return json.loads(job_folder(home.job_dir(job_id)).spec.read_text())
    except (OSError, ValueError):
        return {}


def lineage(job_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
    from ..jobs.service import JobService

    svc = JobService()
    job = svc.get(job_id, owner)
    spec = _spec(job_id)
    first = (spec.get("initial_config") or spec.get("config") or job["config"])
    parent_id = job.get("parent_job_id")
    parent_cfg = None
    if parent_id:
        try:
            parent_cfg = svc.get(parent_id, owner)["config"]
        except Exception:  # noqa: BLE001 - a deleted parent still names itself
            parent_cfg = None
    ds = spec.get("dataset") or {}
    history = job.get("history", [])
    return {
        "job_id": job_id,
        "parent_job_id": parent_id,
        "sweep_id": job.get("sweep_id"),
        "dataset": {"id": ds.get("id", job["dataset_id"]), "name": ds.get("name"), "version": ds.get("version", 1),
                    "sha256": ds.get("sha256")},
        "config": {"id": job.get("config_id"), "sha256": config_sha256(job["config"]),
                   "changes_from_parent": changes(parent_cfg, first) if parent_cfg is not None else None},
        "hyperparameter_changes": [{"at": h["at"], "changes": h.get("changes", {})} for h in history
                                   if h.get("action") == "hyperparameters changed"],
        "runs": [{"at": h["at"], "action": h["action"], **({"checkpoint": h["checkpoint"]} if "checkpoint" in h else {})}
                 for h in history if h.get("action") in ("queued", "resumed")],
        "children": [j["id"] for j in svc.list(owner) if j.get("parent_job_id") == job_id],
    }


def duplicate(job_id: str, overrides: dict[str, Any] | None = None, name: str | None = None,
              owner: str = LOCAL_USER) -> dict[str, Any]:
    """A new job with the original's model, dataset and config (as it ends: paused changes included),
    plus ``overrides``; its lineage names the original."""
    from ..jobs.service import JobService

    svc = JobService()
    job = svc.get(job_id, owner)
    spec = _spec(job_id)
    ev = (spec.get("eval_dataset") or {}).get("id")
    return svc.start(job["model"], job["dataset_id"], job["config"], overrides=overrides or None,
                     eval_dataset=ev, name=name or f"{job['name']} (copy)", owner=owner,
                     lineage={"parent_job_id": job_id})
