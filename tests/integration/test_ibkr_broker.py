"""``IbkrBroker`` against a fake IB Gateway that speaks the TWS socket protocol.

The real client library runs in every test (each test once on ``ib_async``
and once on ``ib_insync``): handshake, start-up synchronisation, orders,
fills, reconnects and market data all go over a loopback socket. No Ray and
no database: the sink is an in-memory recorder that deduplicates fills by
``fill_id`` the way a shard does, and counts the duplicates it was offered.

Any ERROR the client library logs fails the test, except the ones a test
provokes on purpose (a dropped socket, a refused connect, a rejected order),
which it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from wealthalloc.brokers.base import BrokerUnavailable, OrderRejected
from wealthalloc.brokers.ib_client import LIBRARY_ENV, load_ib
from wealthalloc.brokers.ibkr import IbkrBroker
from wealthalloc.config import Settings
from wealthalloc.trading.tickets import Execution, OrderType, Side, StatusChange, Ticket, TimeInForce

pytestmark = pytest.mark.integration

LIBRARIES = ["ib_async", "ib_insync"]
DROPPED = ("Peer closed connection", "API connection failed", "Make sure API port")


def _load_fakes() -> ModuleType:
    """tests/fakes/ib_gateway.py, also where an installed top-level ``tests`` package shadows ours."""
    try:
        return importlib.import_module("tests.fakes.ib_gateway")
    except ModuleNotFoundError:
        path = Path(__file__).resolve().parents[1] / "fakes" / "ib_gateway.py"
        spec = importlib.util.spec_from_file_location("wealthalloc_test_fakes_ib_gateway", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


fakes = _load_fakes()
FakeIbGateway = fakes.FakeIbGateway


# -- the recorder sink and the log watch -------------------------------------------------


class RecordingSink:
    """Applies each fill once by ``fill_id``, like a shard, and remembers what it was told."""

    def __init__(self) -> None:
        self.tickets: dict[uuid.UUID, Ticket] = {}
        self.fills: dict[str, Execution] = {}
        self.duplicates = 0
        self.changes: list[StatusChange] = []

    def track(self, ticket: Ticket) -> Ticket:
        self.tickets[ticket.order_id] = ticket
        return ticket

    async def execution(self, ticket: Ticket, execution: Execution) -> None:
        if execution.fill_id in self.fills:
            self.duplicates += 1
            return
        self.fills[execution.fill_id] = execution

    async def status_change(self, ticket: Ticket, change: StatusChange) -> None:
        self.changes.append(change)

    def fills_of(self, ticket: Ticket) -> list[Execution]:
        return [fill for fill in self.fills.values() if fill.order_id == ticket.order_id]

    def changes_of(self, ticket: Ticket) -> list[StatusChange]:
        return [change for change in self.changes if change.order_id == ticket.order_id]

    async def open_tickets(self) -> list[Ticket]:
        """The platform's open orders: not fully filled, not cancelled, rejected or expired."""
        open_: list[Ticket] = []
        for ticket in self.tickets.values():
            filled = sum((fill.quantity for fill in self.fills_of(ticket)), Decimal(0))
            if filled < ticket.quantity and not self.changes_of(ticket):
                open_.append(ticket)
        return open_


