"""Form 8949 boxes, their totals, Schedule D lines and the CSV a preparer imports."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date
from decimal import Decimal

import pytest

from wealthalloc.domain.gains_report import (
    CapitalLossCarryforward,
    FilingStatus,
    year_totals,
)
from wealthalloc.domain.lots import Term
from wealthalloc.domain.tax_forms import (
    BasisReporting,
    Box,
    ScheduleDMismatch,
    box_for,
    box_totals,
    boxed_rows,
    broker_statement,
    inherited_lots,
    is_covered,
    reporting_of_lots,
    same_reporting,
    schedule_d,
)
from wealthalloc.domain.wash_sale import AccountType, RealizedLot
from wealthalloc.tax.form_csv import (
    amount_text,
    broker_statement_csv,
    form_8949_csv,
    schedule_d_csv,
    text_cell,
)

D = Decimal
YEAR = 2025


def sale(
    gain: str,
    term: Term = Term.SHORT,
    *,
    acquired: date | None = None,
    sold: date = date(YEAR, 6, 2),
    adjustment: str = "0",
    symbol: str = "AAPL",
    shares: str = "10",
    kind: AccountType = AccountType.TAXABLE,
) -> RealizedLot:
    """A sale of ``shares`` with ``gain`` before any wash-sale adjustment, on 1,000.00 of basis."""
    bought = acquired or (date(YEAR - 3, 3, 1) if term is Term.LONG else date(YEAR, 1, 6))
    return RealizedLot(
        symbol=symbol,
        account_id="brokerage" if kind is AccountType.TAXABLE else "ira",
        account_type=kind,
        lot_id=uuid.uuid4(),
        shares=D(shares),
        acquired_at=bought,
        holding_period_start=bought,
        sold=sold,
        proceeds=D("1000.00") + D(gain),
        cost_basis=D("1000.00"),
        unadjusted_cost=D("1000.00"),
        adjustment=D(adjustment),
        permanently_disallowed=D(0),
        term=term,
    )


def parsed(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# The box -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "reporting", "box"),
    [
        (Term.SHORT, BasisReporting.REPORTED, Box.A),
        (Term.SHORT, BasisReporting.NOT_REPORTED, Box.B),
        (Term.SHORT, BasisReporting.NO_1099B, Box.C),
        (Term.LONG, BasisReporting.REPORTED, Box.D),
        (Term.LONG, BasisReporting.NOT_REPORTED, Box.E),
        (Term.LONG, BasisReporting.NO_1099B, Box.F),
    ],
)
def test_the_box_is_the_term_and_what_the_1099b_says_of_the_basis(
    term: Term, reporting: BasisReporting, box: Box
) -> None:
    assert box_for(term, reporting) is box
    assert (box.term, box.reporting) == (term, reporting)
    assert box.part == ("I" if term is Term.SHORT else "II")


@pytest.mark.parametrize(
    ("source", "acquired", "covered"),
    [
        ("buy", date(2009, 5, 1), True),  # bought on the platform: the platform reports the basis
        ("harvest_replacement", date(2024, 5, 1), True),
        ("transfer_in", date(2010, 12, 31), False),  # stock acquired before 2011 is noncovered
        ("transfer_in", date(2011, 1, 1), True),
        ("gift", date(2005, 1, 1), False),
        ("gift", date(2015, 1, 1), True),
        ("inherited", date(2008, 7, 1), False),
        ("inherited", date(2020, 7, 1), True),
    ],
)
def test_a_lot_is_covered_when_bought_here_or_acquired_since_2011(
    source: str, acquired: date, covered: bool
) -> None:
    assert is_covered(source, acquired) is covered


def test_the_platform_s_sales_go_to_a_or_d_and_old_transferred_lots_to_b_or_e() -> None:
    bought_here = sale("50", Term.SHORT)
    old_transfer = sale("-20", Term.LONG, acquired=date(2008, 1, 2))
    new_transfer = sale("30", Term.LONG, acquired=date(2015, 1, 2))
    inherited = sale("10", Term.LONG, acquired=date(2009, 1, 2))
    sources = {
        old_transfer.lot_id: "transfer_in",
        new_transfer.lot_id: "transfer_in",
        inherited.lot_id: "inherited",
    }
    rows = boxed_rows(
        [old_transfer, bought_here, new_transfer, inherited], year=YEAR, reporting=reporting_of_lots(sources)
    )
    assert [(r.box, r.row.gain_loss) for r in rows] == [
        (Box.A, D("50.00")),
        (Box.D, D("30.00")),
        (Box.E, D("-20.00")),
        (Box.E, D("10.00")),
    ]
    assert [r.covered for r in rows] == [True, True, False, False]


def test_a_history_the_taxpayer_sends_goes_to_the_box_they_choose() -> None:
    rows = boxed_rows(
        [sale("5", Term.SHORT), sale("7", Term.LONG)],
        year=YEAR,
        reporting=same_reporting(BasisReporting.NO_1099B),
    )
    assert [r.box for r in rows] == [Box.C, Box.F]


def test_only_taxable_sales_of_the_year_are_listed() -> None:
    rows = boxed_rows(
        [
            sale("5"),
            sale("9", kind=AccountType.IRA),
            sale("11", kind=AccountType.ROTH_IRA),
            sale("13", sold=date(YEAR - 1, 12, 31)),
        ],
        year=YEAR,
        reporting=same_reporting(BasisReporting.REPORTED),
    )
    assert [r.row.gain_loss for r in rows] == [D("5.00")]


def test_the_description_is_the_shares_and_the_symbol() -> None:
    [whole, fraction] = boxed_rows(
        [sale("1", shares="10.000000"), sale("1", shares="2.500000", symbol="MSFT")],
        year=YEAR,
        reporting=same_reporting(BasisReporting.REPORTED),
    )
    assert (whole.description, fraction.description) == ("10 AAPL", "2.5 MSFT")


# Inherited property -----------------------------------------------------------------------------


def inherited_sale(acquired: date) -> tuple[RealizedLot, dict[uuid.UUID, str]]:
    """A sale of inherited shares (always long-term), with the sources naming its lot inherited."""
    sold = sale("250", Term.LONG, acquired=acquired, symbol="KO")
    return sold, {sold.lot_id: "inherited"}


def test_column_b_of_inherited_property_reads_inherited_instead_of_a_date() -> None:
    inherited, sources = inherited_sale(date(2024, 11, 3))
    bought = sale("40", Term.LONG)
    rows = boxed_rows(
        [inherited, bought],
        year=YEAR,
        reporting=reporting_of_lots(sources),
        inherited=inherited_lots(sources),
    )
    assert [(r.row.symbol, r.date_acquired) for r in rows] == [
        ("AAPL", bought.acquired_at),
        ("KO", "INHERITED"),
    ]
    assert [r.inherited for r in rows] == [False, True]


@pytest.mark.parametrize(("acquired", "box"), [(date(2024, 11, 3), Box.D), (date(2009, 2, 1), Box.E)])
def test_inherited_property_keeps_its_box_long_term_and_covered_by_the_date_of_death(
    acquired: date, box: Box
) -> None:
    inherited, sources = inherited_sale(acquired)
    [row] = boxed_rows(
        [inherited], year=YEAR, reporting=reporting_of_lots(sources), inherited=inherited_lots(sources)
    )
    assert (row.box, row.lot_acquired, row.row.acquired) == (box, acquired, acquired)


def test_only_inherited_lots_read_inherited_gifts_and_transfers_show_their_date() -> None:
    sources = {uuid.uuid4(): "gift", uuid.uuid4(): "transfer_in", uuid.uuid4(): "buy"}
    heir = uuid.uuid4()
    assert inherited_lots({**sources, heir: "inherited"}) == {heir}


def test_the_form_8949_csv_and_the_1099b_write_inherited_in_the_date_acquired_column() -> None:
    inherited, sources = inherited_sale(date(2024, 11, 3))
    rows = boxed_rows(
        [inherited, sale("10")],
        year=YEAR,
        reporting=reporting_of_lots(sources),
        inherited=inherited_lots(sources),
    )
    lines = parsed(form_8949_csv(rows, year=YEAR))
    assert [(line["box"], line["line"], line["(b) date acquired"]) for line in lines] == [
        ("A", "row", f"{YEAR}-01-06"),
        ("A", "total", ""),
        ("D", "row", "INHERITED"),
        ("D", "total", ""),
    ]
    statement = parsed(broker_statement_csv(broker_statement(rows)))
    assert [(line["description"], line["date_acquired"], line["term"]) for line in statement] == [
        ("10 AAPL", f"{YEAR}-01-06", "short"),
        ("10 KO", "INHERITED", "long"),
    ]


# Totals and Schedule D ---------------------------------------------------------------------------


def test_each_box_totals_its_columns() -> None:
    rows = boxed_rows(
        [sale("100.005"), sale("-40", adjustment="15"), sale("60", Term.LONG)],
        year=YEAR,
        reporting=same_reporting(BasisReporting.REPORTED),
    )
    totals = box_totals(rows)
    assert list(totals) == [Box.A, Box.D]
    a = totals[Box.A]
    assert (a.rows, a.proceeds, a.cost_basis, a.adjustment, a.gain_loss) == (
        2,
        D("2060.00"),  # 1100.005 + 960, added exactly then rounded half-even
        D("2000.00"),
        D("15.00"),
        D("75.00"),
    )
    assert totals[Box.D].gain_loss == D("60.00")


def test_schedule_d_puts_each_box_on_its_line_and_takes_netting_from_the_year_s_totals() -> None:
    realized = [
        sale("-2500"),
        sale("400", Term.LONG),
        sale("-1800", Term.LONG, acquired=date(2009, 4, 1)),
        sale("-300", adjustment="300"),  # a wash sale: the loss is disallowed, code W
    ]
    old = realized[2]
    rows = boxed_rows(realized, year=YEAR, reporting=reporting_of_lots({old.lot_id: "transfer_in"}))
    carried = CapitalLossCarryforward(short=D("700"), long=D("250"))
    totals = year_totals(realized, year=YEAR, filing_status=FilingStatus.SINGLE, prior_carryforward=carried)
    schedule = schedule_d(box_totals(rows), totals)

    def line(n: str) -> Decimal:
        return schedule.line(n).gain_loss

    assert (line("1a"), line("1b"), line("2"), line("3")) == (D(0), D("-2500.00"), D(0), D(0))
    assert schedule.line("1b").adjustment == D("300.00")
    assert (line("6"), line("7")) == (D("-700.00"), D("-3200.00"))
    assert line("1b") + line("2") + line("3") + line("6") == line("7") == totals.net_short
    assert (line("8b"), line("9"), line("14"), line("15")) == (
        D("400.00"),
        D("-1800.00"),
        D("-250.00"),
        D("-1650.00"),
    )
    assert line("8b") + line("9") + line("10") + line("14") == line("15") == totals.net_long
    assert line("16") == totals.net == D("-4850.00")
    assert line("21") == -totals.deductible == D("-3000.00")
    assert (schedule.carryforward_short, schedule.carryforward_long) == (
        totals.carryforward.short,
        totals.carryforward.long,
    )
    assert schedule.carryforward_short + schedule.carryforward_long == D("1850.00")


def test_married_filing_separately_deducts_at_most_1500() -> None:
    realized = [sale("-4000")]
    rows = boxed_rows(realized, year=YEAR, reporting=same_reporting(BasisReporting.REPORTED))
    totals = year_totals(realized, year=YEAR, filing_status=FilingStatus.MARRIED_SEPARATE)
    schedule = schedule_d(box_totals(rows), totals)
    assert schedule.line("21").gain_loss == D("-1500.00")
    assert "1,500" in schedule.line("21").description
    assert schedule.carryforward_short == D("2500.00")


def test_rows_and_totals_of_different_sales_are_refused() -> None:
    rows = boxed_rows([sale("10")], year=YEAR, reporting=same_reporting(BasisReporting.REPORTED))
    with pytest.raises(ScheduleDMismatch):
        schedule_d(box_totals(rows), year_totals([sale("99")], year=YEAR))


# CSV -----------------------------------------------------------------------------------------------


def test_form_8949_csv_lists_each_box_then_its_totals_and_a_wash_sale_with_code_w() -> None:
    realized = [sale("120"), sale("-300", adjustment="300", symbol="MSFT"), sale("75", Term.LONG)]
    rows = boxed_rows(realized, year=YEAR, reporting=same_reporting(BasisReporting.REPORTED))
    lines = parsed(form_8949_csv(rows, year=YEAR))
    assert [(line["box"], line["line"]) for line in lines] == [
        ("A", "row"),
        ("A", "row"),
        ("A", "total"),
        ("D", "row"),
        ("D", "total"),
    ]
    wash = next(line for line in lines if line["(a) description"] == "10 MSFT")
    assert (wash["(f) code"], wash["(g) adjustment"], wash["(h) gain or loss"]) == ("W", "300.00", "0.00")
    assert (wash["(d) proceeds"], wash["(e) cost basis"]) == ("700.00", "1000.00")
    assert wash["(b) date acquired"] == f"{YEAR}-01-06" and wash["(c) date sold"] == f"{YEAR}-06-02"
    plain = lines[0]
    assert (plain["(f) code"], plain["(g) adjustment"]) == ("", "")
    total_a = lines[2]
    assert total_a["(a) description"] == "Totals, box A (2 rows)"
    assert (total_a["(d) proceeds"], total_a["(g) adjustment"], total_a["(h) gain or loss"]) == (
        "1820.00",
        "300.00",
        "120.00",
    )
    assert {line["part"] for line in lines[3:]} == {"II"}


def test_a_year_without_sales_is_the_header_alone() -> None:
    assert parsed(form_8949_csv([], year=YEAR)) == []


@pytest.mark.parametrize("dangerous", ['=HYPERLINK("x")', "+1", "-2+3", "@SUM(A1)", "\tx"])
def test_text_that_a_spreadsheet_would_run_gets_a_leading_apostrophe(dangerous: str) -> None:
    assert text_cell(dangerous) == "'" + dangerous
    assert text_cell("10 AAPL") == "10 AAPL"


def test_amounts_stay_plain_decimal_strings_even_when_negative() -> None:
    assert amount_text(D("-123.454")) == "-123.45"
    assert amount_text(D("-0.001")) == "0.00"
    rows = boxed_rows([sale("-123.45")], year=YEAR, reporting=same_reporting(BasisReporting.REPORTED))
    [row, _] = parsed(form_8949_csv(rows, year=YEAR))
    assert row["(h) gain or loss"] == "-123.45"


def test_schedule_d_csv_has_every_line_and_the_carryover() -> None:
    realized = [sale("-5000")]
    rows = boxed_rows(realized, year=YEAR, reporting=same_reporting(BasisReporting.REPORTED))
    schedule = schedule_d(box_totals(rows), year_totals(realized, year=YEAR))
    lines = parsed(schedule_d_csv(schedule))
    by_line = {line["line"]: line for line in lines if line["line"] != "carryover"}
    assert list(by_line) == ["1a", "1b", "2", "3", "6", "7", "8a", "8b", "9", "10", "14", "15", "16", "21"]
    assert (by_line["1b"]["cost_basis"], by_line["1b"]["gain_loss"]) == ("1000.00", "-5000.00")
    assert (by_line["7"]["gain_loss"], by_line["7"]["proceeds"]) == ("-5000.00", "")
    assert by_line["21"]["gain_loss"] == "-3000.00"
    carried = [line["gain_loss"] for line in lines if line["line"] == "carryover"]
    assert carried == ["2000.00", "0.00"]


def test_the_1099b_says_per_sale_whether_the_basis_was_reported() -> None:
    here = sale("10")
    old = sale("-300", Term.LONG, acquired=date(2007, 2, 1), sold=date(YEAR, 7, 1), adjustment="100")
    rows = boxed_rows([old, here], year=YEAR, reporting=reporting_of_lots({old.lot_id: "transfer_in"}))
    lines = parsed(broker_statement_csv(broker_statement(rows)))
    assert [line["description"] for line in lines] == ["10 AAPL", "10 AAPL"]
    assert [(line["term"], line["covered"], line["basis_reported_to_irs"]) for line in lines] == [
        ("short", "covered", "yes"),
        ("long", "noncovered", "no"),
    ]
    assert lines[1]["wash_sale_loss_disallowed"] == "100.00" and lines[1]["quantity"] == "10"
