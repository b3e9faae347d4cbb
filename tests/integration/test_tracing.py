"""One order is one trace: the API replica's request span, the shard actor's call, its PostgreSQL
statements and the broker gateway's hand-off, each a child of the one before, across processes.

A second API (with its own shards and gateway, in a Ray namespace of its own) runs with
``otlp_endpoint`` pointed at a fake collector on loopback, so every process exports through the
real OTLP exporter, and the test reads what the collector received.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from typing import Any

import httpx
import pytest

from tests.conftest import stop_app
from tests.fakes.otlp_collector import FakeOtlpCollector, ReceivedSpan
from tests.integration.people import Investor

pytestmark = pytest.mark.integration

CLIENT_TRACE = uuid.uuid4().hex
CLIENT_SPAN = uuid.uuid4().hex[:16]


@pytest.fixture(scope="module")
def collector() -> Iterator[FakeOtlpCollector]:
    with FakeOtlpCollector() as running:
        yield running


@pytest.fixture(scope="module")
def traced_api(
    ray_local: None, api_url: str, api_settings: dict[str, Any], collector: FakeOtlpCollector
) -> Iterator[str]:
    from ray import serve

    from serve_apps.api.deployment import compose

    namespace = f"traced-{uuid.uuid4().hex[:6]}"
    overrides = {
        **api_settings,
        "otlp_endpoint": collector.url,
        "ray_namespace": namespace,
        "num_replicas": 1,
        "shard_count": 1,  # one shard worker to start, not four: its actors are this module's alone
    }
    serve.run(compose(overrides, detector=False), name="api-traced", route_prefix="/traced", blocking=False)
    base = f"{api_url}/traced"
    _until(lambda: httpx.get(base + "/health/ready", timeout=10).status_code == 200, 120, "ready")
    try:
        yield base
    finally:
        stop_app("api-traced", namespace)


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} after {timeout} s")
        time.sleep(0.5)


def _one(spans: list[ReceivedSpan], name: str, service: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and s.service == service]
    assert len(found) == 1, (name, service, sorted({(s.service, s.name) for s in spans}))
    return found[0]


def _tree(spans: list[ReceivedSpan]) -> str:
    children: dict[str | None, list[ReceivedSpan]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else None, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            lines.append(f"{'  ' * depth}{span.name}  [{span.kind}, {span.service}]")
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def test_one_order_is_one_trace_from_the_request_to_the_database_and_the_broker(
    traced_api: str, collector: FakeOtlpCollector, database_url: str
) -> None:
    with httpx.Client(base_url=traced_api, timeout=30) as http:
        investor = Investor(http, database_url)
        portfolio = investor.funded("1000.00")
        last = D(investor.get("/api/v1/quotes/KO").json()["data"]["last"])
        limit = (last * D("0.8")).quantize(D("0.01"))  # below the market: it rests with the gateway
        placed = http.post(
            "/api/v1/trades",
            json={
                "portfolio_id": portfolio["id"],
                "symbol": "KO",
                "side": "buy",
                "quantity": "2",
                "order_type": "limit",
                "limit_price": str(limit),
                "time_in_force": "gtc",
            },
            headers={
                **investor.headers,
                "Idempotency-Key": str(uuid.uuid4()),
                "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
            },
        )
    assert placed.status_code == 201 and placed.json()["data"]["status"] == "submitted", placed.text

    # Each process exports in its own batches; a span leaves after its children, so once the last
    # span of each process has arrived, the whole trace has.
    last_of_each = {"POST /api/v1/trades", "PortfolioShard.place_order", "BrokerGateway.rest"}
    _until(lambda: last_of_each <= {s.name for s in collector.trace(CLIENT_TRACE)}, 30, "exported")
    spans = collector.trace(CLIENT_TRACE)
    print("\n" + _tree(spans))
    by_id = {s.span_id: s for s in spans}

    def ancestors(span: ReceivedSpan) -> list[ReceivedSpan]:
        chain = []
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append(span)
        return chain

    request = _one(spans, "POST /api/v1/trades", "wealthalloc-api")
    assert request.kind == "server" and request.parent_id == CLIENT_SPAN  # the client's trace, continued
    assert request.attributes["http.response.status_code"] == 201
    assert request.attributes["request_id"] == placed.headers["x-request-id"]

    call = _one(spans, "shard place_order", "wealthalloc-api")
    assert call.kind == "client" and call.parent_id == request.span_id
    in_shard = _one(spans, "PortfolioShard.place_order", "wealthalloc-shard")
    assert in_shard.kind == "server" and in_shard.parent_id == call.span_id

    statements = [s for s in spans if s.service == "wealthalloc-shard" and s.name.startswith("postgresql ")]
    assert {"postgresql INSERT", "postgresql SELECT"} <= {s.name for s in statements}
    assert all(in_shard in ancestors(s) for s in statements)
    insert = next(s for s in statements if s.name == "postgresql INSERT")
    assert insert.attributes["db.system"] == "postgresql" and "INSERT" in insert.attributes["db.query.text"]

    handoff = _one(spans, "gateway rest", "wealthalloc-shard")
    assert handoff.kind == "client" and in_shard in ancestors(handoff)
    at_gateway = _one(spans, "BrokerGateway.rest", "wealthalloc-broker-gateway")
    assert at_gateway.kind == "server" and at_gateway.parent_id == handoff.span_id
    assert at_gateway.attributes["broker"] == "paper"

    redis_in_api = [s for s in spans if s.service == "wealthalloc-api" and s.name.startswith("redis ")]
    assert redis_in_api and all(request in ancestors(s) for s in redis_in_api)
