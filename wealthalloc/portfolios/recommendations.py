"""Recommendations kept in ``ai_recommendations``: generated per portfolio, accepted through the trading
path, dismissed with a reason.

The rules are the domain's (:mod:`wealthalloc.domain.recommendations`); this
module gives them a portfolio as the owning shard values it, the bundled
history up to that day and the owner's risk tolerance, and keeps what they
find.

Generating (an API replica, on a read or an explicit request)
    A *run* of a portfolio writes its recommendations and one
    ``recommendations.generated`` event per change in one transaction. The
    open recommendation of the same kind and symbol is updated in place, so
    its id (what a client accepts) stays while it still applies; one the run
    no longer finds is ``expired``; one of a kind and symbol the user accepted
    or dismissed in the last ``recommendations_snooze_days`` is not offered
    again (a dismissal would mean nothing if the next read brought it back).
    A run remembers the fingerprint of what it saw (the book, the day, the
    risk tolerance, the recommender's version and limits); listing runs again
    only when that changed or the run is older than
    ``recommendations_max_age_seconds``.

Accepting (the shard that owns the user)
    Under the request's Idempotency-Key, in one transaction with the portfolio
    row locked: the recommendation must still be open (else 409) and sized on
    the book as it is now (else 409 ``RECOMMENDATION_STALE``: its orders would
    not do what the user was shown); it becomes ``accepted`` with the derived
    keys ``{key}/0``, ``{key}/1`` ... of its orders, and its event is written.
    The orders are then placed through :meth:`OrderDesk.place` under those
    keys, origin ``recommendation``, sells first, with every pre-trade check an
    order from the API gets. The keys identify the orders uniquely, so the
    accepted row names its orders from the moment it is accepted, a repeat of
    the request finds the same orders, and a retry after a crash between the
    two steps places exactly the ones missing. An order the desk refuses is
    reported, as a rebalance reports it.

Dismissing (an API replica)
    The row lock, ``open`` or 409, the reason recorded, the event written;
    nothing else changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from wealthalloc.config import Settings
from wealthalloc.domain.quote_freshness import PlannedOrder
from wealthalloc.domain.recommendations import (
    RECOMMENDER_VERSION,
    AnomalyFlag,
    Holding,
    Listing,
    PortfolioState,
    Recommendation,
    Recommender,
    RecommenderSettings,
    RiskTolerance,
    book_fingerprint,
)
from wealthalloc.errors import ServiceError
from wealthalloc.logging import get_logger
from wealthalloc.marketdata import INDEX_SYMBOL, MarketDataError, PriceHistory, SecurityReference
from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.portfolios.service import BookService, Mutation, jsonable, not_found
from wealthalloc.storage import books as store
from wealthalloc.storage import recommendations as rec_store
from wealthalloc.storage.outbox import add_event
from wealthalloc.storage.postgres import AsyncPool
from wealthalloc.trading.desk import OrderDesk, Part, market_order
from wealthalloc.trading.rules import CommissionModel

log = get_logger(__name__)

TOPIC = "recommendations.generated"
EVENT = "recommendations.generated"
TRADABLE = ("equity", "etf")


# The engine: a portfolio and the history into recommendations ----------------------------------------


@dataclass
class RecommendationEngine:
    """What a run needs besides the portfolio: the history, the reference table and the limits.

    One per process (an API replica): the closes and listings of a market day
    are read once and kept, because they do not change within the day.

    Parameters
    ----------
    prices : PriceHistory
    securities : SecurityReference
    settings : RecommenderSettings
    lookback_days : int
        Trading days of returns the recommender measures on.
    """

    prices: PriceHistory
    securities: SecurityReference
    settings: RecommenderSettings
    lookback_days: int
    _days: dict[date, tuple[pd.DataFrame, dict[str, Listing]]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, prices: PriceHistory, securities: SecurityReference
    ) -> RecommendationEngine:
        commission = CommissionModel(
            per_share=settings.paper_commission_per_share,
            minimum=settings.paper_commission_minimum,
            max_fraction=settings.paper_commission_max_pct,
        )
        return cls(
            prices=prices,
            securities=securities,
            settings=RecommenderSettings(
                max_position_weight=settings.recommendations_max_position_weight,
                max_hhi=settings.recommendations_max_hhi,
                min_confidence=settings.recommendations_min_confidence,
                collar=settings.order_price_collar,
                commission=commission,
            ),
            lookback_days=settings.recommendations_lookback_days,
        )

    def market(self, day: date, held: Sequence[str]) -> tuple[pd.DataFrame, dict[str, Listing]]:
        """Closes of the universe (and of ``held``) up to ``day``, and what can be bought at its close."""
        with self._lock:
            cached = self._days.get(day)
        if cached is None:
            universe = [
                s.symbol for s in self.securities if s.asset_class in TRADABLE and s.symbol in self.prices
            ]
            listings: dict[str, Listing] = {}
            for symbol in universe:
                info = self.securities.get(symbol)
                try:
                    close = self.prices.close_on(symbol, day)
                except MarketDataError:
                    continue
                if info is not None and close > 0:
                    listings[symbol] = Listing(symbol, close, info.sector, info.asset_class)
            columns = [*listings, *([INDEX_SYMBOL] if INDEX_SYMBOL in self.prices else [])]
            closes = self.prices.frame(columns, end=day).tail(self.lookback_days + 1)
            cached = (closes, listings)
            with self._lock:
                self._days = {day: cached}  # only today's is asked for again
        closes, listings = cached
        extra = [s for s in held if s not in closes.columns and s in self.prices]
        if extra:
            more = self.prices.frame(extra, end=day).reindex(closes.index)
            closes = pd.concat([closes, more], axis=1)
        return closes, listings

    def recommend(
        self, state: PortfolioState, tolerance: RiskTolerance, anomalies: Mapping[str, AnomalyFlag] | None
    ) -> list[Recommendation]:
        """The portfolio's recommendations (CPU only: call it off the event loop)."""
        closes, listings = self.market(state.as_of, [h.symbol for h in state.holdings])
        index = INDEX_SYMBOL if INDEX_SYMBOL in closes.columns else None
        return Recommender(self.settings).recommend(
            state, closes, listings, risk_tolerance=tolerance, index_symbol=index, anomalies=anomalies
        )

    def fingerprint(self, book: str, tolerance: str) -> str:
        """What a run depends on besides the history of its day: the book, the tolerance, the rules."""
        text = f"{book}|{tolerance}|{RECOMMENDER_VERSION}|{self.settings!r}|{self.lookback_days}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def portfolio_state(snapshot: Mapping[str, Any]) -> PortfolioState:
    """The domain's view of a portfolio snapshot as the shard answers it (decimal strings)."""
    holdings = tuple(
        Holding(
            symbol=str(h["symbol"]),
            shares=Decimal(str(h["shares"])),
            price=Decimal(str(h["current_price"])),
            sector=str(h.get("sector") or "Unclassified"),
            asset_class=str(h.get("asset_class") or "unknown"),
        )
        for h in snapshot["holdings"]
        if Decimal(str(h["shares"])) > 0 and h.get("current_price") is not None
    )
    # Sized on what a buy may spend: cash open buys reserve is not there for a recommendation's orders.
    spendable = snapshot.get("buying_power", snapshot["cash_balance"])
    return PortfolioState(
        as_of=date.fromisoformat(str(snapshot["as_of"])),
        cash=Decimal(str(spendable)),
        holdings=holdings,
    )


