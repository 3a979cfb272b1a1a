"""``local``: the workbench serves the model itself, from this process's engines.

The deployment's record names an engine key (the base model, or a merged or fully trained
folder) and, for LoRA checkpoints, an adapter folder; the adapter goes into the base's engine
under the deployment's id, so many deployments share one loaded base. A deployment made from
another process (``workbench deploy``) is loaded here on its first request, and a server loads
the active ones when it starts (``activate``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from ...errors import ModelUnavailable
from ..engine import Engine, loaded
from ..inference import load_engine, request
from . import Event, Provider

_activate_lock = threading.Lock()


class LocalProvider(Provider):
    name = "local"

    def activate(self, dep: dict[str, Any]) -> tuple[Engine, float]:
        """Load the deployment's base (once per process) and its adapter; the adapter's load seconds."""
        with _activate_lock:
            engine = load_engine(dep["base_path"])
            took = engine.add_adapter(dep["id"], dep["adapter_path"]) if dep.get("adapter_path") else 0.0
        return engine, took

    def deploy(self, dep: dict[str, Any]) -> dict[str, Any]:
        try:
            _, took = self.activate(dep)
        except (OSError, ValueError) as exc:  # missing or unreadable weights: the deployment fails, clearly
            raise ModelUnavailable(f"cannot load {dep['base_path']}: {exc}", field="training_job_id") from exc
        return {"status": "active", "adapter_load_seconds": round(took, 3)}

    def status(self, dep: dict[str, Any]) -> dict[str, Any]:
        engine = loaded().get(dep["base_path"])
        here = engine is not None and (not dep.get("adapter_path") or dep["id"] in engine.adapters)
        return {"loaded_in_this_process": here}

    def stop(self, dep: dict[str, Any]) -> None:
        engine = loaded().get(dep["base_path"])
        if engine is not None and dep.get("adapter_path"):
            engine.remove_adapter(dep["id"])

    def usage(self, dep: dict[str, Any]) -> dict[str, Any]:
        return {"cost_per_request": dep["cost_per_request"], "billed": "per request, at the deployment's "
                "cost_per_request (the deploy body, else WORKBENCH_LOCAL_COST_PER_REQUEST)"}

    async def generate(self, dep: dict[str, Any], kind: str, body: Any) -> AsyncIterator[Event]:
        engine, _ = await asyncio.to_thread(self.activate, dep)
        req = request(engine, kind, body, adapter=dep["id"] if dep.get("adapter_path") else None)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Event] = asyncio.Queue()
        req.sink = lambda item: loop.call_soon_threadsafe(items.put_nowait, item)
        engine.submit(req)
        try:
            while True:
                item = await items.get()
                yield item
                if item[0] in ("done", "error"):
                    return
        finally:
            req.done = True  # a client that left: its row stops at the next step


def restore() -> list[str]:
    """Load every live local deployment into this process (a server starting): their ids.

    Spend, counters and alerts live on disk, so a restarted server carries on where it stopped;
    a deployment whose files are gone is marked ``error`` with the reason."""
    from ...errors import WorkbenchError
    from ..deployments import DeploymentService

    svc = DeploymentService()
    done = []
    for dep in svc.active_local():
        try:
            LocalProvider().activate(dep)
        except (WorkbenchError, OSError, ValueError) as exc:
            svc._update(dep["id"], {"status": "error", "error": f"reload failed: {exc}"})
            continue
        svc.mark_active(dep["id"])
        done.append(dep["id"])
    return done
