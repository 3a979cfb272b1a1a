"""The TypeScript SDK (``clients/typescript``): current with the app's ``/openapi.json``, and driving a job from Node.

* Freshness: the committed ``openapi.json`` is the document the app serves now, and the two
  generated modules are what the package's generator makes of that document now, so a route
  added (or changed) without ``make ts-sdk`` fails here.
* The built ``dist/`` has one method per operation of the app's document.
* End to end: ``test/e2e.mjs`` runs in Node against a ``workbench serve`` subprocess (a real
  socket, auth on, the real job runner) and trains a tiny-chat job through the package.

``make test`` installs and builds the package first (``npm ci && npm run build``); without
Node, or without that build, these tests fail and say what to run. They never skip.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from workbench.datasets import SAMPLE_DATASET
from workbench.server.app import create_app
from workbench.testing import FAST, IdleExecutor, scratch_home

SDK = Path(__file__).resolve().parents[2] / "clients" / "typescript"
GENERATED = ("schema.ts", "operations.ts")
REGENERATE = "make ts-sdk"
BUILD = "make test (or: cd clients/typescript && npm ci && npm run build)"


def _render(spec: dict[str, Any]) -> str:
    """The committed form of the document, as ``scripts/openapi.py`` writes it."""
    loader = importlib.util.spec_from_file_location("ts_sdk_openapi", SDK / "scripts" / "openapi.py")
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module.render(spec)


def _diff(committed: str, fresh: str, name: str) -> str:
    lines = difflib.unified_diff(committed.splitlines(), fresh.splitlines(), f"committed {name}", f"fresh {name}",
                                 lineterm="", n=1)
    return "\n".join(list(lines)[:60])


@pytest.fixture(scope="module")
def node() -> str:
    """Node 20+, which the SDK targets; its absence is a failure, never a skip."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed: the TypeScript SDK tests need Node 20+ and npm")
    version = subprocess.run([found, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(re.match(r"v(\d+)", version).group(1))  # type: ignore[union-attr]
    assert major >= 20, f"the TypeScript SDK needs Node 20+, found {version}"
    return found


@pytest.fixture(scope="module")
def installed(node: str) -> Path:
    """The package with its npm dependencies installed (``npm ci``)."""
    if not (SDK / "node_modules" / "openapi-typescript" / "package.json").is_file():
        pytest.fail(f"clients/typescript has no node_modules: run {BUILD}")
    return SDK


@pytest.fixture(scope="module")
def built(installed: Path) -> Path:
    """The package built (``npm run build``), no older than its sources."""
    dist = installed / "dist"
    if not (dist / "index.js").is_file() or not (dist / "index.d.ts").is_file():
        pytest.fail(f"clients/typescript is not built: run {BUILD}")
    newest_src = max(p.stat().st_mtime for p in (installed / "src").glob("*.ts"))
    if (dist / "index.js").stat().st_mtime < newest_src - 1:
        pytest.fail(f"clients/typescript/dist is older than src/: run {BUILD}")
    return installed


@pytest.fixture
def spec(home: Path) -> dict[str, Any]:
    """The app's document now, as a client gets it."""
    with TestClient(create_app(executor=IdleExecutor())) as http:
        r = http.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _operation_ids(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {op["operationId"]: (method.upper(), path)
            for path, item in spec["paths"].items() for method, op in item.items()}


# --- freshness ----------------------------------------------------------------------------------

def test_committed_openapi_is_the_document_the_app_serves(spec: dict[str, Any]) -> None:
    committed_text = (SDK / "openapi.json").read_text(encoding="utf-8")
    committed = json.loads(committed_text)
    stale = sorted(set(_operation_ids(spec).items()) ^ set(_operation_ids(committed).items()))
    assert not stale, f"operations added or removed since clients/typescript was generated: {stale}; " \
                      f"run {REGENERATE}"
    assert committed == spec, f"clients/typescript/openapi.json is not the app's /openapi.json: run {REGENERATE}"
    assert committed_text == _render(spec), \
        f"clients/typescript/openapi.json is not in its committed form: run {REGENERATE}"


def test_generated_modules_are_what_the_generator_makes_of_the_apps_document(
        spec: dict[str, Any], installed: Path, node: str, tmp_path: Path) -> None:
    (tmp_path / "openapi.json").write_text(json.dumps(spec), encoding="utf-8")
    run = subprocess.run([node, "scripts/generate.mjs", "--spec", str(tmp_path / "openapi.json"),
                          "--out", str(tmp_path / "src")], check=False, cwd=installed, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"generated {len(_operation_ids(spec))} operations" in run.stderr
    for name in GENERATED:
        committed = (installed / "src" / name).read_text(encoding="utf-8")
        fresh = (tmp_path / "src" / name).read_text(encoding="utf-8")
        assert committed == fresh, f"src/{name} is stale, run {REGENERATE}:\n{_diff(committed, fresh, name)}"
    # really generated from the document: every operation and schema is in the types
    schema = (installed / "src" / "schema.ts").read_text(encoding="utf-8")
    assert all(f"    {op_id}: {{" in schema or f'    "{op_id}": {{' in schema for op_id in _operation_ids(spec))
    for name in spec["components"]["schemas"]:
        assert f"        {name}: " in schema or f'        "{name}": ' in schema, name


def test_built_package_has_a_method_per_operation(spec: dict[str, Any], built: Path, node: str) -> None:
    script = """
        import { TrainingClient, METHOD_NAMES, OPERATIONS, WorkbenchError } from "./dist/index.js";
        const methods = [];
        for (let p = TrainingClient.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p))
          for (const k of Object.getOwnPropertyNames(p)) if (typeof p[k] === "function") methods.push(k);
        const wb = new TrainingClient({ baseUrl: "http://127.0.0.1:1/", token: "t" });
        const error = new WorkbenchError({ status: 404, code: "NOT_FOUND", message: "m" }).toString();
        const operations = OPERATIONS;
        console.log(JSON.stringify({ methods, names: METHOD_NAMES, operations, baseUrl: wb.baseUrl, error }));
    """
    run = subprocess.run([node, "--input-type=module", "-e", script], check=False, cwd=built, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    ids = _operation_ids(spec)
    assert set(out["names"]) == set(ids), f"dist/ does not match the app's operations: run {REGENERATE} and {BUILD}"
    for op_id, (method, path) in ids.items():
        assert (out["operations"][op_id]["method"], out["operations"][op_id]["path"]) == (method, path), op_id
        assert out["names"][op_id] in out["methods"], op_id
    assert len(set(out["names"].values())) == len(ids)  # one method per operation
    assert {"startTraining", "getStatus", "getMetrics", "events", "uploadDataset", "downloadModel",
            "request"} <= set(out["methods"])
    assert out["baseUrl"] == "http://127.0.0.1:1"
    assert out["error"] == "WorkbenchError: 404 NOT_FOUND: m"


def test_readme_walkthrough_is_the_type_checked_example() -> None:
    """The README's TypeScript block is in ``examples/quickstart.ts``, which ``npm run build`` type-checks."""
    readme = (SDK.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### From TypeScript or JavaScript", 1)[1]
    block = section.split("```ts\n", 1)[1].split("```", 1)[0]
    example = (SDK / "examples" / "quickstart.ts").read_text(encoding="utf-8").splitlines()
    missing = [line for line in block.splitlines()
               if line.strip() and not line.startswith("import ") and line not in example]
    assert not missing, f"README lines not in examples/quickstart.ts: {missing}"
    assert 'from "@workbench/client";' in block and "make ts-sdk" in section


# --- end to end -----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path, tiny_chat_dir: Path) -> Iterator[tuple[str, str]]:
    """``workbench serve --multi-user`` in a scratch home, as a subprocess: ``(url, token)``.

    Teardown cancels any job still alive (a failed test must not leave a training process),
    then stops the server."""
    from workbench.client import FINAL_STATES, TrainingClient
    from workbench.users import add_user

    with scratch_home(tmp_path / "home", tiny_chat=tiny_chat_dir, env={"WORKBENCH_MAX_CONCURRENT_JOBS": "2"}):
        _, token = add_user("ts-sdk")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--multi-user",
                                 "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
                    pytest.fail(f"workbench serve did not start: {err}")
                time.sleep(0.2)
            yield url, token
        finally:
            try:
                with TrainingClient(url, token=token) as wb:
                    for job in wb.list_jobs():
                        if job["status"] not in FINAL_STATES:
                            wb.cancel(job["id"])
            except httpx.HTTPError:
                pass
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.mark.slow
def test_node_trains_a_job_through_the_sdk_against_workbench_serve(
        served: tuple[str, str], built: Path, node: str, tmp_path: Path) -> None:
    url, token = served
    out_dir = tmp_path / "downloads"
    out_dir.mkdir()
    env = {**os.environ, "WORKBENCH_URL": url, "WORKBENCH_TOKEN": token, "E2E_DATASET": str(SAMPLE_DATASET),
           "E2E_CONFIG": json.dumps(FAST), "E2E_OUT": str(out_dir), "E2E_TIMEOUT_MS": "300000"}
    t0 = time.monotonic()
    run = subprocess.run([node, "--experimental-websocket", "test/e2e.mjs"], check=False, cwd=built, env=env,
                         capture_output=True, text=True, timeout=420)
    assert run.returncode == 0, f"e2e.mjs failed:\n{run.stderr[-4000:]}"
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    job_id = summary["job_id"]

    # the error shape, from a real server's refusals
    assert summary["errors"]["no_token"] == {"status": 401, "code": "UNAUTHORIZED",
                                             "message": summary["errors"]["no_token"]["message"], "field": None}
    assert (summary["errors"]["unknown_job"]["status"], summary["errors"]["unknown_job"]["code"]) == (404, "NOT_FOUND")
    bad = summary["errors"]["bad_override"]
    assert (bad["status"], bad["code"]) == (422, "INVALID_INPUT") and "learning_rate" in bad["field"], bad

    assert summary["dataset"]["samples"] == 400 and summary["dataset"]["name"] == "ts e2e"
    assert re.fullmatch(r"job-[0-9a-f]+", job_id) and summary["started"]["status"] in ("queued", "pending", "running")

    # the events, followed live to the end
    events = summary["events"]
    statuses = [e["status"] for e in events if e["event"] == "status"]
    assert statuses[-1] == "completed" and "running" in statuses, statuses
    assert [e["step"] for e in events if e["event"] == "metric" and e["type"] == "train"] == [5, 10]
    assert {e["event"] for e in events} <= {"status", "metric"}
    assert summary["replay"] == [["status", "completed"]]
    # the WebSocket operation replays the same items, and a refused socket is a WorkbenchError too
    replayed = len([e for e in events if e["event"] == "metric"]) + 1  # the history, then the final status
    assert summary["websocket"] == {"events": replayed, "last": "completed"}
    assert summary["errors"]["ws_unknown_job"]["code"].startswith("WS_")

    assert summary["status"] == {"status": "completed", "current_step": 10, "total_steps": 10, "progress": 100}
    assert summary["metrics"]["total_points"] == summary["metrics"]["count"] >= 2
    assert summary["metrics"]["loss_steps"][:2] == [5, 10]

    # the checkpoint zip, streamed to disk by Node
    download = summary["download"]
    path = Path(download["path"])
    assert path.parent == out_dir and download["filename"] == f"{job_id.replace('-', '_', 1)}_final.zip"
    assert download["content_type"] == "application/zip" and path.stat().st_size == download["bytes"] > 0
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert "adapter_config.json" in [Path(n).name for n in zf.namelist()]

    # and the server agrees, seen through the Python SDK as the same user
    from workbench.client import TrainingClient

    with TrainingClient(url, token=token) as wb:
        assert wb.get_status(job_id)["status"] == "completed"
        assert [j["id"] for j in wb.list_jobs()] == [job_id]
    assert time.monotonic() - t0 < 400
