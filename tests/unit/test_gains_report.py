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
    first_reportable_year,
    form_8949_rows,
    gains_report,
    opening_carryforward,
    year_totals,
    year_totals_with_entered,
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


# Carryovers entered by the taxpayer -------------------------------------------------------------


def test_the_worked_example_of_a_carryover_entered_into_2022() -> None:
    # Schedule D 2022 with 5,000 short and 2,000 long carried in (lines 6 and 14):
    #   line 7  = 1,000 short gain - 5,000 = -4,000;  line 15 = -500 long loss - 2,000 = -2,500
    #   line 16 = -6,500; line 21 deducts 3,000 (single)
    #   worksheet: the deduction uses the short loss first: short 4,000 - 3,000 = 1,000 carried;
    #   nothing of it is left for the long loss, and no gain absorbs it: long 2,500 carried.
    entered = {2022: CapitalLossCarryforward(short=D("5000"), long=D("2000"))}
    realized = [sale("1000", Term.SHORT), sale("-500", Term.LONG)]
    totals = year_totals_with_entered(realized, year=2022, entered=entered)
    assert totals.prior_carryforward == entered[2022]
    assert (totals.net_short, totals.net_long, totals.net) == (D("-4000"), D("-2500"), D("-6500"))
    assert totals.deductible == D("3000")
    assert totals.carryforward == CapitalLossCarryforward(short=D("1000"), long=D("2500"))
    # Married filing separately deducts 1,500, all of it from the short loss.
    separate = year_totals_with_entered(
        realized, year=2022, filing_status=FilingStatus.MARRIED_SEPARATE, entered=entered
    )
    assert separate.deductible == D("1500")
    assert separate.carryforward == CapitalLossCarryforward(short=D("2500"), long=D("2500"))


def test_the_opening_carryover_is_the_latest_entered_year_not_after_the_first_sale() -> None:
    entered = {
        2019: CapitalLossCarryforward(short=D("1")),
        2021: CapitalLossCarryforward(short=D("2")),
        2024: CapitalLossCarryforward(short=D("3")),
    }
    assert opening_carryforward(entered, first_sale_year=2022, year=2025) == (2021, entered[2021])
    assert opening_carryforward(entered, first_sale_year=2022, year=2020) == (2019, entered[2019])
    assert opening_carryforward(entered, first_sale_year=2024, year=2024) == (2024, entered[2024])
    assert opening_carryforward(entered, first_sale_year=None, year=2026) == (2024, entered[2024])
    assert opening_carryforward(entered, first_sale_year=2018, year=2026) is None
    assert first_reportable_year([sale("1", Term.SHORT, date(2023, 2, 1)), sale("1", Term.LONG)]) == 2022
    assert first_reportable_year([sale("1", Term.SHORT, kind=AccountType.IRA)]) is None


def test_an_entered_year_after_the_first_sale_is_not_used_the_chain_computes_it() -> None:
    realized = [sale("-10000", Term.SHORT, date(2021, 5, 1)), sale("0", Term.SHORT, date(2022, 5, 1))]
    entered = {2022: CapitalLossCarryforward(long=D("99999"))}
    totals = year_totals_with_entered(realized, year=2022, entered=entered)
    # 2021 deducts 3,000 of its 10,000 loss; 7,000 short comes into 2022, whatever was entered.
    assert totals.prior_carryforward == CapitalLossCarryforward(short=D("7000"))
    assert totals.deductible == D("3000") and totals.carryforward == CapitalLossCarryforward(short=D("4000"))


def test_an_entered_year_before_the_first_sale_is_used_up_by_the_years_between() -> None:
    # 10,000 into 2020; 2020 and 2021 have no sales and still deduct 3,000 each: 4,000 into 2022.
    entered = {2020: CapitalLossCarryforward(short=D("10000"))}
    totals = year_totals_with_entered([sale("500", Term.LONG)], year=2022, entered=entered)
    assert totals.prior_carryforward == CapitalLossCarryforward(short=D("4000"))
    # The 500 long gain absorbs 500 of it, 3,000 is deducted, 500 is carried.
    assert totals.net == D("-3500") and totals.deductible == D("3000")
    assert totals.carryforward == CapitalLossCarryforward(short=D("500"))
    assert year_totals_with_entered([], year=2021, entered=entered).prior_carryforward == (
        CapitalLossCarryforward(short=D("7000"))
    )
    # Without anything entered, the totals are those of gains_report.
    plain = year_totals_with_entered([sale("500", Term.LONG)], year=2022)
    assert plain == gains_report([sale("500", Term.LONG)], year=2022).totals[0]
