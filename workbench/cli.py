"""The ``workbench`` command: a thin shell over the core services."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import home
from .errors import InvalidInput, WorkbenchError


def _print(obj: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, default=str))
    elif isinstance(obj, list):
        for row in obj:
            print(row)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            print(f"{key:>28}: {value}")
    else:
        print(obj)


def _dataset_ref(path_or_id: str) -> str:
    from .datasets import DatasetService

    svc = DatasetService()
    p = Path(path_or_id)
    if path_or_id == "sample" and not p.exists():  # the bundled 400 support chats, registered once
        rec = svc.register_sample()
        print(f"using the sample dataset {rec['id']} ({rec['samples']} samples)", file=sys.stderr)
        return rec["id"]
    if p.exists():
        rec = svc.register(p, name=p.stem)
        print(f"registered dataset {rec['id']} ({rec['samples']} samples) from {p}", file=sys.stderr)
        return rec["id"]
    return path_or_id


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def follow(service: Any, job_id: str) -> dict[str, Any]:
    """A tqdm bar with the loss until the job stops; Ctrl+C pauses the job (twice: detach)."""
    from tqdm import tqdm

    from .job_states import FINAL
    from .jobs.watch import watch

    bar = tqdm(total=None, unit="step", dynamic_ncols=True, desc=job_id)
    interrupted = {"n": 0}

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted["n"] += 1
        if interrupted["n"] == 1:
            bar.write("pausing job (checkpoint, then stop)... press Ctrl+C again to detach", file=sys.stderr)
            threading.Thread(target=pause, daemon=True).start()  # the service checks the state, logs it
        else:
            raise KeyboardInterrupt

    def pause() -> None:
        try:
            service.pause(job_id)
        except WorkbenchError as exc:
            bar.write(f"cannot pause: {exc.message} (Ctrl+C again detaches)", file=sys.stderr)

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        for ev in watch(service, job_id, stop_on={"paused", *FINAL}):
            if ev["kind"] == "status":
                bar.set_description(f"{job_id} [{ev['status']}]")
                if ev.get("error"):
                    bar.write(f"error: {ev['error']}", file=sys.stderr)
                continue
            # every value is checked: a NaN loss arrives as null (named in "nonfinite"), and an
            # odd line must never end the bar (a divergence's message comes as the failed status's error)
            if _num(ev.get("total_steps")):
                bar.total = ev["total_steps"]
            if isinstance(ev.get("step"), int):
                bar.n = ev["step"]
            post = {k: f"{ev[k]:.4f}" for k in ("loss", "eval_loss") if _num(ev.get(k))}
            nonfinite = ev.get("nonfinite") if isinstance(ev.get("nonfinite"), list) else []
            post.update({k: "non-finite" for k in ("loss", "eval_loss") if k in nonfinite})
            if _num(ev.get("trained_tokens_per_second")):
                post["tok/s"] = f"{ev['trained_tokens_per_second']:.0f}"
            if post:
                bar.set_postfix(post, refresh=False)
            bar.refresh()
    except KeyboardInterrupt:
        bar.write(f"detached; the job keeps going. Follow it with: workbench jobs show {job_id}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, old)
        bar.close()
    return service.status(job_id)


def cmd_train(args: argparse.Namespace) -> int:
    from .jobs.service import JobService

    config: Any = args.template
    overrides: list[str] = list(args.set or [])
    if args.config:
        config = json.loads(Path(args.config).read_text())
    if args.max_steps is not None:
        overrides.append(f"training.max_steps={args.max_steps}")
    svc = JobService()
    job = svc.start(args.model, _dataset_ref(args.dataset), config, overrides=overrides, name=args.name)
    print(f"started {job['id']} ({job['status']})", file=sys.stderr)
    if args.detach:
        _print(svc.status(job["id"]), args.json)
        return 0
    st = follow(svc, job["id"])
    _print(st if args.json else _where(job["id"], st), args.json)
    return 0 if st["status"] in ("completed", "paused") else 1


def _where(job_id: str, st: dict[str, Any]) -> dict[str, Any]:
    from .jobfiles import job_folder

    jf = job_folder(job_id)
    return {"job": job_id, "status": st["status"], "loss": st["loss"], "eval_loss": st["eval_loss"],
            "best_eval_loss": st["best_eval_loss"], "notebook(s)": str(jf.notebook(1).parent),
            "checkpoints": str(jf.output), "metrics": str(jf.events), "log": str(jf.log), "error": st["error"]}


def cmd_jobs(args: argparse.Namespace) -> int:
    from .jobs.service import JobService

    svc = JobService()
    a = args.action
    if a == "list":
        rows = [svc.status(j["id"]) for j in svc.list()]
        if args.json:
            _print(rows, True)
        else:
            for r in rows:
                print(f"{r['job_id']}  {r['status']:<10} {r['progress']:>5}%  step {r['current_step']}/"
                      f"{r['total_steps']}  loss {r['loss']}  {r['model_name']}")
        return 0
    if not args.id:
        raise WorkbenchError(f"jobs {a} needs a job id", field="id")
    if a == "show":
        _print(svc.status(args.id), args.json)
    elif a == "pause":
        _print(svc.pause(args.id), args.json)
    elif a == "resume":
        changes = dict(kv.split("=", 1) for kv in (args.set or []))
        svc.resume(args.id, changes={k: json.loads(v) for k, v in changes.items()} or None)
        st = svc.status(args.id) if args.detach else follow(svc, args.id)
        _print(st, args.json)
    elif a == "cancel":
        _print(svc.cancel(args.id), args.json)
    elif a == "logs":
        lines = svc.logs(args.id, tail=args.tail)
        _print(lines if args.json else "\n".join(lines), args.json)
    elif a == "checkpoints":
        _print(svc.checkpoints(args.id), args.json)
    elif a == "follow":
        _print(follow(svc, args.id), args.json)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build tiny-chat, register the sample dataset, train a short LoRA job, validate it."""
    from .datasets import DatasetService
    from .jobs.service import JobService
    from .results.evaluate import validate
    from .tinymodel import ensure_tiny_chat

    print(f"WORKBENCH_HOME={home.home()}")
    ensure_tiny_chat()
    datasets = DatasetService()
    ds = datasets.register_sample()
    held_out = datasets.split(ds["id"], eval_fraction=0.1, seed=42)
    print(f"dataset {ds['id']}: {ds['name']} ({ds['samples']} samples; "
          f"{held_out['train']['samples']} train / {held_out['eval']['samples']} eval)")
    svc = JobService()
    job = svc.start("tiny-chat", held_out["train"]["id"], "lora", eval_dataset=held_out["eval"]["id"], overrides=[
        f"training.max_steps={args.max_steps}", "training.logging_steps=10", "training.save_steps=50",
        "training.per_device_train_batch_size=8", "training.learning_rate=3e-3", "training.torch_threads=1",
        "training.warmup_steps=10",
    ], name="demo: tiny-chat LoRA on customer support")
    st = follow(svc, job["id"])
    _print(_where(job["id"], st), False)
    if st["status"] != "completed":
        return 1
    first = next((e["loss"] for e in svc.metrics(job["id"], types={"train"})), None)
    print(f"\nloss {first:.3f} -> {st['loss']:.3f}   best eval_loss {st['best_eval_loss']:.3f} "
          f"at step {st['best_step']}")
    print("validating the final adapter on the held-out split...")
    val = validate(job["id"], "final", held_out["eval"]["id"], max_samples=40)
    print("  " + "  ".join(f"{k} {v}" for k, v in val["metrics"].items()))
    for ex in val.get("examples", [])[:2]:
        print(f"\n  user:      {ex['prompt']}\n  model:     {ex['generated']}\n  reference: {ex['reference']}")
    return 0