def snapshot_fingerprint(snapshot: Mapping[str, Any]) -> str:
    """:func:`book_fingerprint` of a snapshot: the same digest accepting computes from the lots."""
    shares: dict[str, Decimal] = {}
    for h in snapshot["holdings"]:
        shares[str(h["symbol"])] = shares.get(str(h["symbol"]), Decimal(0)) + Decimal(str(h["shares"]))
    return book_fingerprint(
        date.fromisoformat(str(snapshot["as_of"])), Decimal(str(snapshot["cash_balance"])), shares
    )


# Runs -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """What a run did: recommendations new, refreshed (figures changed), expired, left as they were."""

    ran: bool
    new: int = 0
    refreshed: int = 0
    expired: int = 0
    unchanged: int = 0
    snoozed: int = 0


async def needs_run(
    pool: AsyncPool,
    engine: RecommendationEngine,
    owner: uuid.UUID,
    snapshot: Mapping[str, Any],
    max_age_s: int,
) -> bool:
    """Whether the last run saw another book, tolerance or rules, or is older than ``max_age_s``."""
    async with pool.connection() as conn:
        tolerance = await rec_store.risk_tolerance(conn, owner)
        run = await rec_store.run_of(conn, uuid.UUID(str(snapshot["id"])))
    if tolerance is None:
        raise not_found("user")
    return not _fresh(run, engine.fingerprint(snapshot_fingerprint(snapshot), tolerance), max_age_s)


