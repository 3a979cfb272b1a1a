"""Warm runners: a job runner whose kernel has already imported the training stack, waiting for a job.

A cold job spends seconds before its first step: the runner starts, its kernel boots and
imports torch, transformers and peft. While a long-lived workbench process runs (``workbench
serve``, and so ``workbench up``), a :class:`Keeper` thread keeps one runner started ahead of
time (``python -m workbench.jobs.runner --warm OWNER_PID``). ``LocalExecutor.launch`` hands a
job to it instead of starting a new process; the job is still the same papermill-executed
notebook, in the same kind of runner, on a fresh kernel that served no other job.

The hand-off is a few files in ``$WORKBENCH_HOME/warm/``:

* ``<pid>.json`` — the runner: pid, create time, environment fingerprint, ``ready`` once its
  kernel has imported the training stack (and ``job`` once it has taken one).
* ``<pid>.claim`` — made with an exclusive hard link, so exactly one claimant wins: a launcher
  (the content is the job id) or a stop (empty: exit). The runner polls for it.

Both go when the runner exits; those of a runner that was killed are removed by the next reader.

A job goes to a warm runner only when the environment it would give a new runner matches the
one the warm runner was started with (apart from per-shell noise such as ``PWD``), so a job
never runs with settings other than its submitter's. Set ``WORKBENCH_WARM_RUNNER=0`` to turn the
keeper off. Anything unexpected (a dead warm runner, a lost race) falls back to a cold start.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .. import home

POLL_SECONDS = 0.05
VOLATILE_ENV = frozenset({
    "PWD", "OLDPWD", "SHLVL", "_", "TERM", "COLUMNS", "LINES", "JPY_PARENT_PID", "JPY_SESSION_NAME",
    # Voila passes each page request to its kernels CGI-style; none of it concerns a job
    "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_SOFTWARE", "SERVER_PROTOCOL", "SERVER_PORT",
    "SERVER_NAME",
    # the front-ends' own settings (``serve`` sets the Host list for itself, ``up`` the API's URL):
    # no job reads them, so a job from a plain shell still gets the server's warm runner
    "WORKBENCH_ALLOWED_HOSTS", "WORKBENCH_ALLOWED_ORIGINS", "WORKBENCH_AUTH", "WORKBENCH_API_URL",
})


def enabled() -> bool:
    return os.environ.get("WORKBENCH_WARM_RUNNER", "1").strip().lower() not in ("0", "false", "no", "off", "")


def warm_dir() -> Path:
    return home.subdir("warm")


def runner_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a job runner gets: this process's, with the home and unbuffered output."""
    return {**(os.environ if base is None else base), "WORKBENCH_HOME": str(home.home()), "PYTHONUNBUFFERED": "1"}


def fingerprint(env: dict[str, str]) -> str:
    kept = sorted((k, v) for k, v in env.items() if k not in VOLATILE_ENV)
    # the interpreter and environment, not the name it was started by (python, python3, a console script's)
    python = [os.path.realpath(sys.executable), sys.prefix]
    return hashlib.sha256(json.dumps([python, kept]).encode()).hexdigest()


def info_path(pid: int) -> Path:
    return warm_dir() / f"{pid}.json"


def claim_path(pid: int) -> Path:
    return warm_dir() / f"{pid}.claim"


def try_claim(pid: int, content: str) -> bool:
    """Claim warm runner ``pid`` for ``content`` (a job id, or "" to stop it); one claimant wins."""
    d = warm_dir()
    tmp = d / f".claim-{pid}-{secrets.token_hex(4)}"
    tmp.write_text(content)
    try:
        os.link(tmp, claim_path(pid))
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def read_claim(pid: int) -> str | None:
    try:
        return claim_path(pid).read_text().strip()
    except FileNotFoundError:
        return None


def forget(pid: int) -> None:
    info_path(pid).unlink(missing_ok=True)
    claim_path(pid).unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def runners() -> list[dict[str, Any]]:
    """Warm runners of this home that are alive (the files of dead ones are removed)."""
    from .executor import pid_alive

    out = []
    for path in sorted(warm_dir().glob("*.json")):
        info = _read(path)
        if not info or "pid" not in info:
            continue
        if not pid_alive(info["pid"], info.get("create_time")):
            forget(info["pid"])
            continue
        out.append(info)
    return out


def claim(job_id: str, env: dict[str, str]) -> dict[str, Any] | None:
    """A ready warm runner started with ``env`` (fingerprint), now handed ``job_id``; else None."""
    if not (home.home() / "warm").is_dir():  # no warm runner ever started here (and make no folder)
        return None
    fp = fingerprint(env)
    for info in runners():
        if info.get("ready") and info.get("env") == fp and try_claim(info["pid"], job_id):
            return info
    return None


# ---- starting and keeping them ----------------------------------------------------------------

def spawn(env: dict[str, str] | None = None, owner: int | None = None) -> subprocess.Popen:
    """Start a warm runner that lives as long as process ``owner`` (default: this one)."""
    env = runner_env(env)
    d = warm_dir()
    cmd = [sys.executable, "-m", "workbench.jobs.runner", "--warm", str(owner or os.getpid())]
    with open(d / "warm.log", "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=str(d))
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it exits
    return proc


def waiting(pid: int) -> dict[str, Any] | None:
    """The info of warm runner ``pid`` while it waits for a job (starting or ready), else None."""
    info = _read(info_path(pid))
    return info if info and read_claim(pid) is None else None


def wait_ready(pid: int, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = waiting(pid)
        if info and info.get("ready"):
            return True
        time.sleep(0.1)
    return False


def stop(pid: int) -> bool:
    """Ask a waiting warm runner to exit; False when it has taken a job already (it stays)."""
    return try_claim(pid, "")


def _slots_free() -> bool:
    from ..store import get_store
    from .executor import max_concurrent
    from .state import TABLE

    busy = sum(1 for j in get_store().all(TABLE) if j["status"] in ("pending", "running"))
    return busy < max_concurrent()


class Keeper(threading.Thread):
    """Keeps one warm runner waiting while this process lives and a job slot is free.

    A new one is started only while fewer jobs run than may (its imports would otherwise
    compete with a running job for the CPU), and never within ``delay`` s of start-up.
    """

    def __init__(self, interval: float = 2.0, delay: float = 2.0):
        super().__init__(name="workbench-warm-runner", daemon=True)
        self.interval, self.delay = interval, delay
        self.proc: subprocess.Popen | None = None
        self.stopped = threading.Event()
        self.failures, self.next_try = 0, 0.0

    def run(self) -> None:
        if self.stopped.wait(self.delay):
            return
        while not self.stopped.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - never take the server down; try again later
                print(f"warm runner: {type(exc).__name__}: {exc}", file=sys.stderr)
            self.stopped.wait(self.interval)

    def tick(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None and read_claim(p.pid) is None:
            return  # ours is still starting, or waiting
        if p is not None and p.poll() is not None:
            self.proc = None
            # one that failed (say, the kernel would not start): try again later and later, up to a minute
            self.failures = self.failures + 1 if p.returncode != 0 else 0
            self.next_try = time.monotonic() + min(60.0, 2.0 ** self.failures) if self.failures else 0.0
        if time.monotonic() >= self.next_try and _slots_free():
            self.proc = spawn()

    def close(self) -> None:
        """Stop keeping, and stop our warm runner unless it has taken a job."""
        self.stopped.set()
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc.pid)


def keep() -> Keeper | None:
    """Start a :class:`Keeper` for this process, unless ``WORKBENCH_WARM_RUNNER=0``."""
    if not enabled():
        return None
    k = Keeper()
    k.start()
    return k
