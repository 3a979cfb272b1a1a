"""Usage analytics at volume: 1M generated usage records, the data endpoint's latency, ingestion while
queries run, and the server's memory with and without analytics — side by side, in one run.

1. bulk load: ``--records`` usage rows over ``--days`` days (realistic shape: conversations of a few
   turns within minutes, five models, lognormal latencies, 2% errors), written through
   ``usage.record_many`` (the same rows + rollups a served request writes), in transactions of 1,000;
2. the data endpoint (``analytics.data.query``, as ``GET /api/analytics/data`` calls it) over the last
   30 days at each granularity, p50/p95 over ``--queries`` runs; the same range read row by row
   (the rollups switched off) is the baseline;
3. sustained ingestion: one writer thread appending single rows with ``usage.record`` (one transaction
   each, as the gateway does) for ``--seconds`` while a reader thread runs the day query in a loop;
   rows/s of the writer, and the reader's p95 meanwhile (goal ≥ 1,000 rows/s);
4. memory: RSS of a fresh process that builds the server app and idles, against one that also answered
   a month's data query over the 1M rows (goal: within 2×).

    python bench/analytics.py [--records 1000000] [--days 90] [--queries 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

MODELS = [("support-bot", "job-a", "final"), ("support-bot", "job-a", "step-200"), ("sql-helper", "job-b", "final"),
          ("summarizer", "job-c", "best"), ("base-chat", None, None)]


def pct(values: list[float], q: float) -> float:
    from workbench.usage import percentile

    return percentile(sorted(values), q) or 0.0


def generate(n: int, days: int, end: float, rng: random.Random):
    from workbench.usage import Message, UsageRecord

    start = end - days * 86400
    i = 0
    while i < n:
        t = start + rng.random() * (end - start - 3600)
        conv = f"conv-{i}"
        user = f"user-{rng.randrange(5000)}"
        model, job, ckpt = rng.choice(MODELS)
        for turn in range(rng.randint(1, 8)):
            if i >= n:
                break
            ok = rng.random() > 0.02
            lat = rng.lognormvariate(6.5, 0.6)
            yield UsageRecord(id=f"chatcmpl-{i:08d}", ts=t + turn * rng.uniform(5, 120), owner="local",
                              deployment_id=f"dep-{model}", model=model, provider="local", job_id=job, checkpoint=ckpt,
                              conversation_id=conv, route="chat", stream=rng.random() < 0.5,
                              input_tokens=rng.randint(20, 2000), output_tokens=rng.randint(5, 800),
                              latency_ms=lat, ttft_ms=lat * rng.uniform(0.05, 0.3) if ok else None, success=ok,
                              error=None if ok else "TIMEOUT: generation took too long", cost_micro=rng.randint(10, 5000),
                              end_user=user, tier=rng.choice(["free", "pro", "enterprise"])), (
                Message(role="user", content="thanks, that helped" if ok else "this is wrong"),)
            i += 1


RSS_SCRIPT = """
import gc, os, sys, time
import psutil
from workbench.server.app import create_app
app = create_app()
if sys.argv[1] == "query":
    from workbench.analytics import data
    data.query("local", start=sys.argv[2], end=sys.argv[3], granularity="day")
gc.collect(); time.sleep(0.5)
print(psutil.Process().memory_info().rss)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()

    from datetime import UTC, datetime

    from tqdm import tqdm

    from workbench import usage
    from workbench.analytics import data
    from workbench.testing import scratch_home

    rng = random.Random(11)
    end = time.time()
    with scratch_home(prefix="wb-bench-analytics-") as home:
        batch, t0 = [], time.perf_counter()
        for item in tqdm(generate(args.records, args.days, end, rng), total=args.records, desc="load", unit="rec",
                         mininterval=2):
            batch.append(item)
            if len(batch) == 1000:
                usage.record_many(batch)
                batch = []
        if batch:
            usage.record_many(batch)
        load_s = time.perf_counter() - t0

        q_end = datetime.fromtimestamp(end, UTC).isoformat()
        q_start = datetime.fromtimestamp(end - 30 * 86400, UTC).isoformat()
        in_range = usage.connect().execute("SELECT COUNT(*) FROM usage WHERE ts >= ? AND ts <= ?",
                                           (end - 30 * 86400, end)).fetchone()[0]
        rows = []
        for gran in ("hour", "day", "week", "month", "all"):
            data.query("local", start=q_start, end=q_end, granularity=gran)  # warm
            lat = []
            for _ in range(args.queries):
                t = time.perf_counter()
                out = data.query("local", start=q_start, end=q_end, granularity=gran)
                lat.append((time.perf_counter() - t) * 1000)
            base = []
            saved, data.EXACT_ROWS = data.EXACT_ROWS, 10**12  # the baseline: every row read
            try:
                for _ in range(max(2, args.queries // 5)):
                    t = time.perf_counter()
                    data.query("local", start=q_start, end=q_end, granularity=gran)
                    base.append((time.perf_counter() - t) * 1000)
            finally:
                data.EXACT_ROWS = saved
            rows.append({"granularity": gran, "buckets": len(out["data"]["metrics"]["tokenUsage"]),
                         "p50_ms": f"{pct(lat, 50):.0f}", "p95_ms": f"{pct(lat, 95):.0f}",
                         "rows_read_p95_ms (baseline)": f"{pct(base, 95):.0f}",
                         "speed-up": f"{pct(base, 95) / max(pct(lat, 95), 1e-9):.1f}x"})

        # sustained ingestion while the day query runs in a loop
        stop = threading.Event()
        during: list[float] = []

        def reader() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                data.query("local", start=q_start, end=q_end, granularity="day")
                during.append((time.perf_counter() - t) * 1000)

        written = 0
        gen = generate(10**9, 1, time.time(), random.Random(5))
        th = threading.Thread(target=reader, daemon=True)
        th.start()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            rec, msgs = next(gen)
            usage.record(rec.model_copy(update={"id": f"live-{written}"}), messages=msgs)
            written += 1
        sustained = written / (time.perf_counter() - t0)
        stop.set()
        th.join()

        env = dict(os.environ, WORKBENCH_HOME=str(home))
        rss = {}
        for mode in ("idle", "query"):
            out_ = subprocess.run([sys.executable, "-c", RSS_SCRIPT, mode, q_start, q_end], env=env, check=True,
                                  capture_output=True, text=True)
            rss[mode] = int(out_.stdout.strip().splitlines()[-1]) / 2**20

    print(f"\n{args.records} usage records over {args.days} days; the last 30 days hold {in_range} of them")
    print(f"bulk load: {args.records / load_s:.0f} records/s (rows + rollups, 1,000 per transaction)")
    print(table(rows, ["granularity", "buckets", "p50_ms", "p95_ms", "rows_read_p95_ms (baseline)", "speed-up"]))
    worst = max(float(r["p95_ms"]) for r in rows)
    print(f"goal: data endpoint p95 <= 300 ms at every granularity: worst {worst:.0f} ms "
          f"({'ok' if worst <= 300 else 'MISSED'})")
    print(f"sustained ingestion: {sustained:.0f} records/s, one transaction each, while the day query ran "
          f"{len(during)} times (p95 {pct(during, 95):.0f} ms) (goal >= 1000: {'ok' if sustained >= 1000 else 'MISSED'})")
    print(f"server memory: {rss['idle']:.0f} MB idle, {rss['query']:.0f} MB after a month's query over the records: "
          f"{rss['query'] / rss['idle']:.2f}x (goal <= 2x: {'ok' if rss['query'] <= 2 * rss['idle'] else 'MISSED'})")


if __name__ == "__main__":
    main()
