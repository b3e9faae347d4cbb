"""The platform's metrics reach the Ray dashboard's Grafana through Ray's own metrics agent.

Real local Ray: what a process records is read back from the node's metrics
agent (the endpoint Ray's Prometheus scrapes), under the platform's names with
Ray's ``ray_`` prefix. The agent exports on its own period (about ten seconds)
and the mirror copies every five, so each test polls the endpoint until the
series appear, for at most :data:`EXPORT_WAIT_S`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping

import httpx
import psycopg
import pytest
import ray
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from actors import ray_metrics
from actors.ray_metrics import RayMetricsMirror
from tests.integration.people import Investor

pytestmark = pytest.mark.integration

EXPORT_WAIT_S = 90.0


def agent_samples() -> list[Sample]:
    """Every sample the metrics agents of the cluster's live nodes export now."""
    samples: list[Sample] = []
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        text = httpx.get(url, timeout=10).text
        samples += [s for family in text_string_to_metric_families(text) for s in family.samples]
    return samples


def total(samples: list[Sample], name: str, labels: Mapping[str, str] | None = None) -> float:
    """``name`` summed over the processes that export it (Ray labels each by its WorkerId)."""
    wanted = labels or {}
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items())
    )


def exported_when(condition: Callable[[list[Sample]], bool]) -> list[Sample]:
    deadline = time.monotonic() + EXPORT_WAIT_S
    while True:
        samples = agent_samples()
        if condition(samples):
            return samples
        assert time.monotonic() < deadline, "the series did not reach Ray's metrics agent in time"
        time.sleep(0.5)


def test_counters_gauges_and_histograms_arrive_with_the_values_prometheus_client_holds(
    ray_local: None,
) -> None:
    name = f"wealthalloc_mirror_probe_{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    fills = Counter(f"{name}_fills", "Probe fills.", ["side"], registry=registry)
    rejects = Counter(f"{name}_rejects", "Probe rejects, none yet.", registry=registry)
    books = Gauge(f"{name}_books", "Probe books.", registry=registry)
    waits = Histogram(f"{name}_wait_seconds", "Probe waits.", buckets=(0.01, 0.1, 1.0), registry=registry)
    mirror = RayMetricsMirror([registry], source="probe-process")

    fills.labels("buy").inc(2)
    books.set(7)
    for seconds in (0.005, 0.05, 0.05, 3.0):
        waits.observe(seconds)
    mirror.sync()
    fills.labels("buy").inc(3)  # a second pass adds only what is new
    fills.labels("sell").inc()
    books.set(4)
    waits.observe(0.5)
    mirror.sync()

    # Ray's agent exports each series on its own schedule: wait for the last value of each.
    samples = exported_when(
        lambda s: (
            total(s, f"ray_{name}_wait_seconds_count") == 5
            and total(s, f"ray_{name}_fills_total", {"side": "buy"}) == 5
            and total(s, f"ray_{name}_fills_total", {"side": "sell"}) == 1
            and any(sample.name == f"ray_{name}_rejects_total" for sample in s)
        )
    )
    assert total(samples, f"ray_{name}_fills_total", {"side": "buy", "source": "probe-process"}) == 5
    assert total(samples, f"ray_{name}_fills_total", {"side": "sell"}) == 1
    assert total(samples, f"ray_{name}_books") == 4
    # A counter never incremented is there at 0, not missing ("no data" on a panel or an alert).
    assert [s.value for s in samples if s.name == f"ray_{name}_rejects_total"] == [0.0]
    assert rejects._value.get() == 0
    buckets = {
        le: total(samples, f"ray_{name}_wait_seconds_bucket", {"le": le}) for le in ("0.01", "0.1", "1.0")
    }
    assert buckets == {"0.01": 1, "0.1": 3, "1.0": 4}
    assert total(samples, f"ray_{name}_wait_seconds_bucket", {"le": "+Inf"}) == 5