def _fresh(run: Mapping[str, Any] | None, fingerprint: str, max_age_s: int) -> bool:
    if run is None or run["generated_at"] is None or run["fingerprint"] != fingerprint:
        return False
    return bool(run["generated_at"] > datetime.now(UTC) - timedelta(seconds=max_age_s))


async def run_portfolio(
    pool: AsyncPool,
    engine: RecommendationEngine,
    *,
    owner: uuid.UUID,
    snapshot: Mapping[str, Any],
    anomalies: Mapping[str, AnomalyFlag] | None,
    max_age_s: int,
    snooze_days: int,
    force: bool = False,
) -> RunResult:
    """Generate the portfolio's recommendations and keep them, with their events, in one transaction.

    Without ``force`` nothing is written when another run with the same fingerprint finished less
    than ``max_age_s`` ago (two replicas listing at once compute twice and write once).
    """
    portfolio_id = uuid.UUID(str(snapshot["id"]))
    async with pool.connection() as conn:
        tolerance = await rec_store.risk_tolerance(conn, owner)
    if tolerance is None:
        raise not_found("user")
    state = portfolio_state(snapshot)
    book = snapshot_fingerprint(snapshot)
    fingerprint = engine.fingerprint(book, tolerance)
    found = await asyncio.to_thread(engine.recommend, state, tolerance, anomalies)  # type: ignore[arg-type]
    basis = {"book_fingerprint": book, "as_of": state.as_of, "risk_tolerance": tolerance}
    async with pool.connection() as conn, conn.transaction():
        run = await rec_store.lock_run(conn, portfolio_id, owner)
        if not force and _fresh(run, fingerprint, max_age_s):
            return RunResult(ran=False)
        existing = {
            (r["kind"], r["symbol"] or ""): r
            for r in await rec_store.open_of_portfolio(conn, portfolio_id, for_update=True)
        }
        since = datetime.now(UTC) - timedelta(days=snooze_days)
        snoozed = await rec_store.recently_resolved(conn, portfolio_id, since) if snooze_days else set()
        counts = {"new": 0, "refreshed": 0, "unchanged": 0, "snoozed": 0}
        for rec in found:
            if rec.key in snoozed:
                counts["snoozed"] += 1
                continue
            values = _values(rec, state.as_of, basis, anomaly_checked=anomalies is not None)
            known = existing.pop(rec.key, None)
            if known is None:
                row = await rec_store.insert(conn, user_id=owner, portfolio_id=portfolio_id, values=values)
                counts["new"] += 1
            elif _same(known, values):
                counts["unchanged"] += 1
                continue
            else:
                row = await rec_store.refresh(conn, known["id"], values)
                counts["refreshed"] += 1
            await _event(conn, row, owner)
        expired = await rec_store.expire(conn, [row["id"] for row in existing.values()])
        for row in expired:
            await _event(conn, row, owner, reason=f"no longer called for on {state.as_of.isoformat()}")
        await rec_store.finish_run(
            conn,
            portfolio_id,
            fingerprint=fingerprint,
            as_of=state.as_of,
            recommendations=len(found) - counts["snoozed"],
            anomaly_checked=anomalies is not None,
        )
    return RunResult(ran=True, expired=len(expired), **counts)


def _values(
    rec: Recommendation, as_of: date, basis: Mapping[str, Any], *, anomaly_checked: bool
) -> dict[str, Any]:
    flags = rec.evidence.get("anomaly_check", {}).get("model_versions") or []
    version = (
        RECOMMENDER_VERSION + "".join(f"+anomaly:{v}" for v in flags)
        if anomaly_checked
        else RECOMMENDER_VERSION
    )
    body = rec.as_dict()
    return {
        "kind": rec.kind,
        "symbol": rec.symbol,
        "rationale": rec.rationale,
        "confidence": rec.confidence,
        "model_version": version,
        "as_of": as_of,
        "details": jsonable({"evidence": body["evidence"], "orders": body["orders"], "basis": dict(basis)}),
    }


