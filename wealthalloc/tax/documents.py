"""A taxpayer's stored sales as the documents a preparer files from: Form 8949, Schedule D, 1099-B.

One read of the books (:func:`load_books`) gives everything the documents of
any year need: the realized rows, the source of each sold lot (which decides
its box and whether column (b) reads INHERITED), the entered carryovers and
the name on the return. The figures are those of the realized-gains report:
the same rows, the same :func:`~wealthalloc.domain.gains_report.gains_report`
totals for one account and
:func:`~wealthalloc.domain.gains_report.year_totals_with_entered` for the
return, so a download and the JSON report never disagree.

The return is the household's when the user is in one: spouses in a
household file ``married_joint``, and a joint return is one Form 8949 and
one Schedule D over both spouses' taxable accounts, with one 3,000 limit and
one carryover (the couple's: what each entered is added up). The
per-portfolio documents stay the portfolio's own, and
:attr:`TaxpayerBooks.portfolios` holds only the user's own portfolios, so a
spouse's portfolio is never one of the user's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from wealthalloc.domain.gains_report import (
    CapitalLossCarryforward,
    FilingStatus,
    YearTotals,
    gains_report,
    year_totals_with_entered,
)
from wealthalloc.domain.tax_forms import (
    BasisReporting,
    BoxedRow,
    ScheduleD,
    box_totals,
    boxed_rows,
    inherited_lots,
    reporting_of_lots,
    schedule_d,
)
from wealthalloc.domain.wash_sale import RealizedLot
from wealthalloc.storage import accounts as accounts_store
from wealthalloc.storage import households as households_store
from wealthalloc.storage import tax as tax_store
from wealthalloc.storage import tax_years as tax_years_store
from wealthalloc.storage.books import Conn
from wealthalloc.tax.form_csv import amount_text
from wealthalloc.tax.harvesting import realized_lot


@dataclass(frozen=True)
class TaxpayerBooks:
    """What a return's tax documents are made of, read once for one user.

    ``members`` are the people filing the return: the user alone, or both
    spouses of a household. ``name``, ``realized`` and ``entered`` are the
    return's (every member's); ``portfolios`` are the user's own.
    """

    user_id: uuid.UUID
    name: str
    filing_status: FilingStatus
    portfolios: dict[uuid.UUID, dict[str, Any]]
    realized: list[RealizedLot]
    entered: dict[int, CapitalLossCarryforward]
    reporting: Callable[[RealizedLot], BasisReporting]
    inherited: frozenset[uuid.UUID] = frozenset()
    members: tuple[uuid.UUID, ...] = ()

    def sales_of(self, portfolio_id: uuid.UUID) -> list[RealizedLot]:
        return [item for item in self.realized if item.account_id == str(portfolio_id)]

    def rows(self, year: int, portfolio_id: uuid.UUID | None = None) -> list[BoxedRow]:
        """Form 8949 rows of the year, of one portfolio or (``None``) of every taxable one of the return."""
        sales = self.realized if portfolio_id is None else self.sales_of(portfolio_id)
        return boxed_rows(sales, year=year, reporting=self.reporting, inherited=self.inherited)

    def portfolio_totals(self, portfolio_id: uuid.UUID, year: int) -> YearTotals:
        """The portfolio's own totals, as the realized-gains report's ``totals`` shows them."""
        report = gains_report(self.sales_of(portfolio_id), year=year, filing_status=self.filing_status)
        return report.totals[0]

    def taxpayer_totals(self, year: int) -> YearTotals:
        """Schedule D of the return: every taxable account, the chain started from an entered carryover."""
        return year_totals_with_entered(
            self.realized, year=year, filing_status=self.filing_status, entered=self.entered
        )

    def schedule(self, year: int, portfolio_id: uuid.UUID | None = None) -> ScheduleD:
        """Schedule D lines of the return, or of one portfolio's sales alone."""
        totals = (
            self.taxpayer_totals(year) if portfolio_id is None else self.portfolio_totals(portfolio_id, year)
        )
        return schedule_d(box_totals(self.rows(year, portfolio_id)), totals)


