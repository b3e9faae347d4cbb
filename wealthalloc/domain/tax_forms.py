"""Form 8949 by box and the Schedule D lines a preparer files from: the rules, no I/O.

A sale's box on Form 8949 says two things the IRS matches against the
broker's 1099-B: the term (Part I short, Part II long) and whether the broker
reported the basis. A and D: basis reported to the IRS; B and E: a 1099-B
without the basis; C and F: no 1099-B at all.

Whether the basis is reported follows from the lot's origin. The platform is
the broker of every sale made on it, so the basis of a lot bought here is
reported (a *covered* security). A lot brought in from elsewhere (a transfer
from another broker, a gift, an inheritance) keeps its covered status:
stock acquired before 2011-01-01 is *noncovered* (its basis is not
reported), anything acquired since is covered.

Every sale is listed on Form 8949, so Schedule D lines 1a and 8a (sales that
may skip Form 8949) stay blank, as the instructions allow: the figures go on
lines 1b-3 and 8b-10, one line per box. Lines 6 to 21 come from
:class:`~wealthalloc.domain.gains_report.YearTotals`, which already nets the
terms, applies the 3,000 (1,500) limit and computes the carryforward: this
module lays those figures out and checks that the boxes add up to them.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from wealthalloc.domain.gains_report import Form8949Row, YearTotals, capital_loss_limit
from wealthalloc.domain.lots import Term
from wealthalloc.domain.money import cents
from wealthalloc.domain.wash_sale import RealizedLot

_ZERO = Decimal(0)

COVERED_FROM = dt.date(2011, 1, 1)
"""Stock acquired on or after this day is a covered security: brokers report its basis (IRC 6045(g))."""

OUTSIDE_SOURCES = frozenset({"transfer_in", "gift", "inherited"})
"""Lot sources acquired away from the platform: covered only when acquired since :data:`COVERED_FROM`."""

INHERITED_SOURCE = "inherited"
"""The source of a lot received from an estate."""

INHERITED = "INHERITED"
"""Column (b) of an inherited lot: the Form 8949 instructions ask for this word instead of a date, since
the holding period of inherited property is long-term whatever the dates say (IRC 1223(9))."""


class BasisReporting(enum.StrEnum):
    """What the taxpayer's 1099-B says about a sale's basis: it picks the box within a Part."""

    REPORTED = "reported"
    NOT_REPORTED = "not-reported"
    NO_1099B = "no-1099b"


class Box(enum.StrEnum):
    """The check box of a Form 8949 page."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"
    F = "F"

    @property
    def term(self) -> Term:
        return Term.SHORT if self in (Box.A, Box.B, Box.C) else Term.LONG

    @property
    def part(self) -> str:
        """ "I" (short-term) or "II" (long-term)."""
        return "I" if self.term is Term.SHORT else "II"

    @property
    def reporting(self) -> BasisReporting:
        return _REPORTING_OF_BOX[self]

    @property
    def wording(self) -> str:
        """The box's wording on the form."""
        return _BOX_TITLES[self]


_BOXES = {
    (Term.SHORT, BasisReporting.REPORTED): Box.A,
    (Term.SHORT, BasisReporting.NOT_REPORTED): Box.B,
    (Term.SHORT, BasisReporting.NO_1099B): Box.C,
    (Term.LONG, BasisReporting.REPORTED): Box.D,
    (Term.LONG, BasisReporting.NOT_REPORTED): Box.E,
    (Term.LONG, BasisReporting.NO_1099B): Box.F,
}
_REPORTING_OF_BOX = {box: reporting for (_, reporting), box in _BOXES.items()}
_TERM_WORDS = {Term.SHORT: "Short-term", Term.LONG: "Long-term"}
_BOX_TITLES = {
    box: f"{_TERM_WORDS[term]} transactions "
    + {
        BasisReporting.REPORTED: "reported on Form(s) 1099-B showing basis was reported to the IRS",
        BasisReporting.NOT_REPORTED: "reported on Form(s) 1099-B showing basis wasn't reported to the IRS",
        BasisReporting.NO_1099B: "not reported to you on Form 1099-B",
    }[reporting]
    for (term, reporting), box in _BOXES.items()
}


