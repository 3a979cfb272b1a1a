"""Job start-up: what the CLI costs, and where a short job's wall time goes.

1. ``workbench --help``, ``jobs list`` and ``jobs show ID`` on an empty home: wall time and
   peak RSS of the whole process (median of 5; goal ≤ 0.5 s and ≤ 100 MB each).
2. A 60-step tiny-chat LoRA job through ``workbench train`` (the CLI process, from spawn until
   it exits after following the job) against the bare HF Trainer script of
   ``training_overhead.py`` on the same model, data and settings, both on 1 torch thread,
   run alternately (median of ``--repeats``; goal: workbench ≤ 1.25 × bare).
3. Submit → first logged step (goal ≤ 3 s), and a breakdown of the workbench job's time from
   the timestamps it leaves behind: the job record (``queued_at``), the runner and kernel
   processes' start times, ``kernel.json``, the executed notebook's papermill timings and the
   first ``train`` event in ``metrics.jsonl``.
4. With ``--warm`` (the default), the same job handed to a warm runner this script starts, then
   from the CLI while a real ``workbench serve`` keeps one (see ``workbench.jobs.warm``).

    python bench/job_start.py [--steps 60] [--repeats 3] [--no-warm]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import scratch_home, table
from training_overhead import BARE

SETTINGS = ["training.eval_split=0", "training.save_steps=100000", "training.logging_steps=10",
            "training.torch_threads=1", "training.per_device_train_batch_size=8", "training.learning_rate=2e-3"]
CLI_RUNS = 5


def timed(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> tuple[float, float, int, str]:
    """(wall s, peak RSS MB, exit code, stdout) of one child process, its RSS from wait4."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode, out.decode(errors="replace")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "workbench.cli", *args]