@dataclass(frozen=True)
class _Filer:
    """One person on the return, as the books need them."""

    user_id: uuid.UUID
    name: str
    filing_status: FilingStatus


async def load_books(conn: Conn, user_id: uuid.UUID) -> TaxpayerBooks | None:
    """The books of the user's return; ``None`` for a user that does not exist (or was deleted).

    In a household the return is joint: both spouses' sales and entered
    carryovers, ``married_joint``, the name line "A & B" in the household's
    order (so both spouses download the same return).
    """
    me = await _filer(conn, user_id)
    if me is None:
        return None
    filers = [me]
    household = await households_store.household_of(conn, user_id)
    if household is not None:
        found = [
            await _filer(conn, row["user_id"])
            for row in await households_store.members(conn, household["id"])
        ]
        spouses = [filer for filer in found if filer is not None]
        if len(spouses) > 1 and me in spouses:
            filers = spouses
    rows = []
    entered: list[dict[int, CapitalLossCarryforward]] = []
    for filer in filers:
        rows.extend(await tax_store.realized_rows(conn, filer.user_id))
        entered.append(await tax_years_store.carryforwards(conn, filer.user_id))
    rows.sort(key=lambda row: row["sold_at"])  # each member's rows are in sale order: keep that order
    sources = await tax_store.lot_sources(conn, {row["lot_id"] for row in rows})
    source_of = {lot_id: row["source"] for lot_id, row in sources.items()}
    joint = len(filers) > 1
    return TaxpayerBooks(
        user_id=user_id,
        name=" & ".join(filer.name for filer in filers),
        filing_status=FilingStatus.MARRIED_JOINT if joint else me.filing_status,
        portfolios={row["id"]: row for row in await tax_store.portfolios(conn, user_id)},
        realized=[realized_lot(row) for row in rows],
        entered=joint_carryovers(entered),
        reporting=reporting_of_lots(source_of),
        inherited=inherited_lots(source_of),
        members=tuple(filer.user_id for filer in filers),
    )


async def _filer(conn: Conn, user_id: uuid.UUID) -> _Filer | None:
    profile = await tax_store.tax_profile(conn, user_id)
    user = await accounts_store.user_by_id(conn, user_id)
    if profile is None or user is None:
        return None
    return _Filer(
        user_id=user_id,
        name=user["full_name"] or user["email"],
        filing_status=FilingStatus(profile["filing_status"]),
    )


def joint_carryovers(
    entered: Iterable[Mapping[int, CapitalLossCarryforward]],
) -> dict[int, CapitalLossCarryforward]:
    """The carryovers of a return from what each spouse entered: added per year, short and long apart.

    A joint return's carryover is the couple's, whoever's sales made it.
    """
    out: dict[int, CapitalLossCarryforward] = {}
    for person in entered:
        for year, carried in person.items():
            before = out.get(year, CapitalLossCarryforward())
            out[year] = CapitalLossCarryforward(
                short=before.short + carried.short, long=before.long + carried.long
            )
    return dict(sorted(out.items()))


def schedule_d_dict(schedule: ScheduleD, filing_status: FilingStatus) -> dict[str, Any]:
    """Schedule D as JSON-ready data, amounts as strings with cents (losses negative)."""

    def amount(value: Decimal | None) -> str | None:
        return None if value is None else amount_text(value)

    return {
        "year": schedule.year,
        "filing_status": filing_status.value,
        "lines": [
            {
                "line": item.line,
                "description": item.description,
                "proceeds": amount(item.proceeds),
                "cost_basis": amount(item.cost_basis),
                "adjustment": amount(item.adjustment),
                "gain_loss": amount_text(item.gain_loss),
            }
            for item in schedule.lines
        ],
        "carryforward": {
            "short": amount_text(schedule.carryforward_short),
            "long": amount_text(schedule.carryforward_long),
        },
    }


def short_id(portfolio_id: uuid.UUID) -> str:
    """The first group of a portfolio id: enough to tell a user's downloads apart."""
    return str(portfolio_id).split("-", 1)[0]
