"""Prometheus metrics per deployment: requests, tokens, latency, time to first token, errors.

One registry of the process (not the global default, so a host application's own metrics stay
its own); ``GET /metrics`` renders it in the text exposition format.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)
LABELS = ("deployment", "model", "provider")
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter("workbench_inference_requests", "Inference requests answered, by outcome",
                   (*LABELS, "route", "outcome"), registry=REGISTRY)
TOKENS = Counter("workbench_inference_tokens", "Tokens read (prompt) and written (completion)",
                 (*LABELS, "kind"), registry=REGISTRY)
LATENCY = Histogram("workbench_inference_latency_seconds", "Whole-request latency",
                    LABELS, buckets=_LATENCY_BUCKETS, registry=REGISTRY)
TTFT = Histogram("workbench_inference_time_to_first_token_seconds", "Time to the first generated token",
                 LABELS, buckets=_TTFT_BUCKETS, registry=REGISTRY)
ERRORS = Counter("workbench_inference_errors", "Requests that failed or were refused, by reason",
                 (*LABELS, "reason"), registry=REGISTRY)
ALERTS = Counter("workbench_budget_alerts", "Budget alerts fired (50, 80, 100 %)",
                 (*LABELS, "threshold"), registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)


__all__ = ["ALERTS", "CONTENT_TYPE", "ERRORS", "LATENCY", "REGISTRY", "REQUESTS", "TOKENS", "TTFT", "render"]