WILDCARD = {"0.0.0.0", "::", ""}


def server_names(host: str) -> list[str]:
    """The Host names a server bound to ``host`` answers to (besides loopback): the address itself,
    and for a wildcard bind this machine's name and addresses."""
    if host not in WILDCARD:
        return [host]
    import socket

    import psutil

    names = {socket.gethostname(), socket.getfqdn()}
    for addrs in psutil.net_if_addrs().values():
        names.update(a.address.split("%")[0] for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6))
    return sorted(n for n in names if n)


def cmd_token(args: argparse.Namespace) -> int:
    """Print the local user's token (created on first use), as ``jupyter server list`` does."""
    from .users import local_token

    print(local_token())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the REST API; a token is always required, and several users are assumed off loopback."""
    import uvicorn

    from .jobs.service import JobService
    from .settings import LOOPBACK_HOSTS
    from .sweep import sweep_leftovers
    from .users import local_token

    multi_user = args.multi_user or args.host not in LOOPBACK_HOSTS
    failed = JobService().reconcile_all()
    sweep_leftovers()  # upload spools, orphaned dataset folders, temp files of interrupted writes
    if failed:
        print(f"marked {len(failed)} dead job(s) failed: {', '.join(failed)}", file=sys.stderr)
    # the app is built by uvicorn from the settings (the CLI never imports the server): say them here
    if multi_user:
        os.environ["WORKBENCH_AUTH"] = "1"
    names = [h for h in os.environ.get("WORKBENCH_ALLOWED_HOSTS", "").split(",") if h.strip()]
    os.environ["WORKBENCH_ALLOWED_HOSTS"] = ",".join(names + server_names(args.host))
    token = local_token()
    url = f"http://{_shown(args.host)}:{args.port}"
    print(f"workbench API on {url} ({'multi-user' if multi_user else 'single-user'}; a bearer token is required)\n"
          f"  curl -H 'Authorization: Bearer {token}' {url}/api/training/jobs\n"
          f"  the token is in {home.token_file(home.home())} (`workbench token` prints it)", file=sys.stderr)
    keeper = None
    if not args.no_warm:  # one job runner kept waiting with the training stack imported: jobs start at once
        from .jobs import warm

        keeper = warm.keep()
    from . import local_server

    local_server.announce(url)  # `workbench chat`, `deploy` and the LLM clients find it on this port
    try:
        # No access log by default: SSE/WebSocket clients may pass ?token=, which must not land in logs.
        uvicorn.run("workbench.server.app:create_app", factory=True, host=args.host, port=args.port,
                    log_level=args.log_level, access_log=args.access_log)
    finally:
        local_server.withdraw()
        if keeper is not None:
            keeper.close()
    return 0


def _shown(host: str) -> str:
    """The address to print (and poll) for a bind address: loopback for a wildcard, IPv6 in brackets."""
    shown = "127.0.0.1" if host in WILDCARD else host
    return f"[{shown}]" if ":" in shown else shown


def app_notebook() -> Path:
    repo = Path(__file__).resolve().parents[1] / "notebooks" / "workbench.ipynb"
    return repo if repo.exists() else Path(__file__).resolve().parent / "notebooks" / "workbench.ipynb"


def cmd_up(args: argparse.Namespace) -> int:
    """The REST server and the Voila app side by side on embedded defaults, until Ctrl+C."""
    import os
    import socket
    import subprocess
    import time

    from .tinymodel import ensure_tiny_chat
    from .users import local_token

    print(f"WORKBENCH_HOME={home.home()}")
    ensure_tiny_chat()
    token = local_token()
    api_url = f"http://{_shown(args.host)}:{args.port}"
    app_url = f"http://{_shown(args.host)}:{args.app_port}/"
    env = {**os.environ, "WORKBENCH_HOME": str(home.home()), "WORKBENCH_API_URL": api_url}
    procs = [
        subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--host", args.host, "--port", str(args.port)],
                         env=env),
        subprocess.Popen([sys.executable, "-m", "workbench.widgets.serve", str(app_notebook()),
                          f"--port={args.app_port}", f"--host={args.host}"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if args.quiet else None),
    ]

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # stop both children on SIGTERM too

    signal.signal(signal.SIGTERM, on_term)

    def listening(port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex((_shown(args.host).strip("[]"), port)) == 0

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (listening(args.port) and listening(args.app_port)):
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.3)
    print(f"\n  Web app   {app_url}?token={token}\n  REST API  {api_url}   (OpenAPI: {api_url}/openapi.json; "
          f"Authorization: Bearer {token})\n\nCtrl+C stops both.", flush=True)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from . import users

    if args.action == "add":
        if not args.name:
            raise WorkbenchError("users add needs a NAME", field="name")
        user, token = users.add_user(args.name)
        print(f"user {user['id']} ({user['name']}); token (shown once, store it now):\n{token}")
    elif args.action == "token":
        if not args.name:
            raise WorkbenchError("users token needs a NAME", field="name")
        print(users.issue_token(args.name)[1])
    elif args.action == "list":
        _print(users.list_tokens(), args.json)
    elif args.action == "revoke":
        if not args.name:
            raise WorkbenchError("users revoke needs a token id or prefix", field="id")
        users.revoke(args.name)
        print(f"revoked {args.name}")
    return 0


SERVER_URL_HELP = "the workbench server (default: WORKBENCH_API_URL, else this home's running server, else port 8000)"
DATASET_HELP = "a dataset file (registered on the fly), a dataset id, or `sample` (400 bundled support chats)"


def _server_url(value: str) -> str:
    from . import local_server

    return (value or local_server.url()).rstrip("/")


def _server_up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy a job's checkpoint: through the running server when there is one (it loads the model
    at once), else recorded here and loaded by the next ``workbench serve``."""
    body = {"provider": args.provider, "deployment_name": args.name or args.job_id, "training_job_id": args.job_id,
            "checkpoint_selection": args.checkpoint, "budget_limit": args.budget,
            "cost_per_request": args.cost_per_request, "gpu_type": args.gpu, "min_workers": args.min_workers,
            "max_workers": args.max_workers, "auto_stop_on_budget": not args.no_auto_stop, "merged": args.merged}
    body = {k: v for k, v in body.items() if v is not None}
    if _server_up(args.url):
        from .client import APIError, TrainingClient

        with TrainingClient(args.url) as c:
            try:
                out = c.request("POST", "/api/inference/deploy", json=body, timeout=600)
            except APIError as exc:
                raise WorkbenchError(exc.message, field=exc.field) from None
    else:
        from .serving.deployments import DeploymentService

        out = DeploymentService().deploy(body, base_url=args.url, activate=False)
    if args.json:
        _print(out, True)
        return 0
    base = out.get("endpoint_url") or f"{args.url}/v1"
    print(f"deployed {out['deployment_id']} as model '{out['model_name']}' ({out['status']}; checkpoint "
          f"{out['checkpoint']}, ${out['cost_per_request']}/request, budget {out['budget_limit']})")
    if out["status"] == "deploying" and args.provider == "local":
        print(f"no server answers at {args.url}: start it with `workbench serve` and the model loads there")
    if args.provider == "local":
        print("talk to it with the openai SDK:\n"
              "  from openai import OpenAI\n"
              f"  client = OpenAI(base_url='{base}', api_key='$(workbench token)')\n"
              f"  client.chat.completions.create(model='{out['model_name']}', "
              "messages=[{'role': 'user', 'content': 'Hello'}])\n"
              f"or: workbench chat {out['model_name']} 'Hello'")
    return 0