def cli_figures(env: dict[str, str], commands: list[tuple[str, list[str]]], label: str) -> list[dict]:
    rows = []
    for name, args in commands:
        runs = [timed(cli(*args), env) for _ in range(CLI_RUNS)]
        wall = statistics.median(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        rows.append({"home": label, "command": f"workbench {name}", "median_s": f"{wall:.2f}",
                     "max_rss_mb": f"{rss:.0f}", "exit": runs[0][2],
                     "goal": "ok" if wall <= 0.5 and rss <= 100 else "MISSED"})
    return rows


def _iso(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def job_timeline(job_id: str, t_submit: float, t_exit: float) -> dict:
    """Seconds between the marks a workbench job leaves behind."""
    from workbench import home
    from workbench.jobs.state import TABLE
    from workbench.store import get_store

    rec = get_store().get(TABLE, job_id)
    jd = home.job_dir(job_id)
    kernel = json.loads((jd / "kernel.json").read_text())
    nb = json.loads((jd / "notebooks" / f"run-{rec.get('run', 1)}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    cells = {c.get("id"): c["metadata"]["papermill"] for c in code}
    first_cell = min(_iso(c["start_time"]) for c in cells.values())
    train = code[-1]["metadata"]["papermill"]  # the cell that calls run_job
    imports = cells.get("training-stack")
    events = [json.loads(line) for line in (jd / "metrics.jsonl").read_text().splitlines()]
    begin = next(_iso(e["timestamp"]) for e in events if e.get("status") == "running")  # on_train_begin
    first_step = next((_iso(e["timestamp"]) for e in events if e.get("type") == "train"), float("nan"))
    pm_start = _iso(nb["metadata"]["papermill"]["start_time"])
    queued = rec["queued_at"]
    return {
        "cli→record": queued - t_submit,
        # the runner started it, or a warm one took the job (kernel.json from before this bench: the process start)
        "record→kernel up": kernel.get("started_at", kernel["create_time"]) - queued,
        "record→papermill": pm_start - queued,
        "papermill→1st cell": first_cell - pm_start,
        "import cell": imports["duration"] if imports else 0.0,
        "training cell": train["duration"],
        "cell end→exit": t_exit - _iso(train["end_time"]),
        "submit→train begins": begin - t_submit,
        "submit→1st step": first_step - t_submit,
        "train_s": rec["result"]["metrics"]["train_runtime"],
    }


def workbench_train(env: dict[str, str], steps: int) -> tuple[float, str, dict]:
    from workbench.datasets import SAMPLE_DATASET

    sets = [a for s in SETTINGS for a in ("--set", s)]
    t0 = time.time()
    wall, _, rc, out = timed(cli("train", "--model", "tiny-chat", "--dataset", str(SAMPLE_DATASET),
                                 "--template", "lora", "--max-steps", str(steps), *sets, "--json"), env)
    t_exit = time.time()
    st = json.loads(out)
    assert rc == 0 and st["status"] == "completed", st.get("error")
    return wall, st["job_id"], job_timeline(st["job_id"], t0, t_exit)


def bare_script(env: dict[str, str], spec_path: Path, work: Path, model_dir: Path, i: int) -> tuple[float, float]:
    wall, _, rc, out = timed([sys.executable, "-c", BARE, str(spec_path), str(work / f"bare-{i}"), str(model_dir)],
                             env)
    assert rc == 0, "the bare script failed"
    return wall, json.loads(out.strip().splitlines()[-1])["train_runtime"]


def fmt(x: float) -> str:
    return f"{x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-warm", dest="warm", action="store_false")
    args = ap.parse_args()

    # 1. the CLI on an empty home (not even tiny-chat in it)
    empty = Path(tempfile.mkdtemp(prefix="wb-bench-empty-"))
    env_empty = {**os.environ, "WORKBENCH_HOME": str(empty), "HF_HUB_OFFLINE": "1"}
    cli_rows = cli_figures(env_empty, [("--help", ["--help"]), ("jobs list", ["jobs", "list"]),
                                       ("jobs show ID", ["jobs", "show", "job-0000000000"])], "empty")

    # 2./3. the job against the bare script, alternately
    home = scratch_home("job-start")
    from workbench.tinymodel import default_path

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs, bares, timelines = [], [], []
    job_id = None
    for i in range(args.repeats):
        wall, job_id, tl = workbench_train(env, args.steps)
        runs.append(wall)
        timelines.append(tl)
        if i == 0:
            spec_path = home / "spec.json"
            spec_path.write_text((home / "jobs" / job_id / "job.json").read_text())
        bares.append(bare_script(env, spec_path, home, default_path(), i))
        print(f"run {i + 1}: workbench train {wall:.2f} s, bare script {bares[-1][0]:.2f} s", file=sys.stderr)

    warm_rows = []
    if args.warm:
        warm_rows = warm_figures(env, args.steps, args.repeats)

    cli_rows += cli_figures(env, [("jobs list", ["jobs", "list"]), ("jobs show ID", ["jobs", "show", job_id])],
                            f"{args.repeats} jobs")

    print("CLI commands (median of 5 runs; goal <= 0.5 s and <= 100 MB)")
    print(table(cli_rows, ["home", "command", "median_s", "max_rss_mb", "exit", "goal"]))

    wb, bare = statistics.median(runs), statistics.median(w for w, _ in bares)
    rows = [{"run": "bare HF Trainer script", "wall_s": fmt(bare),
             "train_s": fmt(statistics.median(t for _, t in bares)), "runs": " ".join(fmt(w) for w, _ in bares)},
            {"run": "workbench train (papermill job)", "wall_s": fmt(wb),
             "train_s": fmt(statistics.median(t["train_s"] for t in timelines)), "runs": " ".join(map(fmt, runs))}]
    for k in ("submit→train begins", "submit→1st step"):
        rows[1][k] = fmt(statistics.median(t[k] for t in timelines))
    rows += warm_rows
    print(f"\n{args.steps}-step tiny-chat LoRA job, 1 torch thread (median of {args.repeats})")
    print(table(rows, ["run", "wall_s", "train_s", "submit→train begins", "submit→1st step", "runs"]))
    print(f"workbench / bare wall time: {wb / bare:.2f} (goal <= 1.25)")

    keys = [k for k in timelines[0] if k != "train_s"]
    med = {k: statistics.median(t[k] for t in timelines) for k in keys}
    print("\nworkbench train, where the time goes (median s; the kernel imports the training stack during "
          "record→papermill and papermill→1st cell)")
    print(table([{k: fmt(v) for k, v in med.items()}], keys))
    print(f"submit → first logged step: {med['submit→1st step']:.2f} s cold" + (
        f", {warm_rows[0]['submit→1st step']} s to a warm runner, {warm_rows[1]['submit→1st step']} s while "
        "workbench serve runs" if warm_rows else "") + " (goal <= 3 s)")


def warm_figures(env: dict[str, str], steps: int, repeats: int) -> list[dict]:
    """The same job through ``workbench train`` while a warm runner waits (as under ``workbench serve``)."""
    from workbench.jobs import warm

    walls, firsts, trains, begins = [], [], [], []
    for _ in range(repeats):
        proc = warm.spawn(env=env)
        if not warm.wait_ready(proc.pid, timeout=300):
            proc.kill()
            raise SystemExit("the warm runner never got ready")
        time.sleep(1.0)  # let its kernel settle: the CPU is the job's again
        wall, job_id, tl = workbench_train(env, steps)
        assert get_record(job_id)["runner_pid"] == proc.pid, "the job did not go to the warm runner"
        proc.wait(timeout=60)
        walls.append(wall)
        firsts.append(tl["submit→1st step"])
        trains.append(tl["train_s"])
        begins.append(tl["submit→train begins"])
    rows = [{"run": "workbench train, warm runner waiting", "wall_s": fmt(statistics.median(walls)),
             "train_s": fmt(statistics.median(trains)), "runs": " ".join(map(fmt, walls)),
             "submit→train begins": fmt(statistics.median(begins)),
             "submit→1st step": fmt(statistics.median(firsts))}]
    return rows + served_figures(env, steps, repeats)


def served_figures(env: dict[str, str], steps: int, repeats: int) -> list[dict]:
    """``workbench train`` from a plain shell while ``workbench serve`` runs on the same home: the job
    goes to the warm runner the server keeps (the user's path, not a runner this script started)."""
    import socket

    from workbench.jobs import warm

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(cli("serve", "--port", str(port)), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    walls, firsts, trains, begins = [], [], [], []
    try:
        for _ in range(repeats):
            deadline = time.monotonic() + 300
            while not (ready := [r for r in warm.runners() if r.get("ready") and warm.read_claim(r["pid"]) is None]):
                if time.monotonic() > deadline:
                    raise SystemExit("the server kept no warm runner")
                time.sleep(0.2)
            time.sleep(1.0)
            wall, job_id, tl = workbench_train(env, steps)
            assert get_record(job_id)["runner_pid"] == ready[0]["pid"], "the job did not go to the server's warm runner"
            walls.append(wall)
            firsts.append(tl["submit→1st step"])
            trains.append(tl["train_s"])
            begins.append(tl["submit→train begins"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    return [{"run": "workbench train while workbench serve runs", "wall_s": fmt(statistics.median(walls)),
             "train_s": fmt(statistics.median(trains)), "runs": " ".join(map(fmt, walls)),
             "submit→train begins": fmt(statistics.median(begins)),
             "submit→1st step": fmt(statistics.median(firsts))}]


def get_record(job_id: str) -> dict:
    from workbench.jobs.state import TABLE
    from workbench.store import get_store

    return get_store().get(TABLE, job_id)


if __name__ == "__main__":
    main()
