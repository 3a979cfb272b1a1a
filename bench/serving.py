"""Local serving: the ``/v1`` endpoint against raw ``generate()`` on the same model and prompt.

A finished tiny-chat LoRA job is deployed on a real ``workbench serve`` (a subprocess, 1 torch
thread); the baseline is the same base + adapter loaded in this process with peft, also on 1
thread, run alternately with the endpoint so both see the same machine.

1. tokens/s, greedy, exactly ``--max-tokens`` new tokens (``ignore_eos`` / ``min_new_tokens``): the
   endpoint (a non-streamed request through the ``openai`` SDK, wall time on the client) against
   ``model.generate`` (goal ≥ 0.9);
2. time to first token: the first streamed content chunk over HTTP against the first token a
   raw streamer receives (goal: ≤ 15 ms added at p95);
3. latency at 8 concurrent chat clients (p50, p95) and the aggregate tokens/s, against one client.

    python bench/serving.py [--max-tokens 128] [--repeats 20] [--clients 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import scratch_home, table

PROMPT = [{"role": "user", "content": "Tell me a long story about a cat who travels to Paris."}]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    from workbench.usage import percentile

    return percentile(sorted(values), q) or 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()

    home = scratch_home("serving")
    import httpx
    import torch
    from openai import OpenAI
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.testing import copy_job, train_finished_job
    from workbench.tinymodel import default_path
    from workbench.users import local_token

    torch.set_num_threads(1)
    job = copy_job(train_finished_job(Path(home).parent / "wb-bench-serving-jobs"))
    token = local_token()
    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--no-warm",
                               "--log-level", "warning"], env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        h = {"Authorization": f"Bearer {token}"}
        t0 = time.perf_counter()
        dep = httpx.post(f"{url}/api/inference/deploy", headers=h, timeout=300, json={
            "deployment_name": "bench", "training_job_id": job["id"], "checkpoint_selection": "final"}).json()
        deploy_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = httpx.post(f"{url}/api/inference/deploy", headers=h, timeout=300, json={
            "deployment_name": "bench-two", "training_job_id": job["id"], "checkpoint_selection": "step-5"}).json()
        add_s = time.perf_counter() - t0
        oa = OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=300)

        # the baseline: the same base + adapter in this process
        final = Path(home) / "jobs" / job["id"] / "output" / "final"
        tok = AutoTokenizer.from_pretrained(default_path())
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(default_path()), str(final)).eval()
        text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
        n = args.max_tokens

        def raw() -> tuple[float, int]:
            t = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                     do_sample=False, pad_token_id=tok.pad_token_id)
            return time.perf_counter() - t, out.shape[1] - ids.shape[1]

        def served() -> tuple[float, int]:
            t = time.perf_counter()
            r = oa.chat.completions.create(model="bench", messages=PROMPT, temperature=0, max_tokens=n,
                                           extra_body={"ignore_eos": True})  # exactly n tokens, as the baseline
            return time.perf_counter() - t, r.usage.completion_tokens

        class First:
            def __init__(self) -> None:
                self.t0, self.at, self.seen = time.perf_counter(), None, False

            def put(self, value: object) -> None:
                if not self.seen:
                    self.seen = True
                elif self.at is None:
                    self.at = time.perf_counter() - self.t0

            def end(self) -> None:
                pass

        def raw_ttft() -> float:
            s = First()
            with torch.inference_mode():
                model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
                               pad_token_id=tok.pad_token_id, streamer=s)
            return s.at or float("nan")

        def http_ttft() -> float:
            t = time.perf_counter()
            for c in oa.chat.completions.create(model="bench", messages=PROMPT, temperature=0, max_tokens=4,
                                                stream=True):
                if c.choices and c.choices[0].delta.content:
                    return time.perf_counter() - t
            return float("nan")

        for f in (raw, served, raw_ttft, http_ttft):  # warm both paths
            f()
        raws, serves, rt, ht = [], [], [], []
        for _ in range(args.repeats):
            raws.append(raw())
            serves.append(served())
            rt.append(raw_ttft())
            ht.append(http_ttft())
        raw_tps = sum(k for _, k in raws) / sum(s for s, _ in raws)
        srv_tps = sum(k for _, k in serves) / sum(s for s, _ in serves)

        # concurrency
        lat: list[float] = []
        toks = [0]
        lock = threading.Lock()
        barrier = threading.Barrier(args.clients)
        per_client = max(2, args.repeats // 4)

        def client() -> None:
            c = OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=300)
            barrier.wait()
            for _ in range(per_client):
                t = time.perf_counter()
                r = c.chat.completions.create(model="bench", messages=PROMPT, temperature=0, max_tokens=n,
                                              extra_body={"ignore_eos": True})
                with lock:
                    lat.append(time.perf_counter() - t)
                    toks[0] += r.usage.completion_tokens

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        single = [s for s, _ in serves]
    finally:
        os.killpg(server.pid, 9)
        server.wait()

    print(f"deploy (base load + adapter): {deploy_s:.2f} s; adding a second adapter to the running server: "
          f"{add_s:.2f} s (goal <= 2 s; {second.get('adapter_load_seconds')} s of it loading the adapter)")
    print(f"\n1. tokens/s, greedy, {n} new tokens, 1 torch thread (sum over {args.repeats} runs each, alternating)")
    print(table([{"path": "raw model.generate (peft, in-process)", "tokens/s": f"{raw_tps:.1f}"},
                 {"path": "POST /v1/chat/completions (openai SDK)", "tokens/s": f"{srv_tps:.1f}"}],
                ["path", "tokens/s"]))
    print(f"endpoint / raw: {srv_tps / raw_tps:.3f} (goal >= 0.9)")
    print("\n2. time to first token, ms")
    rows = [{"path": "raw streamer (first token)", "p50": f"{pct(rt, 50) * 1e3:.1f}", "p95": f"{pct(rt, 95) * 1e3:.1f}"},
            {"path": "HTTP stream (first content chunk)", "p50": f"{pct(ht, 50) * 1e3:.1f}",
             "p95": f"{pct(ht, 95) * 1e3:.1f}"}]
    print(table(rows, ["path", "p50", "p95"]))
    print(f"added at p95: {(pct(ht, 95) - pct(rt, 95)) * 1e3:.1f} ms (goal <= 15 ms)")
    print(f"\n3. {args.clients} concurrent chat clients x {per_client} requests ({n} tokens each)")
    print(table([{"clients": "1 (sequential, from 1.)", "p50_ms": f"{pct(single, 50) * 1e3:.0f}",
                  "p95_ms": f"{pct(single, 95) * 1e3:.0f}", "tokens/s": f"{srv_tps:.1f}"},
                 {"clients": str(args.clients), "p50_ms": f"{pct(lat, 50) * 1e3:.0f}",
                  "p95_ms": f"{pct(lat, 95) * 1e3:.0f}", "tokens/s": f"{toks[0] / wall:.1f}"}],
                ["clients", "p50_ms", "p95_ms", "tokens/s"]))


if __name__ == "__main__":
    main()
