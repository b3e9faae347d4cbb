"""The IBKR link of the quote chain: asked while the gateway is connected, skipped otherwise.

The gateway's answers are plain coroutines here; the same link against the
fake IB Gateway over a socket is in tests/integration/test_ibkr_quotes.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal as D
from typing import Any

import pytest

from wealthalloc.brokers.base import BrokerUnavailable, Quote
from wealthalloc.brokers.paper import PaperBroker, PaperVenue, quote_from_close
from wealthalloc.marketdata.providers import (
    IbkrQuotes,
    Link,
    ProviderChain,
    ProviderSkipped,
    ProviderUnavailable,
    SymbolNotFound,
    broker_connected,
    broker_quotes,
    quote_from_snapshot,
)
from wealthalloc.trading.rules import CommissionModel
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
LIVE = Quote("AAPL", D("150.24"), D("150.26"), D("150.25"), AT, "ibkr")


class Gateway:
    """What the API replica asks of the broker gateway actor: its health, then a snapshot."""

    def __init__(self) -> None:
        self.up = True
        self.health_asked = 0
        self.failure: Exception | None = None

    async def connected(self) -> bool:
        self.health_asked += 1
        return self.up

    async def snapshot(self, symbol: str) -> Quote:
        if self.failure is not None:
            raise self.failure
        return LIVE


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_connected_gateway_answers_with_its_snapshot() -> None:
    gateway = Gateway()
    assert run(IbkrQuotes(gateway.snapshot, gateway.connected)("AAPL")) == LIVE


def test_a_disconnected_gateway_is_skipped_and_asked_again_only_after_the_recheck_interval() -> None:
    gateway, clock = Gateway(), Clock()
    gateway.up = False
    quotes = IbkrQuotes(gateway.snapshot, gateway.connected, recheck_s=1.0, clock=clock)

    async def go() -> None:
        for _ in range(3):
            with pytest.raises(ProviderSkipped, match="not connected"):
                await quotes("AAPL")
        assert gateway.health_asked == 1
        gateway.up, clock.now = True, 1.5
        assert await quotes("AAPL") == LIVE
        assert gateway.health_asked == 2

    run(go())


def test_a_connection_lost_between_the_check_and_the_snapshot_is_unavailable_and_checked_again() -> None:
    gateway, clock = Gateway(), Clock()
    quotes = IbkrQuotes(gateway.snapshot, gateway.connected, recheck_s=60, clock=clock)

    async def go() -> None:
        assert await quotes("AAPL") == LIVE
        gateway.failure, gateway.up = BrokerUnavailable("no connection to the gateway"), False
        with pytest.raises(ProviderUnavailable):
            await quotes("AAPL")
        with pytest.raises(ProviderSkipped):  # the next quote asks again, well inside the 60 s
            await quotes("AAPL")
        assert gateway.health_asked == 2

    run(go())


def test_a_symbol_ibkr_does_not_know_is_not_found_and_a_gateway_that_cannot_say_is_skipped() -> None:
    gateway = Gateway()
    gateway.failure = LookupError("no market data for NOPE")
    with pytest.raises(SymbolNotFound):
        run(IbkrQuotes(gateway.snapshot, gateway.connected)("NOPE"))

    async def broken() -> bool:
        raise RuntimeError("the actor died")

    with pytest.raises(ProviderSkipped):
        run(IbkrQuotes(gateway.snapshot, broken)("AAPL"))


def test_a_skipped_link_is_recorded_as_skipped_and_the_next_one_answers() -> None:
    gateway = Gateway()
    gateway.up = False

    async def polygon(symbol: str) -> Quote:
        return Quote(symbol, D("150.10"), D("150.30"), D("150.20"), AT, "polygon")

    chain = ProviderChain(
        [Link("ibkr", IbkrQuotes(gateway.snapshot, gateway.connected)), Link("polygon", polygon)]
    )
    answer = run(chain.answer("AAPL"))
    assert [(a.provider, a.outcome) for a in answer.attempts] == [("ibkr", "skipped"), ("polygon", "ok")]
    assert answer.quote.source == "polygon"


class Sink:
    async def execution(self, ticket: Ticket, execution: Execution) -> None: ...

    async def status_change(self, ticket: Ticket, change: StatusChange) -> None: ...


def test_the_paper_broker_has_no_live_quotes_so_ibkr_is_skipped() -> None:
    venue = PaperVenue(
        quote=lambda symbol: quote_from_close(symbol, D("100"), D("10"), AT),
        today=lambda: date(2026, 3, 2),
        commission=CommissionModel(),
        max_fill_notional=D(250_000),
    )
    paper = PaperBroker(sink=Sink(), venue=venue)
    assert not broker_connected(paper) and not broker_connected(None)
    with pytest.raises(ProviderSkipped):
        run(broker_quotes(paper)("AAPL"))


def test_a_snapshot_becomes_a_quote_from_ibkr() -> None:
    raw = {
        "symbol": "AAPL",
        "bid": D("1.00"),
        "ask": D("1.02"),
        "last": D("1.01"),
        "timestamp": AT,
        "source": "x",
    }
    assert quote_from_snapshot(raw) == Quote("AAPL", D("1.00"), D("1.02"), D("1.01"), AT, "ibkr")
