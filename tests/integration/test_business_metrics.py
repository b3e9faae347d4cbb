"""One scrape of ``/metrics`` shows the whole cluster: what the API replica counted itself and
what the portfolio shards, the broker gateway and the anomaly detector counted in their own
processes, each series labelled with its ``source`` (each detector replica its own).

Real PostgreSQL, Redis, Ray and Serve. Counters in the actors live as long as the test session,
so each test compares a scrape after its actions with one before them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serve_apps.anomaly import replica_metrics
from tests.conftest import OPERATOR
from tests.integration.people import Investor

pytestmark = pytest.mark.integration


class Scrape:
    def __init__(self, http: httpx.Client) -> None:
        response = http.get("/metrics", headers=OPERATOR)
        assert response.status_code == 200, response.text
        self.text = response.text
        self.samples = [
            sample for family in text_string_to_metric_families(response.text) for sample in family.samples
        ]

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The sum of every sample of ``name`` whose labels include ``labels`` (0 when none); a wanted
        value ending in ``*`` matches as a prefix."""
        return sum(s.value for s in self.samples if s.name == name and _matches(s.labels, labels or {}))

    def sources(self, name: str) -> set[str]:
        return {s.labels["source"] for s in self.samples if s.name == name and "source" in s.labels}


def _matches(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(
        labels.get(k, "").startswith(v[:-1]) if v.endswith("*") else labels.get(k) == v
        for k, v in wanted.items()
    )


def test_an_order_shows_in_the_business_shard_and_model_metrics(
    http: httpx.Client, database_url: str
) -> None:
    before = Scrape(http)
    investor = Investor(http, database_url)
    portfolio = investor.funded("10000.00")
    placed = investor.trade(portfolio["id"], symbol="AAPL", side="buy", quantity="3")
    assert placed.status_code == 201 and placed.json()["data"]["status"] == "filled", placed.text
    anomalies = investor.get(f"/api/v1/portfolios/{portfolio['id']}/anomalies")
    assert anomalies.status_code == 200, anomalies.text
    after = Scrape(http)

    def grew(name: str, labels: Mapping[str, str] | None = None) -> float:
        return after.value(name, labels) - before.value(name, labels)

    # Business: the fill was counted where it was applied, in a shard; the registration in the API
    # replica (its own source, api-<host>-<pid>).
    assert grew("wealthalloc_trades_executed_total", {"side": "buy", "broker": "paper"}) == 1
    assert {s for s in after.sources("wealthalloc_trades_executed_total") if s.startswith("shard-")}
    assert grew("wealthalloc_registrations_total", {"source": "api-*"}) == 1
    assert after.value("wealthalloc_portfolios") >= 1
    assert after.value("wealthalloc_portfolio_value_dollars") > 0

    # Shards: the calls the API made, the book the shard now holds, the lock it waited for.
    assert grew("wealthalloc_shard_call_seconds_count", {"method": "place_order", "source": "api-*"}) == 1
    assert after.value("wealthalloc_shard_books_cached") >= 1
    assert grew("wealthalloc_shard_lock_wait_seconds_count") >= 1

    # Model: the holding was scored in a batch of a detector replica (each replica its own source).
    assert grew("wealthalloc_model_batch_windows_count", {"source": "anomaly-*"}) >= 1
    assert grew("wealthalloc_model_inference_seconds_sum", {"source": "anomaly-*"}) > 0

    # Every actor that runs answered this scrape.
    for source in ("broker-gateway", "anomaly"):
        assert after.value("wealthalloc_metrics_source_up", {"source": source}) == 1, source


def test_each_detector_replica_s_figures_are_scraped_under_its_own_source(
    http: httpx.Client, session_redis_url: str
) -> None:
    """A second replica, as it publishes its figures: a scrape through the handle reaches one replica
    only, so the others' figures come from what each wrote to the platform's Redis."""
    second = f"second-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    batches = Histogram(
        "wealthalloc_model_batch_windows", "Windows per batch.", buckets=(1, 2, 4, 8), registry=registry
    )
    for windows in (3, 5):
        batches.observe(windows)
    client = redis.Redis.from_url(session_redis_url)
    try:
        client.set(replica_metrics.KEY_PREFIX + second, generate_latest(registry), ex=replica_metrics.TTL_S)
        scrape = Scrape(http)
    finally:
        client.delete(replica_metrics.KEY_PREFIX + second)
        client.close()
    assert scrape.value("wealthalloc_model_batch_windows_count", {"source": f"anomaly-{second}"}) == 2
    replicas = scrape.sources("wealthalloc_model_batch_windows_count") - {f"anomaly-{second}"}
    assert {source for source in replicas if source.startswith("anomaly-")}, "the running replica is missing"
    assert scrape.value("wealthalloc_metrics_source_up", {"source": "anomaly"}) == 1


def test_the_gateway_and_the_event_bus_are_described_by_their_gauges(http: httpx.Client) -> None:
    scrape = Scrape(http)
    assert scrape.value("wealthalloc_broker_connected", {"broker": "paper"}) == 1
    assert scrape.value("wealthalloc_broker_breaker_state", {"broker": "paper"}) == 0
    assert "# TYPE wealthalloc_broker_reconnects_total counter" in scrape.text
    groups = {s.labels["group"] for s in scrape.samples if s.name == "wealthalloc_event_consumer_pending"}
    assert {"audit"} <= groups
    for group in groups:
        lag = scrape.value("wealthalloc_event_consumer_lag", {"group": group})
        undelivered = scrape.value("wealthalloc_event_consumer_undelivered", {"group": group})
        pending = scrape.value("wealthalloc_event_consumer_pending", {"group": group})
        assert lag == undelivered + pending
