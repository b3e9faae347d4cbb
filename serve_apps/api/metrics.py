"""Prometheus metrics of the API process, and what ``/metrics`` adds from the rest of the cluster.

Each app gets its own registry so that tests can build several apps in one
process. A scrape also carries the operations metrics of the actors this
replica reaches (shards, broker gateway, anomaly detector), each series
labelled with its ``source`` (wealthalloc/ops/metrics.py, docs/operations.md):
``api-<host>-<pid>`` for this replica's own, ``shard-N``, ``broker-gateway`` and
``anomaly`` for the actors', which every replica's scrape repeats.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from wealthalloc.ops import metrics as ops_metrics

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics"]

# This replica's own operations series: unique per replica, so ``max without (instance)`` folds the
# actors' series (which every replica repeats) and keeps each replica's own.
API_SOURCE = f"api-{socket.gethostname()}-{os.getpid()}"
# What a circuit breaker's state reads as on a gauge (a paper broker has none: closed).
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "wealthalloc_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wealthalloc_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.cache = Counter(
            "wealthalloc_cache_requests_total",
            "Cache lookups by cache name and result (hit, miss).",
            ["cache", "result"],
            registry=self.registry,
        )
        self.trades = Counter(
            "wealthalloc_trades_total",
            "Orders accepted by the API, by side and order type.",
            ["side", "order_type"],
            registry=self.registry,
        )
        self.health = Gauge(
            "wealthalloc_health_check_up",
            "1 when the named dependency check passed at the last /health.",
            ["check"],
            registry=self.registry,
        )

        self.consumer_lag = Gauge(
            "wealthalloc_event_consumer_lag",
            "Events a consumer group has not handled yet (undelivered plus pending), at the last /health.",
            ["group"],
            registry=self.registry,
        )
        self.consumer_undelivered = Gauge(
            "wealthalloc_event_consumer_undelivered",
            "Events not yet delivered to a consumer group (XINFO GROUPS lag), at the last /health.",
            ["group"],
            registry=self.registry,
        )
        self.consumer_pending = Gauge(
            "wealthalloc_event_consumer_pending",
            "Events delivered to a consumer group and not acknowledged yet, at the last /health.",
            ["group"],
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "wealthalloc_event_dead_letters",
            "Events a consumer group could not handle, even alone, moved to the dead-letter stream"
            " (its length), at the last /health.",
            registry=self.registry,
        )
        self.broker_connected = Gauge(
            "wealthalloc_broker_connected",
            "1 when the broker gateway had a live connection to its broker at the last health check.",
            ["broker"],
            registry=self.registry,
        )
        self.broker_breaker = Gauge(
            "wealthalloc_broker_breaker_state",
            "The broker gateway's circuit breaker at the last health check: 0 closed, 1 half open, 2 open.",
            ["broker"],
            registry=self.registry,
        )
        self._broker_connects: dict[str, float] = {}
        self.registry.register(_BrokerReconnects(self._broker_connects))
        self.portfolio_value = Gauge(
            "wealthalloc_portfolio_value_dollars",
            "Total value of all live portfolios as last valued (portfolios.total_value), at the last scrape.",
            registry=self.registry,
        )
        self.portfolios = Gauge(
            "wealthalloc_portfolios",
            "Live portfolios, at the last scrape.",
            registry=self.registry,
        )
        self.source_up = Gauge(
            "wealthalloc_metrics_source_up",
            "1 when the actor named by source answered this scrape with its metrics.",
            ["source"],
            registry=self.registry,
        )

        self.stream_sockets = Gauge(
            "wealthalloc_stream_sockets",
            "WebSockets open on /api/v1/stream in this replica.",
            registry=self.registry,
        )
        self.stream_closed = Counter(
            "wealthalloc_stream_closed_total",
            "WebSockets closed by the server, by close code (4401 auth, 4408 heartbeat, 4429 slow).",
            ["code"],
            registry=self.registry,
        )

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(method, endpoint).observe(seconds)

    def cache_lookup(self, cache: str, *, hit: bool) -> None:
        self.cache.labels(cache, "hit" if hit else "miss").inc()

    def consumer_backlog(self, group: str, *, undelivered: int, pending: int) -> None:
        self.consumer_lag.labels(group).set(undelivered + pending)
        self.consumer_undelivered.labels(group).set(undelivered)
        self.consumer_pending.labels(group).set(pending)

    def broker_state(self, state: Mapping[str, Any]) -> None:
        """Gauges from the gateway's ``health()``: connected, breaker state, reconnects (IBKR's detail
        lists each connection's ``connects``; every connect after a connection's first is a reconnect)."""
        broker = str(state["broker"])
        self.broker_connected.labels(broker).set(0 if state["status"] == "down" else 1)
        detail = state.get("detail") or {}
        breaker = (detail.get("breaker") or {}).get("state", "closed")
        self.broker_breaker.labels(broker).set(BREAKER_STATES.get(str(breaker).replace("-", "_"), 0))
        connections = detail.get("connections") or []
        self._broker_connects[broker] = float(sum(max(0, int(c.get("connects", 0)) - 1) for c in connections))

    def render(self, sources: Mapping[str, list[Metric]] | None = None) -> bytes:
        """This replica's registry, then the operations families of this process and of ``sources``."""
        everything = {API_SOURCE: ops_metrics.snapshot(), **(sources or {})}
        return generate_latest(self.registry) + generate_latest(ops_metrics.Snapshots(everything))


class _BrokerReconnects:
    """A counter whose value is the gateway's own count, read at each health check."""

    def __init__(self, connects: dict[str, float]) -> None:
        self._connects = connects

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "wealthalloc_broker_reconnects",
            "Reconnects of the broker gateway to its broker since the gateway started.",
            labels=["broker"],
        )
        for broker, value in self._connects.items():
            family.add_metric([broker], value)
        yield family

    def describe(self) -> Iterator[Metric]:
        return self.collect()
