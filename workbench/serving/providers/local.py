"""``local``: the workbench serves the model itself, from this process's engines.

The deployment's record names an engine key (the base model, or a merged or fully trained
folder) and, for LoRA checkpoints, an adapter folder; the adapter goes into the base's engine
under the deployment's id, so many deployments share one loaded base. A deployment made from
another process (``workbench deploy``) is loaded here on its first request, and a server loads
the live ones when it starts (``restore``). The last deployment of a base to stop frees it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from ...errors import Conflict, InvalidInput, ModelUnavailable, WorkbenchError
from .. import budget
from ..engine import Engine, GenRequest, loaded, unload
from ..inference import load_engine, request
from . import Event, Provider

log = logging.getLogger("workbench.serving")
_key_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)  # one load of a base at a time
_key_locks_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _key_locks_guard:
        return _key_locks[key]


def _stopped(dep: dict[str, Any]) -> bool:
    led = budget.ledger(dep["id"])
    return bool(led and led["stopped"])


class LocalProvider(Provider):
    name = "local"

    def activate(self, dep: dict[str, Any]) -> tuple[Engine, float]:
        """The deployment's base (loaded once per process) with its adapter; the adapter's load seconds.

        Fast when both are there (every request); a stopped deployment is never loaded again."""
        engine = loaded().get(dep["base_path"])
        if engine is not None and (not dep.get("adapter_path") or dep["id"] in engine.adapters):
            return engine, 0.0
        with _lock_for(dep["base_path"]):
            if _stopped(dep):
                raise Conflict(f"deployment '{dep['model_name']}' is stopped", field="model")
            try:
                engine = load_engine(dep["base_path"])
                took = engine.add_adapter(dep["id"], dep["adapter_path"]) if dep.get("adapter_path") else 0.0
            except WorkbenchError:
                raise
            except Exception as exc:  # missing or unreadable weights, a size mismatch, out of memory
                raise ModelUnavailable(f"cannot load the model of '{dep['model_name']}': {exc}",
                                       field="training_job_id") from exc
        return engine, took

    def deploy(self, dep: dict[str, Any]) -> dict[str, Any]:
        _, took = self.activate(dep)
        return {"status": "active", "adapter_load_seconds": round(took, 3)}

    def status(self, dep: dict[str, Any]) -> dict[str, Any]:
        engine = loaded().get(dep["base_path"])
        here = engine is not None and (not dep.get("adapter_path") or dep["id"] in engine.adapters)
        return {"loaded_in_this_process": here}

    def stop(self, dep: dict[str, Any]) -> None:
        """Unload the adapter; free the base when no live deployment of this process uses it."""
        from ..deployments import DeploymentService

        with _lock_for(dep["base_path"]):
            engine = loaded().get(dep["base_path"])
            if engine is None:
                return
            if dep.get("adapter_path"):
                engine.remove_adapter(dep["id"])
            others = [d for d in DeploymentService().active_local()
                      if d["base_path"] == dep["base_path"] and d["id"] != dep["id"]]
            if not others and not engine.adapters:
                unload(dep["base_path"])
                log.info("unloaded %s: no deployment serves it any more", dep["base_path"])

    def usage(self, dep: dict[str, Any]) -> dict[str, Any]:
        return {"cost_per_request": dep["cost_per_request"], "billed": "per request, at the deployment's "
                "cost_per_request (the deploy body, else WORKBENCH_LOCAL_COST_PER_REQUEST)"}

    def prepare(self, dep: dict[str, Any], kind: str, body: Any) -> tuple[Engine, GenRequest]:
        """Load (first request only) and tokenize, off the event loop; a bad prompt is refused here."""
        engine, _ = self.activate(dep)
        try:
            req = request(engine, kind, body, adapter=dep["id"] if dep.get("adapter_path") else None)  # type: ignore[arg-type]
        except WorkbenchError:
            raise
        except Exception as exc:  # the model's chat template refused the conversation (roles, order …)
            raise InvalidInput(f"messages: the model's chat template refused them: {exc}", field="messages") from exc
        return engine, req

    async def generate(self, dep: dict[str, Any], prepared: tuple[Engine, GenRequest]) -> AsyncIterator[Event]:
        engine, req = prepared
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
            engine.cancel(req)  # a client that left: its row stops at the next step


def restore() -> list[str]:
    """Load every live local deployment into this process (a server starting): their ids.

    Spend, counters and alerts live on disk, so a restarted server carries on where it stopped;
    a deployment whose files are gone is marked ``error`` with the reason."""
    from ..deployments import DeploymentService

    svc = DeploymentService()
    done = []
    for dep in svc.active_local():
        try:
            LocalProvider().activate(dep)
        except Conflict:  # stopped meanwhile
            continue
        except Exception as exc:  # one bad deployment never keeps the others from loading
            log.warning("reloading %s failed: %s", dep["id"], exc)
            svc.mark_error(dep["id"], f"reload failed: {exc}")
            continue
        svc.mark_active(dep["id"])
        done.append(dep["id"])
    return done
