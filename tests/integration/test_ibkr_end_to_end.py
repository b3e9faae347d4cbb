"""Trading through Interactive Brokers end to end: the HTTP API on Serve, the owning shard, the
BrokerGateway actor holding ``IbkrBroker`` connections, and the fake IB Gateway speaking the TWS
protocol over a loopback socket. A second API application is deployed with ``broker: ibkr`` and
actors of its own (its own Ray namespace) beside the paper one the other tests use."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import _wait_for, stop_app
from tests.fakes.ib_gateway import FakeIbGateway
from tests.integration.people import Investor

pytestmark = pytest.mark.integration

T = TypeVar("T")
SYMBOL = "KO"


class FakeGatewayThread:
    """The fake gateway on an event loop of its own, driven from the (synchronous) test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeIbGateway()
        self.call(self.fake.start())

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def do(self, action: Callable[[], T]) -> T:
        async def run() -> T:
            return action()

        return self.call(run())

    def close(self) -> None:
        self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def ib() -> Iterator[FakeGatewayThread]:
    gateway = FakeGatewayThread()
    try:
        yield gateway
    finally:
        gateway.close()


@pytest.fixture(scope="module")
def today_close(data_dir: Path, api_settings: dict[str, Any]) -> D:
    from wealthalloc.config import Settings
    from wealthalloc.marketdata import MarketClock, PriceHistory

    settings = Settings(**api_settings)
    prices = PriceHistory(settings.prices_dir)
    clock = MarketClock(prices.trading_days(), pinned=settings.market_clock_date)
    return prices.close_on(SYMBOL, clock.today())


@pytest.fixture(scope="module")
def ibkr_api(
    api_url: str, api_settings: dict[str, Any], ib: FakeGatewayThread, today_close: D
) -> Iterator[tuple[str, str]]:
    """The API with ``broker: ibkr``, at ``{api_url}/ibkr``; yields (base url, Ray namespace)."""
    from ray import serve

    from serve_apps.api.deployment import compose

    ib.do(lambda: ib.fake.set_price(SYMBOL, today_close))
    namespace = f"ibkr-e2e-{uuid.uuid4().hex[:6]}"
    overrides = {
        **api_settings,
        "broker": "ibkr",
        "ib_host": "127.0.0.1",
        "ib_port": ib.fake.port,
        "ib_client_id": 41,
        "ib_pool_size": 2,
        "ib_heartbeat_seconds": 1,
        "ib_reconnect_initial_seconds": 0.1,
        "ib_reconnect_max_seconds": 1,
        "ib_request_timeout_seconds": 3,
        "ray_namespace": namespace,
        "num_replicas": 1,
        "shard_count": 1,  # one shard worker to start, not four: its actors are this module's alone
    }
    serve.run(compose(overrides, detector=False), name="api-ibkr", route_prefix="/ibkr", blocking=False)
    base = f"{api_url}/ibkr"
    _wait_for(base + "/health")
    try:
        yield base, namespace
    finally:
        stop_app("api-ibkr", namespace)


@pytest.fixture
def investor(ibkr_api: tuple[str, str], database_url: str) -> Iterator[Investor]:
    with httpx.Client(base_url=ibkr_api[0], timeout=30) as client:
        yield Investor(client, database_url)


def wait_for_order(
    investor: Investor, order_id: str, statuses: set[str], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        order: dict[str, Any] = investor.get(f"/api/v1/trades/{order_id}").json()["data"]
        if order["status"] in statuses or time.monotonic() > deadline:
            return order
        time.sleep(0.2)


def test_a_market_order_goes_to_ib_once_and_its_fill_and_commission_come_back(
    investor: Investor, ib: FakeGatewayThread, today_close: D
) -> None:
    p = investor.funded("10000.00")
    placed = investor.trade(p["id"], symbol=SYMBOL, side="buy", quantity="10")
    assert placed.status_code == 201, placed.text
    order = wait_for_order(investor, placed.json()["data"]["id"], {"filled"})
    assert order["status"] == "filled" and order["broker"] == "ibkr"
    assert ib.do(lambda: ib.fake.place_counts[order["id"]]) == 1
    [fill] = order["fills"]
    assert D(fill["quantity"]) == 10 and D(fill["price"]) == today_close
    assert D(fill["commission"]) == D("1.00")  # the fake's IB-style minimum
    cash = D(investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]["cash_balance"])
    assert cash == D("10000.00") - 10 * today_close - D("1.00")


def test_a_fill_while_the_gateway_is_away_is_reconciled_once_after_reconnect(
    investor: Investor, ib: FakeGatewayThread, today_close: D
) -> None:
    p = investor.funded("10000.00")
    limit = (today_close * D("0.9")).quantize(D("0.01"))
    placed = investor.trade(
        p["id"], symbol=SYMBOL, side="buy", quantity="5", order_type="limit", limit_price=str(limit)
    )
    order_id = placed.json()["data"]["id"]
    assert wait_for_order(investor, order_id, {"submitted"})["status"] == "submitted"

    async def cut_and_fill() -> None:
        await ib.fake.refuse_connections(True)
        ib.fake.drop_connections()
        ib.fake.fill(order_id, price=limit)  # happens at the venue while nobody listens
        await asyncio.sleep(1.5)
        await ib.fake.refuse_connections(False)

    ib.call(cut_and_fill())
    order = wait_for_order(investor, order_id, {"filled"}, timeout=45)
    assert order["status"] == "filled", order
    assert [D(f["quantity"]) for f in order["fills"]] == [D("5")]
    assert ib.do(lambda: ib.fake.place_counts[order_id]) == 1


def test_the_gateway_actor_killed_between_placing_and_filling_loses_nothing(
    investor: Investor, ib: FakeGatewayThread, ibkr_api: tuple[str, str], today_close: D
) -> None:
    import ray

    from actors.directory import GATEWAY_NAME

    p = investor.funded("10000.00")
    limit = (today_close * D("0.9")).quantize(D("0.01"))
    placed = investor.trade(
        p["id"], symbol=SYMBOL, side="buy", quantity="3", order_type="limit", limit_price=str(limit)
    )
    order_id = placed.json()["data"]["id"]
    assert wait_for_order(investor, order_id, {"submitted"})["status"] == "submitted"
    ray.kill(ray.get_actor(GATEWAY_NAME, namespace=ibkr_api[1]), no_restart=False)
    ib.do(lambda: ib.fake.fill(order_id, price=limit))
    order = wait_for_order(investor, order_id, {"filled"}, timeout=60)
    assert order["status"] == "filled", order
    assert [D(f["quantity"]) for f in order["fills"]] == [D("3")]
    assert ib.do(lambda: ib.fake.place_counts[order_id]) == 1
