"""The order desk of a shard: orders placed, fills and status changes applied, each exactly once.

Placing an order is a change of the book like a deposit: under the user's
lock, in one transaction, the Idempotency-Key is claimed, the pre-trade
checks run against PostgreSQL (cash net of what open buys reserve, shares net
of what open sells will take), and the order, its reservation and its event
are written. Only after the commit is the order handed to the broker
gateway; if that hand-off fails, the order waits as ``pending`` and the
gateway's sweep sends it later. Nothing acknowledged depends on the hand-off.

On the paper broker the venue is embedded (:class:`~wealthalloc.brokers.paper.PaperVenue`,
a pure function of the market clock's quote), so the desk places the order
there inside the same transaction: a marketable order is placed and filled
in one commit, and only what rests (a limit away from the market, a stop, the
rest of a large order) is handed to the gateway's paper book, which steps it
tick by tick. That saves a transaction and two actor calls per paper order;
IBKR orders still go out through the gateway alone.

A fill changes lots, cash, the order and the trade record in one
transaction, keyed by its ``fill_id``: the second delivery of the same fill
finds the row and changes nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from wealthalloc.brokers.paper import PaperVenue, paper_broker_order_id
from wealthalloc.domain.acquisitions import sellable
from wealthalloc.domain.lots import InsufficientShares, LotMethod, UnknownLot, relieve
from wealthalloc.domain.money import money
from wealthalloc.domain.quote_freshness import PlannedOrder, QuoteSeen, StaleQuote, require_fresh_quote
from wealthalloc.domain.wash_sale import IdentityGroups
from wealthalloc.domain.wash_sale_book import SoldShares
from wealthalloc.errors import ServiceError
from wealthalloc.logging import get_logger
from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.portfolios import wash_sales
from wealthalloc.portfolios.household_books import Evict, forget_spouse_books
from wealthalloc.portfolios.quotes import PlanQuotes
from wealthalloc.portfolios.service import (
    BookService,
    Mutation,
    Work,
    WorkOnBooks,
    jsonable,
    key_reused,
    not_found,
)
from wealthalloc.storage import books as store
from wealthalloc.storage import households, idempotency, lots
from wealthalloc.storage import orders as order_store
from wealthalloc.storage import tax as tax_store
from wealthalloc.storage.held_writes import writes_together
from wealthalloc.storage.outbox import add_event
from wealthalloc.trading import rules
from wealthalloc.trading.order import Order
from wealthalloc.trading.status import OrderStatus
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket

log = get_logger(__name__)

TOPIC = "trades.executed"
Handoff = Callable[[Ticket], Awaitable[None]]


@dataclass(frozen=True)
class Prepared:
    """An order request that passed the rules that need no book."""

    request: rules.OrderRequest
    spec: Mapping[str, Any]
    origin: str
    today: date
    lot_method: str | None
    lot_ids: list[uuid.UUID]
    cap: Decimal | None
    order_id: uuid.UUID = field(default_factory=uuid.uuid4)  # known before the write: its key's answer


class OrderHalfWritten(RuntimeError):
    """A refusal raised once an order of a batch had begun to be written: the request fails whole."""


@dataclass(frozen=True)
class Decision:
    """An order the checks let through, as it will be written (after the fill the embedded venue
    gives it at once, if it does), the cash it reserved as placed, and that fill with what it changes."""

    order: Order
    reserve: Decimal
    execution: Execution | None
    applied: rules.FillApplied | None


@dataclass(frozen=True)
class Written:
    """An order as its transaction wrote it, with the fills the embedded venue gave it and the cash
    its portfolio holds after them (``None``: no fill, the cash did not move)."""

    order: Order
    fills: list[dict[str, Any]]
    balance: Decimal | None = None


@dataclass
class Standing:
    """What an order's checks read from its book, under the user's lock: the locked portfolio row
    (only its cash is kept current), the book's open orders, the wash-sale identity table and the
    user's wash-sale circle.

    The orders of one request (a batch, a rebalance) share one reading, kept current as each is
    written (the cash its fills left, the orders it left open), where each order read all four
    again, look up what blocks a symbol's buy once, and read the losses their buys may replace once
    (:class:`~wealthalloc.portfolios.wash_sales.WaitingLosses`): five statements a buy fewer, for a
    book nothing else can change meanwhile.
    """

    portfolio: dict[str, Any]
    open_orders: list[Order]
    groups: IdentityGroups
    circle: list[uuid.UUID]
    losses: wash_sales.WaitingLosses
    blocking: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @classmethod
    async def read(
        cls,
        conn: store.Conn,
        user_id: uuid.UUID,
        portfolio: dict[str, Any],
        buys: Iterable[str] = (),
        today: date | None = None,
    ) -> Standing:
        """The book for orders that buy ``buys`` (among others) on ``today``: what blocks each of
        those buys is read with it, in one statement."""
        standings = await cls.read_books(conn, user_id, {portfolio["id"]: portfolio}, buys, today)
        return standings[portfolio["id"]]

    @classmethod
    async def read_books(
        cls,
        conn: store.Conn,
        user_id: uuid.UUID,
        portfolios: Mapping[uuid.UUID, dict[str, Any]],
        buys: Iterable[str] = (),
        today: date | None = None,
    ) -> dict[uuid.UUID, Standing]:
        """:meth:`read` for several of the user's portfolios, by id. Their open orders are read in
        one statement; the identity table, the circle, what blocks the buys and the losses the buys
        may replace are the user's, so the portfolios share one reading of each."""
        # The book's lock holds the household's row: the circle read here is the fills' too. The
        # three reads are sent together: one round trip.
        group_rows, members, open_orders = await store.rows_together(
            conn,
            tax_store.IDENTITY_GROUPS,
            households.circle_held_query(user_id),
            order_store.open_orders_query(list(portfolios)),
        )
        groups = tax_store.identity_groups_of(group_rows)
        circle = households.circle_of(user_id, members)
        buys = frozenset(buys)
        losses = wash_sales.WaitingLosses(buys)
        blocking = (
            await wash_sales.blocking_harvests(
                conn, user_id, buys, today, groups=groups, circle=circle, waiting=losses
            )
            if buys and today is not None
            else {}
        )
        return {
            portfolio_id: cls(
                portfolio,
                [Order.from_row(row) for row in open_orders if row["portfolio_id"] == portfolio_id],
                groups,
                circle,
                losses,
                blocking,
            )
            for portfolio_id, portfolio in portfolios.items()
        }

    async def refuse_blocked_buy(
        self, conn: store.Conn, user_id: uuid.UUID, symbol: str, today: date
    ) -> None:
        """Refuse a buy a harvest's wash-sale window blocks; each symbol is looked up once. A harvest
        is executed before the orders of its request are placed, never by an order, so what blocks
        a symbol cannot change while they are."""
        if symbol not in self.blocking:
            self.blocking[symbol] = await wash_sales.blocking_harvest(
                conn, user_id, symbol, today, groups=self.groups, circle=self.circle
            )
        wash_sales.refuse_blocked(symbol, self.blocking[symbol])

    def wrote(self, written: Written) -> None:
        """The book after ``written``: the next order is checked against what this one left."""
        if written.balance is not None:
            self.portfolio = {**self.portfolio, "cash_balance": written.balance}
        if written.order.is_open:
            self.open_orders.append(written.order)


