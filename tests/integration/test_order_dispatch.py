"""What happens to an order between its shard and the broker, without Ray: the gateway's rules
run on the real database and the paper venue, with the owner's shard replaced by a recorder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.rows import investor_with_portfolio
from wealthalloc.brokers.base import BrokerHealth, BrokerUnavailable, Reconciliation
from wealthalloc.brokers.paper import PaperBroker, paper_venue
from wealthalloc.config import Settings
from wealthalloc.marketdata import MarketClock, PriceHistory
from wealthalloc.storage.postgres import async_pool
from wealthalloc.trading.dispatch import OrderDispatch
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket


@dataclass
class Owner:
    """The owning shard as the dispatch sees it: it hears executions and status changes."""

    executions: list[tuple[Execution, StatusChange | None]] = field(default_factory=list)
    changes: list[StatusChange] = field(default_factory=list)
    held: dict[Any, StatusChange] = field(default_factory=dict)

    def hold_acceptance(self, ticket: Ticket, change: StatusChange) -> None:
        self.held[ticket.order_id] = change

    async def release_acceptance(self, ticket: Ticket) -> None:
        change = self.held.pop(ticket.order_id, None)
        if change is not None:
            self.changes.append(change)

    async def execution(self, ticket: Ticket, execution: Execution) -> None:
        self.executions.append((execution, self.held.pop(ticket.order_id, None)))

    async def status_change(self, ticket: Ticket, change: StatusChange) -> None:
        self.changes.append(change)

    def heard_of(self, order_id: uuid.UUID) -> list[str]:
        fills = [
            f"fill {e.quantity.normalize():f}" + (" (accepted)" if a else "")
            for e, a in self.executions
            if e.order_id == order_id
        ]
        return fills + [c.status for c in self.changes if c.order_id == order_id]


class AwayBroker:
    """A broker that is not connected: every order provably did not reach it."""

    name = "ibkr"
    placed = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def place(self, ticket: Ticket) -> str:
        self.placed += 1
        raise BrokerUnavailable("not connected")

    async def cancel(self, ticket: Ticket) -> None:
        raise BrokerUnavailable("not connected")

    async def reconcile(self, open_tickets: Sequence[Ticket]) -> Reconciliation:
        return Reconciliation()

    def health(self) -> BrokerHealth:
        return BrokerHealth("down")


@pytest.fixture
def settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=data_dir)


def paper(settings: Settings, owner: Owner) -> tuple[PaperBroker, Any]:
    prices = PriceHistory(settings.prices_dir)
    today = MarketClock(prices.trading_days(), pinned=settings.market_clock_date).today
    return PaperBroker(sink=owner, venue=paper_venue(settings, prices, today)), today


def ticket(today: Any, **values: Any) -> Ticket:
    base: dict[str, Any] = {
        "order_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "portfolio_id": uuid.uuid4(),
        "symbol": "KO",
        "side": "buy",
        "quantity": Decimal(3),
        "order_type": "market",
        "market_date": today(),
    }
    return Ticket(**{**base, **values})


def dispatching(settings: Settings, broker: Any, owner: Owner, scenario: Any) -> Any:
    async def run() -> Any:
        pool = async_pool(settings, name="test-dispatch")
        await pool.open()
        try:
            dispatch = OrderDispatch(pool=pool, broker=broker, broker_name=broker.name, sink=owner)
            return await scenario(dispatch)
        finally:
            await pool.close()

    return asyncio.run(run())


def test_a_market_order_sent_twice_at_once_is_reported_as_one_fill(settings: Settings) -> None:
    """The second send may reach the venue after the first finished; what the owner hears is then
    the same execution again (one fill id), which a shard applies once."""
    owner = Owner()
    broker, today = paper(settings, owner)
    order = ticket(today)

    async def scenario(dispatch: OrderDispatch) -> None:
        await asyncio.gather(dispatch.submit(order), dispatch.submit(order))

    dispatching(settings, broker, owner, scenario)

    assert {e.fill_id for e, _ in owner.executions} == {f"paper:{order.order_id}:0"}
    assert set(owner.heard_of(order.order_id)) == {"fill 3 (accepted)"}


def test_the_venue_refusing_an_order_tells_its_owner_it_was_rejected(settings: Settings) -> None:
    owner = Owner()
    broker, today = paper(settings, owner)
    order = ticket(today, symbol="NOSUCH")

    counts = dispatching(settings, broker, owner, lambda dispatch: _submitted(dispatch, order))

    assert owner.heard_of(order.order_id) == ["rejected"]
    assert [c.reason for c in owner.changes] == ["no market for NOSUCH"]
    assert counts["rejected"] == 1 and counts["submitted"] == 0


def test_an_order_the_broker_did_not_take_waits_silently_for_the_sweep(settings: Settings) -> None:
    owner = Owner()
    broker = AwayBroker()
    order = ticket(lambda: None)

    counts = dispatching(settings, broker, owner, lambda dispatch: _submitted(dispatch, order))

    assert broker.placed == 1
    assert owner.heard_of(order.order_id) == []
    assert counts["submitted"] == 0


def test_cancelling_an_order_no_broker_ever_had_is_answered_here(settings: Settings) -> None:
    owner = Owner()
    broker = AwayBroker()  # would refuse a cancel: it must not be asked
    order = ticket(lambda: None)

    async def scenario(dispatch: OrderDispatch) -> None:
        await dispatch.cancel(order)

    dispatching(settings, broker, owner, scenario)

    assert owner.heard_of(order.order_id) == ["cancelled"]
    assert [c.reason for c in owner.changes] == ["cancelled by user"]


def test_only_the_paper_venue_takes_orders_a_shard_filled_there(settings: Settings) -> None:
    owner = Owner()
    order = ticket(lambda: None)

    async def scenario(dispatch: OrderDispatch) -> None:
        await dispatch.rest(order)

    with pytest.raises(BrokerUnavailable, match="does not take paper orders"):
        dispatching(settings, AwayBroker(), owner, scenario)


def test_the_sweep_sends_an_order_recorded_while_the_gateway_was_away(settings: Settings) -> None:
    owner = Owner()
    broker, today = paper(settings, owner)
    order_id = _recorded_pending_order(settings.database_url, today(), seconds_ago=10)
    recent_id = _recorded_pending_order(settings.database_url, today(), seconds_ago=0)

    async def scenario(dispatch: OrderDispatch) -> dict[str, int]:
        await dispatch.sweep_pending()
        return dispatch.counts

    counts = dispatching(settings, broker, owner, scenario)

    assert owner.heard_of(order_id) == ["fill 2 (accepted)"]
    assert owner.heard_of(recent_id) == []  # its shard may be handing it over right now
    assert counts["swept"] >= 1


async def _submitted(dispatch: OrderDispatch, order: Ticket) -> dict[str, int]:
    await dispatch.submit(order)
    return dispatch.counts


def _recorded_pending_order(database_url: str, market_date: Any, *, seconds_ago: int) -> uuid.UUID:
    with psycopg.connect(database_url) as conn:
        user_id, portfolio_id = investor_with_portfolio(conn, "dispatch", cash=1000)
        order = conn.execute(
            "INSERT INTO orders (portfolio_id, user_id, idempotency_key, request_hash, symbol, side,"
            " quantity, order_type, status, broker, market_date, created_date)"
            " VALUES (%s, %s, gen_random_uuid()::text, 'h', 'KO', 'buy', 2, 'market', 'pending', 'paper', %s,"
            " now() - make_interval(secs => %s)) RETURNING id",
            (portfolio_id, user_id, market_date, seconds_ago),
        ).fetchone()
        assert order is not None
        return uuid.UUID(str(order[0]))
