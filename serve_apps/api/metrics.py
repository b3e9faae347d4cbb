"""Prometheus metrics of the API process.

Each app gets its own registry so that tests can build several apps in one
process, and ``/metrics`` shows exactly this replica's numbers (Ray's own
metrics endpoint on the dashboard aggregates across replicas).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics"]


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
        self.broker_connected = Gauge(
            "wealthalloc_broker_connected",
            "1 when the broker gateway had a live connection to its broker at the last health check.",
            ["broker"],
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
