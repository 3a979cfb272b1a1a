"""Benchmark: our streaming dataset validator vs a naive ``json.loads`` + pydantic loop.

Generates a chat JSONL file of about ``--mb`` megabytes (default 200, or ``$BENCH_MB``),
then runs each contender in its own subprocess — so one's memory can't inflate
another's peak — and prints throughput and peak RSS side by side:

* ``ours``            — ``validate_file(path, "chat")``: validation only, streamed;
* ``ours+normalise``  — the same pass also writing normalised JSONL, as ``register`` does;
* ``naive``           — ``json.loads`` + a pydantic ``BaseModel`` per line, collecting the
  records into a list, as straightforward code does.

Run: ``python bench/validation.py [--mb 200] [--path FILE] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = ("ours", "ours+normalise", "naive")
WORDS = ("order refund shipping password invoice account product return delivery warranty please thanks help "
         "where when how why can could would the a an my your our is are was be have has to of in on for with "
         "today tomorrow week business days email address card charge label box post office colour price").split()


# --- data ---------------------------------------------------------------------------------

def _sentence(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choices(WORDS, k=n_words)).capitalize() + "."


def _chat(rng: random.Random) -> dict[str, Any]:
    messages = [{"role": "system", "content": "You are a helpful customer support assistant for Acme."}]
    for _ in range(rng.choice((1, 1, 2, 3))):
        messages.append({"role": "user", "content": _sentence(rng, rng.randint(5, 40))})
        messages.append({"role": "assistant", "content": " ".join(_sentence(rng, rng.randint(5, 25))
                                                                 for _ in range(rng.randint(1, 6)))})
    return {"messages": messages}


def generate(path: Path, mb: float, seed: int = 0) -> int:
    """Write ~``mb`` MB of chats; a pool of lines tagged with a counter keeps generation fast."""
    rng = random.Random(seed)
    pool = [json.dumps(_chat(rng)) for _ in range(2000)]
    target, written, lines = int(mb * 1024 * 1024), 0, 0
    with path.open("w") as fh:
        while written < target:
            line = pool[lines % len(pool)].replace("Acme.", f"Acme #{lines}.", 1) + "\n"
            fh.write(line)
            written += len(line)
            lines += 1
    return lines


# --- contenders (each runs in a fresh subprocess) ---------------------------------------------

def run_ours(path: Path, normalise: bool) -> int:
    from workbench.dataset_validation import validate_file

    if not normalise:
        return validate_file(path, "chat").samples
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        return validate_file(path, "chat", out=Path(tmp) / "data.jsonl").samples


def run_naive(path: Path) -> int:
    from typing import Literal

    from pydantic import BaseModel

    class Message(BaseModel):
        role: Literal["system", "user", "assistant", "tool"]
        content: str

    class Chat(BaseModel):
        messages: list[Message]

    records = []
    with path.open() as fh:
        for line in fh:
            if line.strip():
                records.append(Chat(**json.loads(line)))
    return len(records)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(name: str, path: Path) -> None:
    import pydantic  # noqa: F401  (import cost is not what we measure)

    import workbench.dataset_validation  # noqa: F401

    baseline = _peak_rss_mb()
    start = time.perf_counter()
    samples = run_naive(path) if name == "naive" else run_ours(path, normalise=name == "ours+normalise")
    seconds = time.perf_counter() - start
    print(json.dumps({"samples": samples, "seconds": seconds, "baseline_mb": baseline, "peak_mb": _peak_rss_mb()}))


def measure(name: str, path: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, __file__, "--worker", name, "--path", str(path)],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- report ------------------------------------------------------------------------------------

def report(path: Path, results: dict[str, dict[str, Any]]) -> None:
    size_mb = path.stat().st_size / 2**20
    naive = results.get("naive")
    print(f"\nfile: {path} ({size_mb:.1f} MB, {next(iter(results.values()))['samples']} samples)\n")
    print(f"{'method':<16}{'seconds':>9}{'MB/s':>9}{'speed-up':>10}{'peak RSS MB':>13}{'RSS growth MB':>15}")
    for name, r in results.items():
        speedup = f"{naive['seconds'] / r['seconds']:.1f}x" if naive else "-"
        print(f"{name:<16}{r['seconds']:>9.2f}{size_mb / r['seconds']:>9.1f}{speedup:>10}"
              f"{r['peak_mb']:>13.0f}{r['peak_mb'] - r['baseline_mb']:>15.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=float(os.environ.get("BENCH_MB", 200)))
    parser.add_argument("--path", type=Path, help="use (or create) this file instead of a temp one")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.path)
        return
    path = args.path or Path(tempfile.mkdtemp(prefix="wb-bench-")) / "chats.jsonl"
    if not path.exists():
        t0 = time.perf_counter()
        lines = generate(path, args.mb)
        print(f"generated {lines} chats ({path.stat().st_size / 2**20:.1f} MB) in {time.perf_counter() - t0:.1f}s")
    try:
        results = {name: measure(name, path) for name in CONTENDERS}
        assert len({r["samples"] for r in results.values()}) == 1, results
        report(path, results)
    finally:
        if not args.keep and not args.path:
            path.unlink(missing_ok=True)
            path.parent.rmdir()


if __name__ == "__main__":
    main()
