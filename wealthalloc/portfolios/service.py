"""The portfolio book of each user: reads valued at the market clock, and every change made once.

One ``BookService`` runs inside each ``PortfolioShard`` actor and is the only
writer for the users of its slots. It keeps their books (portfolios and open
lots) in memory, least recently used first out, and rebuilds any book from
PostgreSQL when asked for one it does not hold, so the actor can die at any
moment: the database is the truth.

Every change follows one path: take the user's lock, open a transaction,
claim the Idempotency-Key (a repeat returns the stored answer; the same key
with another body is 409), check the rule in the domain core, write the rows
and the outbox event, record the answer against the key, commit, drop the
cached snapshot in Redis, and only then answer. A crash anywhere before the
commit leaves nothing behind; after it, the retry finds the key.

Snapshots are cached in Redis (cache-aside, 180 s) keyed by user and
portfolio, and written only under the user's lock, so a reader can never put
back a snapshot older than a change that has already been acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from functools import cached_property
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from wealthalloc.domain.acquisitions import (
    ARRIVED,
    AcquiredLot,
    Acquisition,
    InvalidAcquisition,
    basis_for_sale,
    inherited,
    is_purchase,
    received_as_gift,
    term_of,
    transferred,
)
from wealthalloc.domain.allocation import InvalidTarget, Position, TargetAllocation, allocation, rebalance
from wealthalloc.domain.buying_power import (
    SETTLEMENT_DAYS,
    BuyingPower,
    InsufficientFunds,
    SaleFill,
    unsettled_proceeds,
)
from wealthalloc.domain.json_form import json_value
from wealthalloc.domain.lots import Lot
from wealthalloc.domain.money import money, weight
from wealthalloc.domain.performance import CashChange, PositionChange, performance, value_history
from wealthalloc.domain.quote_freshness import QuoteSeen
from wealthalloc.domain.valuation import Valuation, risk_score, value_lots
from wealthalloc.domain.wash_sale_book import BasisTooSmall
from wealthalloc.errors import ServiceError
from wealthalloc.logging import get_logger
from wealthalloc.marketdata import MarketDataError
from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.portfolios import wash_sales
from wealthalloc.portfolios.market import Market
from wealthalloc.portfolios.quotes import PlanQuotes
from wealthalloc.storage import books as store
from wealthalloc.storage import held_writes, households, idempotency, lots
from wealthalloc.storage import orders as order_store
from wealthalloc.storage import tax as tax_store
from wealthalloc.storage.group_commit import GroupCommit
from wealthalloc.storage.outbox import add_event
from wealthalloc.storage.postgres import AsyncPool, reading

log = get_logger(__name__)

SNAPSHOT_TTL_S = 180
UNIVERSE_TTL_S = 60.0
TOPIC = "portfolio.updates"
Work = Callable[[store.Conn, dict[str, Any]], Awaitable[tuple[int, Any]]]
"""A change of one book: given the transaction and the portfolio's locked row, its status and answer."""
Then = Callable[[store.Conn, dict[str, Any], Any], Awaitable[None]]
"""What follows a change in its transaction: given the locked row and the change's (or replayed) answer."""
Rows = dict[uuid.UUID, dict[str, Any]]
"""Several portfolios' locked rows, by id, in the order the request named them."""
WorkOnBooks = Callable[[store.Conn, Rows], Awaitable[tuple[int, Any]]]
"""A change of several of one user's books: :data:`Work` given every portfolio's locked row."""
ThenOnBooks = Callable[[store.Conn, Rows, Any], Awaitable[None]]
"""What follows a change of several books in its transaction: :data:`Then` given every locked row."""
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def snapshot_key(user_id: uuid.UUID, portfolio_id: uuid.UUID) -> str:
    # The user id in braces is a Redis Cluster hash tag: a user's keys live on one node.
    return f"snap:{{{user_id}}}:{portfolio_id}"


