"""A CSV trade history is checked in full: every problem named with its line, nothing returned half-done."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from wealthalloc.domain.wash_sale import AccountType, Side, Transaction, realize
from wealthalloc.tax import (
    TransactionsCsvError,
    parse_identity_groups_csv,
    parse_transactions_csv,
    read_transactions_csv,
)

TODAY = date(2022, 12, 30)
HEADER = "date,account_id,account_type,symbol,side,quantity,price,fees,currency"
KNOWN = {"AAPL", "JPM", "BAC", "BRK.B"}


def parse(
    *rows: str, header: str = HEADER, sort: bool = False, known: set[str] | None = KNOWN
) -> list[Transaction]:
    return parse_transactions_csv(
        "\n".join([header, *rows]) + "\n", today=TODAY, known_symbols=known, sort=sort
    )


def problems(*rows: str, **options: object) -> list[tuple[int, str]]:
    with pytest.raises(TransactionsCsvError) as info:
        parse(*rows, **options)  # type: ignore[arg-type]
    return [(problem.line, problem.message) for problem in info.value.problems]


def test_a_good_file_becomes_the_engine_input() -> None:
    history = parse(
        "2022-01-03,brokerage,taxable,aapl,buy,10,150.25,1.00,USD",
        "2022-01-03,ira-1,IRA,JPM,buy,2.5,140,,",
        "2022-02-01,brokerage,taxable,AAPL,sell,4,160,0,usd",
    )
    first, second, third = history
    assert (first.symbol, first.side, first.quantity, first.price, first.fees) == (
        "AAPL",
        Side.BUY,
        Decimal("10"),
        Decimal("150.25"),
        Decimal("1.00"),
    )
    assert second.account_type is AccountType.IRA and second.fees == 0
    assert third.side is Side.SELL and third.ref == "line 4"
    assert realize(history).realized[0].shares == Decimal("4")


def test_fees_and_currency_columns_are_optional_and_columns_may_come_in_any_order() -> None:
    history = parse(
        "BAC,buy,100,30,2022-03-01,a,taxable",
        header="symbol,side,quantity,price,date,account_id,account_type",
    )
    assert history[0].symbol == "BAC" and history[0].fees == 0


def test_a_sale_of_more_shares_than_held_names_its_line() -> None:
    found = problems(
        "2022-01-03,brokerage,taxable,AAPL,buy,10,150,,",
        "2022-01-04,other,taxable,AAPL,sell,1,150,,",  # another account holds none
        "2022-01-05,brokerage,taxable,AAPL,sell,10.000001,150,,",
    )
    assert [line for line, _ in found] == [3, 4]
    assert "holds 0" in found[0][1] and "holds 10" in found[1][1]


def test_future_dates_are_refused_relative_to_the_injected_today() -> None:
    [(line, message)] = problems("2022-12-31,a,taxable,AAPL,buy,1,1,,")
    assert line == 2 and "in the future" in message
    assert parse("2022-12-30,a,taxable,AAPL,buy,1,1,,")[0].date == TODAY


def test_rows_out_of_date_order_are_an_error_unless_sorting_is_asked_for() -> None:
    rows = (
        "2022-03-01,a,taxable,AAPL,buy,10,100,,",
        "2022-02-01,a,taxable,AAPL,buy,5,90,,",
        "2022-03-01,a,taxable,AAPL,sell,12,80,,",
    )
    [(line, message)] = problems(*rows)
    assert line == 3 and "before line 2" in message and "--sort" in message
    history = parse(*rows, sort=True)
    # Stable: the two rows of 2022-03-01 keep their file order (buy, then sell).
    assert [(tx.date.month, tx.side.value, tx.ref) for tx in history] == [
        (2, "buy", "line 3"),
        (3, "buy", "line 2"),
        (3, "sell", "line 4"),
    ]


def test_same_day_buy_and_sell_are_legal_in_either_order_when_shares_are_held() -> None:
    history = parse(
        "2022-03-01,a,taxable,AAPL,buy,10,100,,",
        "2022-03-01,a,taxable,AAPL,sell,10,99,,",
        "2022-03-01,a,taxable,AAPL,buy,5,98,,",
    )
    result = realize(history)
    assert result.realized[0].adjustment == Decimal("5")  # the afternoon's 5 shares replace half
    # Selling first in the day is refused when nothing was held before.
    [(line, _)] = problems("2022-03-01,a,taxable,AAPL,sell,10,99,,", "2022-03-01,a,taxable,AAPL,buy,10,100,,")
    assert line == 2


def test_unknown_symbols_are_refused_and_any_ticker_is_accepted_without_a_known_set() -> None:
    [(line, message)] = problems("2022-03-01,a,taxable,XXXX,buy,1,1,,")
    assert (line, message) == (2, "unknown symbol XXXX")
    assert parse("2022-03-01,a,taxable,XXXX,buy,1,1,,", known=None)[0].symbol == "XXXX"
    assert parse("2022-03-01,a,taxable,brk.b,buy,1,1,,")[0].symbol == "BRK.B"
    [(_, message)] = problems("2022-03-01,a,taxable,$$$,buy,1,1,,", known=None)
    assert "not a ticker" in message


def test_non_usd_rows_are_refused() -> None:
    [(line, message)] = problems(
        "2022-03-01,a,taxable,AAPL,buy,1,1,,USD", "2022-03-02,a,taxable,AAPL,buy,1,1,,EUR"
    )
    assert line == 3 and "only USD" in message


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ("2022-03-01,a,taxable,AAPL,buy,1,1,,", None),
        ("2022-03-01,a,taxable,AAPL,buy,1,1", "7 fields, the header has 9"),
        ("2022-03-01,a,taxable,AAPL,buy,1,1,,,extra", "10 fields"),
        ("03/01/2022,a,taxable,AAPL,buy,1,1,,", "is not YYYY-MM-DD"),
        ("2022-02-30,a,taxable,AAPL,buy,1,1,,", "does not exist"),
        ("2022-03-01,,taxable,AAPL,buy,1,1,,", "account_id is empty"),
        ("2022-03-01,a,401k,AAPL,buy,1,1,,", "account_type '401k'"),
        ("2022-03-01,a,taxable,AAPL,hold,1,1,,", "side 'hold'"),
        ("2022-03-01,a,taxable,AAPL,buy,0,1,,", "quantity '0': must not be zero"),
        ("2022-03-01,a,taxable,AAPL,buy,-5,1,,", "quantity '-5': must be positive"),
        ("2022-03-01,a,taxable,AAPL,buy,1.0000001,1,,", "more than 6 decimal places"),
        ("2022-03-01,a,taxable,AAPL,buy,1,0,,", "price '0'"),
        ("2022-03-01,a,taxable,AAPL,buy,1,-3,,", "price '-3'"),
        ("2022-03-01,a,taxable,AAPL,buy,1,1e3,,", "price '1e3'"),
        ("2022-03-01,a,taxable,AAPL,buy,1,,,", "price is empty"),
        ("2022-03-01,a,taxable,AAPL,buy,1,1,-1,", "fees '-1'"),
        ("2022-03-01,a,taxable,AAPL,buy,1,1,abc,", "fees 'abc'"),
    ],
)
def test_malformed_rows_name_their_line(row: str, fragment: str | None) -> None:
    rows = ("2022-01-03,a,taxable,AAPL,buy,1,1,,", row)
    if fragment is None:
        assert len(parse(*rows)) == 2
        return
    found = problems(*rows)
    assert [line for line, _ in found] == [3]
    assert fragment in found[0][1]


def test_fees_above_a_sales_gross_amount_are_refused() -> None:
    [(line, message)] = problems(
        "2022-01-03,a,taxable,AAPL,buy,1,1,,", "2022-01-04,a,taxable,AAPL,sell,1,1,2,"
    )
    assert line == 3 and "exceed" in message


def test_an_account_keeps_one_type() -> None:
    [(line, message)] = problems(
        "2022-01-03,a,taxable,AAPL,buy,1,1,,", "2022-01-04,a,roth_ira,AAPL,buy,1,1,,"
    )
    assert line == 3 and "roth_ira here but taxable on line 2" in message


def test_header_problems_are_line_1() -> None:
    found = problems(
        "2022-01-03,a,taxable,AAPL,buy,1,1", header="date,account_id,account_type,symbol,side,qty,price"
    )
    assert found == [(1, found[0][1]), (1, "unknown column(s) 'qty'")]
    assert "missing column(s) quantity" in found[0][1]
    found = problems("x", header=HEADER + ",note")
    assert found[0][0] == 1 and "unknown column(s) 'note'" in found[0][1]
    with pytest.raises(TransactionsCsvError, match="line 1: empty file"):
        parse_transactions_csv("", today=TODAY)
    with pytest.raises(TransactionsCsvError, match="no transactions"):
        parse_transactions_csv(HEADER + "\n\n", today=TODAY)


def test_every_problem_is_reported_at_once_and_nothing_is_returned() -> None:
    found = problems(
        "2022-01-03,a,taxable,AAPL,buy,1,1,,",
        "2022-01-04,a,taxable,NOPE,buy,1,1,,",
        "2022-01-05,a,taxable,AAPL,buy,0,1,,",
        "2022-01-06,a,taxable,AAPL,buy,1,1,,GBP",
    )
    assert [line for line, _ in found] == [3, 4, 5]
    with pytest.raises(TransactionsCsvError) as info:
        parse("2022-01-03,a,taxable,NOPE,buy,1,1,,")
    assert str(info.value).startswith("line 2: ") and info.value.line == 2


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        "\ufeff"
        + HEADER
        + "\n\n2022-01-03,a,taxable,AAPL,buy,1,1,,\n\n2022-01-04,a,taxable,AAPL,sell,2,1,,\n"
    )
    with pytest.raises(TransactionsCsvError) as info:
        read_transactions_csv(path, today=TODAY, known_symbols=KNOWN)
    assert info.value.line == 5 and str(path) in str(info.value)


def test_identity_groups_from_csv() -> None:
    groups = parse_identity_groups_csv("group_name,symbol\nalphabet,GOOG\nalphabet,googl\n")
    assert groups.identical("GOOG", "GOOGL")
    with pytest.raises(TransactionsCsvError, match="line 3"):
        parse_identity_groups_csv("group_name,symbol\nalphabet,GOOG\n,GOOGL\n")
    with pytest.raises(TransactionsCsvError, match="line 1"):
        parse_identity_groups_csv("name,ticker\n")