class LibraryErrors(logging.Handler):
    """ERROR records of the client libraries (and asyncio), less the ones a test expects."""

    LOGGERS = ("ib_async", "ib_insync", "asyncio")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.expected: list[re.Pattern[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def expect(self, *patterns: str) -> None:
        self.expected.extend(re.compile(re.escape(pattern)) for pattern in patterns)

    def unexpected(self) -> list[str]:
        messages = [f"{record.name}: {record.getMessage()}" for record in self.records]
        return [message for message in messages if not any(p.search(message) for p in self.expected)]


@pytest.fixture(autouse=True)
def library_errors() -> Iterator[LibraryErrors]:
    handler = LibraryErrors()
    loggers = [logging.getLogger(name) for name in LibraryErrors.LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    unexpected = handler.unexpected()
    if unexpected:
        pytest.fail("the client library logged errors:\n" + "\n".join(unexpected))


@pytest.fixture(params=LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- helpers -------------------------------------------------------------------------


def run(scenario: Coroutine[Any, Any, None], timeout: float = 30) -> None:
    asyncio.run(asyncio.wait_for(scenario, timeout))


async def wait_until(predicate: Callable[[], bool], timeout: float = 5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def ticket(
    symbol: str = "AAPL",
    *,
    side: Side = "buy",
    quantity: str = "10",
    order_type: OrderType = "market",
    limit_price: str | None = None,
    stop_price: str | None = None,
    time_in_force: TimeInForce = "day",
    price_cap: str | None = None,
) -> Ticket:
    return Ticket(
        order_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        portfolio_id=uuid.uuid4(),
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity),
        order_type=order_type,
        limit_price=Decimal(limit_price) if limit_price else None,
        stop_price=Decimal(stop_price) if stop_price else None,
        time_in_force=time_in_force,
        price_cap=Decimal(price_cap) if price_cap else None,
    )


def settings(port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "broker": "ibkr",
        "ib_host": "127.0.0.1",
        "ib_port": port,
        "ib_client_id": 17,
        "ib_pool_size": 2,
        "ib_account": "",
        "ib_heartbeat_seconds": 0.2,
        "ib_reconnect_initial_seconds": 0.05,
        "ib_reconnect_max_seconds": 0.5,
        "ib_breaker_failures": 10,
        "ib_order_retries": 3,
        "ib_request_timeout_seconds": 2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def gateway_and_broker(
    library: str, **overrides: Any
) -> AsyncIterator[tuple[Any, IbkrBroker, RecordingSink]]:
    fake = FakeIbGateway()
    await fake.start()
    fake.set_price("AAPL", "150.25")
    fake.set_price("MSFT", "310.10")
    sink = RecordingSink()
    broker = IbkrBroker(settings(fake.port, **overrides), sink, sink.open_tickets, library=library)
    try:
        await broker.start()
        yield fake, broker, sink
    finally:
        await broker.close()
        await fake.stop()


async def cut(fake: Any, broker: IbkrBroker) -> None:
    """The gateway goes away: every socket closed, new connects refused."""
    await fake.refuse_connections(True)
    fake.drop_connections()
    await wait_until(lambda: broker.health().status == "down", what="health down")


# -- tests -----------------------------------------------------------------------------


def test_the_client_library_can_be_forced(library: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LIBRARY_ENV, raising=False)
    assert load_ib().__name__ == "ib_async"  # the maintained fork first
    assert load_ib(library).__name__ == library
    monkeypatch.setenv(LIBRARY_ENV, library)
    assert load_ib().__name__ == library
    with pytest.raises(ValueError, match="unknown IB client library"):
        load_ib("ibapi")


def test_connects_the_pool_and_synchronises_without_errors(library: str) -> None:
    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, _):
            health = broker.health()
            assert health.status == "healthy", health.detail
            assert health.detail["library"] == library
            assert fake.connected_client_ids == [17, 18]
            for request in (
                "startApi",
                "reqPositions",
                "reqOpenOrders",
                "reqCompletedOrders",
                "reqExecutions",
            ):
                assert fake.received[request] >= 1, request
            await asyncio.sleep(0.5)  # a few heartbeats
            assert fake.received["reqCurrentTime"] >= 2
            assert broker.health().status == "healthy"

    run(scenario())


def test_a_market_order_fills_once_with_its_commission(library: str) -> None:
    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            order = sink.track(ticket(quantity="10"))
            broker_id = await broker.place(order)
            await wait_until(lambda: len(sink.fills_of(order)) == 1, what="the fill")
            await asyncio.sleep(0.5)  # heartbeats pass; nothing is reported twice
            ref = str(order.order_id)
            sent = fake.order(ref)
            assert broker_id == str(sent.order_id)
            assert (sent.client_id, sent.action, sent.order_type, sent.tif) == (17, "BUY", "MKT", "DAY")
            assert sent.quantity == Decimal("10")
            assert fake.place_counts[ref] == 1
            [fill] = sink.fills_of(order)
            execution = fake.executions[0]
            assert fill.fill_id == f"ib:{execution.exec_id}"
            assert fill.broker_exec_id == execution.exec_id
            assert (fill.quantity, fill.price, fill.commission) == (
                Decimal("10"),
                Decimal("150.25"),
                Decimal("1"),
            )
            assert fill.executed_at.tzinfo is not None
            assert sink.duplicates == 0
            assert sink.changes == []

    run(scenario())


def test_a_market_buy_goes_out_as_a_limit_at_its_price_cap_and_waits_above_it(library: str) -> None:
    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            inside = sink.track(ticket(quantity="4", price_cap="157.7638"))  # the market is at 150.25
            above = sink.track(ticket("MSFT", quantity="1", price_cap="300.0099"))  # the market is at 310.10
            await broker.place(inside)
            await broker.place(above)
            await wait_until(lambda: len(sink.fills_of(inside)) == 1, what="the protected fill")
            sent, waiting = fake.order(str(inside.order_id)), fake.order(str(above.order_id))
            assert (sent.order_type, sent.lmt_price) == ("LMT", Decimal("157.76"))  # the cent below the cap
            assert sink.fills_of(inside)[0].price == Decimal("150.25")
            assert (waiting.order_type, waiting.lmt_price) == ("LMT", Decimal("300"))
            assert waiting.status == "Submitted"
            assert sink.fills_of(above) == []
            stop = sink.track(ticket(order_type="stop", stop_price="155", price_cap="162.75"))
            await broker.place(stop)
            placed = fake.order(str(stop.order_id))
            assert (placed.order_type, placed.aux_price) == ("STP LMT", 155)
            assert placed.lmt_price == Decimal("162.75")

    run(scenario())


def test_a_resting_limit_order_is_cancelled(library: str) -> None:
    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            order = sink.track(ticket(order_type="limit", limit_price="140.50", time_in_force="gtc"))
            broker_id = await broker.place(order)
            ref = str(order.order_id)
            resting = fake.order(ref)
            assert (resting.order_type, resting.lmt_price, resting.tif, resting.status) == (
                "LMT",
                Decimal("140.5"),
                "GTC",
                "Submitted",
            )
            await broker.cancel(order)
            await wait_until(lambda: bool(sink.changes_of(order)), what="the cancel")
            [change] = sink.changes_of(order)
            assert change.status == "cancelled"
            assert change.broker_order_id == broker_id
            assert fake.order(ref).status == "Cancelled"
            assert sink.fills_of(order) == []

    run(scenario())


def test_stop_orders_map_to_ib_order_types(library: str) -> None:
    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            stop = sink.track(ticket(side="sell", order_type="stop", stop_price="140"))
            stop_limit = sink.track(
                ticket(
                    side="sell",
                    quantity="2.5",
                    order_type="stop_limit",
                    stop_price="141",
                    limit_price="139.5",
                )
            )
            await broker.place(stop)
            await broker.place(stop_limit)
            first, second = fake.order(str(stop.order_id)), fake.order(str(stop_limit.order_id))
            assert (first.action, first.order_type, first.aux_price, first.lmt_price) == (
                "SELL",
                "STP",
                140,
                None,
            )
            assert (second.order_type, second.aux_price, second.lmt_price) == (
                "STP LMT",
                141,
                Decimal("139.5"),
            )
            assert second.quantity == Decimal("2.5")
            assert sink.fills == {}

    run(scenario())


def test_a_rejected_order_raises_order_rejected(library: str, library_errors: LibraryErrors) -> None:
    library_errors.expect("Error 201")  # the library logs the rejection it is told of

    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            fake.reject_next("Order rejected - reason: insufficient buying power")
            order = sink.track(ticket())
            with pytest.raises(OrderRejected, match="insufficient buying power"):
                await broker.place(order)
            assert fake.place_counts[str(order.order_id)] == 1
            await asyncio.sleep(0.3)
            assert sink.fills == {}
            assert sink.changes == []  # the caller heard it from the exception
            assert broker.health().status == "healthy"

    run(scenario())


def test_a_fill_while_disconnected_is_reconciled_once(library: str, library_errors: LibraryErrors) -> None:
    library_errors.expect(*DROPPED)

    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            order = sink.track(ticket(quantity="7"))
            ref = str(order.order_id)
            await broker.quote("AAPL")  # the contract is known before the gateway goes quiet
            fake.auto_fill = False
            fake.delay(5)  # the order arrives, its answer does not
            placing = asyncio.create_task(broker.place(order))
            await wait_until(lambda: fake.place_counts[ref] == 1, what="the order at the gateway")
            await cut(fake, broker)
            fake.delay(0)
            fake.fill(ref)  # filled while nobody listens
            await asyncio.sleep(0.4)  # refused reconnects, with backoff
            orders_conn = broker.health().detail["connections"][0]
            assert not orders_conn["up"] and "Refused" in str(orders_conn["last_error"])
            assert sink.fills == {}
            await fake.refuse_connections(False)
            broker_id = await asyncio.wait_for(placing, 5)
            await wait_until(lambda: broker.health().status == "healthy", what="healthy again")
            await wait_until(lambda: len(sink.fills_of(order)) == 1, what="the reconciled fill")
            await asyncio.sleep(0.5)
            assert broker_id == str(fake.order(ref).order_id)
            assert fake.place_counts[ref] == 1
            assert sink.duplicates == 0
            [fill] = sink.fills_of(order)
            assert (fill.quantity, fill.commission) == (Decimal("7"), Decimal("1"))
            assert fill.fill_id == f"ib:{fake.executions[0].exec_id}"

    run(scenario())


def test_a_lost_data_connection_degrades_but_orders_still_flow(
    library: str, library_errors: LibraryErrors
) -> None:
    library_errors.expect(*DROPPED)

    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            await fake.refuse_connections(True)
            fake.drop_connections(client_id=18)
            await wait_until(lambda: broker.health().status == "degraded", what="degraded")
            assert "18" in str(broker.health().detail["reason"])
            order = sink.track(ticket(quantity="1"))
            await broker.place(order)
            await wait_until(lambda: len(sink.fills_of(order)) == 1, what="the fill")
            assert fake.order(str(order.order_id)).client_id == 17
            assert (await broker.quote("MSFT"))["last"] == Decimal("310.10")  # served by the order connection
            await fake.refuse_connections(False)
            await wait_until(lambda: broker.health().status == "healthy", what="healthy again")

    run(scenario())


def test_an_open_breaker_refuses_orders_at_once(library: str, library_errors: LibraryErrors) -> None:
    library_errors.expect(*DROPPED)

    async def scenario() -> None:
        async with gateway_and_broker(library, ib_breaker_failures=2) as (fake, broker, sink):
            await cut(fake, broker)
            await wait_until(
                lambda: "circuit breaker" in str(broker.health().detail.get("reason")),
                what="the breaker open",
            )
            order = sink.track(ticket())
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable, match="circuit breaker"):
                await broker.place(order)
            assert time.monotonic() - started < 0.05
            health = broker.health()
            assert health.status == "down"
            assert health.detail["breaker"]["state"] in ("open", "half_open")
            assert fake.place_counts[str(order.order_id)] == 0
            await fake.refuse_connections(False)
            await wait_until(lambda: broker.health().status == "healthy", what="the breaker closed")
            await broker.place(order)
            await wait_until(lambda: len(sink.fills_of(order)) == 1, what="the fill after recovery")

    run(scenario())


def test_an_order_placed_while_disconnected_is_sent_once_after_reconnect(
    library: str, library_errors: LibraryErrors
) -> None:
    library_errors.expect(*DROPPED)

    async def scenario() -> None:
        async with gateway_and_broker(library, ib_request_timeout_seconds=3) as (fake, broker, sink):
            await cut(fake, broker)
            order = sink.track(ticket(symbol="MSFT", quantity="3"))
            ref = str(order.order_id)
            placing = asyncio.create_task(broker.place(order))
            await asyncio.sleep(0.3)
            assert not placing.done()
            assert fake.place_counts[ref] == 0
            await fake.refuse_connections(False)
            broker_id = await asyncio.wait_for(placing, 5)
            assert broker_id == str(fake.order(ref).order_id)
            await wait_until(lambda: len(sink.fills_of(order)) == 1, what="the fill")
            assert fake.place_counts[ref] == 1
            assert sink.duplicates == 0

    run(scenario())


def test_an_order_is_given_up_when_the_gateway_stays_away(
    library: str, library_errors: LibraryErrors
) -> None:
    library_errors.expect(*DROPPED)

    async def scenario() -> None:
        async with gateway_and_broker(library, ib_request_timeout_seconds=0.5) as (fake, broker, sink):
            await cut(fake, broker)
            order = sink.track(ticket())
            with pytest.raises(BrokerUnavailable, match="not sent"):
                await broker.place(order)
            assert fake.place_counts[str(order.order_id)] == 0

    run(scenario())


def test_a_silent_gateway_fails_the_heartbeat_and_is_reconnected(
    library: str, library_errors: LibraryErrors
) -> None:
    library_errors.expect("API connection failed")  # connects during the silence time out

    async def scenario() -> None:
        async with gateway_and_broker(library, ib_request_timeout_seconds=0.4) as (fake, broker, _):
            accepted = fake.connections_accepted
            fake.delay(1.5)
            await wait_until(lambda: broker.health().status != "healthy", what="a failed heartbeat")
            assert "heartbeat failed" in str(broker.health().detail["connections"])
            fake.delay(0)
            await wait_until(lambda: broker.health().status == "healthy", what="reconnected")
            assert fake.connections_accepted > accepted

    run(scenario())


def test_partial_fills_and_public_reconcile(library: str) -> None:
    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            fake.auto_fill = False
            order = sink.track(ticket(quantity="10", order_type="limit", limit_price="151"))
            await broker.place(order)
            ref = str(order.order_id)
            nothing = await broker.reconcile([order])
            assert (list(nothing.executions), list(nothing.status_changes)) == ([], [])
            fake.fill(ref, quantity="4", price="150.90")
            fake.fill(ref, price="150.95")
            await wait_until(lambda: len(sink.fills_of(order)) == 2, what="two fills")
            quantities = sorted(fill.quantity for fill in sink.fills_of(order))
            assert quantities == [Decimal("4"), Decimal("6")]
            result = await broker.reconcile([order])
            assert {e.fill_id for e in result.executions} == set(sink.fills)
            assert result.positions == {"AAPL": Decimal("10")}
            assert list(result.status_changes) == []
            assert sink.duplicates == 0

    run(scenario())


def test_reconcile_reports_a_cancel_that_happened_while_disconnected(
    library: str, library_errors: LibraryErrors
) -> None:
    library_errors.expect(*DROPPED)

    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            order = sink.track(ticket(order_type="limit", limit_price="100"))
            await broker.place(order)
            await cut(fake, broker)
            resting = fake.order(str(order.order_id))
            resting.status, resting.completed_at = "Cancelled", datetime.now(UTC)
            await fake.refuse_connections(False)
            await wait_until(lambda: bool(sink.changes_of(order)), what="the reconciled cancel")
            assert [c.status for c in sink.changes_of(order)] == ["cancelled"]

    run(scenario())


def test_quote_bars_and_positions(library: str, library_errors: LibraryErrors) -> None:
    library_errors.expect("Error 200")  # the unknown symbol

    async def scenario() -> None:
        async with gateway_and_broker(library) as (fake, broker, sink):
            quote = await broker.quote("AAPL")
            assert (quote["bid"], quote["ask"], quote["last"]) == (
                Decimal("150.24"),
                Decimal("150.26"),
                Decimal("150.25"),
            )
            assert isinstance(quote["timestamp"], datetime) and quote["timestamp"].tzinfo is not None
            assert quote["symbol"] == "AAPL" and quote["source"] == "ibkr"
            assert fake.received["reqMktData"] == 1
            assert fake.connected_client_ids == [17, 18]

            daily = await broker.bars("AAPL", date(2024, 1, 1), date(2024, 1, 10), "1d")
            assert [bar["date"] for bar in daily] == [date(2024, 1, day) for day in (1, 2, 3, 4, 5, 8, 9, 10)]
            first = daily[0]
            assert all(isinstance(first[key], Decimal) for key in ("open", "high", "low", "close"))
            assert first["low"] <= first["open"] <= first["high"] and isinstance(first["volume"], int)
            hourly = await broker.bars("MSFT", date(2024, 1, 10), date(2024, 1, 10), "1h")
            assert hourly and all(isinstance(bar["date"], datetime) for bar in hourly)
            assert all(bar["date"].date() == date(2024, 1, 10) for bar in hourly)

            fake.set_position("MSFT", "25", "300")
            order = sink.track(ticket(quantity="10"))
            await broker.place(order)
            await wait_until(lambda: len(sink.fills_of(order)) == 1, what="the fill")
            assert await broker.positions() == {"AAPL": Decimal("10"), "MSFT": Decimal("25")}

            with pytest.raises(LookupError):
                await broker.quote("NOPE")

    run(scenario())
