"""A taxpayer's harvesting opportunities, read from PostgreSQL and kept in ``tax_harvests`` with stable ids.

The rules are the domain's (:class:`~wealthalloc.domain.harvest.HarvestScanner`
picks the lots and estimates the saving, :class:`~wealthalloc.domain.similarity.SimilarityEngine`
proposes replacements); this module gives them the taxpayer as stored: open
lots of every portfolio (with how each was acquired: a gift's loss basis, an inheritance's
long term, whether it was a purchase), open buy orders, the tax profile of the ``users`` row,
the gains realized so far this year and the carryforward from the years before, started from
the carryover the taxpayer entered for the years before the platform (``tax_years``).

The saving is figured on the return the taxpayer files. In a joint-filing household that is the
joint return, as the tax documents figure it (:mod:`wealthalloc.tax.documents`): both spouses'
gains realized this year, the carryover each entered added up and carried through both
spouses' earlier years on the platform, and the ``married_joint`` limit of 3,000.

An opportunity is a ``tax_harvests`` row with status ``identified``. A refresh
(the daily scan, or the user reading ``GET /tax-harvesting``) updates the row of
a position in place, so its id stays the same for as long as the position
remains an opportunity, and ``execute`` can name it; a position that stopped
being one is ``expired``. A ``tax_harvests.identified`` event is written with
the row when a position is first identified, in the same transaction.

Blockers are what the engine itself would count as replacement shares: lots of
an identical security bought in the last 30 days and still held, in any account
(a transfer-in counts on the purchase date it was recorded with; a gift or an
inheritance received is no purchase), open buy orders, and portfolios that
reinvest its dividends (``dividend_reinvestment``, set with PATCH /portfolios/{id}). In a joint-filing
household the spouse's purchases, open buy orders and reinvesting portfolios
block too (their lots are never the taxpayer's to harvest): see docs/tax-households.md.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from wealthalloc.domain.acquisitions import is_purchase
from wealthalloc.domain.gains_report import CapitalLossCarryforward, FilingStatus, year_totals_with_entered
from wealthalloc.domain.harvest import (
    DividendReinvestment,
    HarvestActivity,
    HarvestScanner,
    LotOrigin,
    OpenBuyOrder,
    Opportunity,
    TaxProfile,
)
from wealthalloc.domain.lots import Term
from wealthalloc.domain.similarity import SimilarityEngine
from wealthalloc.domain.wash_sale import (
    WASH_SALE_DAYS,
    AccountLot,
    AccountType,
    IdentityGroups,
    RealizedLot,
    Side,
    Transaction,
)
from wealthalloc.marketdata import MarketDataError, PriceHistory, SecurityReference
from wealthalloc.storage import books as store
from wealthalloc.storage import households
from wealthalloc.storage import tax as tax_store
from wealthalloc.storage import tax_years as tax_years_store
from wealthalloc.storage.outbox import add_event
from wealthalloc.storage.postgres import AsyncPool

TOPIC = "tax_harvests.identified"
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Taxpayer:
    """Everything about one user that decides what harvesting is worth and what would spoil it."""

    user_id: uuid.UUID
    account_types: Mapping[str, AccountType]
    lots: tuple[AccountLot, ...]
    activity: HarvestActivity
    profile: TaxProfile
    groups: IdentityGroups
    origins: Mapping[uuid.UUID, LotOrigin] = field(default_factory=dict)


def realized_lot(row: Mapping[str, Any]) -> RealizedLot:
    """The engine's realized lot of a ``realized_lots`` row (as :func:`tax_store.realized_rows` reads it).

    The stored basis is the adjusted basis; what was paid before wash-sale losses carried in is not
    stored apart, so ``unadjusted_cost`` is the same figure (no report reads it).
    """
    return RealizedLot(
        symbol=row["symbol"],
        account_id=str(row["portfolio_id"]),
        account_type=AccountType(row["account_type"]),
        lot_id=row["lot_id"],
        shares=row["shares"],
        acquired_at=row["lot_acquired_at"],
        holding_period_start=row["acquired_at"],
        sold=row["sold_at"],
        proceeds=row["proceeds"],
        cost_basis=row["cost_basis"],
        unadjusted_cost=row["cost_basis"],
        adjustment=row["wash_sale_disallowed"],
        permanently_disallowed=row["permanently_disallowed"],
        term=Term(row["term"]),
        sale_ref=str(row["id"]),
    )


async def load_taxpayer(conn: store.Conn, user_id: uuid.UUID, day: date) -> Taxpayer | None:
    """The user as the scanner sees them on ``day``; ``None`` for a user that does not exist."""
    profile_row = await tax_store.tax_profile(conn, user_id)
    if profile_row is None:
        return None
    portfolios = await tax_store.portfolios(conn, user_id)
    account_types = {str(p["id"]): AccountType(p["account_type"]) for p in portfolios}
    lot_rows = await tax_store.open_lots(conn, [user_id])
    lots = tuple(
        AccountLot(
            account_id=str(row["portfolio_id"]),
            account_type=AccountType(row["account_type"]),
            lot=store.lot_from_row(row),
            original_shares=row["original_shares"],
            is_replacement=row["is_replacement"],
            opened_by_ref=str(row["id"]),
        )
        for row in lot_rows
    )
    household = await households.wash_sale_circle(conn, user_id, lock=False)
    spouses = [member for member in household if member != user_id]
    spouse_portfolios = [p for spouse in spouses for p in await tax_store.portfolios(conn, spouse)]
    orders = tuple(
        OpenBuyOrder(
            account_id=str(row["portfolio_id"]),
            symbol=row["symbol"],
            quantity=row["remaining"],
            order_id=str(row["id"]),
        )
        for row in await tax_store.open_buy_orders(conn, household)
    )
    profile = await return_profile(conn, profile_row, household, day)
    return Taxpayer(
        user_id=user_id,
        account_types=account_types,
        lots=lots,
        activity=HarvestActivity(
            recent_buys=await spouse_purchases(conn, spouses, day),
            open_buy_orders=orders,
            dividend_reinvestment=tuple(
                DividendReinvestment(account_id=str(p["id"]), symbol=symbol)
                for p in [*portfolios, *spouse_portfolios]
                for symbol in p["dividend_reinvestment"]
            ),
        ),
        profile=profile,
        groups=await tax_store.identity_groups(conn),
        origins={row["id"]: lot_origin(row) for row in lot_rows},
    )


def lot_origin(row: Mapping[str, Any]) -> LotOrigin:
    """How a stored lot (a ``lots`` row) was acquired, as the scanner weighs it."""
    return LotOrigin(
        purchase=is_purchase(row["source"]), loss_basis=row["loss_basis"], always_long=row["always_long"]
    )


async def return_profile(
    conn: store.Conn, profile_row: Mapping[str, Any], filers: Sequence[uuid.UUID], day: date
) -> TaxProfile:
    """The taxpayer's profile on the return they file on ``day``'s year: theirs, or the joint return.

    ``filers`` is the user alone or both spouses of their household
    (:func:`~wealthalloc.storage.households.wash_sale_circle`). A joint return has one
    ``married_joint`` limit, the gains both spouses realized this year and one carryover: what each
    entered, added up, carried through both spouses' years on the platform, as the joint Schedule D
    figures it. The rates are the user's own (one return has one bracket).
    """
    # documents imports this module (realized_lot), so its helper is imported where it is used.
    from wealthalloc.tax.documents import joint_carryovers

    joint = len(filers) > 1
    filing_status = FilingStatus.MARRIED_JOINT if joint else FilingStatus(profile_row["filing_status"])
    rows = [row for filer in filers for row in await tax_store.realized_rows(conn, filer, through=day)]
    rows.sort(key=lambda row: row["sold_at"])  # each filer's rows are in sale order: keep that order
    realized = [realized_lot(row) for row in rows if row["account_type"] == AccountType.TAXABLE.value]
    this_year = [item for item in realized if item.sold.year == day.year]
    carried = carryforward_into(
        realized,
        year=day.year,
        filing_status=filing_status,
        entered=joint_carryovers([await tax_years_store.carryforwards(conn, filer) for filer in filers]),
    )
    return TaxProfile(
        short_rate=profile_row["short_term_rate"],
        long_rate=profile_row["long_term_rate"],
        filing_status=filing_status,
        realized_short=sum((r.gain_loss for r in this_year if r.term is Term.SHORT), _ZERO),
        realized_long=sum((r.gain_loss for r in this_year if r.term is Term.LONG), _ZERO),
        carryforward=carried,
    )


async def spouse_purchases(
    conn: store.Conn, spouses: Sequence[uuid.UUID], day: date
) -> tuple[Transaction, ...]:
    """The lots the taxpayer's spouse (the other member of their joint-filing household) bought in the
    30 days to ``day`` and still holds, as buys: each would make selling the same security at a
    loss a wash sale. The spouse's lots are not the taxpayer's to harvest, so they come as
    purchases, never as positions."""
    if not spouses:
        return ()
    since = day - timedelta(days=WASH_SALE_DAYS)
    return tuple(
        Transaction(
            date=row["acquired_at"],
            account_id=str(row["portfolio_id"]),
            account_type=AccountType(row["account_type"]),
            symbol=row["symbol"],
            side=Side.BUY,
            quantity=row["shares"],
            price=row["cost_basis"] / row["shares"],
            ref=str(row["id"]),
        )
        for row in await tax_store.open_lots(conn, spouses, since=since)
        if is_purchase(row["source"]) and row["acquired_at"] <= day
    )


def carryforward_into(
    realized: Sequence[RealizedLot],
    *,
    year: int,
    filing_status: FilingStatus,
    entered: Mapping[int, CapitalLossCarryforward] | None = None,
) -> CapitalLossCarryforward:
    """Capital losses carried into ``year``: from the years on this platform, started from what was entered.

    The carryover the taxpayer entered (``PUT /me/tax-years/{year}``) starts
    the Schedule D chain where the platform has no earlier sale to compute it
    from (:func:`~wealthalloc.domain.gains_report.opening_carryforward`); the
    realized-gains report uses the same rule, so the two agree.
    """
    return year_totals_with_entered(
        realized, year=year, filing_status=filing_status, entered=entered
    ).prior_carryforward


@dataclass
class HarvestPlanner:
    """What scanning needs besides the taxpayer: prices, replacement candidates and the thresholds.

    One per process (an API replica, a scan task, a shard): the similarity
    engine of a day is computed once from the bundled history up to that day
    (no look-ahead) and kept, because correlations do not change within a day.

    Parameters
    ----------
    prices : PriceHistory
        Closes for valuing lots and for the correlations.
    securities : SecurityReference
        Sectors, and which symbols are tradable (an index is no replacement).
    min_loss, min_loss_pct : Decimal
        ``Settings.harvest_min_loss`` and ``Settings.harvest_min_loss_pct``.
    max_replacements : int
        Replacement candidates offered per opportunity.
    """

    prices: PriceHistory
    securities: SecurityReference
    min_loss: Decimal
    min_loss_pct: Decimal
    max_replacements: int = 3
    _engines: dict[date, SimilarityEngine] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def similarity(self, day: date) -> SimilarityEngine:
        """The similarity engine on the history up to ``day``, built once per day."""
        with self._lock:
            engine = self._engines.get(day)
            if engine is None:
                tradable = [s.symbol for s in self.securities if s.asset_class != "index"]
                universe = [symbol for symbol in tradable if symbol in self.prices]
                closes = self.prices.frame(universe, end=day)
                sectors = {s.symbol: s.sector for s in self.securities}
                engine = SimilarityEngine(closes, sectors, universe=universe)
                self._engines = {day: engine}  # only today's is ever asked for again
            return engine

    def opportunities(self, taxpayer: Taxpayer, day: date, *, replacements: bool = True) -> list[Opportunity]:
        """The taxpayer's opportunities on ``day``, largest saving first (CPU only: no I/O)."""
        scanner = HarvestScanner(
            min_loss=self.min_loss,
            min_loss_pct=self.min_loss_pct,
            groups=taxpayer.groups,
            similarity=self.similarity(day) if replacements else None,
            max_replacements=self.max_replacements,
        )
        closes: dict[str, Decimal] = {}
        for symbol in {item.lot.symbol for item in taxpayer.lots}:
            try:
                closes[symbol] = self.prices.close_on(symbol, day)
            except MarketDataError:
                continue  # no price: the position cannot be valued, so it is not offered
        return scanner.scan(
            taxpayer.lots,
            prices=closes,
            today=day,
            profile=taxpayer.profile,
            activity=taxpayer.activity,
            origins=taxpayer.origins,
        )


