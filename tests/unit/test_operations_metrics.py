"""What the alert rules and the Grafana dashboard read is what ``/metrics`` exports.

A rule or panel that names a metric the API never exports is silent forever,
so every name they use is checked against a real scrape. The scrape runs the
health checks itself, so a dependency that is down reads 0 on the scrape that
finds it, not whenever someone last called ``/health``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from serve_apps.api.app import create_app
from serve_apps.api.health import check_broker
from serve_apps.api.metrics import ApiMetrics
from wealthalloc.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "operations-token-for-metrics-tests-0123456789"
# Prometheus's own series about a scrape target, not something the API exports.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds"}
PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "histogram_quantile", "avg", "max", "min", "count", "topk", "bool", "offset",
    "le", "clamp_min", "vector", "abs", "inf", "nan",
}  # fmt: skip


@pytest.fixture(scope="module")
def scrape() -> Iterator[str]:
    """One scrape of an API whose PostgreSQL and Redis do not answer."""
    settings = Settings(
        data_dir=Path("/nonexistent-data-dir"),
        database_url="postgresql://postgres@127.0.0.1:1/none",
        redis_url="redis://127.0.0.1:1/0",
        operations_token=TOKEN,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        yield response.text


def exported(scrape: str) -> set[str]:
    """Every series name the scrape can hold: families plus their _total/_bucket/_sum/_count."""
    names: set[str] = set()
    for line in scrape.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            base = family.removesuffix("_total")
            suffixes = {"counter": ["_total"], "histogram": ["", "_bucket", "_sum", "_count"]}
            names.update(base + suffix for suffix in suffixes.get(kind, [""]))
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers and strings removed)."""
    bare = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    return {
        word
        for word in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?![a-zA-Z0-9_:]|\s*\()", bare)
        if word.lower() not in PROMQL_WORDS and not word.startswith("wealthalloc:")
    }


def alert_rule_expressions() -> list[str]:
    groups = yaml.safe_load((ROOT / "cluster" / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_a_scrape_reports_the_database_and_redis_it_cannot_reach_as_down(scrape: str) -> None:
    assert 'wealthalloc_health_check_up{check="database"} 0.0' in scrape
    assert 'wealthalloc_health_check_up{check="redis"} 0.0' in scrape


def test_the_metrics_the_alerts_need_are_exported(scrape: str) -> None:
    for family in (
        "wealthalloc_http_requests_total",
        "wealthalloc_http_request_duration_seconds",
        "wealthalloc_health_check_up",
        "wealthalloc_broker_connected",
        "wealthalloc_event_consumer_lag",
        "wealthalloc_cache_requests_total",
    ):
        assert family in exported(scrape), family


def test_every_metric_an_alert_rule_reads_is_exported(scrape: str) -> None:
    names = exported(scrape) | PROMETHEUS_OWN
    read: set[str] = set()
    for expr in alert_rule_expressions():
        assert metric_names(expr) <= names, (expr, metric_names(expr) - names)
        read |= metric_names(expr)
    assert {"up", "wealthalloc_http_request_duration_seconds_bucket", "wealthalloc_broker_connected"} <= read


class _Gateway:
    """A broker gateway handle whose ``health.remote()`` answers a fixed state."""

    def __init__(self, state: dict[str, Any]) -> None:
        async def remote() -> dict[str, Any]:
            return state

        self.health = SimpleNamespace(remote=remote)


@pytest.mark.parametrize(("status", "connected"), [("healthy", 1.0), ("degraded", 1.0), ("down", 0.0)])
def test_the_broker_gauge_says_whether_the_gateway_reaches_ibkr(status: str, connected: float) -> None:
    metrics = ApiMetrics()
    gateway = _Gateway({"status": status, "broker": "ibkr", "detail": {}})
    res: Any = SimpleNamespace(gateway=lambda: gateway, metrics=metrics)
    try:
        asyncio.run(check_broker(res))
    except Exception:  # a down broker fails the check; the gauge is what this test reads
        pass
    assert metrics.registry.get_sample_value("wealthalloc_broker_connected", {"broker": "ibkr"}) == connected


# --- The Grafana dashboard --------------------------------------------------------------------------

GRAFANA = ROOT / "cluster" / "grafana"


def dashboard_panels() -> list[dict[str, Any]]:
    dashboard = json.loads((GRAFANA / "dashboards" / "wealthalloc-overview.json").read_text())
    return list(dashboard["panels"])


def test_every_panel_queries_only_metrics_the_api_exports(scrape: str) -> None:
    names = exported(scrape) | PROMETHEUS_OWN
    for panel in dashboard_panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            read = metric_names(target["expr"])
            assert read, (panel["title"], target["expr"])
            assert read <= names, (panel["title"], read - names)


def test_the_dashboard_shows_every_signal_an_alert_watches() -> None:
    read = {
        name for panel in dashboard_panels() for t in panel["targets"] for name in metric_names(t["expr"])
    }
    alerting = {name for expr in alert_rule_expressions() for name in metric_names(expr)}
    assert alerting <= read, alerting - read


def test_the_provisioned_datasource_is_the_one_every_panel_names() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    uids = {source["uid"] for source in datasources["datasources"]}
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] in uids, panel["title"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "wealthalloc.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