def cmd_deployments(args: argparse.Namespace) -> int:
    from .serving.deployments import DeploymentService

    svc = DeploymentService()
    if args.action == "list":
        deps = [svc.status(d["id"])["deployment"] for d in svc.list()]
        if args.json:
            _print(deps, True)
        for d in [] if args.json else deps:
            spend = f"${d['current_spend']:.4f}" + (f" of ${d['budget_limit']:.2f}" if d["budget_limit"] else "")
            print(f"{d['id']}  {d['status']:<9} {d['model_name']:<24} {d['provider']:<17} {d['checkpoint']:<14} "
                  f"{d['request_count']} req  {spend}")
        return 0
    if not args.id:
        raise WorkbenchError(f"deployments {args.action} needs a deployment id", field="id")
    if args.action == "status":
        _print(svc.status(args.id)["deployment"], args.json)
    elif args.action == "stop":
        if _server_up(args.url):  # the server that serves it unloads the adapter (and frees the base)
            from .client import APIError, TrainingClient

            with TrainingClient(args.url) as c:
                try:
                    out = c.stop_deployment(args.id)
                except APIError as exc:
                    raise WorkbenchError(exc.message, field=exc.field) from None
        else:
            out = svc.stop(args.id)
        _print(out["final_status"], args.json)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """One message to a deployed model through the official openai SDK, streamed as it comes."""
    import time

    from openai import OpenAI, OpenAIError

    from .client import find_token

    client = OpenAI(base_url=f"{args.url.rstrip('/')}/v1", api_key=find_token(args.url) or "none", max_retries=0)
    t0 = time.perf_counter()
    try:
        stream = client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": args.message}],
                                                max_tokens=args.max_tokens, temperature=args.temperature, stream=True,
                                                stream_options={"include_usage": True})
        tokens = None
        for c in stream:
            if c.choices and c.choices[0].delta.content:
                print(c.choices[0].delta.content, end="", flush=True)
            if c.usage:
                tokens = c.usage.completion_tokens
    except OpenAIError as exc:
        raise WorkbenchError(str(exc), field="model") from None
    print(f"\n[{tokens} tokens in {time.perf_counter() - t0:.2f} s]", file=sys.stderr)
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    """Secrets are read from stdin or a hidden prompt, never from the command line (it shows in ``ps``)."""
    import getpass

    from . import user_secrets

    if args.action == "list":
        _print(user_secrets.list_secrets(), args.json)
        return 0
    if not args.name:
        raise WorkbenchError(f"secrets {args.action} needs a NAME (e.g. RUNPOD_API_KEY)", field="name")
    if args.action == "set":
        value = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass(f"{args.name}: ")
        _print(user_secrets.set_secret(args.name, value), args.json)
    else:
        user_secrets.delete_secret(args.name)
        print(f"deleted {args.name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """The merged model (full weights) or a GGUF file with its Ollama Modelfile, built under the job."""
    import shutil

    from .serving import exports

    if args.format == "merged":
        src = exports.merged_folder(args.job_id, args.checkpoint)
    else:
        src = exports.gguf_file(args.job_id, args.checkpoint, args.quantization).parent
    if args.out:
        dest = Path(args.out)
        shutil.copytree(src, dest, dirs_exist_ok=True)
        src = dest
    print(src)
    if args.format == "gguf":
        print(f"ollama: cd {src} && ollama create {args.job_id} -f Modelfile", file=sys.stderr)
    return 0


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _space(params: list[str], ranges: list[str]) -> dict[str, Any]:
    """``KEY=v1,v2`` lists and ``KEY=LOW:HIGH[:log]`` ranges."""
    out: dict[str, Any] = {}
    for item in params:
        key, _, values = item.partition("=")
        out[key.strip()] = [_value(v.strip()) for v in values.split(",") if v.strip()]
    for item in ranges:
        key, _, spec = item.partition("=")
        low, _, rest = spec.partition(":")
        high, _, log = rest.partition(":")
        out[key.strip()] = {"low": _value(low), "high": _value(high), "log": log == "log"}
    return out


def cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments.sweeps import SweepService

    svc = SweepService()
    if args.action == "list":
        _print([{k: s[k] for k in ("sweep_id", "name", "status", "strategy", "max_trials")} |
                {"best_trial": s["best_trial"]} for s in svc.list()], args.json)
        return 0
    if args.action == "show":
        if not args.id:
            raise InvalidInput("sweep show needs a sweep id", field="id")
        _print(svc.get(args.id), args.json)
        return 0
    from tqdm import tqdm

    from .configs import apply_overrides, template
    from .experiments.space import SweepSpec

    config: Any = args.template
    if args.config:
        config = json.loads(Path(args.config).read_text())
    if args.set:
        config = apply_overrides(config if isinstance(config, dict) else template(config), list(args.set))
    spec = SweepSpec(model=args.model, dataset=_dataset_ref(args.dataset), config=config, strategy=args.strategy,
                     parameters=_space(args.param or [], args.range or []), max_trials=args.max_trials,
                     max_concurrent=args.max_concurrent, metric=args.metric, seed=args.seed, name=args.name)
    sweep = svc.create(spec)
    print(f"started {sweep['sweep_id']} ({sweep['max_trials']} trials, {spec.strategy})", file=sys.stderr)
    with tqdm(total=sweep["max_trials"], unit="trial", desc=sweep["sweep_id"]) as bar:
        while True:
            cur = svc.get(sweep["sweep_id"])
            done = sum(1 for t in cur["trials"] if t["status"] in ("completed", "failed", "cancelled"))
            bar.update(done - bar.n)
            best = cur["best_trial"]
            if best:
                bar.set_postfix_str(f"best {cur['metric']} {best[cur['metric']]:.4f}")
            if cur["status"] != "running":
                break
            time.sleep(0.5)
    _print(cur, args.json)
    return 0 if cur["status"] == "completed" else 1


def cmd_suggest(args: argparse.Namespace) -> int:
    from .experiments.suggestions import suggest

    _print(suggest(args.model, _dataset_ref(args.dataset) if args.dataset else None), args.json)
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from .experiments.lineage import lineage

    _print(lineage(args.job_id), args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="Fine-Tune Workbench")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="start a training job and follow it")
    t.add_argument("--model", default="tiny-chat")
    t.add_argument("--dataset", required=True, help=DATASET_HELP)
    t.add_argument("--config", help="a JSON config file")
    t.add_argument("--template", default="default", help="default | sft | lora | full, or a saved config id")
    t.add_argument("--max-steps", type=int)
    t.add_argument("--set", action="append", metavar="KEY=VALUE")
    t.add_argument("--name")
    t.add_argument("--detach", action="store_true")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train)

    j = sub.add_parser("jobs", help="list and control jobs")
    j.add_argument("action", choices=["list", "show", "pause", "resume", "cancel", "logs", "checkpoints", "follow"])
    j.add_argument("id", nargs="?")
    j.add_argument("--json", action="store_true")
    j.add_argument("--tail", type=int, default=200)
    j.add_argument("--set", action="append", metavar="KEY=VALUE", help="resume-safe hyperparameter changes")
    j.add_argument("--detach", action="store_true")
    j.set_defaults(func=cmd_jobs)

    sw = sub.add_parser("sweep", help="hyperparameter sweeps: run one (with a progress bar), list, show")
    sw.add_argument("action", choices=["run", "list", "show"])
    sw.add_argument("id", nargs="?", help="the sweep (show)")
    sw.add_argument("--model", default="tiny-chat")
    sw.add_argument("--dataset", help=DATASET_HELP)
    sw.add_argument("--config", help="a JSON config file")
    sw.add_argument("--template", default="default")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE", help="fixed settings of every trial")
    sw.add_argument("--param", action="append", metavar="KEY=V1,V2", help="a list of values to try")
    sw.add_argument("--range", action="append", metavar="KEY=LOW:HIGH[:log]", help="a range (random, optuna)")
    sw.add_argument("--strategy", choices=["grid", "random", "optuna"], default="grid")
    sw.add_argument("--metric", default="eval_loss")
    sw.add_argument("--max-trials", type=int)
    sw.add_argument("--max-concurrent", type=int, default=1)
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--name")
    sw.add_argument("--json", action="store_true")
    sw.set_defaults(func=cmd_sweep)

    sg = sub.add_parser("suggest", help="hyperparameters suggested from your finished jobs and sweeps")
    sg.add_argument("--model", default="tiny-chat")
    sg.add_argument("--dataset")
    sg.add_argument("--json", action="store_true")
    sg.set_defaults(func=cmd_suggest)

    ln = sub.add_parser("lineage", help="a job's parent, sweep, dataset version, config changes and children")
    ln.add_argument("job_id")
    ln.add_argument("--json", action="store_true")
    ln.set_defaults(func=cmd_lineage)

    d = sub.add_parser("demo", help="build tiny-chat and train the demo LoRA job")
    d.add_argument("--max-steps", type=int, default=200)
    d.set_defaults(func=cmd_demo)
    s = sub.add_parser("serve", help="serve the REST API with uvicorn")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--multi-user", "--auth", dest="multi_user", action="store_true",
                   help="several users share this server (always on for a non-loopback address)")
    s.add_argument("--log-level", default="info")
    s.add_argument("--access-log", action="store_true")
    s.add_argument("--no-warm", action="store_true",
                   help="keep no warm job runner (one waits by default; WORKBENCH_WARM_RUNNER=0 does the same)")
    s.set_defaults(func=cmd_serve)

    up = sub.add_parser("up", help="start the REST server and the Voila web app")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--app-port", type=int, default=8866)
    up.add_argument("--quiet", action="store_true")
    up.set_defaults(func=cmd_up)

    tk = sub.add_parser("token", help="print the local user's bearer token")
    tk.set_defaults(func=cmd_token)

    u = sub.add_parser("users", help="users and bearer tokens")
    u.add_argument("action", choices=["add", "token", "list", "revoke"])
    u.add_argument("name", nargs="?", help="user name (add, token) or token id/prefix (revoke)")
    u.add_argument("--json", action="store_true")
    u.set_defaults(func=cmd_users)

    dp = sub.add_parser("deploy", help="serve a job's checkpoint as an OpenAI-compatible model")
    dp.add_argument("job_id")
    dp.add_argument("--checkpoint", default="best", help="best | final | step-N | a checkpoint name")
    dp.add_argument("--name", help="deployment name (the model name is its slug)")
    dp.add_argument("--provider", default="local", choices=["local", "runpod-serverless"])
    dp.add_argument("--budget", type=float, help="budget limit in USD (at least 1.00)")
    dp.add_argument("--cost-per-request", type=float, help="local: USD per request")
    dp.add_argument("--gpu", help="runpod: GPU type, e.g. 'NVIDIA RTX A4000'")
    dp.add_argument("--min-workers", type=int)
    dp.add_argument("--max-workers", type=int)
    dp.add_argument("--no-auto-stop", action="store_true", help="alert only; keep serving past the budget")
    dp.add_argument("--merged", action="store_true", help="serve a merged model instead of base + adapter")
    dp.add_argument("--url", type=_server_url, default="", help=SERVER_URL_HELP)
    dp.add_argument("--json", action="store_true")
    dp.set_defaults(func=cmd_deploy)

    ds = sub.add_parser("deployments", help="list, inspect and stop deployments")
    ds.add_argument("action", choices=["list", "status", "stop"])
    ds.add_argument("id", nargs="?")
    ds.add_argument("--url", type=_server_url, default="", help=SERVER_URL_HELP + "; stop goes through it when it runs")
    ds.add_argument("--json", action="store_true")
    ds.set_defaults(func=cmd_deployments)

    ch = sub.add_parser("chat", help="send one message to a deployed model (openai SDK, streamed)")
    ch.add_argument("model")
    ch.add_argument("message")
    ch.add_argument("--max-tokens", type=int, default=256)
    ch.add_argument("--temperature", type=float, default=0.7)
    ch.add_argument("--url", type=_server_url, default="", help=SERVER_URL_HELP)
    ch.set_defaults(func=cmd_chat)

    sc = sub.add_parser("secrets", help="encrypted secrets (RUNPOD_API_KEY); values come from stdin or a prompt")
    sc.add_argument("action", choices=["set", "list", "delete"])
    sc.add_argument("name", nargs="?")
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=cmd_secrets)

    ex = sub.add_parser("export", help="a checkpoint as a merged model or GGUF (+ Ollama Modelfile)")
    ex.add_argument("job_id")
    ex.add_argument("--checkpoint", default="final")
    ex.add_argument("--format", choices=["merged", "gguf"], default="gguf")
    ex.add_argument("--quantization", choices=["f16", "q8_0"], default="q8_0")
    ex.add_argument("--out", help="copy the result into this folder")
    ex.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc.message}" + (f" (field: {exc.field})" if exc.field else ""), file=sys.stderr)
        if exc.details:
            print(json.dumps(exc.details, indent=2, default=str), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