def harvest_values(opportunity: Opportunity, day: date) -> dict[str, Any]:
    """The ``tax_harvests`` columns of an opportunity; ``details`` holds what the user is shown."""
    details = {
        "as_of": day,
        "price": opportunity.price,
        "shares": opportunity.shares,
        "cost_basis": opportunity.cost_basis,
        "market_value": opportunity.market_value,
        "loss_pct": opportunity.loss_pct,
        "short_loss": opportunity.short_loss,
        "long_loss": opportunity.long_loss,
        "wash_sale_window_end": opportunity.wash_sale_window_end,
        "lots": [
            {
                "lot_id": item.lot.lot.id,
                "shares": item.shares,
                "acquired_at": item.lot.lot.acquired_at,
                "holding_period_start": item.lot.lot.holding_period_start,
                "cost_basis": item.lot.lot.cost_basis,
                "adjusted_basis": item.lot.lot.adjusted_basis,
                "loss_basis": item.origin.loss_basis,
                "basis_of_loss": item.cost_basis,
                "market_value": item.market_value,
                "loss": item.loss,
                "term": item.term.value,
            }
            for item in opportunity.lots
        ],
        "blockers": [
            {
                "kind": blocker.kind.value,
                "portfolio_id": blocker.account_id,
                "symbol": blocker.symbol,
                "on": blocker.on,
                "quantity": blocker.quantity,
                "detail": blocker.detail,
            }
            for blocker in opportunity.blockers
        ],
        "replacements": [
            {
                "symbol": candidate.symbol,
                "similarity": candidate.similarity,
                "correlation": candidate.correlation,
                "same_sector": candidate.same_sector,
                "sector": candidate.sector,
                "overlap_days": candidate.overlap,
            }
            for candidate in opportunity.replacements
        ],
    }
    return {
        "portfolio_id": uuid.UUID(opportunity.account_id),
        "symbol": opportunity.symbol,
        "lot_ids": opportunity.lot_ids,
        "loss_amount": opportunity.loss,
        "term": opportunity.term,
        "estimated_tax_savings": opportunity.estimated_tax_savings,
        "replacement_symbol": opportunity.replacements[0].symbol if opportunity.replacements else None,
        "identified_on": day,
        "details": details,
    }