def box_for(term: Term, reporting: BasisReporting) -> Box:
    """The box of a sale of this term whose basis the 1099-B treats as ``reporting`` says."""
    return _BOXES[(term, reporting)]


def is_covered(source: str, acquired: dt.date) -> bool:
    """Whether the basis of a lot is reported to the IRS when the platform, as broker, reports its sale.

    Parameters
    ----------
    source : str
        The lot's origin: ``buy`` and ``harvest_replacement`` are bought on the
        platform (always covered); ``transfer_in``, ``gift`` and ``inherited``
        come from outside (see :data:`OUTSIDE_SOURCES`).
    acquired : date
        The lot's acquisition date (not a holding period moved by a wash sale).
    """
    return source not in OUTSIDE_SOURCES or acquired >= COVERED_FROM


def reporting_of_lots(
    sources: Mapping[uuid.UUID, str], *, default: str = "buy"
) -> Callable[[RealizedLot], BasisReporting]:
    """The basis reporting of the platform's own sales, from each sold lot's source.

    ``sources`` maps a lot id to its source; a lot it does not name counts as ``default``.
    """

    def reporting(realized: RealizedLot) -> BasisReporting:
        source = sources.get(realized.lot_id, default)
        covered = is_covered(source, realized.acquired_at)
        return BasisReporting.REPORTED if covered else BasisReporting.NOT_REPORTED

    return reporting


def inherited_lots(sources: Mapping[uuid.UUID, str]) -> frozenset[uuid.UUID]:
    """The lots of ``sources`` (lot id -> source) that were inherited: their column (b) reads INHERITED."""
    return frozenset(lot_id for lot_id, source in sources.items() if source == INHERITED_SOURCE)


def same_reporting(kind: BasisReporting) -> Callable[[RealizedLot], BasisReporting]:
    """One basis reporting for every sale: for a history the taxpayer keeps, with no 1099-B from us."""

    def reporting(_: RealizedLot) -> BasisReporting:
        return kind

    return reporting


@dataclass(frozen=True)
class BoxedRow:
    """One line of Form 8949 with the box it is filed under and what the 1099-B would say of it.

    ``row.acquired`` is the holding-period start (column b: a wash sale moves
    it back); ``lot_acquired`` is when the lot itself was acquired, which
    decides whether it is covered. An ``inherited`` lot shows INHERITED in
    column (b) instead of a date.
    """

    row: Form8949Row
    box: Box
    lot_acquired: dt.date
    inherited: bool = False

    @property
    def date_acquired(self) -> dt.date | str:
        """Column (b): the holding period's start, or :data:`INHERITED` for inherited property."""
        return INHERITED if self.inherited else self.row.acquired

    @property
    def description(self) -> str:
        """Column (a): shares and symbol, e.g. ``10 AAPL`` or ``2.5 MSFT``."""
        return f"{quantity_text(self.row.shares)} {self.row.symbol}"

    @property
    def covered(self) -> bool:
        return self.box.reporting is BasisReporting.REPORTED


def quantity_text(shares: Decimal) -> str:
    """Shares without trailing zeros: ``10.000000`` is ``10``, ``2.500000`` is ``2.5``."""
    return format(shares.normalize(), "f")


def boxed_rows(
    realized: Iterable[RealizedLot],
    *,
    year: int,
    reporting: Callable[[RealizedLot], BasisReporting],
    inherited: Collection[uuid.UUID] = frozenset(),
) -> list[BoxedRow]:
    """The reportable sales of ``year`` (taxable accounts only), by box, then in Form 8949 order.

    Parameters
    ----------
    realized : iterable of RealizedLot
        Realized lots of any years and accounts.
    year : int
        The tax year.
    reporting : callable
        The basis reporting of a sale: :func:`reporting_of_lots` for the
        platform's books, :func:`same_reporting` for a history the taxpayer sends.
    inherited : collection of UUID, optional
        Ids of the sold lots that were inherited (:func:`inherited_lots`):
        their column (b) reads INHERITED. Their box follows the same rules.
    """
    rows = [
        BoxedRow(
            row=Form8949Row.from_realized(item),
            box=box_for(item.term, reporting(item)),
            lot_acquired=item.acquired_at,
            inherited=item.lot_id in inherited,
        )
        for item in realized
        if item.is_reportable and item.sold.year == year
    ]
    rows.sort(key=_box_order)
    return rows


