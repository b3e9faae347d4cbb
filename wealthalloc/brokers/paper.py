"""``PaperBroker``: the embedded default, filling orders at the market clock's prices.

It behaves like a venue, not like a shortcut: market orders take the quoted
ask or bid (the close plus or minus half the spread), limit orders wait until
the quote crosses their price, stops wait for the last price to reach them and
then act as a market (or limit) order, buys never fill above their price cap,
large orders fill in parts (at most ``max_fill_notional`` per step, one step
per tick), day orders expire when the clock moves past their day, and every
fill pays the commission model.

Its book of open orders is only a cache of the platform's open orders in
PostgreSQL (the gateway hands them back after a restart), and the id of each
fill is derived from the order and how much of it was already filled, so a
fill that is emitted again after a crash carries the same id and is applied
once.

The rules of a fill are :class:`PaperVenue`'s, a pure function of a quote.
The owning shard runs the same venue inside the transaction that places an
order, so a marketable paper order is placed and filled in one commit; only
what rests (non-marketable limits, stops, the rest of a large order) comes to
the broker's book here, to be stepped tick by tick.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from wealthalloc.brokers.base import BrokerHealth, BrokerSink, OrderRejected, Quote, Reconciliation
from wealthalloc.config import Settings
from wealthalloc.domain.money import SHARE_PLACES
from wealthalloc.logging import get_logger
from wealthalloc.marketdata import MarketDataError, PriceHistory
from wealthalloc.trading.rules import CommissionModel
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket

log = get_logger(__name__)

QuoteSource = Callable[[str], Quote]
FINISHED_REMEMBERED = 100_000


def commission_model(settings: Settings) -> CommissionModel:
    """The commission every fill pays (IBKR's fixed schedule by default), from the settings."""
    return CommissionModel(
        per_share=settings.paper_commission_per_share,
        minimum=settings.paper_commission_minimum,
        max_fraction=settings.paper_commission_max_pct,
    )


def quote_from_close(symbol: str, close: Decimal, spread_bps: Decimal, at: datetime) -> Quote:
    """A two-sided quote around a close: the paper market's only view of a day."""
    half = close * spread_bps / Decimal(20_000)
    cent = Decimal("0.01")
    bid = max((close - half).quantize(cent, rounding=ROUND_DOWN), cent)
    ask = (close + half).quantize(cent, rounding=ROUND_UP)
    return Quote(symbol=symbol, bid=bid, ask=ask, last=close, timestamp=at, source="paper")


def closing_quotes(prices: PriceHistory, today: Callable[[], date], spread_bps: Decimal) -> QuoteSource:
    """The paper market's quote of a symbol: the market clock's close, straddled by the spread; an
    unknown symbol or a day without a close is a ``LookupError`` (no market)."""

    def quote(symbol: str) -> Quote:
        try:
            close = prices.close_on(symbol, today())
        except MarketDataError as exc:
            raise LookupError(str(exc)) from exc
        return quote_from_close(symbol, close, spread_bps, datetime.now(UTC))

    return quote


def paper_venue(settings: Settings, prices: PriceHistory, today: Callable[[], date]) -> PaperVenue:
    """The venue as the settings price it: spread, commission and the notional one step fills."""
    return PaperVenue(
        quote=closing_quotes(prices, today, settings.paper_spread_bps),
        today=today,
        commission=commission_model(settings),
        max_fill_notional=settings.paper_max_fill_notional,
    )


def paper_broker_order_id(order_id: uuid.UUID) -> str:
    return f"paper-{order_id}"


class PaperVenue:
    """What the paper market does with an order at a quote: the price it fills at (or none), how much
    one step fills, and the execution, with a fill id fixed by the order and what it had filled."""

    def __init__(
        self,
        *,
        quote: QuoteSource,
        today: Callable[[], date],
        commission: CommissionModel,
        max_fill_notional: Decimal,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.quote = quote
        self.today = today
        self._commission = commission
        self._max_notional = max_fill_notional
        self._now = now

    def market(self, symbol: str) -> Quote | None:
        """The quote of ``symbol`` now, or None when the venue has no market for it today (an order
        without one is rejected)."""
        try:
            return self.quote(symbol)
        except LookupError:
            return None

    def execution(
        self, ticket: Ticket, *, quote: Quote | None = None, triggered: bool = False
    ) -> Execution | None:
        """The fill one step makes at ``quote`` (the market's now by default); None when the order does
        not fill there. A stop (or stop-limit) acts once ``triggered`` or once the quote hits its stop.
        """
        if quote is None:
            quote = self.market(ticket.symbol)
            if quote is None:
                return None
        if ticket.order_type in ("stop", "stop_limit") and not (triggered or self.stop_hit(ticket, quote)):
            return None
        price = self._fill_price(ticket, quote)
        if price is None or ticket.remaining <= 0:
            return None
        quantity = self._step_quantity(ticket.remaining, price)
        return Execution(
            fill_id=f"paper:{ticket.order_id}:{ticket.filled_quantity.normalize():f}",
            order_id=ticket.order_id,
            quantity=quantity,
            price=price,
            commission=self._commission(quantity, price),
            executed_at=self._now(),
        )

    @staticmethod
    def stop_hit(ticket: Ticket, quote: Quote) -> bool:
        assert ticket.stop_price is not None
        return quote.last >= ticket.stop_price if ticket.side == "buy" else quote.last <= ticket.stop_price

    @staticmethod
    def _fill_price(ticket: Ticket, quote: Quote) -> Decimal | None:
        limit = ticket.limit_price if ticket.order_type in ("limit", "stop_limit") else None
        if ticket.side == "buy":
            ceilings = [x for x in (limit, ticket.price_cap) if x is not None]
            return None if ceilings and quote.ask > min(ceilings) else quote.ask
        return None if limit is not None and quote.bid < limit else quote.bid

    def _step_quantity(self, remaining: Decimal, price: Decimal) -> Decimal:
        if remaining * price <= self._max_notional:
            return remaining
        whole = (self._max_notional / price).to_integral_value(rounding=ROUND_DOWN)
        step = max(whole, Decimal(1))
        return min(step, remaining).quantize(Decimal(1).scaleb(-SHARE_PLACES))


class PaperBroker:
    name = "paper"

    def __init__(self, *, sink: BrokerSink, venue: PaperVenue) -> None:
        self._sink = sink
        self.venue = venue
        self._open: dict[uuid.UUID, Ticket] = {}
        # Orders this book saw to their end (filled, cancelled, expired): never adopted again from a
        # read of PostgreSQL that may predate their last fill.
        self._finished: dict[uuid.UUID, None] = {}
        self._triggered: set[uuid.UUID] = set()
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self.fills_emitted = 0

    async def start(self) -> None:
        log.info("paper_broker_ready")

    async def close(self) -> None:
        self._open.clear()

    def health(self) -> BrokerHealth:
        return BrokerHealth("healthy", {"broker": "paper", "open_orders": len(self._open)})

    @property
    def open_orders(self) -> int:
        return len(self._open)

    async def place(self, ticket: Ticket) -> str:
        if self.venue.market(ticket.symbol) is None:
            raise OrderRejected(f"no market for {ticket.symbol}")
        self._open.setdefault(ticket.order_id, ticket)
        return paper_broker_order_id(ticket.order_id)

    def adopt(self, tickets: Sequence[Ticket]) -> int:
        """Take open orders of record this book does not hold (a hand-off from a shard that never
        arrived); the number taken. An order this book saw to its end is never taken back."""
        taken = 0
        for ticket in tickets:
            if ticket.order_id in self._open or ticket.order_id in self._finished or ticket.remaining <= 0:
                continue
            self._open[ticket.order_id] = ticket
            taken += 1
        return taken

    async def cancel(self, ticket: Ticket) -> None:
        async with self._lock(ticket.order_id):
            self._forget(ticket.order_id)
            await self._sink.status_change(
                ticket,
                StatusChange(ticket.order_id, "cancelled", ticket.broker_order_id, "cancelled by user"),
            )

    async def reconcile(self, open_tickets: Sequence[Ticket]) -> Reconciliation:
        """Take the platform's open orders back after a restart; the paper venue has nothing else."""
        for ticket in open_tickets:
            if ticket.remaining > 0:
                self._open[ticket.order_id] = ticket
        return Reconciliation()

    async def tick(self) -> int:
        """One step for every open order; the number of fills emitted."""
        results = await asyncio.gather(
            *(self.step(order_id) for order_id in list(self._open)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("paper_step_failed", error=repr(result))
        return sum(r for r in results if isinstance(r, int))

    async def step(self, order_id: uuid.UUID) -> int:
        """Fill, expire or leave one order as the market stands now; 1 when it filled."""
        async with self._lock(order_id):
            ticket = self._open.get(order_id)
            if ticket is None:
                return 0
            today = self.venue.today()
            if (
                ticket.time_in_force == "day"
                and ticket.market_date is not None
                and today > ticket.market_date
            ):
                self._forget(order_id)
                await self._sink.status_change(
                    ticket, StatusChange(order_id, "expired", ticket.broker_order_id, "day order expired")
                )
                return 0
            quote = self.venue.market(ticket.symbol)
            if quote is None:
                return 0
            if ticket.order_type in ("stop", "stop_limit") and order_id not in self._triggered:
                if not self.venue.stop_hit(ticket, quote):
                    return 0
                self._triggered.add(order_id)  # a stop-limit stays triggered when the price moves back
            execution = self.venue.execution(ticket, quote=quote, triggered=True)
            if execution is None:
                return 0
            await self._sink.execution(ticket, execution)
            self.fills_emitted += 1
            advanced = replace(ticket, filled_quantity=ticket.filled_quantity + execution.quantity)
            if advanced.remaining > 0:
                self._open[order_id] = advanced
            else:
                self._forget(order_id)
            return 1

    def _lock(self, order_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(order_id)
        if lock is None:
            lock = self._locks[order_id] = asyncio.Lock()
        return lock

    def _forget(self, order_id: uuid.UUID) -> None:
        self._finished[order_id] = None
        while len(self._finished) > FINISHED_REMEMBERED:
            del self._finished[next(iter(self._finished))]
        self._open.pop(order_id, None)
        self._triggered.discard(order_id)
        self._locks.pop(order_id, None)