@dataclass(frozen=True)
class Refresh:
    """What a refresh did: the open opportunities after it, and how many were new or expired."""

    opportunities: list[dict[str, Any]]
    new: int
    expired: int


async def refresh_opportunities(
    conn: store.Conn, user_id: uuid.UUID, day: date, *, opportunities: list[Opportunity]
) -> Refresh:
    """Bring the user's ``identified`` rows in line with ``opportunities``, inside the caller's transaction.

    The caller computed ``opportunities`` from :func:`load_taxpayer` in the same transaction, after
    :func:`tax_store.lock_user`, so no other refresh of the user can interleave.
    """
    existing = {
        (row["portfolio_id"], row["symbol"]): row
        for row in await tax_store.harvests_of(conn, user_id, statuses=("identified",), for_update=True)
    }
    rows: list[dict[str, Any]] = []
    new = 0
    for opportunity in opportunities:
        values = harvest_values(opportunity, day)
        known = existing.pop((values["portfolio_id"], values["symbol"]), None)
        if known is not None:
            rows.append(await tax_store.refresh_harvest(conn, known["id"], values))
            continue
        row = await tax_store.insert_harvest(conn, user_id=user_id, values=values)
        await add_event(
            conn,
            topic=TOPIC,
            event_type="tax_harvests.identified",
            user_id=user_id,
            aggregate_id=row["id"],
            payload={
                "harvest_id": row["id"],
                "portfolio_id": row["portfolio_id"],
                "symbol": row["symbol"],
                "loss_amount": row["loss_amount"],
                "term": row["term"],
                "estimated_tax_savings": row["estimated_tax_savings"],
                "replacement_symbol": row["replacement_symbol"],
                "lot_ids": values["lot_ids"],
                "identified_on": day,
            },
        )
        rows.append(row)
        new += 1
    await tax_store.expire_harvests(conn, [row["id"] for row in existing.values()])
    return Refresh(opportunities=rows, new=new, expired=len(existing))