def _same(row: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    return bool(
        row["rationale"] == values["rationale"]
        and row["confidence"] == values["confidence"]
        and row["model_version"] == values["model_version"]
        and row["as_of"] == values["as_of"]
        and row["details"] == values["details"]
    )


async def _event(
    conn: store.Conn,
    row: Mapping[str, Any],
    user_id: uuid.UUID,
    *,
    reason: str | None = None,
    by: uuid.UUID | None = None,
) -> None:
    payload: dict[str, Any] = {
        "recommendation_id": row["id"],
        "portfolio_id": row["portfolio_id"],
        "kind": row["kind"],
        "symbol": row["symbol"],
        "confidence": row["confidence"],
        "model_version": row["model_version"],
        "status": row["status"],
        "as_of": row["as_of"],
    }
    if row["status"] == "open":
        payload["rationale"] = row["rationale"]
    if reason is not None:
        payload["reason"] = reason
    if row["order_keys"]:
        payload["order_keys"] = list(row["order_keys"])
    if by is not None:
        payload["by"] = by
    await add_event(
        conn, topic=TOPIC, event_type=EVENT, user_id=user_id, aggregate_id=row["id"], payload=payload
    )


# Dismissing -----------------------------------------------------------------------------------------


async def dismiss(
    pool: AsyncPool, *, recommendation_id: uuid.UUID, owner: uuid.UUID, actor: uuid.UUID, reason: str
) -> dict[str, Any]:
    """Record why the user does not want it; nothing else changes. Not open: 409."""
    async with pool.connection() as conn, conn.transaction():
        row = await rec_store.recommendation(conn, recommendation_id, for_update=True)
        if row is None or row["user_id"] != owner:
            raise not_found("recommendation")
        _require_open(row)
        row = await rec_store.mark_dismissed(conn, recommendation_id, by=actor, reason=reason)
        await _event(conn, row, owner, reason=reason, by=actor)
        orders = await rec_store.orders_by_key(conn, owner, row["order_keys"])
    ops_metrics.recommendation_decided("dismissed")
    return describe(row, orders)


def _require_open(row: Mapping[str, Any]) -> None:
    if row["status"] != "open":
        raise ServiceError(
            409,
            "RECOMMENDATION_NOT_OPEN",
            f"This recommendation is {row['status']}; only an open one can be accepted or dismissed.",
            {"status": row["status"]},
        )


# Accepting (in the shard) ---------------------------------------------------------------------------


class RecommendationDesk:
    """Accepts recommendations through the order desk of the shard that owns the user.

    Parameters
    ----------
    book : BookService
        The shard's books (locks, the idempotency path, the market clock).
    desk : OrderDesk
        Places the orders, with every pre-trade check an order from the API gets.
    """

    def __init__(self, book: BookService, desk: OrderDesk) -> None:
        self._book = book
        self._desk = desk

    async def accept(self, m: Mutation, recommendation_id: uuid.UUID) -> tuple[int, dict[str, Any]]:
        """Place the recommendation's orders once per Idempotency-Key; the answer is the accepted row."""
        async with self._book.pool.connection() as conn:
            row = await rec_store.recommendation(conn, recommendation_id)
        if row is None or row["user_id"] != m.user_id:
            raise not_found("recommendation")
        portfolio_id = row["portfolio_id"]
        if portfolio_id is None or not (row["details"] or {}).get("orders"):
            raise ServiceError(
                409, "RECOMMENDATION_NOT_ACTIONABLE", "This recommendation has no orders to place."
            )

        claims: list[bool] = []  # stays empty when the key's earlier answer is replayed
        planned_orders = [PlannedOrder(o["symbol"]) for o in row["details"]["orders"]]
        seen = await self._desk.plan_quotes(o.symbol for o in planned_orders)

        async def work(conn: store.Conn, portfolio: dict[str, Any]) -> tuple[int, Any]:
            claims.append(True)
            claimed = await self._claim(conn, m, portfolio, recommendation_id)
            # A stale quote refuses the acceptance; the rollback leaves the recommendation open.
            self._desk.refuse_stale_plan(planned_orders, seen)
            return 201, claimed

        def parts(claimed: Any) -> list[Part]:
            return [
                Part(o["key"], market_order(o["symbol"], o["side"], o["quantity"])) for o in claimed["orders"]
            ]

        status, claimed, outcomes = await self._desk.place_many(
            m, portfolio_id, work, parts, "recommendation"
        )
        if claims:
            ops_metrics.recommendation_decided("accepted")
        placed = [o.order for o in outcomes if o.order is not None]
        refused = [
            {
                "symbol": o.part.spec["symbol"],
                "side": o.part.spec["side"],
                "key": o.part.key,
                "error": o.error.as_dict(),
            }
            for o in outcomes
            if o.error is not None
        ]
        async with self._book.pool.connection() as conn:
            current = await rec_store.recommendation(conn, recommendation_id)
            assert current is not None
            orders = await rec_store.orders_by_key(conn, m.user_id, current["order_keys"])
        return status, {**describe(current, orders), "placed": placed, "refused": refused}

    async def _claim(
        self, conn: store.Conn, m: Mutation, portfolio: dict[str, Any], recommendation_id: uuid.UUID
    ) -> dict[str, Any]:
        """Check it is open and sized on this book, mark it accepted with its order keys, write the event."""
        row = await rec_store.recommendation(conn, recommendation_id, for_update=True)
        if row is None or row["user_id"] != m.user_id or row["portfolio_id"] != portfolio["id"]:
            raise not_found("recommendation")
        _require_open(row)
        details = row["details"] or {}
        today = self._book.market.today()
        lots = [
            r
            for r in await store.all_lots(conn, portfolio["id"])
            if r["closed_at"] is None and r["shares"] > 0
        ]
        shares: dict[str, Decimal] = {}
        for lot in lots:
            shares[lot["symbol"]] = shares.get(lot["symbol"], Decimal(0)) + lot["shares"]
        now = book_fingerprint(today, portfolio["cash_balance"], shares)
        basis = details.get("basis") or {}
        if basis.get("book_fingerprint") != now:
            raise ServiceError(
                409,
                "RECOMMENDATION_STALE",
                "The portfolio or the market day changed since this recommendation was sized: its orders"
                " would not do what it says. GET /api/v1/recommendations makes fresh ones.",
                {"as_of": basis.get("as_of"), "today": today.isoformat()},
            )
        key = m.idempotency_key or ""
        orders = [{**order, "key": f"{key}/{i}"} for i, order in enumerate(details["orders"])]
        accepted = await rec_store.mark_accepted(
            conn, recommendation_id, by=m.actor_id, accept_key=key, order_keys=[o["key"] for o in orders]
        )
        await _event(conn, accepted, m.user_id, by=m.actor_id)
        return jsonable({"recommendation_id": recommendation_id, "orders": orders})  # type: ignore[no-any-return]


# Reading --------------------------------------------------------------------------------------------


def describe(row: Mapping[str, Any], orders: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A recommendation as the API shows it: what, why, how sure, the orders, and what became of it.

    ``orders`` are those placed under the row's order keys (:func:`rec_store.orders_by_key`); an
    accepted recommendation lists each planned order with the order placed for it, or ``null`` where
    the desk refused it (a repeat of the accepting request tries it again).
    """
    details: dict[str, Any] = dict(row["details"] or {})
    planned: list[dict[str, Any]] = list(details.get("orders", []))
    keys: list[str] = list(row["order_keys"] or [])
    proposed = []
    for i, order in enumerate(planned):
        item = dict(order)
        if i < len(keys):
            placed = orders.get(keys[i])
            item["idempotency_key"] = keys[i]
            item["order"] = None if placed is None else _order_summary(placed)
        proposed.append(item)
    out: dict[str, Any] = {
        "id": row["id"],
        "portfolio_id": row["portfolio_id"],
        "kind": row["kind"],
        "symbol": row["symbol"],
        "rationale": row["rationale"],
        "confidence": row["confidence"],
        "status": row["status"],
        "model_version": row["model_version"],
        "as_of": row["as_of"],
        "evidence": details.get("evidence", {}),
        "orders": proposed,
        "created_date": row["created_date"],
        "updated_date": row["updated_date"],
        "resolved_at": row["resolved_at"],
        "dismiss_reason": row["dismiss_reason"],
        "links": {"self": f"/api/v1/recommendations/{row['id']}"},
    }
    if row["status"] == "open":
        out["links"]["accept"] = f"/api/v1/recommendations/{row['id']}/accept"
        out["links"]["dismiss"] = f"/api/v1/recommendations/{row['id']}/dismiss"
    return jsonable(out)  # type: ignore[no-any-return]


def _order_summary(order: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": order["id"],
        "status": order["status"],
        "quantity": order["quantity"],
        "filled_quantity": order["filled_quantity"],
        "average_fill_price": order["average_fill_price"],
        "origin": order["origin"],
        "links": {"self": f"/api/v1/trades/{order['id']}"},
    }


async def described(
    pool: AsyncPool, owner: uuid.UUID, rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Rows as :func:`describe` shows them, with their orders read in one query."""
    keys = [key for row in rows for key in (row["order_keys"] or [])]
    async with pool.connection() as conn:
        orders = await rec_store.orders_by_key(conn, owner, keys)
    return [describe(row, orders) for row in rows]