def _box_order(boxed: BoxedRow) -> tuple[str, dt.date, str, str, dt.date]:
    row = boxed.row
    return (boxed.box.value, row.sold, row.symbol, row.account_id, row.acquired)


@dataclass(frozen=True)
class BoxTotals:
    """The totals line of a Form 8949 box (line 2 of its Part), rounded to cents once, after adding."""

    box: Box
    rows: int
    proceeds: Decimal
    cost_basis: Decimal
    adjustment: Decimal
    gain_loss: Decimal


def box_totals(rows: Iterable[BoxedRow]) -> dict[Box, BoxTotals]:
    """The totals of each box that has rows, in box order.

    Amounts are added exactly and rounded once, as the JSON report's totals
    are, so a total may differ by a cent from the sum of the rounded rows.
    """
    sums: dict[Box, list[Decimal]] = {}
    counts: dict[Box, int] = {}
    for boxed in rows:
        row = boxed.row
        acc = sums.setdefault(boxed.box, [_ZERO, _ZERO, _ZERO, _ZERO])
        acc[0] += row.proceeds
        acc[1] += row.cost_basis
        acc[2] += row.adjustment
        acc[3] += row.gain_loss
        counts[boxed.box] = counts.get(boxed.box, 0) + 1
    return {
        box: BoxTotals(
            box=box,
            rows=counts[box],
            proceeds=cents(sums[box][0]),
            cost_basis=cents(sums[box][1]),
            adjustment=cents(sums[box][2]),
            gain_loss=cents(sums[box][3]),
        )
        for box in sorted(sums)
    }


# Schedule D -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleDLine:
    """One line of Schedule D; amount-only lines (6, 7, 14 ...) have ``None`` for columns (d), (e), (g).

    ``gain_loss`` is signed as it adds up on the form: a loss carried over
    (lines 6 and 14) and the deduction (line 21) are negative, shown in
    parentheses on the return.
    """

    line: str
    description: str
    gain_loss: Decimal
    proceeds: Decimal | None = None
    cost_basis: Decimal | None = None
    adjustment: Decimal | None = None


@dataclass(frozen=True)
class ScheduleD:
    """The Schedule D lines of one year, with the carryforward into the next."""

    year: int
    lines: tuple[ScheduleDLine, ...]
    carryforward_short: Decimal
    carryforward_long: Decimal

    def line(self, number: str) -> ScheduleDLine:
        """The line numbered ``number`` (e.g. ``"7"``, ``"1b"``)."""
        return next(item for item in self.lines if item.line == number)


class ScheduleDMismatch(ValueError):
    """The boxes do not add up to the year's totals: the rows and totals came from different sales."""


_BOX_LINES = (
    ("1a", None, "Short-term totals from 1099-B, basis reported, no adjustments (all on Form 8949)"),
    ("1b", Box.A, "Short-term totals from Form 8949 with Box A checked"),
    ("2", Box.B, "Short-term totals from Form 8949 with Box B checked"),
    ("3", Box.C, "Short-term totals from Form 8949 with Box C checked"),
)
_LONG_BOX_LINES = (
    ("8a", None, "Long-term totals from 1099-B, basis reported, no adjustments (all on Form 8949)"),
    ("8b", Box.D, "Long-term totals from Form 8949 with Box D checked"),
    ("9", Box.E, "Long-term totals from Form 8949 with Box E checked"),
    ("10", Box.F, "Long-term totals from Form 8949 with Box F checked"),
)


