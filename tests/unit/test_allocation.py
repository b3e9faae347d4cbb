"""Allocation against a target, and the rebalancing orders that bring a portfolio back to it.

Positions are built from the reference table shipped with the market data, so
sectors and asset classes are the real ones (AAPL and MSFT: Information
Technology; JNJ: Health Care; JPM: Financials; XOM and CVX: Energy; MTUM: a
factor ETF). Most portfolios are worth 10,000 so weights read as round numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wealthalloc.domain.allocation import (
    CASH,
    InvalidTarget,
    Position,
    ProposedOrder,
    RebalancePlan,
    TargetAllocation,
    Unfillable,
    WeightRow,
    allocation,
    rebalance,
)
from wealthalloc.marketdata import SecurityReference

D = Decimal
IT = "Information Technology"
HC = "Health Care"
FIN = "Financials"
ENERGY = "Energy"
REFERENCE = SecurityReference()

CLASSES = {"equity": "0.9", "cash": "0.1"}
BALANCED = TargetAllocation.parse({"asset_class": CLASSES, "sector": {IT: "0.3", HC: "0.3", FIN: "0.3"}})
EQUITY_AND_CASH = TargetAllocation.parse({"asset_class": CLASSES})


def hold(symbol: str, shares: int | str, price: int | str | Decimal) -> Position:
    security = REFERENCE.get(symbol)
    assert security is not None, symbol
    return Position(symbol, D(shares), D(price), security.asset_class, security.sector)


def candidate(symbol: str, price: int | str) -> Position:
    return hold(symbol, 0, price)


def by_key(rows: Iterable[WeightRow]) -> dict[str, WeightRow]:
    return {row.key: row for row in rows}


def trades(plan: RebalancePlan) -> list[tuple[str, str, Decimal]]:
    return [(order.side, order.symbol, order.quantity) for order in plan.orders]


def drifted() -> list[Position]:
    """IT at 50%, Health Care and Financials at 20%, cash at 10% of 10,000."""
    return [hold("AAPL", 50, 100), hold("JNJ", 20, 100), hold("JPM", 20, 100)]


# ------------------------------------------------------------------------------------ reading targets


def test_a_target_reads_weights_given_as_strings_or_numbers_as_exact_decimals() -> None:
    target = TargetAllocation.parse(
        {
            "asset_class": {"Equity": "0.9", "cash": 0.1},
            "sector": {IT: 0.3, HC: "0.15"},
            "symbol": {"aapl": 0},
        }
    )
    assert target.asset_class == {"equity": D("0.9"), "cash": D("0.1")}
    assert target.sector == {IT: D("0.3"), HC: D("0.15")}  # the float's text, not its binary fraction
    assert target.symbol == {"AAPL": D(0)}
    assert all(isinstance(w, Decimal) for w in (*target.asset_class.values(), *target.sector.values()))


def test_any_part_may_be_empty_or_left_out() -> None:
    assert TargetAllocation.parse({}) == TargetAllocation()
    only_sectors = TargetAllocation.parse({"asset_class": {}, "sector": {IT: "0.5"}, "symbol": None})
    assert only_sectors.asset_class == {} and only_sectors.symbol == {}


def test_a_target_written_as_json_reads_back_unchanged() -> None:
    target = TargetAllocation.parse(
        {"asset_class": CLASSES, "sector": {IT: "0.30"}, "symbol": {"AAPL": "1e-3"}}
    )
    written = target.as_json()
    assert written == {
        "asset_class": {"equity": "0.9", "cash": "0.1"},
        "sector": {IT: "0.30"},
        "symbol": {"AAPL": "0.001"},
    }
    assert TargetAllocation.parse(json.loads(json.dumps(written))) == target


def test_asset_classes_may_miss_1_by_rounding_noise_but_no_more() -> None:
    thirds = {"equity": "0.3333333333", "etf": "0.3333333333", "cash": "0.3333333334"}
    assert sum(TargetAllocation.parse({"asset_class": thirds}).asset_class.values()) == 1
    noisy = {"equity": "0.3333333333", "etf": "0.3333333333", "cash": "0.3333333333"}  # 1 - 1e-10
    TargetAllocation.parse({"asset_class": noisy})
    with pytest.raises(InvalidTarget, match="must add to exactly 1"):
        TargetAllocation.parse({"asset_class": {"equity": "0.333", "etf": "0.333", "cash": "0.333"}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({"sector": {IT: "1.5"}}, "weight 1.5 is outside [0, 1]", id="weight-over-1"),
        pytest.param({"sector": {IT: "-0.1"}}, "weight -0.1 is outside [0, 1]", id="negative-weight"),
        pytest.param({"asset_class": {"equity": "0.8", "cash": "0.1"}}, "add to 0.9", id="classes-under-1"),
        pytest.param({"asset_class": {"equity": "0.8", "cash": "0.3"}}, "add to 1.1", id="classes-over-1"),
        pytest.param({"sectors": {IT: "0.3"}}, "unknown target part(s) sectors", id="unknown-key"),
        pytest.param({"sector": {IT: "thirty"}}, "weight 'thirty' is not a number", id="non-numeric"),
        pytest.param({"sector": {IT: ""}}, "is not a number", id="empty-string"),
        pytest.param({"sector": {IT: "NaN"}}, "not a finite number", id="nan"),
        pytest.param({"sector": {IT: float("inf")}}, "not a finite number", id="infinity"),
        pytest.param({"sector": {IT: True}}, "must be a number, not True", id="boolean"),
        pytest.param({"sector": {IT: None}}, "a number or a numeric string", id="null"),
        pytest.param({"sector": [IT]}, "sector must be an object", id="part-not-an-object"),
        pytest.param({"sector": {"  ": "0.1"}}, "empty or non-text key", id="empty-key"),
        pytest.param({"symbol": {"AAPL": "0.1", "aapl": "0.2"}}, "'AAPL' is given twice", id="repeated-key"),
        pytest.param({"sector": {"Cash": "0.1"}}, "give its weight in asset_class", id="cash-as-sector"),
        pytest.param(
            {"asset_class": CLASSES, "sector": {IT: "0.6", HC: "0.4"}},
            "sector weights add to 1.0, more than the 0.9 left after the cash weight",
            id="sectors-over-invested-part",
        ),
        pytest.param(
            {"symbol": {"AAPL": "0.6", "MSFT": "0.6"}}, "symbol weights add to 1.2", id="symbols-over-1"
        ),
    ],
)
def test_an_invalid_target_is_refused_with_a_message_saying_why(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTarget, match=re.escape(message)):
        TargetAllocation.parse(raw)


def test_a_target_must_be_an_object_and_its_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        TargetAllocation.parse(["equity"])  # type: ignore[arg-type]
    with pytest.raises(InvalidTarget):
        TargetAllocation(asset_class={"equity": D("0.5")})  # built directly, validated the same way


# ------------------------------------------------------------------------------------------ positions


def test_a_position_is_worth_its_shares_times_its_price_in_decimal() -> None:
    position = hold("AAPL", "10.5", "150.25")
    assert position.market_value == D("1577.625")
    assert (position.asset_class, position.sector) == ("equity", IT)


def test_floats_short_positions_and_cash_as_a_position_are_refused() -> None:
    with pytest.raises(TypeError, match="must be a Decimal"):
        Position("AAPL", 10.0, D(150), "equity", IT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="short positions"):
        Position("AAPL", D(-1), D(150), "equity", IT)
    with pytest.raises(ValueError, match="pass cash as the cash amount"):
        Position("USD", D(1), D(1), CASH, "Cash")


# ------------------------------------------------------------------------------------------- reports


def test_weights_are_fractions_of_the_whole_portfolio_and_add_to_1_with_cash() -> None:
    report = allocation(drifted(), D(1000), BALANCED)
    assert report.total_value == D(10000)
    cash = by_key(report.by_asset_class)[CASH].current_weight
    assert cash == D("0.1")
    assert sum(row.current_weight for row in report.by_asset_class) == 1
    assert sum(row.current_weight for row in report.by_sector) + cash == 1
    assert sum(row.current_weight for row in report.by_symbol) + cash == 1


def test_drift_is_current_minus_target_so_overweight_is_positive() -> None:
    report = allocation(drifted(), D(1000), BALANCED)
    sectors = by_key(report.by_sector)
    assert sectors[IT].drift == D("0.2")
    assert sectors[HC].drift == D("-0.1")
    assert sectors[FIN].drift == D("-0.1")
    assert by_key(report.by_asset_class)["equity"].drift == 0
    assert report.max_drift == D("0.2")
    assert [row.key for row in report.by_sector] == [IT, FIN, HC]  # by value, then by name


def test_cash_is_an_asset_class_and_not_a_sector() -> None:
    report = allocation(drifted(), D(1000), BALANCED)
    assert CASH in by_key(report.by_asset_class)
    assert all(row.key.lower() != CASH for row in report.by_sector)


def test_a_class_left_out_of_a_non_empty_asset_class_target_has_target_0() -> None:
    report = allocation([hold("AAPL", 70, 100), hold("MTUM", 20, 100)], D(1000), BALANCED)
    etf = by_key(report.by_asset_class)["etf"]
    assert (etf.target_weight, etf.drift) == (D(0), D("0.2"))
    factor = by_key(report.by_sector)["US Equity Factor"]
    assert (factor.target_weight, factor.drift) == (None, None)  # no sector target: no drift
    assert by_key(report.by_symbol)["AAPL"].target_weight is None


def test_without_asset_class_targets_no_class_has_a_target_not_even_cash() -> None:
    report = allocation(drifted(), D(1000), TargetAllocation.parse({"sector": {IT: "0.5"}}))
    assert all(row.target_weight is None for row in report.by_asset_class)
    assert report.max_drift == 0


def test_a_targeted_sector_or_symbol_not_held_is_reported_as_all_drift() -> None:
    target = TargetAllocation.parse({"sector": {ENERGY: "0.1"}, "symbol": {"XOM": "0.05"}})
    report = allocation(drifted(), D(1000), target)
    energy = by_key(report.by_sector)[ENERGY]
    assert (energy.value, energy.current_weight, energy.drift) == (D(0), D(0), D("-0.1"))
    assert by_key(report.by_symbol)["XOM"].drift == D("-0.05")


def test_an_empty_portfolio_has_zero_weights_rather_than_a_division_error() -> None:
    report = allocation([], D(0), BALANCED)
    assert report.total_value == 0
    assert all(row.current_weight == 0 for row in report.by_asset_class)
    assert by_key(report.by_sector)[IT].drift == D("-0.3")


def test_a_report_as_dict_is_json_with_amounts_as_strings() -> None:
    data = json.loads(json.dumps(allocation(drifted(), D(1000), BALANCED).as_dict()))
    assert data["total_value"] == "10000"
    assert data["by_sector"][0] == {
        "key": IT,
        "value": "5000",
        "current_weight": "0.500000",
        "target_weight": "0.300000",
        "drift": "0.200000",
    }


def test_a_symbol_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="aggregate its lots first"):
        allocation([hold("AAPL", 1, 100), hold("AAPL", 2, 100)], D(0), BALANCED)


# ------------------------------------------------------------------------------- rebalancing: bands


@pytest.mark.parametrize(
    ("shares", "cash"),
    [
        pytest.param({"AAPL": 31, "JNJ": 28, "JPM": 30}, 1100, id="small-drifts"),
        pytest.param({"AAPL": 35, "JNJ": 25, "JPM": 30}, 1000, id="drift-equal-to-the-band"),
    ],
)
def test_a_portfolio_inside_its_bands_gets_no_orders(shares: Mapping[str, int], cash: int) -> None:
    positions = [hold(symbol, count, 100) for symbol, count in shares.items()]
    plan = rebalance(positions, D(cash), BALANCED)
    assert plan.orders == []
    assert plan.after == plan.before
    assert plan.cash_after == D(cash)


def test_only_the_rows_outside_their_band_are_traded() -> None:
    # IT +12% and Financials -10% are outside the 5% band; Health Care (-2%) is inside and is not touched.
    positions = [hold("AAPL", 42, 100), hold("JNJ", 28, 100), hold("JPM", 20, 100)]
    plan = rebalance(positions, D(1000), BALANCED)
    assert trades(plan) == [("sell", "AAPL", D(12)), ("buy", "JPM", D(10))]
    assert plan.cash_after == D(1200)
    assert plan.orders[0].reason.startswith(f"sector {IT} at 42.00% vs target 30.00%")


def test_after_is_within_the_band_for_every_row_that_was_outside_it() -> None:
    positions = [hold("AAPL", 50, "123.45"), hold("JNJ", 30, 100), hold("JPM", 30, 100)]
    band = D("0.05")
    plan = rebalance(positions, D(1000), BALANCED, drift_band=band)
    assert plan.orders
    outside = 0
    for before_rows, after_rows in (
        (plan.before.by_asset_class, plan.after.by_asset_class),
        (plan.before.by_sector, plan.after.by_sector),
        (plan.before.by_symbol, plan.after.by_symbol),
    ):
        after = by_key(after_rows)
        for row in before_rows:
            if row.drift is not None and abs(row.drift) > band:
                outside += 1
                drift = after[row.key].drift
                assert drift is not None and abs(drift) <= band, row.key
    assert outside == 3  # IT over, Health Care and Financials under


def test_cash_alone_outside_its_band_is_invested_in_the_underweight_rows() -> None:
    # A deposit: equity and ETFs are each 3% under (inside the band), cash is 6% over (outside it).
    target = TargetAllocation.parse({"asset_class": {"equity": "0.6", "etf": "0.3", "cash": "0.1"}})
    plan = rebalance([hold("AAPL", 57, 100), hold("MTUM", 27, 100)], D(1600), target)
    assert trades(plan) == [("buy", "AAPL", D(3)), ("buy", "MTUM", D(3))]
    assert all("to invest surplus cash" in order.reason for order in plan.orders)
    assert plan.cash_after == D(1000)


def test_sale_proceeds_that_would_leave_cash_outside_its_band_are_reinvested() -> None:
    # AAPL is pinned to 10% and IT to 30%: selling AAPL frees 20% that the class target gives to JNJ.
    target = TargetAllocation.parse(
        {"asset_class": CLASSES, "sector": {IT: "0.3"}, "symbol": {"AAPL": "0.1"}}
    )
    positions = [hold("AAPL", 30, 100), hold("MSFT", 10, 100), hold("JNJ", 50, 100)]
    plan = rebalance(positions, D(1000), target)
    assert trades(plan) == [("sell", "AAPL", D(20)), ("buy", "JNJ", D(10)), ("buy", "MSFT", D(10))]
    assert plan.cash_after == D(1000)
    assert plan.after.max_drift == 0


# ------------------------------------------------------------------------------ rebalancing: orders


def test_an_overweight_sector_is_sold_down_to_target_within_one_shares_value() -> None:
    price = D("123.45")
    positions = [hold("AAPL", 50, price), hold("JNJ", 30, 100), hold("JPM", 30, 100)]
    plan = rebalance(positions, D(1000), BALANCED)
    assert plan.orders[0] == ProposedOrder("AAPL", "sell", D(17), price, plan.orders[0].reason)
    assert plan.orders[0].value == D("2098.65")  # 2,220.75 over target is 17.99 shares: 17 are sold
    it_after = by_key(plan.after.by_sector)[IT].value
    goal = D("0.3") * plan.before.total_value
    assert 0 <= it_after - goal < price


def test_sells_come_before_buys() -> None:
    plan = rebalance(drifted(), D(1000), BALANCED)
    assert trades(plan) == [("sell", "AAPL", D(20)), ("buy", "JNJ", D(10)), ("buy", "JPM", D(10))]
    assert plan.after.max_drift == 0


def test_buys_never_spend_the_cash_target_even_when_a_sale_cannot_be_made() -> None:
    # IT is 80% in two 4,000 shares: selling down to 45% would take 0.875 of a share, so nothing is sold;
    # Health Care wants 4,500 but only the 1,000 above the 10% cash target may be spent.
    target = TargetAllocation.parse({"asset_class": CLASSES, "sector": {IT: "0.45", HC: "0.45"}})
    plan = rebalance([hold("AAPL", 2, 4000)], D(2000), target, candidates={HC: [candidate("JNJ", 100)]})
    assert trades(plan) == [("buy", "JNJ", D(10))]
    assert plan.cash_after == D(1000) == D("0.1") * plan.before.total_value
    assert "scaled" in plan.orders[0].reason


def test_whole_shares_floor_every_quantity_and_fractional_shares_do_not() -> None:
    target = TargetAllocation.parse({"asset_class": CLASSES, "sector": {IT: "0.45", HC: "0.45"}})
    args = ([hold("AAPL", 2, 4000)], D(2000), target)
    candidates = {HC: [candidate("JNJ", 100)]}
    whole = rebalance(*args, candidates=candidates)
    assert all(order.quantity == order.quantity.to_integral_value() for order in whole.orders)
    fractional = rebalance(*args, candidates=candidates, whole_shares=False)
    assert trades(fractional) == [("sell", "AAPL", D("0.875")), ("buy", "JNJ", D(45))]
    assert fractional.cash_after == D(1000)


def test_buys_are_scaled_down_pro_rata_when_cash_is_short_and_never_make_cash_negative() -> None:
    # No cash target (no asset classes): IT wants 6,000 and Health Care 3,000; there are 1,800 to spend.
    target = TargetAllocation.parse({"sector": {IT: "0.6", HC: "0.3"}})
    candidates = {IT: [candidate("AAPL", 100)], HC: [candidate("JNJ", 100)]}
    plan = rebalance([hold("XOM", 82, 100)], D(1800), target, candidates=candidates)
    assert trades(plan) == [("buy", "AAPL", D(12)), ("buy", "JNJ", D(6))]  # 20% of each wish
    assert plan.cash_after == 0


def test_a_sale_never_exceeds_the_shares_held_even_when_selling_out() -> None:
    positions = [hold("AAPL", 80, 100), hold("MTUM", "10.5", 100)]  # ETFs have target 0 here
    whole = rebalance(positions, D(950), EQUITY_AND_CASH)
    assert trades(whole) == [("sell", "MTUM", D(10)), ("buy", "AAPL", D(9))]
    fractional = rebalance(positions, D(950), EQUITY_AND_CASH, whole_shares=False)
    assert trades(fractional) == [("sell", "MTUM", D("10.5")), ("buy", "AAPL", D(10))]
    assert by_key(fractional.after.by_symbol)["MTUM"].value == 0


def test_orders_worth_less_than_the_minimum_trade_value_are_dropped() -> None:
    positions = [hold("AAPL", 42, 100), hold("JNJ", 28, 100), hold("JPM", 20, 100)]
    plan = rebalance(positions, D(1000), BALANCED, min_trade_value=D(1100))
    assert trades(plan) == [("sell", "AAPL", D(12))]  # the 1,000 buy of JPM is dropped
    assert plan.cash_after == D(2200)


def test_quantities_and_values_are_decimals() -> None:
    plan = rebalance(drifted(), D(1000), BALANCED)
    for order in plan.orders:
        assert isinstance(order.quantity, Decimal) and isinstance(order.value, Decimal)
        assert order.value == order.quantity * order.price


# --------------------------------------------------------------------------- rebalancing: targets


def test_a_targeted_sector_with_no_holding_buys_the_first_candidate() -> None:
    target = TargetAllocation.parse({"asset_class": CLASSES, "sector": {ENERGY: "0.2"}})
    candidates = {ENERGY: [candidate("XOM", 100), candidate("CVX", 150)]}
    plan = rebalance([hold("AAPL", 60, 100), hold("JNJ", 30, 100)], D(1000), target, candidates=candidates)
    # The rest of equity (70%) is split between AAPL and JNJ by value; their sales pay for XOM.
    assert trades(plan) == [("sell", "AAPL", D(13)), ("sell", "JNJ", D(6)), ("buy", "XOM", D(19))]
    assert plan.cash_after == D(1000)
    assert by_key(plan.after.by_sector)[ENERGY].value == D(1900)


def test_a_targeted_sector_with_no_holding_and_no_candidate_is_reported_unfillable() -> None:
    target = TargetAllocation.parse({"asset_class": CLASSES, "sector": {ENERGY: "0.2"}})
    plan = rebalance([hold("AAPL", 60, 100), hold("JNJ", 30, 100)], D(1000), target)
    assert plan.orders == []
    assert [(item.part, item.key) for item in plan.unfillable] == [("sector", ENERGY)]


def test_held_symbols_with_no_target_in_any_part_are_left_alone() -> None:
    target = TargetAllocation.parse({"sector": {IT: "0.3"}})
    plan = rebalance([hold("AAPL", 50, 100), hold("XOM", 40, 100)], D(1000), target)
    assert trades(plan) == [("sell", "AAPL", D(20))]
    assert by_key(plan.after.by_symbol)["XOM"].value == D(4000)


def test_a_class_left_out_of_the_asset_class_target_is_sold() -> None:
    plan = rebalance([hold("AAPL", 70, 100), hold("MTUM", 20, 100)], D(1000), EQUITY_AND_CASH)
    assert trades(plan) == [("sell", "MTUM", D(20)), ("buy", "AAPL", D(20))]
    assert plan.cash_after == D(1000)


def test_more_specific_targets_win_over_a_broader_one_they_exceed() -> None:
    target = TargetAllocation.parse({"sector": {IT: "0.3"}, "symbol": {"AAPL": "0.4"}})
    positions = [hold("AAPL", 20, 100), hold("MSFT", 20, 100), hold("JNJ", 50, 100)]
    plan = rebalance(positions, D(1000), target)
    assert trades(plan) == [("sell", "MSFT", D(20)), ("buy", "AAPL", D(20))]
    assert plan.unfillable[0] == Unfillable("sector", IT, plan.unfillable[0].reason)
    assert "they are kept" in plan.unfillable[0].reason


def test_a_sector_target_in_a_class_the_target_gives_nothing_is_reported_as_a_conflict() -> None:
    target = TargetAllocation.parse({"asset_class": {"equity": "1"}, "sector": {"US Equity Factor": "0.1"}})
    plan = rebalance(
        [hold("AAPL", 100, 100)], D(0), target, candidates={"US Equity Factor": [candidate("MTUM", 100)]}
    )
    assert ("asset_class", "etf") in [(item.part, item.key) for item in plan.unfillable]


def test_a_portfolio_worth_nothing_or_less_gets_no_orders() -> None:
    plan = rebalance(drifted(), D(-9000), BALANCED)
    assert plan.before.total_value == 0
    assert plan.orders == [] and plan.cash_after == D(-9000)


def test_a_plan_as_dict_is_json() -> None:
    target = TargetAllocation.parse({"sector": {IT: "0.3", ENERGY: "0.1"}})
    data = json.loads(json.dumps(rebalance(drifted(), D(1000), target).as_dict()))
    assert data["orders"][0] == {
        "symbol": "AAPL",
        "side": "sell",
        "quantity": "20",
        "price": "100",
        "estimated_value": "2000.0000",
        "reason": f"sector {IT} at 50.00% vs target 30.00% (band ±5.00%)",
    }
    assert data["cash_after"] == "3000"
    assert data["unfillable"][0]["key"] == ENERGY
    assert data["before"]["total_value"] == data["after"]["total_value"] == "10000"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="cash must be a Decimal"):
        rebalance(drifted(), 1000.0, BALANCED)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be negative"):
        rebalance(drifted(), D(1000), BALANCED, drift_band=D("-0.01"))
    with pytest.raises(ValueError, match="candidates are not held"):
        rebalance(drifted(), D(1000), BALANCED, candidates={ENERGY: [hold("XOM", 1, 100)]})
    with pytest.raises(ValueError, match="listed under"):
        rebalance(drifted(), D(1000), BALANCED, candidates={ENERGY: [candidate("AAPL", 100)]})


# --------------------------------------------------------------------------------------- properties

TRADABLE = [s for s in REFERENCE if s.asset_class != "index"]
SECTORS = sorted({s.sector for s in TRADABLE})


@st.composite
def targets(draw: st.DrawFn) -> TargetAllocation:
    """Valid targets: classes in basis points adding to exactly 1, sectors and symbols within the rest."""
    raw: dict[str, dict[str, str]] = {}
    cash_bps = 0
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(["equity", "etf", CASH]), min_size=1, unique=True))
        splits = len(names) - 1
        cuts = sorted(draw(st.lists(st.integers(0, 10_000), min_size=splits, max_size=splits)))
        bps = [b - a for a, b in zip([0, *cuts], [*cuts, 10_000], strict=True)]
        raw["asset_class"] = {name: str(D(b) / 10_000) for name, b in zip(names, bps, strict=True)}
        cash_bps = bps[names.index(CASH)] if CASH in names else 0
    room = 10_000 - cash_bps
    for part, keys in (("sector", SECTORS), ("symbol", [s.symbol for s in TRADABLE])):
        chosen = draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
        weights = [draw(st.integers(0, room)) for _ in chosen]
        if sum(weights) > room:
            weights = [w * room // sum(weights) for w in weights]
        raw[part] = {key: str(D(w) / 10_000) for key, w in zip(chosen, weights, strict=True)}
    return TargetAllocation.parse(raw)


@st.composite
def books(draw: st.DrawFn) -> tuple[list[Position], dict[str, list[Position]]]:
    """Positions (whole or fractional shares, any price) and, for some sectors, candidates not held."""
    prices = st.decimals(min_value=D("0.01"), max_value=D(5000), places=2)
    shares = st.one_of(st.integers(0, 2000).map(D), st.decimals(min_value=0, max_value=D(2000), places=3))
    held = draw(st.lists(st.sampled_from(TRADABLE), max_size=8, unique_by=lambda s: s.symbol))
    positions = [Position(s.symbol, draw(shares), draw(prices), s.asset_class, s.sector) for s in held]
    held_symbols = {s.symbol for s in held}
    candidates: dict[str, list[Position]] = {}
    for sector in draw(st.lists(st.sampled_from(SECTORS), max_size=4, unique=True)):
        pool = [s for s in TRADABLE if s.sector == sector and s.symbol not in held_symbols]
        picks = (
            draw(st.lists(st.sampled_from(pool), max_size=2, unique_by=lambda s: s.symbol)) if pool else []
        )
        candidates[sector] = [Position(s.symbol, D(0), draw(prices), s.asset_class, s.sector) for s in picks]
    return positions, candidates


@settings(max_examples=300, deadline=None)
@given(
    book=books(),
    cash=st.decimals(min_value=0, max_value=D(500_000), places=2),
    target=targets(),
    band=st.sampled_from([D(0), D("0.01"), D("0.05"), D("0.2")]),
    minimum=st.sampled_from([D(0), D(1), D(100), D(5000)]),
    whole_shares=st.booleans(),
)
def test_plans_never_oversell_never_overdraw_and_never_buy_into_the_cash_target(
    book: tuple[list[Position], dict[str, list[Position]]],
    cash: Decimal,
    target: TargetAllocation,
    band: Decimal,
    minimum: Decimal,
    whole_shares: bool,
) -> None:
    positions, candidates = book
    plan = rebalance(
        positions,
        cash,
        target,
        drift_band=band,
        min_trade_value=minimum,
        whole_shares=whole_shares,
        candidates=candidates,
    )
    held = {p.symbol: p.shares for p in positions}
    sides = [order.side for order in plan.orders]
    assert sides == sorted(sides, key=lambda side: side != "sell")
    assert len({order.symbol for order in plan.orders}) == len(plan.orders)
    for order in plan.orders:
        assert order.quantity > 0
        assert order.value == order.quantity * order.price >= minimum
        if whole_shares:
            assert order.quantity == order.quantity.to_integral_value()
        if order.side == "sell":
            assert order.quantity <= held.get(order.symbol, D(0))
    sold = sum((o.value for o in plan.orders if o.side == "sell"), D(0))
    bought = sum((o.value for o in plan.orders if o.side == "buy"), D(0))
    assert plan.cash_after == cash + sold - bought
    assert plan.cash_after >= 0
    if bought:
        assert plan.cash_after >= target.asset_class.get(CASH, D(0)) * plan.before.total_value
    assert plan.after.total_value == plan.before.total_value
    assert all(row.value >= 0 for row in plan.after.by_symbol)
    if plan.before.max_drift <= band:
        assert plan.orders == []


def test_a_proposed_order_adds_up_exactly_and_shows_its_value_as_money() -> None:
    order = ProposedOrder("AAPL", "buy", D("3"), D("123.456789"))

    assert order.value == D("370.370367")
    assert order.as_dict() == {
        "symbol": "AAPL",
        "side": "buy",
        "quantity": "3",
        "price": "123.456789",
        "estimated_value": "370.3704",
    }
    assert order.with_quantity(D(1)).as_dict()["estimated_value"] == "123.4568"
    assert ProposedOrder("AAPL", "sell", D(1), D(1), "drifted").as_dict()["reason"] == "drifted"