def valid_target(raw: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """The target allocation in its stored form, or a 400 that says what is wrong with it."""
    try:
        return TargetAllocation.parse(raw or {}).as_json()
    except InvalidTarget as exc:
        raise ServiceError(
            400,
            "VALIDATION_ERROR",
            f"target_allocation: {exc}",
            [{"field": "body.target_allocation", "message": str(exc)}],
        ) from exc


def _target_of(portfolio: Mapping[str, Any]) -> TargetAllocation:
    try:
        return TargetAllocation.parse(portfolio["target_allocation"] or {})
    except InvalidTarget:
        return TargetAllocation()


def not_found(what: str = "portfolio") -> ServiceError:
    return ServiceError(404, "NOT_FOUND", f"No such {what}.")


@dataclass
class Book:
    """``commitments`` are the rows that hold cash back (open buys, recent sales), read with the book
    so a read shows reserved, unsettled and available cash without another query."""

    user_id: uuid.UUID
    portfolios: dict[uuid.UUID, dict[str, Any]]
    lots: dict[uuid.UUID, list[Lot]]
    commitments: list[dict[str, Any]] = field(default_factory=list)
    # A gift lot's basis for a loss (the value at the gift, below the donor's basis), by lot id: the
    # dashboard's harvestable loss is figured from it, as a sale would be.
    loss_bases: dict[uuid.UUID, Decimal] = field(default_factory=dict)
    used_at: float = field(default_factory=time.monotonic)
    # Portfolios a change committed since they were read: read again, with the commitments, on next use.
    stale: set[uuid.UUID] = field(default_factory=set)


@dataclass(frozen=True)
class Mutation:
    """What a change needs besides its own arguments: who asks, with which key, for which request."""

    user_id: uuid.UUID
    actor_id: uuid.UUID
    idempotency_key: str | None
    method: str
    path: str
    body: Any

    @cached_property
    def fingerprint(self) -> str:
        """The request's hash as its Idempotency-Key record keeps it; computed once per change."""
        return idempotency.request_hash(self.method, self.path, self.body)


def _put(book: Book, portfolios: Iterable[dict[str, Any]], lot_rows: Iterable[dict[str, Any]]) -> None:
    """Portfolio rows and their open lots into ``book``, as read from PostgreSQL."""
    for row in portfolios:
        book.portfolios[row["id"]] = row
        book.lots[row["id"]] = []
    for row in lot_rows:
        book.lots.setdefault(row["portfolio_id"], []).append(store.lot_from_row(row))
        if row["loss_basis"] is not None:
            book.loss_bases[row["id"]] = row["loss_basis"]


def _found(rows: Rows | None) -> Rows:
    """The locked rows of a change's portfolios, or the 404 of one that is not there."""
    if rows is None:
        raise not_found()
    return rows


def key_reused() -> ServiceError:
    return ServiceError(
        409, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used for a different request."
    )


def jsonable(value: Any) -> Any:
    """Decimals as strings, UUIDs and dates as ISO strings: the form answers are stored and sent in."""
    return json.loads(json.dumps(value, default=json_value))


class BookService:
    def __init__(
        self,
        *,
        pool: AsyncPool,
        redis: aioredis.Redis | None,
        market: Market,
        max_books: int = 10_000,
        idle_seconds: float = 900.0,
        quotes: PlanQuotes | None = None,
        commit_group: int = 1,
    ) -> None:
        """``quotes`` shows, in a rebalance preview, the quote each order would execute on.
        ``commit_group`` changes of different users may share a transaction (:mod:`group_commit`)."""
        self.pool = pool
        self.commits = GroupCommit(pool, max_group=commit_group)
        self.quotes = quotes
        self._redis = redis
        self.market = market
        self._books: OrderedDict[uuid.UUID, Book] = OrderedDict()
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._max_books = max_books
        self._idle_seconds = idle_seconds
        # Snapshots known to be absent from Redis: deleted by this shard and not cached since. Only
        # the user's own shard caches a snapshot (under the user's lock), so a change to one of these
        # needs no DEL; a restarted shard knows none and deletes as before.
        self._uncached: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self._universe_made: tuple[date, float, list[Position]] | None = None

    # Books ---------------------------------------------------------------------------------------

    def _lock(self, user_id: uuid.UUID) -> ops_metrics.TimedLock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        return ops_metrics.TimedLock(lock)

    async def _book(self, user_id: uuid.UUID) -> Book:
        self._evict_idle()
        book = self._books.get(user_id)
        if book is not None:
            book.used_at = time.monotonic()
            self._books.move_to_end(user_id)
            if book.stale:
                await self._refresh(book)
            return book
        async with reading(self.pool) as conn:
            portfolios, lot_rows, commitments = await store.rows_together(
                conn,
                store.portfolios_query(user_id),
                store.open_lots_of_user_query(user_id),
                order_store.cash_commitments_query(user_id, self.settlement_horizon()),
            )
        book = Book(user_id=user_id, portfolios={}, lots={}, commitments=commitments)
        _put(book, portfolios, lot_rows)
        self._books[user_id] = book
        while len(self._books) > self._max_books:
            evicted, _ = self._books.popitem(last=False)
            self._drop_lock(evicted)
            ops_metrics.SHARD_EVICTIONS.labels("lru").inc()
        return book

    async def _refresh(self, book: Book) -> None:
        """Read again the portfolios a change left stale, their open lots and the user's commitments:
        one round trip, where the whole book (every portfolio and every open lot) took one too, and
        a user with many portfolios or lots paid for all of them after each change."""
        stale = sorted(book.stale)
        async with reading(self.pool) as conn:
            portfolios, lot_rows, commitments = await store.rows_together(
                conn,
                store.portfolios_by_id_query(book.user_id, stale),
                store.open_lots_of_portfolios_query(book.user_id, stale),
                order_store.cash_commitments_query(book.user_id, self.settlement_horizon()),
            )
        found = {row["id"] for row in portfolios}
        for portfolio_id in stale:
            for lot in book.lots.pop(portfolio_id, []):
                book.loss_bases.pop(lot.id, None)
            if portfolio_id not in found:
                book.portfolios.pop(portfolio_id, None)
        _put(book, portfolios, lot_rows)  # a row replaced keeps its place: the listing's order holds
        book.commitments = commitments
        book.stale.clear()

    def _evict_idle(self) -> None:
        """Books untouched for ``idle_seconds`` leave memory (oldest first: the dict is in LRU order)."""
        cutoff = time.monotonic() - self._idle_seconds
        while self._books:
            user_id, oldest = next(iter(self._books.items()))
            if oldest.used_at >= cutoff:
                break
            del self._books[user_id]
            self._drop_lock(user_id)
            ops_metrics.SHARD_EVICTIONS.labels("idle").inc()

    def _drop_lock(self, user_id: uuid.UUID) -> None:
        lock = self._locks.get(user_id)
        if lock is not None and not lock.locked():
            del self._locks[user_id]

    def _forget(self, user_id: uuid.UUID, portfolios: Iterable[uuid.UUID] | None = None) -> None:
        """The user's book is read again on next use: all of it, or only ``portfolios``."""
        book = self._books.get(user_id)
        if book is None:
            return
        if portfolios is None:
            del self._books[user_id]
        else:
            book.stale.update(portfolios)

    @asynccontextmanager
    async def changing(
        self, user_id: uuid.UUID, portfolios: set[uuid.UUID] | None = None
    ) -> AsyncIterator[None]:
        """Hold the user's lock for a change; afterwards (committed or not) the book is re-read
        from PostgreSQL on next use rather than patched in memory.

        A change that names the ``portfolios`` it may touch (added to until it ends: a wash sale
        adjusts the user's other portfolios) leaves only those to read again, with the user's
        commitments; any other change drops the whole book."""
        async with self._lock(user_id):
            try:
                yield
            finally:
                self._forget(user_id, portfolios)

    @property
    def books_in_memory(self) -> int:
        return len(self._books)

    # Buying power --------------------------------------------------------------------------------

    def settlement_horizon(self) -> date:
        """The oldest trading day whose sales may still be unsettled today: older ones are not read."""
        day = self.market.today()
        for _ in range(SETTLEMENT_DAYS):
            day = self.market.previous_day(day)
        return day

    def buying_power(self, cash: Decimal, commitments: list[dict[str, Any]]) -> BuyingPower:
        """One portfolio's cash split by :class:`BuyingPower`, from its rows of
        :func:`wealthalloc.storage.orders.cash_commitments`."""
        reserved = sum((r["reserved_cash"] for r in commitments if r["kind"] == "reserved"), Decimal(0))
        sales = [
            SaleFill(
                traded_on=r["market_date"],
                quantity=r["quantity"],
                price=r["price"],
                commission=r["commission"],
            )
            for r in commitments
            if r["kind"] == "sale"
        ]
        unsettled = unsettled_proceeds(
            sales, today=self.market.today(), next_trading_day=self.market.next_day
        )
        return BuyingPower(cash=cash, reserved=reserved, unsettled=unsettled)

    def _power(self, book: Book, portfolio_id: uuid.UUID) -> BuyingPower:
        rows = [r for r in book.commitments if r["portfolio_id"] == portfolio_id]
        return self.buying_power(book.portfolios[portfolio_id]["cash_balance"], rows)

    async def power_of(self, conn: store.Conn, user_id: uuid.UUID, portfolio: dict[str, Any]) -> BuyingPower:
        """The buying power of a portfolio whose row this transaction holds locked (one query)."""
        rows = await order_store.cash_commitments(
            conn, user_id=user_id, since=self.settlement_horizon(), portfolio_id=portfolio["id"]
        )
        return self.buying_power(portfolio["cash_balance"], rows)

    # Reads ---------------------------------------------------------------------------------------

    async def portfolios(self, user_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self._lock(user_id):
            book = await self._book(user_id)
            return [jsonable(self._describe(book, p)) for p in book.portfolios.values()]

    async def snapshot(self, user_id: uuid.UUID, portfolio_id: uuid.UUID | None = None) -> dict[str, Any]:
        """The portfolio valued today, with holdings; the default portfolio when no id is given."""
        async with self._lock(user_id):
            book = await self._book(user_id)
            if portfolio_id is None:
                default = next((p for p in book.portfolios.values() if p["is_default"]), None)
                default = default or next(iter(book.portfolios.values()), None)
                if default is None:
                    raise not_found()
                portfolio_id = default["id"]
            if portfolio_id not in book.portfolios:
                raise not_found()
            portfolio = book.portfolios[portfolio_id]
            described = self._describe(book, portfolio)
            await self._store_totals(portfolio, described)
            snapshot: dict[str, Any] = jsonable(described)
            await self._cache_put(user_id, portfolio_id, snapshot)
            return snapshot

    async def _store_totals(self, portfolio: dict[str, Any], described: dict[str, Any]) -> None:
        """Keep the portfolio row's cached totals (the seed's fields) in step with the valuation, for
        reports that read PostgreSQL directly; only when they changed, so steady reads write nothing."""
        totals = (described["total_value"], described["total_gain_loss"], described["risk_score"])
        if totals == (portfolio["total_value"], portfolio["total_gain_loss"], portfolio["risk_score"]):
            return
        async with self.pool.connection() as conn, conn.transaction():
            await store.store_valuation(
                conn, portfolio["id"], total_value=totals[0], total_gain_loss=totals[1], risk_score=totals[2]
            )
        portfolio.update(total_value=totals[0], total_gain_loss=totals[1], risk_score=totals[2])

    async def lots(
        self, user_id: uuid.UUID, portfolio_id: uuid.UUID, symbol: str | None
    ) -> list[dict[str, Any]]:
        async with self._lock(user_id):
            book = await self._book(user_id)
            if portfolio_id not in book.portfolios:
                raise not_found()
            today = self.market.today()
            held = [lot for lot in book.lots.get(portfolio_id, []) if not symbol or lot.symbol == symbol]
            # How each lot came (a gift's loss basis, an inheritance's term) is read with the rows.
            async with self.pool.connection() as conn:
                kinds = await tax_store.lot_sources(conn, {lot.id for lot in held})
            rows = []
            for lot in held:
                kind = kinds[lot.id]
                close = self._close_or_none(lot.symbol, today)
                value = money(lot.shares * close) if close is not None else None
                rows.append(
                    {
                        "id": lot.id,
                        "symbol": lot.symbol,
                        "shares": lot.shares,
                        "acquired_at": lot.acquired_at,
                        "holding_period_start": lot.holding_period_start,
                        "cost_basis": lot.cost_basis,
                        "adjusted_basis": lot.adjusted_basis,
                        "loss_basis": kind["loss_basis"],
                        "wash_sale_disallowed": lot.wash_sale_disallowed,
                        "source": kind["source"],
                        "transfer_status": kind["transfer_status"],
                        "term": term_of(
                            holding_period_start=lot.holding_period_start,
                            always_long=kind["always_long"],
                            sold_on=today,
                        ).value,
                        "current_price": close,
                        "market_value": value,
                        "unrealized_gain_loss": None
                        if value is None
                        else value - _basis_if_sold(lot, kind, value),
                    }
                )
            return jsonable(rows)  # type: ignore[no-any-return]

    def _close_or_none(self, symbol: str, day: date) -> Decimal | None:
        try:
            return self.market.close(symbol, day)
        except MarketDataError:
            return None

    def valuation(self, book: Book, portfolio_id: uuid.UUID) -> Valuation:
        portfolio = book.portfolios[portfolio_id]
        lots = book.lots.get(portfolio_id, [])
        today = self.market.today()
        symbols = {lot.symbol for lot in lots if lot.shares > 0}
        previous = self.market.previous_day(today)
        return value_lots(
            lots,
            portfolio["cash_balance"],
            as_of=today,
            closes=self.market.closes(symbols, today),
            previous_closes=self.market.closes(symbols, previous),
            info=self.market.info,
        )

    def _describe(self, book: Book, portfolio: dict[str, Any]) -> dict[str, Any]:
        valuation = self.valuation(book, portfolio["id"])
        weights = {
            h.symbol: float(h.market_value / valuation.total_value)
            for h in valuation.holdings
            if valuation.total_value
        }
        score = risk_score(self.market.volatility(weights, valuation.as_of))
        return {
            "id": portfolio["id"],
            "user_id": portfolio["user_id"],
            "name": portfolio["name"],
            "account_type": portfolio["account_type"],
            "base_currency": portfolio["base_currency"],
            "is_default": portfolio["is_default"],
            "lot_method": portfolio["lot_method"],
            "as_of": valuation.as_of,
            **self._power(book, portfolio["id"]).as_dict(),
            "invested_value": valuation.invested_value,
            "total_value": valuation.total_value,
            "total_cost_basis": valuation.total_cost_basis,
            "total_gain_loss": valuation.total_gain_loss,
            "day_change": valuation.day_change,
            "risk_score": score,
            "target_allocation": portfolio["target_allocation"],
            "last_rebalance_date": portfolio["last_rebalance_date"],
            "dividend_reinvestment": portfolio["dividend_reinvestment"],
            "version": portfolio["version"],
            "created_date": portfolio["created_date"],
            "updated_date": portfolio["updated_date"],
            "holdings": [
                {
                    "symbol": h.symbol,
                    "shares": h.shares,
                    "average_cost": h.average_cost,
                    "cost_basis": h.cost_basis,
                    "current_price": h.current_price,
                    "market_value": h.market_value,
                    "unrealized_gain_loss": h.unrealized_gain_loss,
                    "unrealized_gain_loss_pct": h.unrealized_gain_loss_pct,
                    "day_change": h.day_change,
                    "weight": h.weight,
                    "sector": h.sector,
                    "asset_class": h.asset_class,
                    "lots": h.lots,
                }
                for h in valuation.holdings
            ],
        }

    async def dashboard(self, user_id: uuid.UUID) -> dict[str, Any]:
        """Everything across the user's portfolios on one screen."""
        async with self._lock(user_id):
            book = await self._book(user_id)
            valuations = {pid: self.valuation(book, pid) for pid in book.portfolios}
            powers = {pid: self._power(book, pid) for pid in book.portfolios}
        async with self.pool.connection() as conn:
            open_recommendations = await store.open_recommendations(conn, user_id)
        total = sum((v.total_value for v in valuations.values()), Decimal(0))
        by_class: dict[str, Decimal] = {}
        by_sector: dict[str, Decimal] = {}
        by_symbol: dict[str, Decimal] = {}
        for v in valuations.values():
            by_class["cash"] = by_class.get("cash", Decimal(0)) + v.cash_balance
            for h in v.holdings:
                by_class[h.asset_class] = by_class.get(h.asset_class, Decimal(0)) + h.market_value
                by_sector[h.sector] = by_sector.get(h.sector, Decimal(0)) + h.market_value
                by_symbol[h.symbol] = by_symbol.get(h.symbol, Decimal(0)) + h.market_value
        harvestable = Decimal(0)
        today = self.market.today()
        for pid, portfolio in book.portfolios.items():
            if portfolio["account_type"] != "taxable":
                continue  # losses inside an IRA are not deductible
            for lot in book.lots.get(pid, []):
                close = self._close_or_none(lot.symbol, today)
                if close is not None and lot.shares > 0:
                    value = money(lot.shares * close)
                    gain = value - _basis_if_sold(lot, {"loss_basis": book.loss_bases.get(lot.id)}, value)
                    if gain < 0:
                        harvestable -= gain

        def weights(values: dict[str, Decimal]) -> list[dict[str, Any]]:
            rows = sorted(values.items(), key=lambda kv: kv[1], reverse=True)
            return [
                {"key": k, "value": v, "weight": weight(v / total) if total else Decimal(0)} for k, v in rows
            ]

        return jsonable(  # type: ignore[no-any-return]
            {
                "as_of": today,
                "total_value": total,
                "day_change": sum((v.day_change for v in valuations.values()), Decimal(0)),
                "total_gain_loss": sum((v.total_gain_loss for v in valuations.values()), Decimal(0)),
                "cash_balance": sum((v.cash_balance for v in valuations.values()), Decimal(0)),
                "reserved_cash": sum((p.reserved for p in powers.values()), Decimal(0)),
                "unsettled_cash": sum((p.unsettled for p in powers.values()), Decimal(0)),
                "available_cash": sum((p.withdrawable for p in powers.values()), Decimal(0)),
                "portfolios": [
                    {
                        "id": pid,
                        "name": book.portfolios[pid]["name"],
                        "account_type": book.portfolios[pid]["account_type"],
                        "total_value": v.total_value,
                        **powers[pid].as_dict(),
                    }
                    for pid, v in valuations.items()
                ],
                "allocation": {"asset_class": weights(by_class), "sector": weights(by_sector)},
                "top_holdings": weights(by_symbol)[:5],
                "open_recommendations": open_recommendations,
                "harvestable_loss_total": harvestable,
            }
        )

    def _positions(self, book: Book, portfolio_id: uuid.UUID) -> tuple[list[Position], Decimal]:
        valuation = self.valuation(book, portfolio_id)
        positions = [
            Position(
                symbol=h.symbol,
                shares=h.shares,
                price=h.current_price,
                asset_class=h.asset_class,
                sector=h.sector,
            )
            for h in valuation.holdings
        ]
        return positions, valuation.cash_balance

    async def allocation(self, user_id: uuid.UUID, portfolio_id: uuid.UUID) -> dict[str, Any]:
        """Current against target weights by asset class, sector and symbol, with the drift."""
        async with self._lock(user_id):
            book = await self._book(user_id)
            if portfolio_id not in book.portfolios:
                raise not_found()
            target = _target_of(book.portfolios[portfolio_id])
            positions, cash = self._positions(book, portfolio_id)
        report = allocation(positions, cash, target).as_dict()
        return jsonable({"as_of": self.market.today(), "target_allocation": target.as_json(), **report})  # type: ignore[no-any-return]

    async def rebalance(
        self, user_id: uuid.UUID, portfolio_id: uuid.UUID, drift_band: Decimal, whole_shares: bool
    ) -> dict[str, Any]:
        """The orders (not placed) that bring out-of-band rows back to target."""
        plans, _ = await self.rebalance_plans(user_id, [portfolio_id], drift_band, whole_shares, named=False)
        return plans[0]

    async def rebalance_plans(
        self,
        user_id: uuid.UUID,
        portfolio_ids: Sequence[uuid.UUID],
        drift_band: Decimal,
        whole_shares: bool,
        *,
        named: bool = True,
    ) -> tuple[list[dict[str, Any]], dict[str, QuoteSeen | None]]:
        """Each portfolio's plan (not placed) on one reading of the book, and the quotes its market
        orders would execute on, read once for every plan's symbols (each plan shows its own).

        ``named``: a refusal (no such portfolio, no target) names the portfolio it is for, as a
        request about several portfolios must.
        """
        made: list[tuple[uuid.UUID, dict[str, Any]]] = []
        async with self._lock(user_id):
            book = await self._book(user_id)
            for portfolio_id in portfolio_ids:
                try:
                    made.append((portfolio_id, self._plan(book, portfolio_id, drift_band, whole_shares)))
                except ServiceError as exc:
                    if not named:
                        raise
                    details = {"portfolio_id": str(portfolio_id), "reason": exc.details}
                    message = f"Portfolio {portfolio_id}: {exc.message}"
                    raise ServiceError(exc.status, exc.code, message, details) from exc
        seen: dict[str, QuoteSeen | None] = {}
        if self.quotes is not None:  # the quote each market order would execute on, and whether it is stale
            seen = await self.quotes.seen(o["symbol"] for _, shown in made for o in shown["orders"])
            quoted = {name: jsonable(self.quotes.shown(quote)) for name, quote in seen.items()}
            for _, shown in made:
                shown["orders"] = [{**o, "quote": quoted[o["symbol"]]} for o in shown["orders"]]
        # A plan as the domain shows it is JSON-ready already (amounts as decimal strings): only
        # what is added here is put in that form, where a round trip through JSON of every plan's
        # rows before and after was a tenth of a day's rebalancing.
        head = {"as_of": self.market.today().isoformat(), "dry_run": True, "drift_band": str(drift_band)}
        plans = [
            {**({"portfolio_id": str(portfolio_id)} if named else {}), **head, **shown}
            for portfolio_id, shown in made
        ]
        return plans, seen

    def _plan(
        self, book: Book, portfolio_id: uuid.UUID, drift_band: Decimal, whole_shares: bool
    ) -> dict[str, Any]:
        """One portfolio's rebalancing plan as shown, before its quotes."""
        if portfolio_id not in book.portfolios:
            raise not_found()
        target = _target_of(book.portfolios[portfolio_id])
        if not (target.asset_class or target.sector or target.symbol):
            raise ServiceError(
                409, "NO_TARGET_ALLOCATION", "Set a target_allocation on the portfolio before rebalancing."
            )
        positions, _ = self._positions(book, portfolio_id)
        # Cash open buys hold back is theirs: the plan spends only what a new buy could reserve.
        cash = max(self._power(book, portfolio_id).for_buys, Decimal(0))
        plan = rebalance(
            positions,
            cash,
            target,
            drift_band=drift_band,
            whole_shares=whole_shares,
            candidates=self._candidates({p.symbol for p in positions}),
        )
        return plan.as_dict()

    def _candidates(self, held: set[str]) -> dict[str, list[Position]]:
        """Per sector, the securities with a price today that could fill a sector nobody holds yet."""
        out: dict[str, list[Position]] = {}
        for position in self._universe():
            if position.symbol not in held:
                out.setdefault(position.sector, []).append(position)
        return out

    def _universe(self) -> list[Position]:
        """Every equity and fund with a price today, at that price: made once a trading day and
        again once :data:`UNIVERSE_TTL_S` have passed (a price file replaced meanwhile), where every
        plan looked up each symbol's reference and close."""
        today = self.market.today()
        made = self._universe_made
        if made is not None and made[0] == today and time.monotonic() - made[1] < UNIVERSE_TTL_S:
            return made[2]
        universe: list[Position] = []
        for symbol in self.market.prices.symbols():
            info = self.market.info(symbol)
            if info.asset_class not in ("equity", "etf"):
                continue
            close = self._close_or_none(symbol, today)
            if close is None or close <= 0:
                continue
            universe.append(
                Position(
                    symbol=symbol,
                    shares=Decimal(0),
                    price=close,
                    asset_class=info.asset_class,
                    sector=info.sector,
                )
            )
        self._universe_made = (today, time.monotonic(), universe)
        return universe

    async def performance(
        self,
        user_id: uuid.UUID,
        portfolio_id: uuid.UUID,
        start: date | None,
        end: date | None,
        benchmark: str,
    ) -> dict[str, Any]:
        """Returns and risk over [start, end] (default: the year to the market clock's today)."""
        async with self._lock(user_id):
            book = await self._book(user_id)
            if portfolio_id not in book.portfolios:
                raise not_found()
        async with self.pool.connection() as conn:
            lots = await store.all_lots(conn, portfolio_id)
            sales = await store.realized_sales(conn, portfolio_id)
            movements = await store.cash_movements(conn, portfolio_id)
        today = self.market.today()
        end = min(end or today, today)
        start = start or date(end.year - 1, end.month, min(end.day, 28))
        if start >= end:
            raise ServiceError(
                400, "VALIDATION_ERROR", "start must be before end.", {"start": start, "end": end}
            )
        if not self.market.known(benchmark):
            raise ServiceError(404, "UNKNOWN_SYMBOL", f"No prices for the benchmark {benchmark}.")
        report = await asyncio.to_thread(self._performance, lots, sales, movements, start, end, benchmark)
        return jsonable(report)  # type: ignore[no-any-return]

    def _performance(
        self,
        lots: list[dict[str, Any]],
        sales: list[dict[str, Any]],
        movements: list[dict[str, Any]],
        start: date,
        end: date,
        benchmark: str,
    ) -> dict[str, Any]:
        positions = [
            PositionChange(
                day=lot["acquired_at"],
                symbol=lot["symbol"],
                shares=lot["original_shares"],
                external=lot["source"] in ARRIVED,
            )
            for lot in lots
        ]
        positions += [
            PositionChange(day=sale["sold_at"], symbol=sale["symbol"], shares=-sale["shares"], external=False)
            for sale in sales
        ]
        cash = [
            CashChange(
                day=self.market.to_market_date(m["created_at"].date()),
                amount=m["amount"],
                external=m["kind"] in ("deposit", "withdrawal"),
            )
            for m in movements
        ]
        symbols = sorted({p.symbol for p in positions} | {benchmark})
        closes = self.market.prices.frame(symbols, end=end)
        try:
            history = value_history(positions, cash, closes, start=start, end=end)
            report = performance(history, closes[benchmark].dropna(), benchmark_symbol=benchmark)
        except ValueError as exc:
            raise ServiceError(
                400, "PERFORMANCE_UNAVAILABLE", str(exc), {"start": start, "end": end}
            ) from exc
        return report.as_dict()

    # Changes -------------------------------------------------------------------------------------

    async def create_portfolio(self, m: Mutation, spec: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Idempotent by its natural key (owner, name): creating the same portfolio twice returns it."""
        async with self.changing(m.user_id):
            async with self.pool.connection() as conn, conn.transaction():
                existing = await store.portfolios_of(conn, m.user_id)
                same = next((p for p in existing if p["name"] == spec["name"]), None)
                if same is not None:
                    if same["account_type"] != spec["account_type"]:
                        raise ServiceError(
                            409, "CONFLICT", f"You already have a portfolio named {spec['name']!r}."
                        )
                    return 200, {"id": same["id"]}
                is_default = bool(spec.get("is_default")) or not existing
                if is_default:
                    await store.clear_default(conn, m.user_id)
                row = await store.insert_portfolio(
                    conn,
                    user_id=m.user_id,
                    name=spec["name"],
                    account_type=spec["account_type"],
                    base_currency=spec["base_currency"],
                    is_default=is_default,
                    lot_method=spec["lot_method"],
                    target_allocation=valid_target(spec.get("target_allocation")),
                )
                if row is None:
                    raise ServiceError(
                        409, "CONFLICT", f"You already have a portfolio named {spec['name']!r}."
                    )
                await add_event(
                    conn,
                    topic=TOPIC,
                    event_type="portfolio.created",
                    user_id=m.user_id,
                    aggregate_id=row["id"],
                    payload={"portfolio_id": row["id"], "name": row["name"], "by": m.actor_id},
                )
            return 201, {"id": row["id"]}

    async def update_portfolio(
        self, m: Mutation, portfolio_id: uuid.UUID, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        async with self.changing(m.user_id):
            async with self.pool.connection() as conn, conn.transaction():
                row = await store.portfolio_for_update(conn, m.user_id, portfolio_id)
                if row is None:
                    raise not_found()
                if changes.get("name") and changes["name"] != row["name"]:
                    names = {p["name"] for p in await store.portfolios_of(conn, m.user_id)}
                    if changes["name"] in names:
                        raise ServiceError(
                            409, "CONFLICT", f"You already have a portfolio named {changes['name']!r}."
                        )
                if changes.get("is_default") is False and row["is_default"]:
                    raise ServiceError(400, "VALIDATION_ERROR", "Make another portfolio the default instead.")
                if changes.get("is_default"):
                    await store.clear_default(conn, m.user_id)
                if "target_allocation" in changes:
                    changes = {**changes, "target_allocation": valid_target(changes["target_allocation"])}
                updated = await store.update_portfolio(conn, portfolio_id, changes)
                await add_event(
                    conn,
                    topic=TOPIC,
                    event_type="portfolio.updated",
                    user_id=m.user_id,
                    aggregate_id=portfolio_id,
                    payload={
                        "portfolio_id": portfolio_id,
                        "changed": sorted(changes),
                        "version": updated["version"],
                    },
                )
            await self.drop_snapshot(m.user_id, portfolio_id)
        return await self.snapshot(m.user_id, portfolio_id)

    async def delete_portfolio(self, m: Mutation, portfolio_id: uuid.UUID) -> None:
        async with self.changing(m.user_id):
            async with self.pool.connection() as conn, conn.transaction():
                row = await store.portfolio_for_update(conn, m.user_id, portfolio_id)
                if row is None:
                    raise not_found()
                open_orders = await order_store.open_orders_of_portfolio(conn, portfolio_id)
                if open_orders:
                    raise ServiceError(
                        409,
                        "PORTFOLIO_NOT_EMPTY",
                        "Cancel the open orders before deleting this portfolio.",
                        {"open_orders": [str(o.id) for o in open_orders]},
                    )
                open_lots = [lot for lot in await store.all_lots(conn, portfolio_id) if lot["shares"] > 0]
                if open_lots:
                    raise ServiceError(
                        409,
                        "PORTFOLIO_NOT_EMPTY",
                        "Sell or transfer the holdings before deleting this portfolio.",
                        {"open_lots": len(open_lots)},
                    )
                if row["cash_balance"] != 0:
                    power = await self.power_of(conn, m.user_id, row)
                    raise ServiceError(
                        409,
                        "PORTFOLIO_NOT_EMPTY",
                        f"Withdraw the cash before deleting this portfolio: {money(power.withdrawable)}"
                        f" of {money(power.cash)} can be withdrawn now"
                        + (", the rest once the sales settle." if power.unsettled else "."),
                        jsonable(power.as_dict()),
                    )
                await store.soft_delete_portfolio(conn, portfolio_id)
                if row["is_default"]:
                    remaining = [
                        p for p in await store.portfolios_of(conn, m.user_id) if p["id"] != portfolio_id
                    ]
                    if remaining:
                        await store.update_portfolio(conn, remaining[0]["id"], {"is_default": True})
                await add_event(
                    conn,
                    topic=TOPIC,
                    event_type="portfolio.deleted",
                    user_id=m.user_id,
                    aggregate_id=portfolio_id,
                    payload={"portfolio_id": portfolio_id, "by": m.actor_id},
                )
            await self.drop_snapshot(m.user_id, portfolio_id)

    async def move_cash(
        self, m: Mutation, portfolio_id: uuid.UUID, amount: Decimal, description: str | None
    ) -> tuple[int, Any]:
        """Deposit (amount > 0) or withdraw (amount < 0); never below zero, never twice for one key."""
        return await self.idempotent(
            m, portfolio_id, lambda conn, row: self._cash(conn, m, row, amount, description)
        )

    async def _cash(
        self, conn: store.Conn, m: Mutation, row: dict[str, Any], amount: Decimal, description: str | None
    ) -> tuple[int, Any]:
        """Withdrawals take only what :attr:`BuyingPower.withdrawable` allows: not what open buys
        reserve, not sale proceeds before they settle. The check reads this portfolio's commitments
        under the lock of its row, so no order or fill of the user can slip in between."""
        balance = row["cash_balance"] + amount
        power = await self.power_of(conn, m.user_id, row)
        if amount < 0:
            try:
                power.check_withdrawal(-amount)
            except InsufficientFunds as exc:
                figures = power.as_dict()
                raise ServiceError(
                    400,
                    "INSUFFICIENT_FUNDS",
                    f"The withdrawal of {-amount} is more than the {exc.available} available: of the cash"
                    f" balance of {figures['cash_balance']}, {figures['reserved_cash']} is reserved by open"
                    f" buy orders and {figures['unsettled_cash']} is sale proceeds that have not settled.",
                    {**jsonable(figures), "available": str(exc.available), "requested": str(-amount)},
                ) from exc
        # Nothing of the change reads these back: in a group commit they go with the group's rows.
        async with held_writes.writes_together(conn):
            await store.set_cash(conn, row["id"], balance)
            movement = await store.record_cash_movement(
                conn,
                portfolio_id=row["id"],
                amount=amount,
                kind="deposit" if amount > 0 else "withdrawal",
                idempotency_key=m.idempotency_key,
                description=description,
                balance_after=balance,
            )
            await add_event(
                conn,
                topic=TOPIC,
                event_type="portfolio.cash_moved",
                user_id=m.user_id,
                aggregate_id=row["id"],
                payload={
                    "portfolio_id": row["id"],
                    "movement_id": movement["id"],
                    "amount": amount,
                    "balance": balance,
                },
            )
        return 201, jsonable(
            {
                "portfolio_id": row["id"],
                "movement": movement,
                **replace(power, cash=balance).as_dict(),
            }
        )

    async def import_lot(
        self, m: Mutation, portfolio_id: uuid.UUID, lot: Mapping[str, Any]
    ) -> tuple[int, Any]:
        """A lot the platform did not buy: transferred in from another broker, received as a gift, or
        inherited, with the basis and holding period its kind gives it (Pub 551)."""
        symbol: str = lot["symbol"]
        if not self.market.known(symbol):
            raise ServiceError(404, "UNKNOWN_SYMBOL", f"No security {symbol} is known.", {"symbol": symbol})
        today = self.market.today()
        for name in ("acquired_at", "donor_acquired_at", "alternate_valuation_date"):
            if lot.get(name) is not None and lot[name] > today:
                raise ServiceError(
                    400,
                    "VALIDATION_ERROR",
                    f"{name} {lot[name]} is after today's market date {today}.",
                    [{"field": f"body.{name}", "message": "must not be in the future"}],
                )
        acquired = _acquired(lot)
        return await self.idempotent(
            m, portfolio_id, lambda conn, row: self._lot(conn, m, row, lot, acquired)
        )

    async def _lot(
        self,
        conn: store.Conn,
        m: Mutation,
        row: dict[str, Any],
        lot: Mapping[str, Any],
        acquired: AcquiredLot,
    ) -> tuple[int, Any]:
        if is_purchase(acquired.source):  # a transfer-in: a purchase on its date for the wash-sale rule
            try:
                lot_id = await wash_sales.record_buy(
                    conn,
                    user_id=m.user_id,
                    portfolio=row,
                    symbol=lot["symbol"],
                    shares=lot["shares"],
                    cost=acquired.basis,
                    day=acquired.acquired_at,
                    source=acquired.source,
                    fill_row_id=None,
                )
            except BasisTooSmall as exc:
                raise ServiceError(
                    400, "VALIDATION_ERROR", str(exc), [{"field": "body.cost_basis", "message": str(exc)}]
                ) from exc
            # Only what the person says until a broker sync or an advisor vouches for it: not sellable.
            await lots.mark_pending(conn, lot_id)
        else:
            lot_id = uuid.uuid4()
            await lots.insert_lot(
                conn,
                portfolio_id=row["id"],
                lot=Lot(
                    id=lot_id,
                    symbol=lot["symbol"],
                    shares=lot["shares"],
                    cost_basis=acquired.basis,
                    adjusted_basis=acquired.basis,
                    acquired_at=acquired.acquired_at,
                    holding_period_start=acquired.holding_period_start,
                ),
                original_shares=lot["shares"],
                source=acquired.source,
                opened_by_fill_id=None,
                purchase_lot_id=None,
                loss_basis=acquired.loss_basis,
                always_long=acquired.always_long,
            )
        await store.refresh_holdings(conn, row["id"], lot["symbol"])
        await conn.execute(
            "UPDATE portfolios SET version = version + 1, updated_date = now() WHERE id = %s", (row["id"],)
        )
        # A wash sale may have split the shares: those replacing a loss are lots of their own.
        opened = sorted(
            (
                r
                for r in await store.all_lots(conn, row["id"], lot["symbol"])
                if lot_id in (r["id"], r["purchase_lot_id"])
            ),
            key=lambda r: r["id"] != lot_id,
        )
        await add_event(
            conn,
            topic=TOPIC,
            event_type="portfolio.lot_transferred_in",
            user_id=m.user_id,
            aggregate_id=row["id"],
            payload={
                "portfolio_id": row["id"],
                "lot_id": lot_id,
                "symbol": lot["symbol"],
                "shares": lot["shares"],
                "acquisition": lot.get("acquisition", "transfer"),
            },
        )
        today = self.market.today()
        described = [_lot_row(r, today) for r in opened]
        return 201, jsonable(
            {
                **described[0],
                "portfolio_id": row["id"],
                "acquisition": lot.get("acquisition", "transfer"),
                "lots": described,
            }
        )

    async def idempotent(
        self,
        m: Mutation,
        portfolio_id: uuid.UUID,
        work: Work,
        *,
        also_changed: set[uuid.UUID] | None = None,
        then: Then | None = None,
    ) -> tuple[int, Any]:
        """Claim the key, do ``work`` and store its answer in one transaction (or replay the answer).

        ``work`` adds to ``also_changed`` the user's other portfolios it changed (a wash sale moves
        basis across accounts): their snapshots are dropped with this one, under the user's lock.
        ``then`` runs next in the same transaction, under the book's lock, whether the answer is new
        or replayed: a request that places several orders places them there, each under its own
        derived key (:meth:`claimed`), so the request and its orders commit together.
        """

        async def work_on(conn: store.Conn, rows: Rows) -> tuple[int, Any]:
            return await work(conn, rows[portfolio_id])

        async def then_on(conn: store.Conn, rows: Rows, body: Any) -> None:
            assert then is not None
            await then(conn, rows[portfolio_id], body)

        return await self.idempotent_on_books(
            m,
            [portfolio_id],
            work_on,
            also_changed=also_changed,
            then=then_on if then is not None else None,
        )

    async def idempotent_on_books(
        self,
        m: Mutation,
        portfolio_ids: Sequence[uuid.UUID],
        work: WorkOnBooks,
        *,
        also_changed: set[uuid.UUID] | None = None,
        then: ThenOnBooks | None = None,
    ) -> tuple[int, Any]:
        """:meth:`idempotent` for a change of several of the user's portfolios at once (a rebalance
        of all of them): one key, one transaction, every named portfolio's row locked before
        ``work``. A portfolio that is not the user's, or is gone, refuses the whole change."""
        if not m.idempotency_key:
            raise ServiceError(
                400, "IDEMPOTENCY_KEY_REQUIRED", "This request needs an Idempotency-Key header."
            )

        async def claimed_work(conn: store.Conn) -> tuple[int, Any]:
            claimed, rows = await self._claim_and_lock(conn, m, portfolio_ids)
            if isinstance(claimed, idempotency.Replay):
                if not claimed.same_request:
                    raise key_reused()
                status, body = claimed.status or 200, claimed.body
            else:
                status, body = await work(conn, _found(rows))
                async with held_writes.writes_together(conn):  # in a group: with the group's rows
                    await idempotency.complete(conn, claimed, status=status, body=body)
            if then is not None:
                await then(conn, _found(rows), body)
            return status, body

        touched = set(portfolio_ids)  # and what the change reports it touched, even if it fails
        async with self.changing(m.user_id, touched):
            try:
                status, body = await self.commits.run(claimed_work)
            finally:
                touched.update(also_changed or ())
            for changed in touched:
                await self.drop_snapshot(m.user_id, changed)
            return status, body

    async def _claim_and_lock(
        self, conn: store.Conn, m: Mutation, portfolio_ids: Sequence[uuid.UUID]
    ) -> tuple[uuid.UUID | idempotency.Replay, Rows | None]:
        """Claim ``m``'s key and lock the portfolios' rows, by id in the order given (``None``: one
        of them is not the user's, or is gone); or find the answer the key already has.

        The claim, the household's row and the portfolios' rows are sent together, in that order:
        one round trip, where the claim took one of its own. A household's changes serialize on its
        row, taken before any row of the book, so the spouses' fills never wait on each other's
        rows (docs/tax-households.md). A replay holds the locks too, until its transaction ends."""
        claim_rows, _, rows = await store.rows_together(
            conn,
            idempotency.claim_query(
                user_id=m.user_id,
                key=m.idempotency_key or "",
                method=m.method,
                path=m.path,
                fingerprint=m.fingerprint,
            ),
            households.household_query(m.user_id, lock=True),
            store.portfolios_for_update_query(m.user_id, portfolio_ids),
        )
        claimed = await idempotency.claim_of(
            conn, claim_rows, user_id=m.user_id, key=m.idempotency_key or "", fingerprint=m.fingerprint
        )
        by_id = {row["id"]: row for row in rows}
        if len(by_id) < len(set(portfolio_ids)):
            return claimed, None
        return claimed, {portfolio_id: by_id[portfolio_id] for portfolio_id in portfolio_ids}

    # Cache ---------------------------------------------------------------------------------------

    async def _cache_put(self, user_id: uuid.UUID, portfolio_id: uuid.UUID, snapshot: dict[str, Any]) -> None:
        if self._redis is None:
            return
        self._uncached.discard((user_id, portfolio_id))  # before the SET: a change meanwhile deletes it
        try:
            await self._redis.set(
                snapshot_key(user_id, portfolio_id), json.dumps(snapshot), ex=SNAPSHOT_TTL_S
            )
        except REDIS_DOWN as exc:
            log.warning("snapshot_cache_unavailable", error=str(exc))

    async def drop_snapshot(self, user_id: uuid.UUID, portfolio_id: uuid.UUID) -> None:
        if self._redis is None or (user_id, portfolio_id) in self._uncached:
            return
        try:
            await self._redis.delete(snapshot_key(user_id, portfolio_id))
        except REDIS_DOWN as exc:
            # The change is committed; a stale snapshot would outlive it. Say so loudly: the TTL bounds it.
            log.error("snapshot_cache_invalidation_failed", user_id=str(user_id), error=str(exc))
            return
        if len(self._uncached) >= 4 * self._max_books:
            self._uncached.clear()
        self._uncached.add((user_id, portfolio_id))


def _acquired(lot: Mapping[str, Any]) -> AcquiredLot:
    """The basis and holding period of an imported lot by its kind; a contradiction is a 400."""
    kind = Acquisition(lot.get("acquisition", "transfer"))
    try:
        if kind is Acquisition.GIFT:
            return received_as_gift(
                donor_cost_basis=lot["donor_cost_basis"],
                donor_acquired_at=lot["donor_acquired_at"],
                fair_market_value=lot["fair_market_value"],
                gift_date=lot["acquired_at"],
                gift_tax_paid=lot.get("gift_tax_paid"),
                taxable_gift=lot.get("taxable_gift"),
            )
        if kind is Acquisition.INHERITANCE:
            return inherited(
                fair_market_value=lot["fair_market_value"],
                date_of_death=lot["acquired_at"],
                alternate_valuation_date=lot.get("alternate_valuation_date"),
                alternate_fair_market_value=lot.get("alternate_fair_market_value"),
            )
        return transferred(cost_basis=lot["cost_basis"], acquired_at=lot["acquired_at"])
    except InvalidAcquisition as exc:
        raise ServiceError(
            400, "VALIDATION_ERROR", str(exc), [{"field": f"body.{exc.field}", "message": exc.message}]
        ) from exc


def _lot_row(row: Mapping[str, Any], today: date) -> dict[str, Any]:
    """A stored lot as the import answers it."""
    return {
        "id": row["id"],
        "symbol": row["symbol"],
        "shares": row["shares"],
        "acquired_at": row["acquired_at"],
        "holding_period_start": row["holding_period_start"],
        "cost_basis": row["cost_basis"],
        "adjusted_basis": row["adjusted_basis"],
        "loss_basis": row["loss_basis"],
        "wash_sale_disallowed": row["wash_sale_disallowed"],
        "term": term_of(
            holding_period_start=row["holding_period_start"], always_long=row["always_long"], sold_on=today
        ).value,
        "source": row["source"],
        "transfer_status": row["transfer_status"],
    }


def _basis_if_sold(lot: Lot, kind: Mapping[str, Any], value: Decimal) -> Decimal:
    """The basis a sale at ``value`` would be figured with (a gift's dual basis included)."""
    loss_basis = kind["loss_basis"]
    return basis_for_sale(
        amount_realized=value,
        basis=lot.adjusted_basis,
        loss_basis=None if loss_basis is None else loss_basis + lot.wash_sale_disallowed,
        holding_period_start=lot.holding_period_start,
        acquired_at=lot.acquired_at,
    ).basis