@dataclass(frozen=True)
class Part:
    """One order of a request that places several: its derived Idempotency-Key and its fields.
    ``after`` names an earlier part it needs placed (a harvest's replacement buy needs its sale).
    ``portfolio_id`` names its portfolio where the request changes several (none: the request's)."""

    key: str
    spec: Mapping[str, Any]
    after: int | None = None
    portfolio_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Child:
    """A part ready to place: the change under its derived key and its checked request, or the
    refusal its rules gave before any transaction."""

    part: Part
    m: Mutation
    prepared: Prepared | None
    error: ServiceError | None = None

    @property
    def bought(self) -> str | None:
        """The symbol it buys, if it is a buy its rules passed."""
        request = self.prepared.request if self.prepared is not None else None
        return request.symbol if request is not None and request.side == "buy" else None

    @property
    def answered(self) -> idempotency.Answered | None:
        """Its key's claim, answered with the id its order will have."""
        if self.prepared is None:
            return None
        return idempotency.Answered(
            key=self.part.key,
            method=self.m.method,
            path=self.m.path,
            fingerprint=self.m.fingerprint,
            status=201,
            body={"id": str(self.prepared.order_id)},
        )


@dataclass
class Outcome:
    """What became of a part: placed (``order_id``; ``written`` when by this request), refused
    (``error``), or neither when the part it needs was not placed."""

    part: Part
    order_id: uuid.UUID | None = None
    written: Written | None = None
    error: ServiceError | None = None
    order: dict[str, Any] | None = field(default=None)


