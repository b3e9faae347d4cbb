"""The order rules: what is a valid order, what it reserves, what a fill does to it."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.orders import working
from wealthalloc.trading.rules import (
    CommissionModel,
    InsufficientFunds,
    InsufficientShares,
    InvalidOrder,
    OrderRequest,
    apply_fill,
    check_affordable,
    price_cap,
    reservation,
    validate,
)

REF = D("100.00")


def order(**kw: object) -> OrderRequest:
    base: dict[str, object] = {"symbol": "AAPL", "side": "buy", "quantity": D(10), "order_type": "market"}
    base.update(kw)
    return OrderRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"quantity": D(0)}, "quantity"),
        ({"quantity": D(-5)}, "quantity"),
        ({"quantity": D("1.0000001")}, "quantity"),
        ({"order_type": "limit"}, "limit_price"),
        ({"order_type": "stop"}, "stop_price"),
        ({"order_type": "market", "limit_price": D(5)}, "limit_price"),
        ({"order_type": "limit", "limit_price": D("-1")}, "limit_price"),
        ({"order_type": "limit", "limit_price": D("1.00001")}, "limit_price"),
        ({"order_type": "stop", "stop_price": D(95)}, "stop_price"),  # buy stop below the market
        ({"side": "sell", "order_type": "stop", "stop_price": D(105)}, "stop_price"),  # sell stop above
        ({"order_type": "stop_limit", "stop_price": D(110), "limit_price": D(105)}, "limit_price"),
        ({"quantity": D("2.5"), "order_type": "limit", "limit_price": D(99)}, "quantity"),
        ({"quantity": D("2.5"), "time_in_force": "gtc"}, "quantity"),
    ],
)
def test_orders_no_market_would_take_name_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidOrder) as caught:
        validate(order(**kw), reference_price=REF, fractional_shares=True)
    assert caught.value.field == field


def test_fractional_shares_only_where_the_broker_trades_them() -> None:
    validate(order(quantity=D("2.5")), reference_price=REF, fractional_shares=True)
    with pytest.raises(InvalidOrder, match="whole shares"):
        validate(order(quantity=D("2.5")), reference_price=REF, fractional_shares=False)


def test_valid_orders_of_every_type_pass() -> None:
    for kw in (
        {},
        {"order_type": "limit", "limit_price": D("99.5")},
        {"order_type": "stop", "stop_price": D(105)},
        {"order_type": "stop_limit", "stop_price": D(105), "limit_price": D(106)},
        {"side": "sell", "order_type": "stop_limit", "stop_price": D(95), "limit_price": D(94)},
    ):
        validate(order(**kw), reference_price=REF, fractional_shares=False)


def test_a_buy_reserves_its_worst_case_and_a_sell_reserves_nothing() -> None:
    fees = CommissionModel()
    market = order()
    cap = price_cap(market, reference_price=REF, collar=D("0.05"))
    assert cap == D("105.0000")
    assert reservation(market, cap, fees) == D(1050) + D("1.00")
    limit = order(order_type="limit", limit_price=D(99))
    assert price_cap(limit, reference_price=REF, collar=D("0.05")) == D(99)
    stop = order(order_type="stop", stop_price=D(120))
    assert price_cap(stop, reference_price=REF, collar=D("0.05")) == D("126.0000")
    sell = order(side="sell")
    assert price_cap(sell, reference_price=REF, collar=D("0.05")) is None
    assert reservation(sell, None, fees) == 0


def test_commission_is_per_share_with_a_minimum_and_a_cap() -> None:
    fees = CommissionModel(per_share=D("0.005"), minimum=D("1.00"), max_fraction=D("0.01"))
    assert fees(D(10), D(100)) == D("1.0000")  # minimum
    assert fees(D(1000), D(100)) == D("5.0000")  # per share
    assert fees(D(10), D("0.50")) == D("0.0500")  # capped at 1 % of 5.00


def test_buying_power_counts_open_buys_and_shares_count_open_sells() -> None:
    open_orders = [
        working(side="buy", symbol="MSFT", reserved_cash=D(600), quantity=D(1)),
        working(side="sell", symbol="AAPL", quantity=D(8), filled_quantity=D(3), status="partially_filled"),
    ]
    check_affordable(order(), reserve=D(400), cash=D(1000), held=D(0), open_orders=open_orders)
    with pytest.raises(InsufficientFunds) as funds:
        check_affordable(order(), reserve=D("400.01"), cash=D(1000), held=D(0), open_orders=open_orders)
    assert (funds.value.required, funds.value.available) == (D("400.01"), D(400))
    sell = order(side="sell", quantity=D(6))
    check_affordable(sell, reserve=D(0), cash=D(0), held=D(11), open_orders=open_orders)
    with pytest.raises(InsufficientShares) as shares:
        check_affordable(sell, reserve=D(0), cash=D(0), held=D(10), open_orders=open_orders)
    assert shares.value.available == D(5)


def test_fills_move_the_average_and_shrink_the_reservation_in_proportion() -> None:
    first = apply_fill(**fill(fill_price=D(100), commission=D(0)))  # type: ignore[arg-type]
    assert (first.filled, first.average, first.reserved, first.status) == (
        D(4),
        D("100.000000"),
        D("630.6000"),
        "partially_filled",
    )
    rest = fill(
        filled=first.filled,
        average=first.average,
        reserved=first.reserved,
        fill_quantity=D(6),
        fill_price=D(101),
        commission=D(0),
    )
    second = apply_fill(**rest)  # type: ignore[arg-type]
    assert (second.filled, second.average, second.reserved, second.status) == (
        D(10),
        D("100.600000"),
        D(0),
        "filled",
    )
    with pytest.raises(ValueError, match="exceeds"):
        apply_fill(**fill(filled=D(10), average=D(1), reserved=D(0), fill_quantity=D(1)))  # type: ignore[arg-type]


def fill(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "side": "buy",
        "status": "submitted",
        "quantity": D(10),
        "filled": D(0),
        "average": None,
        "reserved": D(1051),
        "fill_quantity": D(4),
        "fill_price": D("100.005"),
        "commission": D("1.00"),
    }
    return {**base, **kw}


def test_a_buy_fill_pays_its_value_in_money_and_its_commission() -> None:
    applied = apply_fill(**fill())  # type: ignore[arg-type]
    assert (applied.value, applied.cash) == (D("400.0200"), D("-401.0200"))
    assert (applied.filled, applied.status, applied.reserved) == (D(4), "partially_filled", D("630.6000"))


def test_a_sell_fill_receives_its_value_less_the_commission() -> None:
    applied = apply_fill(**fill(side="sell", reserved=D(0), fill_quantity=D(10)))  # type: ignore[arg-type]
    assert (applied.value, applied.cash, applied.status) == (D("1000.0500"), D("999.0500"), "filled")


def test_a_fill_that_raced_a_cancel_is_applied_and_the_order_stays_final() -> None:
    part = apply_fill(**fill(status="cancelled"))  # type: ignore[arg-type]
    assert (part.status, part.reserved, part.filled) == ("cancelled", D(0), D(4))
    whole = apply_fill(**fill(status="cancelled", fill_quantity=D(10)))  # type: ignore[arg-type]
    assert (whole.status, whole.reserved) == ("filled", D(0))
