"""Buying power: what open buys reserve and unsettled sales hold back, decided once for every path."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest

from tests.orders import working
from wealthalloc.domain.buying_power import (
    BuyingPower,
    InsufficientFunds,
    SaleFill,
    settles_on,
    unsettled_proceeds,
)
from wealthalloc.domain.money import CASH_PLACES, MONEY_PLACES, SHARE_PLACES
from wealthalloc.trading.order import Order

HOLIDAYS = {date(2022, 11, 24)}  # Thanksgiving 2022


def next_trading_day(day: date) -> date:
    following = day + timedelta(days=1)
    while following.weekday() >= 5 or following in HOLIDAYS:
        following += timedelta(days=1)
    return following


def open_buy(reserved: str, status: str = "submitted") -> Order:
    return working(side="buy", status=status, reserved_cash=D(reserved))


def test_open_and_partly_filled_buys_hold_their_reservation_back_from_a_withdrawal() -> None:
    orders = [
        open_buy("501.00"),
        open_buy("100.00", "partially_filled"),
        open_buy("999.00", "cancelled"),
        working(side="sell", status="submitted", reserved_cash=D(0)),
    ]
    power = BuyingPower.of(D("1000.00"), orders)
    assert power.reserved == D("601.00")
    assert power.withdrawable == power.for_buys == D("399.00")
    power.check_withdrawal(D("399.00"))
    with pytest.raises(InsufficientFunds) as refused:
        power.check_withdrawal(D("1000.00"))
    assert (refused.value.required, refused.value.available) == (D("1000.00"), D("399.0000"))
    assert "399.0000 is available" in str(refused.value)


def test_unsettled_proceeds_may_buy_but_not_leave() -> None:
    power = BuyingPower(cash=D("1500.00"), reserved=D("200.00"), unsettled=D("500.00"))
    assert power.for_buys == D("1300.00")
    assert power.withdrawable == D("800.00")
    power.check_buy(D("1300.00"))
    with pytest.raises(InsufficientFunds):
        power.check_buy(D("1300.01"))
    with pytest.raises(InsufficientFunds):
        power.check_withdrawal(D("800.01"))


def test_withdrawable_cash_is_never_negative_when_buys_spent_the_unsettled_proceeds() -> None:
    power = BuyingPower(cash=D("300.00"), reserved=D("0"), unsettled=D("500.00"))
    assert power.withdrawable == 0
    assert power.as_dict() == {
        "cash_balance": D("300.0000"),
        "reserved_cash": D("0.0000"),
        "unsettled_cash": D("500.0000"),
        "available_cash": D("0.0000"),
        "buying_power": D("300.0000"),
    }


@pytest.mark.parametrize(
    ("traded_on", "settles"),
    [
        (date(2022, 11, 21), date(2022, 11, 22)),  # Monday -> Tuesday
        (date(2022, 11, 23), date(2022, 11, 25)),  # the day before Thanksgiving -> Friday
        (date(2022, 11, 25), date(2022, 11, 28)),  # Friday -> Monday
    ],
)
def test_a_sale_settles_the_next_trading_day(traded_on: date, settles: date) -> None:
    assert settles_on(traded_on, next_trading_day) == settles


def test_only_sales_not_yet_settled_count_as_unsettled() -> None:
    friday = SaleFill(traded_on=date(2022, 11, 25), quantity=D("2"), price=D("150.25"), commission=D("1.00"))
    monday = SaleFill(
        traded_on=date(2022, 11, 28), quantity=D("0.3333"), price=D("147.38"), commission=D("0.4912")
    )
    assert monday.proceeds == D("49.1218") - D("0.4912")
    on_monday = unsettled_proceeds(
        [friday, monday], today=date(2022, 11, 28), next_trading_day=next_trading_day
    )
    assert on_monday == monday.proceeds
    on_friday = unsettled_proceeds([friday], today=date(2022, 11, 25), next_trading_day=next_trading_day)
    assert on_friday == D("299.5000")
    on_tuesday = unsettled_proceeds(
        [friday, monday], today=date(2022, 11, 29), next_trading_day=next_trading_day
    )
    assert on_tuesday == 0


def test_cash_is_entered_with_the_precision_it_is_kept_in() -> None:
    """A balance has four decimal places (NUMERIC(20,4)); a withdrawal limited to cents could never
    empty one that fractional fills left at 0.0054."""
    assert CASH_PLACES == MONEY_PLACES == 4
    assert SHARE_PLACES == 6


def test_the_market_names_the_next_trading_day_from_its_calendar_and_weekdays_past_its_end() -> None:
    from typing import Any, cast

    from wealthalloc.marketdata import MarketClock
    from wealthalloc.portfolios.market import Market

    days = [date(2022, 11, 22), date(2022, 11, 23), date(2022, 11, 25), date(2022, 11, 28)]
    market = Market(cast(Any, None), MarketClock(days), cast(Any, None))
    assert market.next_day(date(2022, 11, 23)) == date(2022, 11, 25)  # over Thanksgiving
    assert market.next_day(date(2022, 11, 25)) == date(2022, 11, 28)  # over the weekend
    assert market.next_day(date(2022, 11, 28)) == date(2022, 11, 29)  # past the data: the next weekday
    assert market.next_day(date(2022, 12, 2)) == date(2022, 12, 5)