class OrderDesk:
    def __init__(
        self,
        book: BookService,
        *,
        broker: str,
        commission: rules.CommissionModel,
        collar: Decimal,
        fractional_shares: bool,
        submit: Handoff | None = None,
        cancel: Handoff | None = None,
        venue: PaperVenue | None = None,
        rest: Handoff | None = None,
        evict: Evict | None = None,
        quotes: PlanQuotes | None = None,
    ) -> None:
        """``venue`` is the embedded paper venue, when the broker is paper; ``rest`` hands an order it
        left open to the gateway's paper book, as ``submit`` hands a new order to the broker.
        ``evict`` drops the cached book of a spouse whose lots a fill changed, on the spouse's shard
        (:mod:`wealthalloc.portfolios.household_books`). ``quotes`` judges the market orders of a plan
        (a rebalance, a harvest, an accepted recommendation) by their quotes; without it none is refused."""
        self._book = book
        self._broker = broker
        self._commission = commission
        self._collar = collar
        self._fractional = fractional_shares
        self._submit = submit
        self._cancel = cancel
        self._venue = venue
        self._rest = rest
        self._evict = evict
        self._quotes = quotes

    @property
    def market(self) -> Any:
        return self._book.market

    async def plan_quotes(self, symbols: Iterable[str]) -> dict[str, QuoteSeen | None]:
        """The quotes a plan's orders would execute on, read before its transaction opens."""
        if self._quotes is None:
            return {}
        return await self._quotes.seen(symbols)

    def refuse_stale_plan(self, orders: list[PlannedOrder], seen: dict[str, QuoteSeen | None]) -> None:
        """409 ``QUOTE_STALE`` naming each stale quote the plan's market orders would execute on."""
        if self._quotes is not None:
            self._quotes.refuse_stale(orders, seen)

    def quote_shown(self, seen: QuoteSeen | None) -> dict[str, object] | None:
        """A quote as a preview shows it: source, as_of, age_seconds, stale."""
        return self._quotes.shown(seen) if self._quotes is not None else None

    # Placing -------------------------------------------------------------------------------------

    async def place(
        self, m: Mutation, portfolio_id: uuid.UUID, spec: Mapping[str, Any], origin: str = "api"
    ) -> tuple[int, dict[str, Any]]:
        """Record the order (or find the one this key recorded) and hand a new one to the broker."""
        prepared = self._prepare(spec, origin)
        created: list[Written] = []
        also_changed: set[uuid.UUID] = set()

        async def work(conn: store.Conn, portfolio: dict[str, Any]) -> tuple[int, Any]:
            request = prepared.request
            buys = [request.symbol] if request.side == "buy" else []
            # A buy's block and the losses it may replace are read in one round trip with the book.
            standing = await Standing.read(conn, m.user_id, portfolio, buys, prepared.today)
            async with writes_together(conn):  # its events, trade and cash movement: one statement a table
                written = await self._write(conn, m, standing, prepared, also_changed)
            created.append(written)
            return 201, {"id": str(written.order.id)}

        status, body = await self._book.idempotent(m, portfolio_id, work, also_changed=also_changed)
        await forget_spouse_books(self._book, m.user_id, also_changed, self._evict)
        if not created:  # a replay: the order as it stands now
            return status, await self.order(m.user_id, uuid.UUID(body["id"]))
        return status, await self._finish(m.user_id, created[-1])

    def _prepare(self, spec: Mapping[str, Any], origin: str) -> Prepared:
        """The request's rules, checked before any transaction: a 400 that says what is wrong."""
        request = rules.OrderRequest(
            symbol=spec["symbol"],
            side=spec["side"],
            quantity=spec["quantity"],
            order_type=spec.get("order_type", "market"),
            limit_price=spec.get("limit_price"),
            stop_price=spec.get("stop_price"),
            time_in_force=spec.get("time_in_force", "day"),
        )
        today = self.market.today()
        if not self.market.known(request.symbol):
            raise ServiceError(
                400, "UNKNOWN_SYMBOL", f"No security {request.symbol} is known.", {"symbol": request.symbol}
            )
        reference = self.market.close(request.symbol, today)
        try:
            rules.validate(request, reference_price=reference, fractional_shares=self._fractional)
        except rules.InvalidOrder as exc:
            details = {"field": exc.field, **exc.details} if exc.field else dict(exc.details)
            raise ServiceError(400, "INVALID_TRADE", str(exc), details) from exc
        lot_method, lot_ids = _lot_choice(request, spec)
        cap = rules.price_cap(request, reference_price=reference, collar=self._collar)
        return Prepared(request, spec, origin, today, lot_method, lot_ids, cap)

    async def _write(
        self,
        conn: store.Conn,
        m: Mutation,
        standing: Standing,
        prepared: Prepared,
        also_changed: set[uuid.UUID],
    ) -> Written:
        """The order's checks against the book and its rows, in the caller's transaction: the order,
        its event and, at the embedded paper venue, its fill."""
        decision = await self._decide(conn, m, standing, prepared)
        return await self._record(conn, m, standing, prepared, decision, also_changed)

    async def _decide(
        self, conn: store.Conn, m: Mutation, standing: Standing, prepared: Prepared
    ) -> Decision:
        """The order's checks against the book, and the order it will be (filled, at the embedded
        venue, when it can be): every refusal is here, before anything is written."""
        request, today, lot_ids = prepared.request, prepared.today, prepared.lot_ids
        portfolio = standing.portfolio
        # Checked only for a new key (a replay returns the order as placed), and nothing is written.
        _refuse_stale_quote(request, prepared.spec)
        held = Decimal(0)
        if request.side == "buy":
            await standing.refuse_blocked_buy(conn, m.user_id, request.symbol, today)
        pending = Decimal(0)
        if request.side == "sell":
            rows = [
                r
                for r in await store.all_lots(conn, portfolio["id"], request.symbol)
                if r["closed_at"] is None and r["shares"] > 0
            ]
            # A transfer-in waiting for confirmation is held but not yet sellable.
            pending = sum((r["shares"] for r in rows if not sellable(r)), Decimal(0))
            to_sell = [store.lot_from_row(r) for r in rows if sellable(r)]
            held = sum((lot.shares for lot in to_sell), Decimal(0))
            if lot_ids:
                _check_named_lots(to_sell, lot_ids, request.quantity)
        reserve = rules.reservation(request, prepared.cap, self._commission)
        try:
            rules.check_affordable(
                request,
                reserve=reserve,
                cash=portfolio["cash_balance"],
                held=held,
                open_orders=standing.open_orders,
            )
        except rules.InsufficientFunds as exc:
            raise ServiceError(
                400,
                "INSUFFICIENT_FUNDS",
                str(exc),
                {"required": str(exc.required), "available": str(exc.available)},
            ) from exc
        except rules.InsufficientShares as exc:
            details = {
                "symbol": exc.symbol,
                "required": str(exc.required),
                "available": str(exc.available),
            }
            message = str(exc)
            if pending:
                details["pending"] = str(pending)
                message += (
                    f" {pending.normalize():f} more are transferred in and pending: they can be sold"
                    " once a sync of the linked account or an advisor confirms them."
                )
            raise ServiceError(400, "INSUFFICIENT_SHARES", message, details) from exc
        now = datetime.now(UTC)
        order = Order(
            id=prepared.order_id,
            portfolio_id=portfolio["id"],
            user_id=m.user_id,
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            order_type=request.order_type,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            time_in_force=request.time_in_force,
            status=OrderStatus.PENDING,
            filled_quantity=Decimal(0),
            average_fill_price=None,
            reserved_cash=reserve,
            broker=self._broker,
            broker_order_id=None,
            reject_reason=None,
            lot_method=prepared.lot_method,
            lot_ids=tuple(lot_ids) or None,
            price_cap=prepared.cap,
            market_date=today,
            origin=prepared.origin,
            submitted_at=None,
            created_date=now,
            updated_date=now,
        )
        # The embedded paper venue takes the order now, unless it has no market for the symbol
        # (then the order waits as pending and the gateway's broker rejects it).
        quote = self._venue.market(request.symbol) if self._venue is not None else None
        if self._venue is None or quote is None:
            return Decision(order, reserve, None, None)
        order = replace(
            order,
            status=OrderStatus.SUBMITTED,
            broker_order_id=paper_broker_order_id(order.id),
            submitted_at=now,
        )
        execution = self._venue.execution(order.ticket(), quote=quote)
        if execution is None:  # it rests: a limit away from the market, a stop
            return Decision(order, reserve, None, None)
        # Filled as it is placed: the order is written as the fill leaves it, not written and then
        # updated (one statement and one dead row version fewer an order).
        applied = order.filled_by(execution)
        order = replace(
            order,
            filled_quantity=applied.filled,
            average_fill_price=applied.average,
            reserved_cash=applied.reserved,
            status=applied.status,
        )
        return Decision(order, reserve, execution, applied)

    async def _record(
        self,
        conn: store.Conn,
        m: Mutation,
        standing: Standing,
        prepared: Prepared,
        decision: Decision,
        also_changed: set[uuid.UUID],
    ) -> Written:
        """Write the order as :meth:`_decide` decided it: the order, its event and any fill."""
        request, today = prepared.request, prepared.today
        portfolio, groups, circle = standing.portfolio, standing.groups, standing.circle
        execution, applied = decision.execution, decision.applied
        order = await order_store.insert_order(
            conn, decision.order, idempotency_key=m.idempotency_key, request_hash=m.fingerprint
        )
        await add_event(
            conn,
            topic=TOPIC,
            event_type="trades.order_placed",
            user_id=m.user_id,
            aggregate_id=order.id,
            payload={
                "order_id": order.id,
                "portfolio_id": portfolio["id"],
                "symbol": request.symbol,
                "side": request.side,
                "quantity": request.quantity,
                "order_type": request.order_type,
                "reserved_cash": decision.reserve,
                "by": m.actor_id,
            },
        )
        fills: list[dict[str, Any]] = []
        balance: Decimal | None = None
        if execution is not None and applied is not None:
            fill = await order_store.insert_new_fill(conn, order.id, execution, market_date=today)
            changed, balance = await self._book_fill(
                conn,
                order,
                fill,
                execution,
                applied,
                portfolio=portfolio,
                groups=groups,
                circle=circle,
                waiting=standing.losses,
            )
            also_changed.update(changed)
            fills.append(fill)
        return Written(order, fills, balance)

    async def _finish(self, user_id: uuid.UUID, written: Written) -> dict[str, Any]:
        """After the commit: count its fills, hand an order still open to the gateway, describe it."""
        order, fills = written.order, written.fills
        ops_metrics.trades_executed(order.side, self._broker, len(fills))  # filled at the embedded venue
        if order.status == OrderStatus.PENDING:
            await self._hand_off(self._submit, order)  # the broker's answer changed it: read it again
            return await self.order(user_id, order.id)
        if order.is_open:
            await self._hand_off(self._rest, order)
        return order.described(fills)

    async def place_many(
        self,
        m: Mutation,
        portfolio_id: uuid.UUID,
        work: Work,
        parts_of: Callable[[Any], Sequence[Part]],
        origin: str,
    ) -> tuple[int, Any, list[Outcome]]:
        """A request that places several orders (a batch, a rebalance, a harvest, an accepted
        recommendation) and its orders, in one transaction under the user's lock.

        ``work`` is the request's own change under its Idempotency-Key; ``parts_of`` reads the
        orders from its answer, new or replayed, so a repeat places the same orders. Each order has
        its own derived key (claimed with the others in one statement) and is refused, if it is,
        before it writes anything: a refused order (an unknown symbol, too little cash) is reported
        and gives its key back, and a repeat finds the placed ones already made and tries the
        refused ones again. Orders are placed in their given order on one book, so a
        sale's cash funds the buys after it. One lock, one portfolio row lock and one commit for
        the lot, where an order placed alone takes each of those.
        """

        async def work_on(conn: store.Conn, rows: dict[uuid.UUID, dict[str, Any]]) -> tuple[int, Any]:
            return await work(conn, rows[portfolio_id])

        return await self.place_many_on_books(m, [portfolio_id], work_on, parts_of, origin)

    async def place_many_on_books(
        self,
        m: Mutation,
        portfolio_ids: Sequence[uuid.UUID],
        work: WorkOnBooks,
        parts_of: Callable[[Any], Sequence[Part]],
        origin: str,
    ) -> tuple[int, Any, list[Outcome]]:
        """:meth:`place_many` for a request that changes several of the user's portfolios (a
        rebalance of all of them): each part names its portfolio, and every portfolio's orders are
        placed in the one transaction, on one reading of the user's books."""
        outcomes: list[Outcome] = []
        also_changed: set[uuid.UUID] = set()

        async def orders(conn: store.Conn, rows: dict[uuid.UUID, dict[str, Any]], body: Any) -> None:
            outcomes.clear()  # a deadlock's victim runs again alone, from the start
            also_changed.clear()
            children = [self._child(m, part, origin) for part in parts_of(body)]
            buys = {c.bought for c in children if c.bought is not None}
            standings = await Standing.read_books(conn, m.user_id, rows, buys, self.market.today())
            claims = await idempotency.claim_answered(
                conn, m.user_id, [c.answered for c in children if c.answered is not None]
            )
            unused: list[uuid.UUID] = []  # claims of orders not placed: a repeat tries them again
            async with writes_together(conn):  # all the orders' events, trades, cash: a statement each
                for child in children:
                    standing = standings[child.part.portfolio_id or portfolio_ids[0]]
                    claim = claims.get(child.part.key)
                    outcome = await self._place_part(conn, child, claim, standing, outcomes, also_changed)
                    outcomes.append(outcome)
                    if isinstance(claim, uuid.UUID) and outcome.order_id is None:
                        unused.append(claim)
                    if outcome.written is not None:
                        standing.wrote(outcome.written)
            await idempotency.release(conn, unused)

        status, body = await self._book.idempotent_on_books(
            m, portfolio_ids, work, also_changed=also_changed, then=orders
        )
        await forget_spouse_books(self._book, m.user_id, also_changed, self._evict)
        for outcome in outcomes:
            if outcome.written is not None:
                outcome.order = await self._finish(m.user_id, outcome.written)
            elif outcome.order_id is not None:  # placed by an earlier request with this key
                outcome.order = await self.order(m.user_id, outcome.order_id)
        return status, body, outcomes

    async def _hand_off(self, handoff: Handoff | None, order: Order) -> None:
        """Give an order just committed to the gateway; if that fails, its sweep finds it later."""
        if handoff is None:
            return
        try:  # the order as committed a moment ago: only this shard changes an order before the broker
            await handoff(order.ticket())
        except Exception as exc:  # the order is safe in PostgreSQL
            log.warning("order_handoff_failed", order_id=str(order.id), error=repr(exc))

    async def rebalance(
        self, m: Mutation, portfolio_id: uuid.UUID, drift_band: Decimal, whole_shares: bool
    ) -> tuple[int, dict[str, Any]]:
        """Place the orders of a rebalancing plan, once per Idempotency-Key.

        The plan is fixed when the key is first claimed (and stored with it), so a repeat of the
        request places the same orders under the same derived keys, which find the orders already
        made, however the book has moved since. Sells come first, so their cash can fund the buys.
        """
        plans, seen = await self._book.rebalance_plans(
            m.user_id, [portfolio_id], drift_band, whole_shares, named=False
        )
        plan = plans[0]

        async def work(conn: store.Conn, portfolio: dict[str, Any]) -> tuple[int, Any]:
            # Only for a new key (a replay places the stored plan's orders), and before anything is written.
            self.refuse_stale_plan([PlannedOrder(o["symbol"]) for o in plan["orders"]], seen)
            await self._mark_rebalanced(conn, m, [portfolio["id"]])
            return 201, plan

        def parts(stored: Any) -> list[Part]:
            return _plan_parts(m, stored["orders"])

        status, stored, outcomes = await self.place_many(m, portfolio_id, work, parts, "rebalance")
        return status, {**stored, **_placed_and_refused(outcomes)}

    async def rebalance_books(
        self, m: Mutation, portfolio_ids: Sequence[uuid.UUID], drift_band: Decimal, whole_shares: bool
    ) -> tuple[int, dict[str, Any]]:
        """Rebalance several of the user's portfolios in one request, once per Idempotency-Key.

        Every plan is made first, on one reading of the user's book; a portfolio without a target
        refuses the request before anything is placed. Then all the plans' orders are placed in one
        transaction: order ``i`` of the ``n``-th portfolio named under the derived key
        ``{key}/{n}/{i}``. As for one portfolio, the plans are stored with the key, so a repeat places
        the same orders, and an order refused (too little cash) refuses none of the others.
        """
        plans, seen = await self._book.rebalance_plans(m.user_id, portfolio_ids, drift_band, whole_shares)

        async def work(conn: store.Conn, portfolios: dict[uuid.UUID, dict[str, Any]]) -> tuple[int, Any]:
            planned = [PlannedOrder(o["symbol"]) for plan in plans for o in plan["orders"]]
            self.refuse_stale_plan(planned, seen)
            await self._mark_rebalanced(conn, m, list(portfolios))
            return 201, {"portfolios": plans}

        def parts(stored: Any) -> list[Part]:
            return [
                replace(part, portfolio_id=uuid.UUID(plan["portfolio_id"]))
                for n, plan in enumerate(stored["portfolios"])
                for part in _plan_parts(m, plan["orders"], prefix=f"{n}/")
            ]

        status, stored, outcomes = await self.place_many_on_books(m, portfolio_ids, work, parts, "rebalance")
        by_portfolio: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            by_portfolio.setdefault(str(outcome.part.portfolio_id), []).append(outcome)
        answers = [
            {**plan, **_placed_and_refused(by_portfolio.get(plan["portfolio_id"], []))}
            for plan in stored["portfolios"]
        ]
        return status, {"dry_run": False, "portfolios": answers}

    async def plans(
        self, user_id: uuid.UUID, portfolio_ids: Sequence[uuid.UUID], drift_band: Decimal, whole_shares: bool
    ) -> list[dict[str, Any]]:
        """Each portfolio's rebalancing plan, not placed, each naming its portfolio. The book and the
        quotes are read once for them all; a refusal (no such portfolio, no target) names the
        portfolio it is for."""
        plans, _ = await self._book.rebalance_plans(user_id, portfolio_ids, drift_band, whole_shares)
        return plans

    async def _mark_rebalanced(
        self, conn: store.Conn, m: Mutation, portfolio_ids: Sequence[uuid.UUID]
    ) -> None:
        """The portfolios' last rebalance is now (one statement), and their subscribers hear of it."""
        versions = await store.mark_rebalanced(conn, portfolio_ids, datetime.now(UTC))
        async with writes_together(conn):
            for portfolio_id in portfolio_ids:
                await add_event(
                    conn,
                    topic="portfolio.updates",
                    event_type="portfolio.updated",
                    user_id=m.user_id,
                    aggregate_id=portfolio_id,
                    payload={
                        "portfolio_id": portfolio_id,
                        "changed": ["last_rebalance_date"],
                        "version": versions[portfolio_id],
                    },
                )

    async def place_batch(
        self, m: Mutation, portfolio_id: uuid.UUID, specs: Sequence[Mapping[str, Any]]
    ) -> tuple[int, dict[str, Any]]:
        """Place many orders in one call, once per Idempotency-Key; each order on its own.

        The batch claims the key with its whole body (the same key with other orders is refused),
        and order ``i`` is placed under the derived key ``{key}/{i}``, so a repeat finds each order
        already made. An order refused (an unknown symbol, too little cash) is reported with its
        index and refuses none of the others.
        """

        async def work(conn: store.Conn, portfolio: dict[str, Any]) -> tuple[int, Any]:
            return 201, {"orders": len(specs)}

        parts = [Part(derived_key(m, i), spec) for i, spec in enumerate(specs)]
        status, _, outcomes = await self.place_many(m, portfolio_id, work, lambda _: parts, "api")
        placed: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        for i, outcome in enumerate(outcomes):
            if outcome.order is not None:
                placed.append({"index": i, **outcome.order})
            elif outcome.error is not None:
                spec = outcome.part.spec
                error = outcome.error.as_dict()
                refused.append({"index": i, "symbol": spec["symbol"], "side": spec["side"], "error": error})
        return status, {"placed": placed, "refused": refused}

    def _child(self, m: Mutation, part: Part, origin: str) -> Child:
        """A part under its derived key, with its request's rules checked (or the refusal they gave)."""
        child = replace(m, idempotency_key=part.key, body=jsonable(dict(part.spec)))
        try:
            return Child(part, child, self._prepare(part.spec, origin))
        except ServiceError as exc:
            return Child(part, child, None, exc)

    async def _place_part(
        self,
        conn: store.Conn,
        child: Child,
        claim: uuid.UUID | idempotency.Replay | None,
        standing: Standing,
        before: Sequence[Outcome],
        also_changed: set[uuid.UUID],
    ) -> Outcome:
        """One part of :meth:`place_many`: its key claimed with the others, its order checked, then
        written.

        Every refusal is decided before the order writes anything (:meth:`_decide`), so a refused
        order leaves nothing to undo and a placed one needs no savepoint of its own: two statements
        and a round trip an order fewer. Were a refusal to come once the writing has begun, the
        whole request fails instead, rather than keep half an order.
        """
        part = child.part
        if part.after is not None and before[part.after].order_id is None:
            return Outcome(part)
        if child.error is not None:
            return Outcome(part, error=child.error)
        if isinstance(claim, idempotency.Replay):  # placed by an earlier request with this key
            if not claim.same_request:
                return Outcome(part, error=key_reused())
            return Outcome(part, order_id=uuid.UUID(claim.body["id"]))
        assert child.prepared is not None and claim is not None
        try:
            decision = await self._decide(conn, child.m, standing, child.prepared)
        except ServiceError as exc:
            return Outcome(part, error=exc)
        try:
            written = await self._record(conn, child.m, standing, child.prepared, decision, also_changed)
        except ServiceError as exc:
            raise OrderHalfWritten(f"order {part.key} was refused after it began to be written") from exc
        return Outcome(part, order_id=written.order.id, written=written)

    # Reading -------------------------------------------------------------------------------------

    async def order_of_record(self, order_id: uuid.UUID) -> Order | None:
        async with self._book.pool.connection() as conn:
            return await order_store.order(conn, order_id)

    async def order(self, user_id: uuid.UUID, order_id: uuid.UUID) -> dict[str, Any]:
        """The user's order as the API shows it, with its fills."""
        async with self._book.pool.connection() as conn:
            order = await order_store.order(conn, order_id)
            if order is None or order.user_id != user_id:
                raise not_found("order")
            fills = await order_store.fills_of(conn, order_id)
        return order.described(fills)

    # Cancelling ----------------------------------------------------------------------------------

    async def cancel(self, m: Mutation, order_id: uuid.UUID) -> dict[str, Any]:
        order = await self.order_of_record(order_id)
        if order is None or order.user_id != m.user_id:
            raise not_found("order")
        if not order.is_open:
            raise ServiceError(
                409,
                "ORDER_NOT_OPEN",
                f"This order is {order.status} and can no longer be cancelled.",
                {"status": str(order.status)},
            )
        if self._cancel is None:
            raise ServiceError(503, "BROKER_UNAVAILABLE", "No broker is reachable to cancel this order.")
        try:
            await self._cancel(order.ticket())
        except ServiceError:
            raise
        except Exception as exc:
            raise ServiceError(
                503, "BROKER_UNAVAILABLE", "The broker could not be reached to cancel this order; try again."
            ) from exc
        return await self.order(m.user_id, order_id)

    # From the broker -----------------------------------------------------------------------------

    async def apply_execution(
        self, user_id: uuid.UUID, execution: Execution, accepted: StatusChange | None = None
    ) -> dict[str, Any] | None:
        """Apply one fill to the order, lots, cash and trade record; a fill seen before changes nothing.

        ``accepted`` is the broker's acceptance of the order when it comes with the order's first
        fill (the paper broker fills a marketable order as it accepts it): both are applied in
        one transaction instead of two.
        """
        Applied = tuple[Order | None, Order | None, set[uuid.UUID]]

        async def unit(conn: store.Conn) -> Applied:
            """The order as found, the order after the fill (``None``: seen before), and the
            user's other portfolios a wash sale changed."""
            order = await order_store.order(conn, execution.order_id, for_update=True)
            if order is None or order.user_id != user_id:
                log.error("fill_for_unknown_order", order_id=str(execution.order_id), fill=execution.fill_id)
                return None, None, set()
            # Before the book's rows, as in idempotent.
            circle = await households.wash_sale_circle(conn, user_id)
            if accepted is not None and order.status == OrderStatus.PENDING:
                await order_store.set_status(
                    conn, order.id, OrderStatus.SUBMITTED, broker_order_id=accepted.broker_order_id
                )
                order = order.with_status(OrderStatus.SUBMITTED, accepted.broker_order_id)
            fill = await order_store.insert_fill(conn, order.id, execution, market_date=self.market.today())
            if fill is None:
                return order, None, set()
            updated, also_changed = await self._fill(conn, order, fill, execution, circle=circle)
            return order, updated, also_changed

        async with self._book.changing(user_id):
            # Fills of different users arriving together share a transaction (group commit).
            order, updated, also_changed = await self._book.commits.run(unit)
            if order is None:
                return None
            if updated is None:
                return order.light()
            ops_metrics.trades_executed(order.side, self._broker)
            for changed in {order.portfolio_id, *also_changed}:
                await self._book.drop_snapshot(user_id, changed)
        await forget_spouse_books(self._book, user_id, also_changed, self._evict)
        return updated.light()

    async def _fill(
        self,
        conn: store.Conn,
        order: Order,
        fill: dict[str, Any],
        execution: Execution,
        *,
        circle: Sequence[uuid.UUID] | None = None,
    ) -> tuple[Order, set[uuid.UUID]]:
        """Apply a new fill to an order recorded before it (a fill the gateway brings): the order
        after it, and the user's other portfolios whose lots a wash sale changed."""
        applied = order.filled_by(execution)
        updated = await order_store.record_fill_on_order(
            conn,
            order.id,
            filled_quantity=applied.filled,
            average_fill_price=applied.average,
            reserved_cash=applied.reserved,
            status=applied.status,
        )
        also_changed, _ = await self._book_fill(conn, order, fill, execution, applied, circle=circle)
        return updated, also_changed

    async def _book_fill(
        self,
        conn: store.Conn,
        order: Order,
        fill: dict[str, Any],
        execution: Execution,
        applied: rules.FillApplied,
        *,
        portfolio: dict[str, Any] | None = None,
        groups: IdentityGroups | None = None,
        circle: Sequence[uuid.UUID] | None = None,
        waiting: wash_sales.WaitingLosses | None = None,
    ) -> tuple[set[uuid.UUID], Decimal]:
        """What a fill changes besides its order (lots, cash, holdings, the trade and its event): the
        user's other portfolios whose lots a wash sale changed, and the portfolio's cash after it.
        ``portfolio`` is the order's portfolio when this transaction already holds its lock,
        ``groups`` the wash-sale identity table and ``circle`` the user's wash-sale circle when it
        has read them (the circle under the household's lock), ``waiting`` the losses its request's
        buys share."""
        if portfolio is None:
            portfolio = await store.portfolio_for_update(conn, order.user_id, order.portfolio_id)
        if portfolio is None:
            raise ServiceError(409, "PORTFOLIO_GONE", "The order's portfolio no longer exists.")
        day = self.market.today()
        also_changed: set[uuid.UUID] = set()
        if order.side == "buy":
            await wash_sales.record_buy(
                conn,
                user_id=order.user_id,
                portfolio=portfolio,
                symbol=order.symbol,
                shares=execution.quantity,
                cost=-applied.cash,
                day=day,
                source="harvest_replacement" if order.origin == "harvest" else "buy",
                fill_row_id=fill["id"],
                groups=groups,
                circle=circle,
                waiting=waiting,
            )
        else:
            also_changed = await self._relieve(
                conn, order, portfolio, fill["id"], execution.quantity, applied.cash, day, groups, circle
            )
            if waiting is not None:
                waiting.sold()
        balance = portfolio["cash_balance"] + applied.cash
        # Nothing below is read back: in the group commit's pipeline the five statements travel
        # with the next one that is.
        await store.set_cash(conn, portfolio["id"], balance)
        await store.add_cash_movement(
            conn,
            portfolio_id=portfolio["id"],
            amount=applied.cash,
            kind="trade",
            description=f"{order.side} {execution.quantity.normalize():f} {order.symbol} @ {execution.price}",
            balance_after=balance,
            reference_id=fill["id"],
        )
        await store.refresh_holdings(conn, portfolio["id"], order.symbol)
        trade_id = await order_store.insert_trade(
            conn,
            portfolio_id=portfolio["id"],
            order_id=order.id,
            symbol=order.symbol,
            side=order.side,
            shares=execution.quantity,
            price=execution.price,
            total_amount=applied.value,
            commission=execution.commission,
            broker_order_id=order.broker_order_id,
        )
        await add_event(
            conn,
            topic=TOPIC,
            event_type="trades.executed",
            user_id=order.user_id,
            aggregate_id=order.id,
            payload={
                "order_id": order.id,
                "trade_id": trade_id,
                "portfolio_id": portfolio["id"],
                "fill_id": execution.fill_id,
                "symbol": order.symbol,
                "side": order.side,
                "quantity": execution.quantity,
                "price": execution.price,
                "commission": execution.commission,
                "cash_balance": balance,
                "order_status": applied.status,
            },
        )
        return also_changed, balance

    async def _relieve(
        self,
        conn: store.Conn,
        order: Order,
        portfolio: dict[str, Any],
        fill_row_id: uuid.UUID,
        quantity: Decimal,
        proceeds: Decimal,
        day: date,
        groups: IdentityGroups | None,
        circle: Sequence[uuid.UUID] | None,
    ) -> set[uuid.UUID]:
        """Take the sold shares out of the lots the order's method picks; the realized rows and any wash
        sale they start are the engine's (:mod:`wealthalloc.portfolios.wash_sales`)."""
        open_lots = [
            store.lot_from_row(r)
            for r in await store.all_lots(conn, portfolio["id"], order.symbol)
            if r["closed_at"] is None and r["shares"] > 0 and sellable(r)
        ]
        method = LotMethod(order.lot_method or portfolio["lot_method"])
        named = list(order.lot_ids or ())
        if method is LotMethod.SPECIFIC and not named:
            method = LotMethod.FIFO  # a portfolio default of "specific" with no lots named on this sell
        reliefs = relieve(open_lots, quantity, method, named)
        left = proceeds
        sold: list[SoldShares] = []
        for i, relief in enumerate(reliefs):
            share = left if i == len(reliefs) - 1 else money(proceeds * relief.shares / quantity)
            left -= share
            await lots.relieve_lot(
                conn,
                relief.lot.id,
                shares=relief.shares,
                cost_basis=relief.cost_basis,
                adjusted_basis=relief.adjusted_basis,
            )
            sold.append(
                SoldShares(
                    lot=relief.lot,
                    shares=relief.shares,
                    cost_basis=relief.cost_basis,
                    adjusted_basis=relief.adjusted_basis,
                    proceeds=share,
                )
            )
        return await wash_sales.record_sale(
            conn,
            user_id=order.user_id,
            portfolio=portfolio,
            symbol=order.symbol,
            sold=sold,
            fill_row_id=fill_row_id,
            day=day,
            groups=groups,
            circle=circle,
        )

    async def apply_status(self, user_id: uuid.UUID, change: StatusChange) -> dict[str, Any] | None:
        """Accepted, cancelled, rejected or expired; a change to an order already final changes nothing."""
        async with self._book.changing(user_id):
            async with self._book.pool.connection() as conn, conn.transaction():
                order = await order_store.order(conn, change.order_id, for_update=True)
                if order is None or order.user_id != user_id:
                    log.error("status_for_unknown_order", order_id=str(change.order_id), status=change.status)
                    return None
                if not order.is_open:
                    return order.light()
                if change.status == "submitted":
                    if order.status == OrderStatus.PENDING:
                        await order_store.set_status(
                            conn, order.id, OrderStatus.SUBMITTED, broker_order_id=change.broker_order_id
                        )
                else:
                    await order_store.set_status(
                        conn,
                        order.id,
                        change.status,
                        broker_order_id=change.broker_order_id,
                        reason=change.reason,
                        release_reserve=True,
                    )
                    await add_event(
                        conn,
                        topic=TOPIC,
                        event_type=f"trades.order_{change.status}",
                        user_id=user_id,
                        aggregate_id=order.id,
                        payload={
                            "order_id": order.id,
                            "portfolio_id": order.portfolio_id,
                            "symbol": order.symbol,
                            "filled_quantity": order.filled_quantity,
                            "reason": change.reason,
                        },
                    )
                updated = await order_store.order(conn, order.id)
            await self._book.drop_snapshot(user_id, order.portfolio_id)
        return updated.light() if updated else None


