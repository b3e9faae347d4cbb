"""The paper venue: order-type semantics at the quoted prices, partial fills, expiry, stable fill ids."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from wealthalloc.brokers.base import OrderRejected, Quote
from wealthalloc.brokers.paper import PaperBroker, PaperVenue, quote_from_close
from wealthalloc.trading.rules import CommissionModel
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket

DAY = date(2022, 11, 25)


@dataclass
class Recorder:
    executions: list[Execution] = field(default_factory=list)
    changes: list[StatusChange] = field(default_factory=list)
    fail_next: int = 0

    async def execution(self, ticket: Ticket, execution: Execution) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("shard away")
        self.executions.append(execution)

    async def status_change(self, ticket: Ticket, change: StatusChange) -> None:
        self.changes.append(change)


@dataclass
class Market:
    price: D = D("100.00")
    today: date = DAY

    def quote(self, symbol: str) -> Quote:
        if symbol == "NOPE":
            raise LookupError(symbol)
        return quote_from_close(symbol, self.price, D(2), datetime(2026, 11, 25, tzinfo=UTC))


def broker(market: Market, sink: Recorder, max_notional: D = D(250_000)) -> PaperBroker:
    venue = PaperVenue(
        quote=market.quote,
        today=lambda: market.today,
        commission=CommissionModel(),
        max_fill_notional=max_notional,
    )
    return PaperBroker(sink=sink, venue=venue)


def ticket(**kw: object) -> Ticket:
    base: dict[str, object] = {
        "order_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "portfolio_id": uuid.uuid4(),
        "symbol": "AAPL",
        "side": "buy",
        "quantity": D(10),
        "order_type": "market",
        "market_date": DAY,
    }
    base.update(kw)
    return Ticket(**base)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def place_and_step(b: PaperBroker, t: Ticket) -> int:
    await b.place(t)
    return await b.step(t.order_id)


def test_the_quote_straddles_the_close_by_the_spread() -> None:
    q = quote_from_close("AAPL", D("150.00"), D(2), datetime.now(UTC))
    assert (q.bid, q.last, q.ask) == (D("149.98"), D("150.00"), D("150.02"))


def test_market_orders_take_the_ask_or_the_bid_and_pay_commission() -> None:
    market, sink = Market(), Recorder()
    b = broker(market, sink)
    run(place_and_step(b, ticket()))
    run(place_and_step(b, ticket(side="sell")))
    buy, sell = sink.executions
    assert (buy.price, sell.price) == (D("100.01"), D("99.99"))
    assert buy.commission == D("1.0000") and buy.quantity == D(10)
    assert b.open_orders == 0


def test_a_limit_order_waits_until_the_market_reaches_it() -> None:
    market, sink = Market(), Recorder()
    b = broker(market, sink)
    t = ticket(order_type="limit", limit_price=D(95), time_in_force="gtc")
    assert run(place_and_step(b, t)) == 0
    market.price, market.today = D("94.90"), date(2022, 12, 5)  # days later: a GTC order still works
    assert run(b.tick()) == 1
    assert sink.executions[0].price == D("94.91")


def test_stops_trigger_on_the_last_price_and_then_act_as_their_order_type() -> None:
    market, sink = Market(), Recorder()
    b = broker(market, sink)
    stop = ticket(order_type="stop", stop_price=D(105), price_cap=D("110.25"))
    stop_limit = ticket(order_type="stop_limit", stop_price=D(105), limit_price=D(105.5))
    sell_stop = ticket(side="sell", order_type="stop", stop_price=D(95))
    for t in (stop, stop_limit, sell_stop):
        assert run(place_and_step(b, t)) == 0
    market.price = D(106)  # both buy stops trigger; the stop-limit's limit is below the ask
    assert run(b.tick()) == 1
    assert sink.executions[-1].order_id == stop.order_id and sink.executions[-1].price == D("106.02")
    market.price = D(105)  # triggered stop-limit now marketable
    assert run(b.tick()) == 1
    assert sink.executions[-1].order_id == stop_limit.order_id
    market.price = D(94)
    assert run(b.tick()) == 1
    assert sink.executions[-1].order_id == sell_stop.order_id and sink.executions[-1].price == D("93.99")


def test_a_buy_never_fills_above_its_price_cap() -> None:
    market, sink = Market(price=D(120)), Recorder()
    b = broker(market, sink)
    assert run(place_and_step(b, ticket(price_cap=D(105)))) == 0
    market.price = D(104)
    assert run(b.tick()) == 1


def test_large_orders_fill_in_parts_with_stable_fill_ids() -> None:
    market, sink = Market(), Recorder()
    b = broker(market, sink, max_notional=D(1000))
    t = ticket(quantity=D(25))
    run(place_and_step(b, t))
    run(b.tick())
    run(b.tick())
    assert [e.quantity for e in sink.executions] == [D(9), D(9), D(7)]
    assert [e.fill_id for e in sink.executions] == [f"paper:{t.order_id}:{n}" for n in (0, 9, 18)]
    # After a restart the venue is handed the order as recorded: the same step gets the same id.
    again = Recorder()
    b2 = broker(market, again, max_notional=D(1000))
    run(b2.reconcile([ticket(order_id=t.order_id, quantity=D(25), filled_quantity=D(9))]))
    run(b2.tick())
    assert again.executions[0].fill_id == sink.executions[1].fill_id


def test_a_fill_the_sink_did_not_take_is_offered_again_with_the_same_id() -> None:
    market, sink = Market(), Recorder(fail_next=1)
    b = broker(market, sink)
    t = ticket()
    run(b.place(t))
    assert isinstance(run(b.tick()), int) and not sink.executions
    run(b.tick())
    assert [e.fill_id for e in sink.executions] == [f"paper:{t.order_id}:0"]


def test_day_orders_expire_when_the_clock_moves_on_and_cancels_are_reported() -> None:
    market, sink = Market(), Recorder()
    b = broker(market, sink)
    day = ticket(order_type="limit", limit_price=D(50))
    gtc = ticket(order_type="limit", limit_price=D(50), time_in_force="gtc")
    run(place_and_step(b, day))
    run(place_and_step(b, gtc))
    market.today = date(2022, 11, 28)
    run(b.tick())
    assert [(c.order_id, c.status) for c in sink.changes] == [(day.order_id, "expired")]
    run(b.cancel(gtc))
    assert sink.changes[-1].status == "cancelled" and b.open_orders == 0


def test_orders_for_symbols_without_a_market_are_rejected() -> None:
    with pytest.raises(OrderRejected):
        run(broker(Market(), Recorder()).place(ticket(symbol="NOPE")))


def test_the_venue_fills_a_marketable_order_at_once_and_leaves_the_rest_of_a_large_one() -> None:
    market, sink = Market(), Recorder()
    venue = broker(market, sink, max_notional=D(1000)).venue
    large = ticket(quantity=D(25))
    first = venue.execution(large)
    assert first is not None and first.quantity == D(9) and first.fill_id == f"paper:{large.order_id}:0"
    assert venue.execution(ticket(order_type="limit", limit_price=D(95))) is None  # away from the market
    assert venue.execution(ticket(order_type="stop", stop_price=D(105))) is None  # not triggered
    assert venue.market("AAPL") is not None and venue.market("NOPE") is None


def test_the_book_adopts_open_orders_it_lacks_but_never_one_it_saw_to_the_end() -> None:
    market, sink = Market(), Recorder()
    b = broker(market, sink, max_notional=D(1000))
    finished = ticket(quantity=D(5))
    run(place_and_step(b, finished))  # filled and forgotten
    resting = ticket(order_type="limit", limit_price=D(95), time_in_force="gtc")
    run(b.place(resting))
    rest_of_large = ticket(quantity=D(25), filled_quantity=D(9))  # its first part filled at the shard
    stale = ticket(**{**finished.__dict__, "filled_quantity": D(0)})  # a read from before its fill
    assert b.adopt([stale, resting, rest_of_large]) == 1
    assert b.open_orders == 2
    assert run(b.tick()) == 1
    assert sink.executions[-1].fill_id == f"paper:{rest_of_large.order_id}:9"
