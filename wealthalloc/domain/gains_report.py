"""Form 8949 rows and the Schedule D totals of each year: netting, the $3,000 limit and the carryforward.

Only sales in taxable accounts are reported. Short-term and long-term results
are netted as Schedule D nets them: each term first absorbs its own loss
carried over from the year before (lines 7 and 15), then the two are
combined (line 16). A net loss is deductible against ordinary income up to
$3,000 a year ($1,500 when married filing separately, line 21), and what is
left carries forward, short and long kept apart, as the Capital Loss
Carryover Worksheet of the Schedule D instructions computes it.

The worksheet also caps the deduction by the year's taxable income; that
figure is not part of a trade history, so taxable income is assumed to be
at least the deduction.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter

from wealthalloc.domain.lots import Term
from wealthalloc.domain.records import frozen_record
from wealthalloc.domain.wash_sale import RealizedLot

_ZERO = Decimal(0)


class FilingStatus(enum.StrEnum):
    SINGLE = "single"
    MARRIED_JOINT = "married_joint"
    MARRIED_SEPARATE = "married_separate"
    HEAD_OF_HOUSEHOLD = "head_of_household"


def capital_loss_limit(filing_status: FilingStatus) -> Decimal:
    """The most net capital loss deductible against ordinary income in a year (IRC section 1211(b))."""
    return Decimal(1500) if filing_status is FilingStatus.MARRIED_SEPARATE else Decimal(3000)


@dataclass(frozen=True)
class CapitalLossCarryforward:
    """Capital losses carried into a year, as positive amounts, short-term and long-term apart."""

    short: Decimal = _ZERO
    long: Decimal = _ZERO

    def __post_init__(self) -> None:
        if self.short < 0 or self.long < 0:
            raise ValueError("a carryforward is a loss, given as a positive amount (or zero)")

    @property
    def total(self) -> Decimal:
        return self.short + self.long


@frozen_record
class Form8949Row:
    """One line of Form 8949: columns (a) to (h), with the term and the account it was sold from."""

    symbol: str
    shares: Decimal
    acquired: dt.date
    sold: dt.date
    proceeds: Decimal
    cost_basis: Decimal
    adjustment_code: str | None
    adjustment: Decimal
    gain_loss: Decimal
    term: Term
    account_id: str

    @classmethod
    def from_realized(cls, realized: RealizedLot) -> Form8949Row:
        """The row of a realized lot; "acquired" is the holding-period start, which decides the term."""
        return cls(
            symbol=realized.symbol,
            shares=realized.shares,
            acquired=realized.holding_period_start,
            sold=realized.sold,
            proceeds=realized.proceeds,
            cost_basis=realized.cost_basis,
            adjustment_code=realized.adjustment_code,
            adjustment=realized.adjustment,
            gain_loss=realized.gain_loss,
            term=realized.term,
            account_id=realized.account_id,
        )


@dataclass(frozen=True)
class YearTotals:
    """Schedule D for one year.

    Attributes
    ----------
    short, long : Decimal
        The year's short-term and long-term gain (positive) or loss
        (negative) from its Form 8949 rows, wash-sale adjustments included.
    prior_carryforward : CapitalLossCarryforward
        Losses carried into the year.
    net_short, net_long : Decimal
        ``short`` and ``long`` less the carried-in losses of the same term
        (Schedule D lines 7 and 15).
    net : Decimal
        ``net_short + net_long`` (line 16).
    disallowed : Decimal
        Wash-sale losses disallowed on the year's rows (code W).
    permanently_disallowed : Decimal
        The part of ``disallowed`` replaced in an IRA or Roth IRA: lost for good.
    deductible : Decimal
        Net loss deducted from ordinary income this year, at most the limit (line 21, positive).
    carryforward : CapitalLossCarryforward
        Losses carried into the next year.
    """

    year: int
    filing_status: FilingStatus
    rows: int
    proceeds: Decimal
    cost_basis: Decimal
    short: Decimal
    long: Decimal
    prior_carryforward: CapitalLossCarryforward
    net_short: Decimal
    net_long: Decimal
    net: Decimal
    disallowed: Decimal
    permanently_disallowed: Decimal
    deductible: Decimal
    carryforward: CapitalLossCarryforward


@dataclass(frozen=True)
class GainsReport:
    """Form 8949 rows (of one year or of all) and the totals of each year, carryforward chained."""

    rows: tuple[Form8949Row, ...]
    totals: tuple[YearTotals, ...]


def form_8949_rows(realized: Iterable[RealizedLot], *, year: int | None = None) -> list[Form8949Row]:
    """The reportable rows (taxable accounts), of ``year`` when given, by sale date then symbol.

    Parameters
    ----------
    realized : iterable of RealizedLot
        The engine's realized lots, any accounts.
    year : int, optional
        Keep the sales of this year only.
    """
    rows = [
        Form8949Row.from_realized(item)
        for item in realized
        if item.is_reportable and (year is None or item.sold.year == year)
    ]
    rows.sort(key=_ROW_ORDER)
    return rows


_ROW_ORDER = attrgetter("sold", "symbol", "account_id", "acquired")
"""Form 8949 order: by sale date, then symbol, account and acquisition (a C key function, no lambda)."""


def year_totals(
    realized: Iterable[RealizedLot],
    *,
    year: int,
    filing_status: FilingStatus = FilingStatus.SINGLE,
    prior_carryforward: CapitalLossCarryforward | None = None,
) -> YearTotals:
    """Schedule D totals of one year, with the deduction limit and the carryforward to the next.

    Parameters
    ----------
    realized : iterable of RealizedLot
        Realized lots of any years and accounts; the reportable sales of ``year`` count.
    year : int
        The tax year.
    filing_status : FilingStatus
        Decides the limit: 3,000, or 1,500 when married filing separately.
    prior_carryforward : CapitalLossCarryforward, optional
        Losses carried into ``year``; none when omitted.

    Returns
    -------
    YearTotals
    """
    prior = prior_carryforward or CapitalLossCarryforward()
    # One pass over the rows. Each term's gain is summed as its proceeds, basis and adjustments:
    # Decimal addition of these money amounts is exact, so this equals the sum of the rows'
    # column (h) without computing (h) row by row.
    count = 0
    proceeds = {Term.SHORT: _ZERO, Term.LONG: _ZERO}
    basis = dict(proceeds)
    adjustments = dict(proceeds)
    permanent = _ZERO
    for item in realized:
        if not item.is_reportable or item.sold.year != year:
            continue
        count += 1
        term = item.term
        proceeds[term] += item.proceeds
        basis[term] += item.cost_basis
        adjustments[term] += item.adjustment
        permanent += item.permanently_disallowed
    short = proceeds[Term.SHORT] - basis[Term.SHORT] + adjustments[Term.SHORT]
    long = proceeds[Term.LONG] - basis[Term.LONG] + adjustments[Term.LONG]
    net_short, net_long = short - prior.short, long - prior.long
    net = net_short + net_long
    deductible = min(-net, capital_loss_limit(filing_status)) if net < 0 else _ZERO
    return YearTotals(
        year=year,
        filing_status=filing_status,
        rows=count,
        proceeds=proceeds[Term.SHORT] + proceeds[Term.LONG],
        cost_basis=basis[Term.SHORT] + basis[Term.LONG],
        short=short,
        long=long,
        prior_carryforward=prior,
        net_short=net_short,
        net_long=net_long,
        net=net,
        disallowed=adjustments[Term.SHORT] + adjustments[Term.LONG],
        permanently_disallowed=permanent,
        deductible=deductible,
        carryforward=carryforward(net_short=net_short, net_long=net_long, deducted=deductible),
    )


def carryforward(*, net_short: Decimal, net_long: Decimal, deducted: Decimal) -> CapitalLossCarryforward:
    """The Capital Loss Carryover Worksheet (lines 5 to 13): what is left of each term's loss.

    The deduction uses up the short-term loss first, and a net gain of one
    term absorbs the other term's loss.

    Parameters
    ----------
    net_short, net_long : Decimal
        Schedule D lines 7 and 15 (negative for a loss).
    deducted : Decimal
        The loss deducted this year (line 21, positive).
    """
    short_left = long_left = _ZERO
    short_loss = -net_short if net_short < 0 else _ZERO
    if short_loss:
        short_left = max(short_loss - (deducted + max(net_long, _ZERO)), _ZERO)
    if net_long < 0:
        deduction_left = max(deducted - short_loss, _ZERO)
        long_left = max(-net_long - (max(net_short, _ZERO) + deduction_left), _ZERO)
    return CapitalLossCarryforward(short=short_left, long=long_left)


def yearly_totals(
    realized: Iterable[RealizedLot],
    *,
    filing_status: FilingStatus = FilingStatus.SINGLE,
    prior_carryforward: CapitalLossCarryforward | None = None,
    first_year: int | None = None,
    through_year: int | None = None,
) -> list[YearTotals]:
    """Every year from the first reportable sale on, each year's carryforward feeding the next.

    Years without a sale are included while they lie between the first and
    the last year, since each of them still deducts up to the limit from a
    carryforward.

    Parameters
    ----------
    realized : iterable of RealizedLot
        The whole history's realized lots.
    filing_status : FilingStatus
        Applied to every year.
    prior_carryforward : CapitalLossCarryforward, optional
        Losses carried into the first year.
    first_year, through_year : int, optional
        The first and last year to compute; by default those of the first and
        the last reportable sale. An earlier ``first_year`` or a later
        ``through_year`` adds years without sales.
    """
    by_year: dict[int, list[RealizedLot]] = {}
    for item in realized:
        if item.is_reportable:
            by_year.setdefault(item.sold.year, []).append(item)
    known = sorted(by_year)
    first = first_year if first_year is not None else (known[0] if known else through_year)
    last = through_year if through_year is not None else (known[-1] if known else first_year)
    if first is None or last is None:
        return []
    if known:
        first = min(first, known[0])
    carried = prior_carryforward or CapitalLossCarryforward()
    totals: list[YearTotals] = []
    for year in range(first, last + 1):
        totals.append(
            year_totals(
                by_year.get(year, []), year=year, filing_status=filing_status, prior_carryforward=carried
            )
        )
        carried = totals[-1].carryforward
    return totals


def gains_report(
    realized: Sequence[RealizedLot],
    *,
    year: int | None = None,
    filing_status: FilingStatus = FilingStatus.SINGLE,
    prior_carryforward: CapitalLossCarryforward | None = None,
) -> GainsReport:
    """Rows and totals of one year (or of every year), the carryforward chained from the first sale.

    Parameters
    ----------
    realized : sequence of RealizedLot
        The whole history's realized lots: earlier years decide what is carried into ``year``.
    year : int, optional
        The year to report; every year when omitted.
    filing_status : FilingStatus
        Decides the deduction limit.
    prior_carryforward : CapitalLossCarryforward, optional
        Losses carried into the first year of the history (or into ``year``
        when that comes before the first sale).
    """
    totals = yearly_totals(
        realized,
        filing_status=filing_status,
        prior_carryforward=prior_carryforward,
        first_year=year,
        through_year=year,
    )
    if year is not None:
        totals = [item for item in totals if item.year == year]
    return GainsReport(rows=tuple(form_8949_rows(realized, year=year)), totals=tuple(totals))


# Carryovers entered by the taxpayer -------------------------------------------------------------


def first_reportable_year(realized: Iterable[RealizedLot]) -> int | None:
    """The year of the first reportable (taxable-account) sale, or ``None`` without one."""
    years = [item.sold.year for item in realized if item.is_reportable]
    return min(years) if years else None


def opening_carryforward(
    entered: Mapping[int, CapitalLossCarryforward], *, first_sale_year: int | None, year: int
) -> tuple[int, CapitalLossCarryforward] | None:
    """The entered year the Schedule D chain for ``year`` starts from, with its carryover.

    A carryover the taxpayer entered for year Y (from their own return, before
    this platform) is what came *into* Y. It is used only where the platform's
    history cannot compute it: when there is no reportable sale before Y, i.e.
    ``Y <= first_sale_year``. Among those, the latest one not after ``year``
    wins (it is the nearest to the platform's history, and any earlier entry
    would only have been chained into it). An entered year after the first
    sale is not used: the carryover into it is computed from the sales, and
    the caller may show the entered one beside it.

    Parameters
    ----------
    entered : mapping of int to CapitalLossCarryforward
        Carryovers into each year, as entered.
    first_sale_year : int or None
        :func:`first_reportable_year` of the taxpayer's history.
    year : int
        The year being reported.

    Returns
    -------
    (int, CapitalLossCarryforward) or None
        The starting year and what is carried into it; ``None`` when no entry applies.
    """
    bound = year if first_sale_year is None else min(year, first_sale_year)
    usable = [entered_year for entered_year in entered if entered_year <= bound]
    if not usable:
        return None
    start = max(usable)
    return start, entered[start]


def year_totals_with_entered(
    realized: Sequence[RealizedLot],
    *,
    year: int,
    filing_status: FilingStatus = FilingStatus.SINGLE,
    entered: Mapping[int, CapitalLossCarryforward] | None = None,
) -> YearTotals:
    """Schedule D totals of ``year`` for a taxpayer, the chain started from an entered carryover.

    The chain starts at the year :func:`opening_carryforward` picks (with the
    entered amounts) or, without one, at the first sale with nothing carried
    in; years without sales in between still deduct up to the limit.

    Parameters
    ----------
    realized : sequence of RealizedLot
        The taxpayer's whole history (every account; only taxable sales count).
    year : int
        The year to total.
    filing_status : FilingStatus
        Decides the limit.
    entered : mapping of int to CapitalLossCarryforward, optional
        Carryovers the taxpayer entered, by the year they are carried into.
    """
    opening = opening_carryforward(entered or {}, first_sale_year=first_reportable_year(realized), year=year)
    totals = yearly_totals(
        realized,
        filing_status=filing_status,
        prior_carryforward=opening[1] if opening else None,
        first_year=opening[0] if opening else year,
        through_year=year,
    )
    return next(item for item in totals if item.year == year)
