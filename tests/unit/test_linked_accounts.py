"""Linked accounts as rules: valid numbers and their masked form, the CSV statement, and what a
broker's positions against the portfolio's become (items, pending arrivals, confirmations)."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal as D

import pytest

from wealthalloc.linked_accounts import (
    BrokerPosition,
    BrokerSnapshot,
    DifferenceKind,
    HeldPosition,
    InvalidAccountNumber,
    PendingLot,
    StatementError,
    StatementLot,
    mask,
    normalize,
    parse_statement,
    reconcile,
)

TODAY = date(2022, 12, 28)


# Account numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["U1234567", "du 7654321", "F12345", "DI123456789"])
def test_ibkr_numbers_are_accepted_in_upper_case_without_spaces(number: str) -> None:
    assert normalize("ibkr", number) == number.replace(" ", "").upper()


@pytest.mark.parametrize("number", ["", "1234567", "X1234567", "U12", "U1234567890", "U123-4567"])
def test_malformed_ibkr_numbers_are_refused_without_echoing_them(number: str) -> None:
    with pytest.raises(InvalidAccountNumber) as caught:
        normalize("ibkr", number)
    assert not number or number not in str(caught.value)


@pytest.mark.parametrize("number", ["1234", "ab-99-01", "Z9X8Y7W6V5U4T3S2R1Q0"])
def test_other_brokers_numbers_are_letters_digits_and_inner_dashes(number: str) -> None:
    assert normalize("csv", number) == number.upper()


@pytest.mark.parametrize("number", ["123", "-1234", "1234-", "12_34", "A" * 21])
def test_bad_statement_account_numbers_are_refused(number: str) -> None:
    with pytest.raises(InvalidAccountNumber):
        normalize("csv", number)


def test_an_unknown_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        normalize("schwab", "U1234567")


def test_only_the_last_four_characters_are_ever_shown() -> None:
    assert mask("U1234567") == "****4567"
    assert mask("AB-99-01") == "****9-01"


# The CSV statement -----------------------------------------------------------------------------


def test_a_statement_groups_its_lots_by_symbol() -> None:
    snapshot = parse_statement(
        "symbol,quantity,cost_basis,acquired_date\n"
        "AAPL,10,1500.00,2021-03-04\n"
        "ko,25.5,1320.75,2019-11-20\n"
        "AAPL,5,700,2022-01-10\n",
        today=TODAY,
    )

    assert not snapshot.verified and snapshot.cash is None
    aapl, ko = snapshot.positions
    assert (aapl.symbol, aapl.quantity, aapl.cost_basis) == ("AAPL", D("15"), D("2200.00"))
    assert aapl.lots == (
        StatementLot(D("10"), D("1500.00"), date(2021, 3, 4)),
        StatementLot(D("5"), D("700"), date(2022, 1, 10)),
    )
    assert (ko.symbol, ko.quantity) == ("KO", D("25.5"))


def test_columns_may_come_in_any_order_with_extra_ones_and_a_bom() -> None:
    snapshot = parse_statement(
        '\ufeffAcquired_Date,Symbol,Note,Cost_Basis,Quantity\n2020-05-01,MSFT,gift?,"1,234.50",3\n',
        today=TODAY,
    )
    assert snapshot.positions[0].cost_basis == D("1234.50")


def test_every_bad_line_is_reported_with_its_line_number_at_once() -> None:
    with pytest.raises(StatementError) as caught:
        parse_statement(
            "symbol,quantity,cost_basis,acquired_date\n"
            "AAPL,10,1500.00,2021-03-04\n"
            "12X,0,-5,2021-13-01\n"
            "KO,1.1234567,10,2030-01-01\n",
            today=TODAY,
        )
    problems = {(p["line"], p["field"]) for p in caught.value.problems}
    assert problems == {
        (3, "symbol"),
        (3, "quantity"),
        (3, "cost_basis"),
        (3, "acquired_date"),
        (4, "quantity"),
        (4, "acquired_date"),
    }


def test_a_statement_without_its_columns_or_positions_is_refused() -> None:
    with pytest.raises(StatementError, match="1 problem") as caught:
        parse_statement("symbol,quantity\nAAPL,1\n", today=TODAY)
    assert "cost_basis" in str(caught.value.problems[0]["message"])
    with pytest.raises(StatementError):
        parse_statement("symbol,quantity,cost_basis,acquired_date\n", today=TODAY)


# Reconciliation --------------------------------------------------------------------------------


def snapshot(
    *positions: tuple[str, str, str], cash: str | None = None, verified: bool = True
) -> BrokerSnapshot:
    return BrokerSnapshot(
        tuple(BrokerPosition(s, D(q), D(c)) for s, q, c in positions),
        cash=None if cash is None else D(cash),
        verified=verified,
    )


def test_matching_positions_and_cash_make_no_item() -> None:
    result = reconcile(
        snapshot(("AAPL", "10", "1500"), cash="100"), {"AAPL": HeldPosition("AAPL", D(10))}, D(100)
    )
    assert result.differences == () and result.transfers_in == () and result.confirm == ()


def test_a_position_only_the_broker_holds_arrives_and_is_reported() -> None:
    result = reconcile(snapshot(("MSFT", "3", "900")), {}, D(0))

    [difference] = result.differences
    assert (difference.kind, difference.symbol, difference.broker_quantity) == (
        DifferenceKind.MISSING_HERE,
        "MSFT",
        D(3),
    )
    assert [p.symbol for p in result.transfers_in] == ["MSFT"]
    assert result.transfers_in[0].arriving_lots() == (StatementLot(D(3), D(900)),)


def test_different_quantities_and_positions_missing_at_the_broker_are_items_not_changes() -> None:
    held = {"AAPL": HeldPosition("AAPL", D(10)), "KO": HeldPosition("KO", D(4))}
    result = reconcile(snapshot(("AAPL", "12", "1800"), cash="50"), held, D(75))

    kinds = {(d.kind, d.symbol): d for d in result.differences}
    assert kinds[(DifferenceKind.QUANTITY, "AAPL")].broker_quantity == D(12)
    assert kinds[(DifferenceKind.QUANTITY, "AAPL")].platform_quantity == D(10)
    assert kinds[(DifferenceKind.MISSING_AT_BROKER, "KO")].platform_quantity == D(4)
    assert (
        kinds[(DifferenceKind.CASH, None)].broker_cash,
        kinds[(DifferenceKind.CASH, None)].platform_cash,
    ) == (
        D(50),
        D(75),
    )
    assert result.transfers_in == ()


def test_a_broker_read_directly_confirms_the_pending_lots_it_covers_oldest_first() -> None:
    old, new = uuid.uuid4(), uuid.uuid4()
    held = {
        "AAPL": HeldPosition(
            "AAPL",
            D(5),
            (PendingLot(new, D(4), date(2022, 6, 1)), PendingLot(old, D(3), date(2020, 1, 2))),
        )
    }

    assert reconcile(snapshot(("AAPL", "12", "0")), held, D(0)).confirm == (old, new)
    partly = reconcile(snapshot(("AAPL", "9", "0")), held, D(0))
    assert partly.confirm == (old,)
    assert partly.differences[0].kind is DifferenceKind.QUANTITY


def test_a_statement_a_person_uploaded_confirms_nothing() -> None:
    held = {"AAPL": HeldPosition("AAPL", D(0), (PendingLot(uuid.uuid4(), D(3), date(2020, 1, 2)),))}
    result = reconcile(snapshot(("AAPL", "3", "0"), verified=False), held, D(0))
    assert result.confirm == () and result.differences == ()