def schedule_d(totals_by_box: Mapping[Box, BoxTotals], year_totals: YearTotals) -> ScheduleD:
    """Schedule D of the year: the boxes on lines 1b-3 and 8b-10, the rest from ``year_totals``.

    Parameters
    ----------
    totals_by_box : mapping of Box to BoxTotals
        :func:`box_totals` of the year's rows.
    year_totals : YearTotals
        The same sales' totals (with the carryover into the year), as
        :mod:`wealthalloc.domain.gains_report` computes them.

    Raises
    ------
    ScheduleDMismatch
        When the boxes of a term do not add up to that term's total.
    """
    for term, expected in ((Term.SHORT, year_totals.short), (Term.LONG, year_totals.long)):
        found = sum((t.gain_loss for t in totals_by_box.values() if t.box.term is term), _ZERO)
        if abs(found - cents(expected)) > Decimal("0.01") * max(len(totals_by_box), 1):
            raise ScheduleDMismatch(
                f"{term.value}-term boxes add up to {found}, the year's total is {cents(expected)}"
            )
    lines = [*_box_lines(_BOX_LINES, totals_by_box)]
    lines.append(
        ScheduleDLine("6", "Short-term capital loss carryover", -cents(year_totals.prior_carryforward.short))
    )
    lines.append(ScheduleDLine("7", "Net short-term capital gain or (loss)", cents(year_totals.net_short)))
    lines.extend(_box_lines(_LONG_BOX_LINES, totals_by_box))
    lines.append(
        ScheduleDLine("14", "Long-term capital loss carryover", -cents(year_totals.prior_carryforward.long))
    )
    lines.append(ScheduleDLine("15", "Net long-term capital gain or (loss)", cents(year_totals.net_long)))
    lines.append(ScheduleDLine("16", "Combine lines 7 and 15", cents(year_totals.net)))
    limit = f"{capital_loss_limit(year_totals.filing_status):,}"
    lines.append(
        ScheduleDLine(
            "21", f"Loss deducted this year (smaller of line 16 or {limit})", -cents(year_totals.deductible)
        )
    )
    return ScheduleD(
        year=year_totals.year,
        lines=tuple(lines),
        carryforward_short=cents(year_totals.carryforward.short),
        carryforward_long=cents(year_totals.carryforward.long),
    )


def _box_lines(
    spec: tuple[tuple[str, Box | None, str], ...], totals_by_box: Mapping[Box, BoxTotals]
) -> Iterable[ScheduleDLine]:
    for number, box, description in spec:
        found = totals_by_box.get(box) if box is not None else None
        yield ScheduleDLine(
            number,
            description,
            gain_loss=found.gain_loss if found else _ZERO,
            proceeds=found.proceeds if found else _ZERO,
            cost_basis=found.cost_basis if found else _ZERO,
            adjustment=found.adjustment if found else _ZERO,
        )


# The 1099-B the platform issues -----------------------------------------------------------------


@dataclass(frozen=True)
class BrokerStatementRow:
    """One sale as the platform, the broker, reports it on a 1099-B."""

    description: str
    quantity: Decimal
    acquired: dt.date
    sold: dt.date
    proceeds: Decimal
    cost_basis: Decimal
    wash_sale_disallowed: Decimal
    term: Term
    covered: bool
    inherited: bool = False

    @property
    def date_acquired(self) -> dt.date | str:
        """Box 1b: the holding period's start, or :data:`INHERITED` for inherited property."""
        return INHERITED if self.inherited else self.acquired

    @property
    def basis_reported(self) -> bool:
        """The basis of a covered security is reported to the IRS; of a noncovered one, not."""
        return self.covered


def broker_statement(rows: Iterable[BoxedRow]) -> list[BrokerStatementRow]:
    """The 1099-B lines of the boxed rows, by sale date (the order a statement lists them in)."""
    statement = [
        BrokerStatementRow(
            description=boxed.description,
            quantity=boxed.row.shares,
            acquired=boxed.row.acquired,
            sold=boxed.row.sold,
            proceeds=boxed.row.proceeds,
            cost_basis=boxed.row.cost_basis,
            wash_sale_disallowed=boxed.row.adjustment,
            term=boxed.row.term,
            covered=boxed.covered,
            inherited=boxed.inherited,
        )
        for boxed in rows
    ]
    statement.sort(key=lambda line: (line.sold, line.description, line.acquired))
    return statement