async def refresh_user(
    pool: AsyncPool, planner: HarvestPlanner, user_id: uuid.UUID, day: date, *, daily_scan: bool = False
) -> Refresh | None:
    """Refresh one user's opportunities in one transaction.

    With ``daily_scan`` the (user, day) pair is claimed in ``harvest_scans`` first, and a user
    already scanned that day is skipped (``None``): the scan can be rerun safely. Without it (a
    user reading their opportunities), the refresh always runs. ``None`` also for a user that
    does not exist.
    """
    async with pool.connection() as conn, conn.transaction():
        if not await tax_store.lock_user(conn, user_id):
            return None
        if daily_scan and not await tax_store.claim_scan(conn, user_id, day):
            return None
        taxpayer = await load_taxpayer(conn, user_id, day)
        if taxpayer is None:
            return None
        found = await asyncio.to_thread(planner.opportunities, taxpayer, day)
        result = await refresh_opportunities(conn, user_id, day, opportunities=found)
        if daily_scan:
            await tax_store.finish_scan(
                conn, user_id, day, opportunities=len(result.opportunities), events=result.new
            )
        return result


def describe(row: Mapping[str, Any], today: date) -> dict[str, Any]:
    """A ``tax_harvests`` row as the API shows it: an opportunity, or a harvest carried out.

    An executed harvest offers switching back once its window has passed: selling the replacement
    and buying the original again no longer makes the harvested loss a wash sale.
    """
    details: dict[str, Any] = dict(row["details"] or {})
    blockers = details.get("blockers", [])
    executed = row["status"] == "executed"
    end: date | None = row["wash_sale_window_end"]
    window_end = end if executed else _as_date(details.get("wash_sale_window_end"))
    out: dict[str, Any] = {
        "id": row["id"],
        "portfolio_id": row["portfolio_id"],
        "symbol": row["symbol"],
        "status": row["status"],
        "as_of": details.get("as_of"),
        "identified_on": row["identified_on"],
        "lots": details.get("lots", []),
        "lot_ids": row["lot_ids"],
        "shares": details.get("shares"),
        "price": details.get("price"),
        "market_value": details.get("market_value"),
        "cost_basis": details.get("cost_basis"),
        "loss_amount": row["loss_amount"],
        "loss_pct": details.get("loss_pct"),
        "term": row["term"],
        "short_loss": details.get("short_loss"),
        "long_loss": details.get("long_loss"),
        "estimated_tax_savings": row["estimated_tax_savings"],
        "replacement_candidates": details.get("replacements", []),
        "wash_sale_blockers": blockers,
        "blocked": bool(blockers) and not executed,
        "replacement_symbol": row["replacement_symbol"],
        "wash_sale_window_end": window_end,
        "executed_at": row["executed_at"],
        "sell_order_id": row["sell_order_id"],
        "buy_order_id": row["buy_order_id"],
        "switch_back": None,
    }
    if executed and end is not None:
        allowed = end + timedelta(days=1)
        out["switch_back"] = {
            "available": today >= allowed,
            "available_from": allowed,
            "sell": row["replacement_symbol"],
            "buy": row["symbol"],
            "message": (
                f"The wash-sale window ended on {end}: you may sell {row['replacement_symbol']} and buy"
                f" {row['symbol']} back without losing the harvested loss."
                if today >= allowed
                else f"Buying {row['symbol']} back in any account before {allowed} would be a wash sale."
            ),
        }
    return out


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
