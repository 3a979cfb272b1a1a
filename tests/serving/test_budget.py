"""The budget ledger: exact money, one alert per threshold, no overspend under concurrency."""

from __future__ import annotations

import threading

import pytest

from workbench import usage
from workbench.serving import budget


def test_four_requests_at_a_quarter_spend_exactly_one_dollar_and_the_fifth_stops_it(home) -> None:
    budget.open_ledger("dep-a", budget_usd=1.0, cost_usd=0.25, auto_stop=True)
    charges = [budget.charge("dep-a") for _ in range(6)]
    assert [c.allowed for c in charges] == [True] * 4 + [False] * 2
    assert [a["threshold"] for c in charges for a in c.alerts] == [50, 80, 100]
    assert charges[4].stopped_now and charges[4].reason == "budget" and not charges[5].stopped_now
    led = budget.ledger("dep-a")
    assert led["spend_micro"] == usage.MICRO and led["request_count"] == 4 and led["stop_reason"] == "budget"
    assert [e["kind"] for e in budget.events("dep-a")] == ["budget_alert"] * 3 + ["auto_stop"]


def test_concurrent_charges_never_overspend(home) -> None:
    budget.open_ledger("dep-b", budget_usd=1.0, cost_usd=0.1, auto_stop=True)
    results: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(5):
            ok = budget.charge("dep-b").allowed
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 10 and budget.ledger("dep-b")["spend_micro"] == usage.MICRO


def test_without_auto_stop_spending_goes_on_and_alerts_once(home) -> None:
    budget.open_ledger("dep-c", budget_usd=1.0, cost_usd=0.6, auto_stop=False)
    charges = [budget.charge("dep-c") for _ in range(3)]
    assert all(c.allowed for c in charges) and budget.ledger("dep-c")["spend_micro"] == 1_800_000
    assert [a["threshold"] for c in charges for a in c.alerts] == [50, 80, 100]


def test_a_refund_undoes_one_charge_and_a_manual_stop_refuses(home) -> None:
    budget.open_ledger("dep-d", budget_usd=2.0, cost_usd=0.5, auto_stop=True)
    budget.charge("dep-d")
    budget.refund("dep-d")
    assert budget.ledger("dep-d")["request_count"] == 0 and budget.ledger("dep-d")["spend_micro"] == 0
    budget.mark_stopped("dep-d", "manual")
    refused = budget.charge("dep-d")
    assert not refused.allowed and refused.reason == "manual"
    with pytest.raises(KeyError):
        budget.charge("dep-unknown")


def test_usage_totals_and_percentiles(home) -> None:
    for i in range(1, 101):
        usage.record(usage.UsageRecord(id=f"r{i}", owner="u", deployment_id="dep-e", model="m", provider="local",
                                       route="chat", input_tokens=i, output_tokens=2 * i, latency_ms=float(i),
                                       ttft_ms=i / 10, success=i % 10 != 0, cost_micro=250_000))
    t = usage.totals(deployment_id="dep-e")
    assert t["requests"] == 100 and t["successes"] == 90 and t["failures"] == 10
    assert t["input_tokens"] == 5050 and t["output_tokens"] == 10100 and t["cost_micro"] == 25 * usage.MICRO
    assert t["p50_latency_ms"] == pytest.approx(50.5) and t["p95_latency_ms"] == pytest.approx(95.05)
    assert len(usage.rows(owner="u", limit=7)) == 7 and usage.rows(owner="nobody") == []