def test_a_pass_replays_at_most_its_budget_and_the_next_pass_the_rest(
    ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray_metrics, "REPLAY_BUDGET", 3)
    name = f"wealthalloc_mirror_budget_{uuid.uuid4().hex[:8]}_seconds"
    registry = CollectorRegistry()
    waits = Histogram(name, "Probe waits.", buckets=(0.1, 1.0), registry=registry)
    mirror = RayMetricsMirror([registry])
    for _ in range(5):
        waits.observe(0.05)

    mirror.sync()
    # Ray's agent may show a pass's observations before it has all of them (a loaded machine): wait
    # for the budget's worth; more than that would be the budget broken, since nothing else replays.
    first = exported_when(lambda s: total(s, f"ray_{name}_count") >= 3)
    assert total(first, f"ray_{name}_count") == 3
    mirror.sync()
    exported_when(lambda s: total(s, f"ray_{name}_count") == 5)


def test_an_order_shows_in_ray_under_the_platform_s_names(http: httpx.Client, database_url: str) -> None:
    before = agent_samples()
    investor = Investor(http, database_url)
    portfolio = investor.funded("10000.00")
    placed = investor.trade(portfolio["id"], symbol="AAPL", side="buy", quantity="3")
    assert placed.status_code == 201 and placed.json()["data"]["status"] == "filled", placed.text
    anomalies = investor.get(f"/api/v1/portfolios/{portfolio['id']}/anomalies")
    assert anomalies.status_code == 200, anomalies.text

    def grew(samples: list[Sample], name: str, labels: Mapping[str, str] | None = None) -> float:
        return total(samples, name, labels) - total(before, name, labels)

    # Business (a shard applied the fill, an API replica registered the investor), shard, model and
    # the API's own request counter, each from the process that recorded it.
    wanted: list[tuple[str, Mapping[str, str] | None]] = [
        ("ray_wealthalloc_trades_executed_total", {"side": "buy", "broker": "paper"}),
        ("ray_wealthalloc_registrations_total", None),
        ("ray_wealthalloc_shard_call_seconds_count", {"method": "place_order"}),
        ("ray_wealthalloc_shard_lock_wait_seconds_count", None),
        ("ray_wealthalloc_model_batch_windows_count", None),
        ("ray_wealthalloc_http_requests_total", None),
    ]
    samples = exported_when(lambda s: all(grew(s, name, labels) >= 1 for name, labels in wanted))
    assert total(samples, "ray_wealthalloc_shard_books_cached") >= 1

    # Each series names its process as /metrics does, so the dashboard's queries read the same.
    # (Every process exports each counter it has, at 0 until it counts: only counting ones here.)
    def sources(name: str) -> set[str]:
        return {s.labels.get("source", "").split("-")[0] for s in samples if s.name == name and s.value > 0}

    assert sources("ray_wealthalloc_trades_executed_total") >= {"shard"}
    assert sources("ray_wealthalloc_shard_books_cached") >= {"shard"}
    assert sources("ray_wealthalloc_model_batch_windows_count") >= {"anomaly"}
    assert sources("ray_wealthalloc_registrations_total") == {"api"}


def test_the_gauges_a_scrape_would_set_reach_ray_with_no_scrape(
    http: httpx.Client, database_url: str
) -> None:
    """Gateway, event bus, health and portfolio totals are read, not recorded: the API replicas read
    them themselves (every 15 s at most) for Ray, where no Prometheus scrapes ``/metrics``. This
    test never calls ``/metrics``, yet the portfolio count it changes reaches Ray."""
    investor = Investor(http, database_url)
    investor.portfolio("Counted in Ray")
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM portfolios WHERE deleted_at IS NULL").fetchone()
    assert row is not None
    live = float(row[0])

    def counted(samples: list[Sample]) -> bool:
        return any(s.name == "ray_wealthalloc_portfolios" and s.value == live for s in samples)

    samples = exported_when(counted)
    connected = [s.value for s in samples if s.name == "ray_wealthalloc_broker_connected"]
    assert connected and all(value == 1 for value in connected)
    database = [
        s.value
        for s in samples
        if s.name == "ray_wealthalloc_health_check_up" and s.labels.get("check") == "database"
    ]
    assert database and all(value == 1 for value in database)
    lags = {s.labels.get("group") for s in samples if s.name == "ray_wealthalloc_event_consumer_lag"}
    assert "audit" in lags
    # What the Ray dashboard's "API replicas up" reads in place of Prometheus's own `up`.
    assert total(samples, "ray_serve_deployment_replica_healthy", {"deployment": "ApiIngress"}) >= 1
