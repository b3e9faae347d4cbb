"""Schedule D: short and long netting, the $3,000 / $1,500 limit and the carryforward worksheet."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from wealthalloc.domain.gains_report import (
    CapitalLossCarryforward,
    FilingStatus,
    capital_loss_limit,
    carryforward,
    form_8949_rows,
    gains_report,
    year_totals,
    yearly_totals,
)
from wealthalloc.domain.lots import LotMethod, Term
from wealthalloc.domain.wash_sale import AccountType, RealizedLot, Side, Transaction, realize

D = Decimal


def sale(
    gain: str,
    term: Term,
    sold: date = date(2022, 6, 1),
    *,
    kind: AccountType = AccountType.TAXABLE,
    adjustment: str = "0",
    permanent: str = "0",
    symbol: str = "XYZ",
) -> RealizedLot:
    """A realized lot with ``gain`` (before any wash-sale adjustment) on 1,000 of basis."""
    acquired = date(sold.year - (2 if term is Term.LONG else 0), 1, 3)
    return RealizedLot(
        symbol=symbol,
        account_id="brokerage" if kind is AccountType.TAXABLE else "ira",
        account_type=kind,
        lot_id=uuid.uuid4(),
        shares=D("10"),
        acquired_at=acquired,
        holding_period_start=acquired,
        sold=sold,
        proceeds=D("1000") + D(gain),
        cost_basis=D("1000"),
        unadjusted_cost=D("1000"),
        adjustment=D(adjustment),
        permanently_disallowed=D(permanent),
        term=term,
    )


def test_the_limit_is_3000_or_1500_married_filing_separately() -> None:
    assert capital_loss_limit(FilingStatus.SINGLE) == 3000
    assert capital_loss_limit(FilingStatus.MARRIED_JOINT) == 3000
    assert capital_loss_limit(FilingStatus.HEAD_OF_HOUSEHOLD) == 3000
    assert capital_loss_limit(FilingStatus.MARRIED_SEPARATE) == 1500


def test_a_net_loss_above_the_limit_deducts_3000_and_carries_the_rest_forward() -> None:
    totals = year_totals([sale("-5000", Term.SHORT), sale("-2000", Term.SHORT)], year=2022)
    assert (totals.short, totals.long, totals.net) == (D("-7000"), 0, D("-7000"))
    assert totals.deductible == D("3000")
    assert totals.carryforward == CapitalLossCarryforward(short=D("4000"), long=D("0"))


def test_married_filing_separately_deducts_1500() -> None:
    totals = year_totals([sale("-5000", Term.LONG)], year=2022, filing_status=FilingStatus.MARRIED_SEPARATE)
    assert totals.deductible == D("1500")
    assert totals.carryforward == CapitalLossCarryforward(short=D("0"), long=D("3500"))


def test_a_short_loss_offsets_a_long_gain_before_anything_is_deducted() -> None:
    totals = year_totals([sale("-5000", Term.SHORT), sale("3000", Term.LONG)], year=2022)
    assert totals.net == D("-2000")
    assert totals.deductible == D("2000")
    assert totals.carryforward.total == 0


def test_a_long_loss_larger_than_a_short_gain_carries_forward_as_long() -> None:
    totals = year_totals([sale("1000", Term.SHORT), sale("-5000", Term.LONG)], year=2022)
    assert totals.net == D("-4000") and totals.deductible == D("3000")
    assert totals.carryforward == CapitalLossCarryforward(short=D("0"), long=D("1000"))


def test_the_deduction_uses_the_short_loss_first() -> None:
    totals = year_totals([sale("-2000", Term.SHORT), sale("-4000", Term.LONG)], year=2022)
    assert totals.deductible == D("3000")
    assert totals.carryforward == CapitalLossCarryforward(short=D("0"), long=D("3000"))


def test_a_net_gain_deducts_nothing_and_carries_nothing() -> None:
    totals = year_totals([sale("-1000", Term.SHORT), sale("4000", Term.LONG)], year=2022)
    assert totals.net == D("3000")
    assert totals.deductible == 0 and totals.carryforward.total == 0


def test_a_carryforward_offsets_the_same_term_first() -> None:
    prior = CapitalLossCarryforward(short=D("5000"), long=D("0"))
    totals = year_totals([sale("1000", Term.SHORT)], year=2022, prior_carryforward=prior)
    assert (totals.short, totals.net_short) == (D("1000"), D("-4000"))
    assert totals.deductible == D("3000")
    assert totals.carryforward == CapitalLossCarryforward(short=D("1000"), long=D("0"))
    # A carried long-term loss absorbed by this year's long-term gain leaves nothing.
    prior = CapitalLossCarryforward(short=D("0"), long=D("2000"))
    totals = year_totals([sale("2500", Term.LONG)], year=2022, prior_carryforward=prior)
    assert totals.net == D("500") and totals.carryforward.total == 0


def test_the_carryforward_worksheet_directly() -> None:
    assert carryforward(net_short=D("-10000"), net_long=D("-5000"), deducted=D("3000")) == (
        CapitalLossCarryforward(short=D("7000"), long=D("5000"))
    )
    assert carryforward(net_short=D("2000"), net_long=D("-10000"), deducted=D("3000")) == (
        CapitalLossCarryforward(short=D("0"), long=D("5000"))
    )


def test_years_are_chained_and_a_year_without_sales_still_uses_up_the_carryforward() -> None:
    realized = [sale("-10000", Term.SHORT, date(2020, 3, 2)), sale("500", Term.LONG, date(2022, 7, 1))]
    totals = yearly_totals(realized)
    assert [t.year for t in totals] == [2020, 2021, 2022]
    assert [t.deductible for t in totals] == [D("3000"), D("3000"), D("3000")]
    assert [t.carryforward.short for t in totals] == [D("7000"), D("4000"), D("500")]
    # 2022: 4,000 carried short against a 500 long gain: net -3,500; 3,000 deducted, 500 left.
    assert totals[2].net == D("-3500")


def test_ira_sales_are_not_reported_and_wash_sale_figures_are() -> None:
    realized = [
        sale("-300", Term.SHORT, adjustment="300", permanent="100"),
        sale("-999", Term.SHORT, kind=AccountType.IRA),
    ]
    totals = year_totals(realized, year=2022)
    assert totals.rows == 1
    assert totals.short == 0  # fully disallowed
    assert (totals.disallowed, totals.permanently_disallowed) == (D("300"), D("100"))
    [row] = form_8949_rows(realized)
    assert row.adjustment_code == "W" and row.adjustment == D("300") and row.gain_loss == 0


def test_the_report_of_one_year_has_its_rows_and_the_carryforward_from_earlier_years() -> None:
    realized = [
        sale("-8000", Term.SHORT, date(2021, 5, 3), symbol="AAA"),
        sale("1000", Term.LONG, date(2022, 2, 1), symbol="BBB"),
        sale("-100", Term.SHORT, date(2022, 1, 5), symbol="CCC"),
    ]
    report = gains_report(realized, year=2022, filing_status=FilingStatus.SINGLE)
    assert [row.symbol for row in report.rows] == ["CCC", "BBB"]  # by sale date
    [totals] = report.totals
    assert totals.prior_carryforward == CapitalLossCarryforward(short=D("5000"), long=D("0"))
    assert totals.net == D("-4100") and totals.deductible == D("3000")
    assert totals.carryforward.short == D("1100")
    everything = gains_report(realized)
    assert [t.year for t in everything.totals] == [2021, 2022] and len(everything.rows) == 3


def test_a_year_before_the_first_sale_gets_the_prior_carryforward() -> None:
    report = gains_report(
        [sale("100", Term.SHORT, date(2023, 1, 5))],
        year=2022,
        prior_carryforward=CapitalLossCarryforward(long=D("1000")),
    )
    [totals] = report.totals
    assert totals.rows == 0 and totals.deductible == D("1000")
    assert gains_report([], year=2022).totals[0].net == 0
    assert gains_report([]).totals == ()


def test_negative_carryforwards_are_refused() -> None:
    with pytest.raises(ValueError):
        CapitalLossCarryforward(short=D("-1"))


def test_from_a_replayed_history_wash_sales_and_terms_flow_into_the_totals() -> None:
    def tx(day: str, side: str, quantity: str, price: str) -> Transaction:
        return Transaction(
            date.fromisoformat(day),
            "brokerage",
            AccountType.TAXABLE,
            "XYZ",
            Side(side),
            D(quantity),
            D(price),
        )

    result = realize(
        [
            tx("2020-01-06", "buy", "100", "50"),
            tx("2021-12-01", "sell", "50", "20"),  # long-term loss of 1,500, half of it washed below
            tx("2021-12-20", "buy", "25", "21"),  # basis 525 + 750
            tx("2022-03-01", "sell", "25", "30"),  # HIFO sells the replacement: long-term by tacking
        ],
        lot_method=LotMethod.HIFO,
    )
    first, second = yearly_totals(result.realized)
    assert (first.long, first.disallowed, first.deductible) == (D("-750"), D("750"), D("750"))
    # 750 proceeds - 1,275 basis: a long-term loss of 525 although the shares were held 71 days.
    assert (second.long, second.short) == (D("-525"), 0)
