"""Operations metrics recorded in any process and shown by one scrape, each labelled with its source."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serve_apps.api.metrics import ApiMetrics
from wealthalloc.ops import metrics as ops


def _families(text: bytes) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        family.name: [(s.name, dict(s.labels), s.value) for s in family.samples]
        for family in text_string_to_metric_families(text.decode())
    }


def _other_process() -> list:  # type: ignore[type-arg]
    """What a shard in another process answers: its own registry's families."""
    registry = CollectorRegistry()
    trades = Counter("wealthalloc_trades_executed", "Fills.", ["side", "broker"], registry=registry)
    trades.labels("buy", "paper").inc(3)
    return list(registry.collect())


def test_families_from_several_sources_are_written_once_each_sample_naming_its_source() -> None:
    local = CollectorRegistry()
    Counter("wealthalloc_trades_executed", "Fills.", ["side", "broker"], registry=local).labels(
        "sell", "ibkr"
    ).inc()
    text = generate_latest(ops.Snapshots({"api": list(local.collect()), "shard-1": _other_process()}))
    assert text.decode().count("# TYPE wealthalloc_trades_executed_total counter") == 1
    samples = {
        (labels["source"], labels["side"]): value
        for name, labels, value in _families(text)["wealthalloc_trades_executed"]
        if name.endswith("_total")
    }
    assert samples == {("api", "sell"): 1.0, ("shard-1", "buy"): 3.0}


def test_a_scrape_declares_every_operations_family_even_before_anything_happened() -> None:
    text = ApiMetrics().render().decode()
    for family in (
        "wealthalloc_trades_executed_total counter",
        "wealthalloc_tax_savings_harvested_dollars_total counter",
        "wealthalloc_recommendations_decided_total counter",
        "wealthalloc_registrations_total counter",
        "wealthalloc_shard_books_cached gauge",
        "wealthalloc_shard_evictions_total counter",
        "wealthalloc_shard_lock_wait_seconds histogram",
        "wealthalloc_shard_commit_group_changes histogram",
        "wealthalloc_shard_call_seconds histogram",
        "wealthalloc_model_batch_windows histogram",
        "wealthalloc_model_inference_seconds histogram",
        "wealthalloc_broker_reconnects_total counter",
        "wealthalloc_portfolio_value_dollars gauge",
    ):
        assert f"# TYPE {family}" in text, family


def test_actor_snapshots_join_the_scrape_under_their_source() -> None:
    text = ApiMetrics().render({"shard-1": _other_process()})
    samples = _families(text)["wealthalloc_trades_executed"]
    assert (
        "wealthalloc_trades_executed_total",
        {"side": "buy", "broker": "paper", "source": "shard-1"},
        3.0,
    ) in (samples)


def test_harvested_savings_add_up_in_dollars_and_a_missing_estimate_adds_nothing() -> None:
    before = ops.TAX_SAVINGS_HARVESTED._value.get()
    ops.harvest_executed(Decimal("123.45"))
    ops.harvest_executed(None)
    assert ops.TAX_SAVINGS_HARVESTED._value.get() - before == 123.45


def test_a_fill_at_the_venue_counts_once_per_fill_and_an_order_without_fills_not_at_all() -> None:
    trades = ops.TRADES_EXECUTED.labels("sell", "paper")
    before = trades._value.get()
    ops.trades_executed("sell", "paper", 0)
    ops.trades_executed("sell", "paper", 2)
    assert trades._value.get() - before == 2


def test_the_time_a_call_waits_for_its_users_lock_is_observed() -> None:
    async def contend() -> None:
        lock = asyncio.Lock()
        async with ops.TimedLock(lock):
            waiter = asyncio.create_task(_take(lock))
            await asyncio.sleep(0.05)
        await waiter

    async def _take(lock: asyncio.Lock) -> None:
        async with ops.TimedLock(lock):
            assert lock.locked()

    before = _lock_wait_sum()
    asyncio.run(contend())
    assert _lock_wait_sum() - before >= 0.04


def _lock_wait_sum() -> float:
    value = ops.REGISTRY.get_sample_value("wealthalloc_shard_lock_wait_seconds_sum")
    return float(value or 0)


def test_the_gateway_health_gives_connection_breaker_and_reconnects() -> None:
    metrics = ApiMetrics()
    metrics.broker_state(
        {
            "status": "degraded",
            "broker": "ibkr",
            "detail": {
                "breaker": {"state": "half_open"},
                "connections": [{"connects": 3}, {"connects": 1}, {"connects": 0}],
            },
        }
    )
    labels = {"broker": "ibkr"}
    assert metrics.registry.get_sample_value("wealthalloc_broker_connected", labels) == 1
    assert metrics.registry.get_sample_value("wealthalloc_broker_breaker_state", labels) == 1
    assert metrics.registry.get_sample_value("wealthalloc_broker_reconnects_total", labels) == 2
    metrics.broker_state({"status": "down", "broker": "ibkr", "detail": {"breaker": {"state": "open"}}})
    assert metrics.registry.get_sample_value("wealthalloc_broker_connected", labels) == 0
    assert metrics.registry.get_sample_value("wealthalloc_broker_breaker_state", labels) == 2


def test_a_consumer_groups_lag_is_its_undelivered_plus_its_pending() -> None:
    metrics = ApiMetrics()
    metrics.consumer_backlog("webhooks", undelivered=7, pending=2)
    labels = {"group": "webhooks"}
    assert metrics.registry.get_sample_value("wealthalloc_event_consumer_lag", labels) == 9
    assert metrics.registry.get_sample_value("wealthalloc_event_consumer_undelivered", labels) == 7
    assert metrics.registry.get_sample_value("wealthalloc_event_consumer_pending", labels) == 2