KEY_LENGTH_LIMIT = 255  # idempotency_keys.key and orders.idempotency_key, as the API takes a key


def derived_key(m: Mutation, i: int | str) -> str:
    """The Idempotency-Key of order ``i`` of a request that places several: ``{key}/{i}``, or, where
    that would not fit the stored key (a client may send up to 255 characters), the key's digest in
    its place, which a repeat derives the same."""
    key, suffix = m.idempotency_key or "", f"/{i}"
    if len(key) + len(suffix) > KEY_LENGTH_LIMIT:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key + suffix


def _plan_parts(m: Mutation, orders: Sequence[Mapping[str, Any]], prefix: str = "") -> list[Part]:
    """A stored plan's orders as the parts a request places, order ``i`` under ``{key}/{prefix}{i}``."""
    return [
        Part(derived_key(m, f"{prefix}{i}"), market_order(o["symbol"], o["side"], o["quantity"]))
        for i, o in enumerate(orders)
    ]


def _placed_and_refused(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """A plan's answer once placed: its orders as placed, and those refused with their error."""
    outcomes = list(outcomes)
    return {
        "dry_run": False,
        "placed": [o.order for o in outcomes if o.order is not None],
        "refused": [
            {"symbol": o.part.spec["symbol"], "side": o.part.spec["side"], "error": o.error.as_dict()}
            for o in outcomes
            if o.error is not None
        ],
    }


def market_order(symbol: str, side: str, quantity: Decimal | str) -> dict[str, Any]:
    """A plan's order (a rebalance, a harvest, a recommendation): at the market, for the day."""
    return {
        "symbol": symbol,
        "side": side,
        "quantity": Decimal(quantity),
        "order_type": "market",
        "time_in_force": "day",
    }


def _refuse_stale_quote(request: rules.OrderRequest, spec: Mapping[str, Any]) -> None:
    """A market order placed against a stale quote is refused (409 ``QUOTE_STALE``).

    ``spec["quote"]`` is the :class:`~wealthalloc.domain.quote_freshness.QuoteSeen` the API read for
    the symbol, ``spec["quote_max_age_s"]`` the age limit it read it under; an order without one
    (a rebalance, a harvest) is priced by the venue alone.
    """
    try:
        require_fresh_quote(
            request.order_type,
            spec.get("quote"),
            now=datetime.now(UTC),
            max_age_s=float(spec.get("quote_max_age_s") or 0),
        )
    except StaleQuote as exc:
        raise ServiceError(
            409,
            "QUOTE_STALE",
            str(exc),
            {
                "symbol": exc.symbol,
                "as_of": exc.as_of.isoformat(),
                "source": exc.source,
                "age_seconds": round(exc.age_s),
                "max_age_seconds": exc.max_age_s,
            },
        ) from exc


def _lot_choice(request: rules.OrderRequest, spec: Mapping[str, Any]) -> tuple[str | None, list[uuid.UUID]]:
    method: str | None = spec.get("lot_method")
    lot_ids: list[uuid.UUID] = list(spec.get("lot_ids") or [])
    if request.side == "buy" and (method or lot_ids):
        raise ServiceError(
            400,
            "INVALID_TRADE",
            "Lots are chosen only when selling.",
            {"field": "lot_method" if method else "lot_ids"},
        )
    if lot_ids and method not in (None, "specific"):
        raise ServiceError(
            400, "INVALID_TRADE", "Naming lots means specific identification.", {"field": "lot_method"}
        )
    if method == "specific" and not lot_ids:
        raise ServiceError(
            400, "INVALID_TRADE", "Specific identification needs lot_ids.", {"field": "lot_ids"}
        )
    if lot_ids and len(set(lot_ids)) != len(lot_ids):
        raise ServiceError(400, "INVALID_TRADE", "A lot is named twice.", {"field": "lot_ids"})
    return ("specific" if lot_ids else method), lot_ids


def _check_named_lots(lots: list[Any], lot_ids: list[uuid.UUID], quantity: Decimal) -> None:
    by_id = {lot.id: lot for lot in lots}
    unknown = [str(i) for i in lot_ids if i not in by_id]
    if unknown:
        raise ServiceError(
            400, "INVALID_TRADE", "These lots are not open lots of this position.", {"lot_ids": unknown}
        )
    try:
        relieve([by_id[i] for i in lot_ids], quantity, LotMethod.SPECIFIC, lot_ids)
    except (InsufficientShares, UnknownLot) as exc:
        raise ServiceError(
            400, "INSUFFICIENT_SHARES", f"The named lots do not hold enough shares: {exc}."
        ) from exc
