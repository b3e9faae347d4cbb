"""Portfolio performance: value history, time- and money-weighted return, risk, benchmark.

Every expected figure is computed here a different way from the module: from
the bundled real closes with the textbook formula (a price ratio, a CAGR, a
root found by scipy, skfolio's measures, a brute-force loop), never by typing
the module's daily-return recurrence again. Ratios are reported with six
decimals, so "equal" means within half a unit of the sixth decimal.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skfolio.measures as sk
from scipy.optimize import brentq

from wealthalloc.domain.performance import (
    CashChange,
    PerformanceReport,
    PositionChange,
    ValueHistory,
    performance,
    value_history,
)
from wealthalloc.marketdata import PriceHistory

START = date(2018, 1, 2)  # a Tuesday, a trading day
END = date(2020, 12, 31)  # three years including the 2020 crash
BEFORE = date(2017, 12, 29)  # the last trading day before START: opening state
DEPOSIT_DAY = date(2019, 6, 14)  # a Friday, a trading day
SATURDAY = date(2019, 6, 15)
MONDAY = date(2019, 6, 17)
RATIO_TOLERANCE = 5e-7 + 1e-12  # six decimals, half-even


@pytest.fixture(scope="module")
def closes(data_dir: Path) -> pd.DataFrame:
    """Real daily closes, 1990-2022, one column per symbol, SPX's days as rows."""
    return PriceHistory(data_dir / "prices").frame(["AAPL", "MSFT", "KO", "MTUM", "SPX"])


@pytest.fixture(scope="module")
def period(closes: pd.DataFrame) -> pd.DataFrame:
    return closes.loc[pd.Timestamp(START) : pd.Timestamp(END)]


@pytest.fixture(scope="module")
def spx(closes: pd.DataFrame) -> pd.Series:
    return closes["SPX"]


def close(period: pd.DataFrame, symbol: str, day: date) -> float:
    return float(period.at[pd.Timestamp(day), symbol])


def assert_ratio(actual: Decimal | None, expected: float) -> None:
    assert actual is not None
    assert actual.as_tuple().exponent == -6, "ratios carry six decimals"
    assert abs(float(actual) - expected) <= RATIO_TOLERANCE, (actual, expected)


def act365_years(first: date, day: date) -> float:
    return (day - first).days / 365


def xirr(flows: list[tuple[date, float]]) -> float:
    """The annual rate that makes the NPV of ``flows`` (investor's view) zero, found by scipy."""
    first = flows[0][0]

    def npv(rate: float) -> float:
        return float(sum(amount / (1 + rate) ** act365_years(first, day) for day, amount in flows))

    return float(brentq(npv, -0.99, 10.0, xtol=1e-14))


def brute_force_max_drawdown(wealth: list[float]) -> float:
    """The largest fall from any earlier (or the same) point to any later one."""
    worst = 0.0
    for j, later in enumerate(wealth):
        for earlier in wealth[: j + 1]:
            worst = max(worst, 1 - later / earlier)
    return worst


def synthetic(values: list[float], flows: list[float] | None = None) -> ValueHistory:
    index = pd.DatetimeIndex(pd.bdate_range("2021-01-04", periods=len(values)), name="date")
    return ValueHistory(
        values=pd.Series(values, index=index, dtype=float),
        flows=pd.Series(flows or [0.0] * len(values), index=index, dtype=float),
    )


def flat_benchmark(history: ValueHistory) -> pd.Series:
    return pd.Series(100.0, index=history.values.index)


# --- Buy and hold: every measure has a closed form on the price series ----------------------------


@pytest.fixture(scope="module")
def aapl_hold(closes: pd.DataFrame, spx: pd.Series) -> tuple[ValueHistory, PerformanceReport]:
    bought = [PositionChange(BEFORE, "AAPL", Decimal(100), external=True)]
    history = value_history(bought, [], closes, start=START, end=END)
    return history, performance(history, spx)


def test_a_holding_bought_before_start_is_the_opening_value_not_a_flow(
    aapl_hold: tuple[ValueHistory, PerformanceReport], period: pd.DataFrame
) -> None:
    history, report = aapl_hold
    np.testing.assert_allclose(history.values.to_numpy(), 100 * period["AAPL"].to_numpy(), rtol=1e-15)
    assert (history.flows == 0).all()
    assert list(history.values.index) == list(period.index)
    assert report.start == START and report.end == END
    assert report.days == (END - START).days
    assert report.start_value == Decimal(str(round(100 * close(period, "AAPL", START), 2)))
    assert report.end_value == Decimal(str(round(100 * close(period, "AAPL", END), 2)))
    assert report.net_flows == Decimal("0.00")


def test_a_deposit_before_start_is_opening_cash_not_a_flow(
    closes: pd.DataFrame, period: pd.DataFrame
) -> None:
    cash = [CashChange(BEFORE, Decimal(1000), external=True), CashChange(BEFORE, Decimal(-1), external=False)]
    history = value_history([], cash, closes, start=START, end=END, opening_cash=Decimal(1))
    assert (history.flows == 0).all()
    assert (history.values == 1000).all()


def test_a_flow_on_the_first_day_is_part_of_the_start_value(
    closes: pd.DataFrame, period: pd.DataFrame, spx: pd.Series
) -> None:
    positions = [PositionChange(START, "AAPL", Decimal(10), external=True)]
    cash = [CashChange(START, Decimal(500), external=True)]
    history = value_history(positions, cash, closes, start=START, end=END)
    start_value = 500 + 10 * close(period, "AAPL", START)
    end_value = 500 + 10 * close(period, "AAPL", END)
    assert history.flows.iloc[0] == pytest.approx(start_value, rel=1e-15)  # what happened that day
    report = performance(history, spx)
    assert report.net_flows == Decimal("0.00")  # but it is not counted twice
    assert float(report.start_value) == pytest.approx(start_value, abs=0.006)
    assert_ratio(report.time_weighted_return, end_value / start_value - 1)
    assert_ratio(report.money_weighted_return, xirr([(START, -start_value), (END, end_value)]))


def test_buy_and_hold_twr_is_the_price_ratio(
    aapl_hold: tuple[ValueHistory, PerformanceReport], period: pd.DataFrame
) -> None:
    _, report = aapl_hold
    assert_ratio(report.time_weighted_return, close(period, "AAPL", END) / close(period, "AAPL", START) - 1)


def test_buy_and_hold_mwr_and_annualised_twr_are_the_cagr_over_act_365(
    aapl_hold: tuple[ValueHistory, PerformanceReport], period: pd.DataFrame
) -> None:
    _, report = aapl_hold
    growth = close(period, "AAPL", END) / close(period, "AAPL", START)
    cagr = growth ** (1 / act365_years(START, END)) - 1
    assert report.money_weighted_return is not None
    assert abs(float(report.money_weighted_return) - cagr) <= 1e-6
    assert_ratio(report.time_weighted_return_annualized, cagr)


def test_buy_and_hold_volatility_is_the_sample_std_of_daily_price_changes(
    aapl_hold: tuple[ValueHistory, PerformanceReport], period: pd.DataFrame
) -> None:
    _, report = aapl_hold
    daily = period["AAPL"].pct_change().dropna().to_numpy()
    assert_ratio(report.volatility, float(np.std(daily, ddof=1)) * math.sqrt(252))
    assert_ratio(report.volatility, float(sk.standard_deviation(daily)) * math.sqrt(252))


def test_max_drawdown_is_a_positive_fraction_equal_to_a_brute_force_search(
    aapl_hold: tuple[ValueHistory, PerformanceReport], period: pd.DataFrame
) -> None:
    _, report = aapl_hold
    expected = brute_force_max_drawdown(period["AAPL"].tolist())
    assert 0.3 < expected < 0.4  # AAPL's fall from late 2018 to early 2019 (and 2020's crash)
    assert_ratio(report.max_drawdown, expected)
    daily = period["AAPL"].pct_change().dropna().to_numpy()
    assert_ratio(report.max_drawdown, float(sk.max_drawdown(sk.get_drawdowns(daily, compounded=True))))


@pytest.mark.parametrize("risk_free_rate", [0.0, 0.02])
def test_sharpe_and_sortino_match_skfolio_measures(
    closes: pd.DataFrame, period: pd.DataFrame, spx: pd.Series, risk_free_rate: float
) -> None:
    held = [PositionChange(BEFORE, "KO", Decimal(40), external=True)]
    report = performance(
        value_history(held, [], closes, start=START, end=END), spx, risk_free_rate=risk_free_rate
    )
    daily = period["KO"].pct_change().dropna().to_numpy()
    rf_daily = (1 + risk_free_rate) ** (1 / 252) - 1
    excess = float(sk.mean(daily)) - rf_daily
    sharpe = excess / float(sk.standard_deviation(daily)) * math.sqrt(252)
    sortino = excess / float(sk.semi_deviation(daily, min_acceptable_return=rf_daily)) * math.sqrt(252)
    assert_ratio(report.sharpe, sharpe)
    assert_ratio(report.sortino, sortino)


def test_the_risk_free_rate_lowers_sharpe(closes: pd.DataFrame, spx: pd.Series) -> None:
    history = value_history(
        [PositionChange(BEFORE, "MSFT", Decimal(10), external=True)], [], closes, start=START, end=END
    )
    without, with_rate = performance(history, spx), performance(history, spx, risk_free_rate=0.05)
    assert without.sharpe is not None and with_rate.sharpe is not None
    assert with_rate.sharpe < without.sharpe
    assert with_rate.volatility == without.volatility
    assert with_rate.time_weighted_return == without.time_weighted_return


# --- The benchmark ------------------------------------------------------------------------------


def test_holding_the_benchmark_itself_has_beta_one_and_its_return(
    closes: pd.DataFrame, period: pd.DataFrame, spx: pd.Series
) -> None:
    history = value_history(
        [PositionChange(BEFORE, "SPX", Decimal(3), external=True)], [], closes, start=START, end=END
    )
    report = performance(history, spx, benchmark_symbol="SPX")
    assert report.benchmark == "SPX"
    assert report.beta is not None and abs(float(report.beta) - 1) <= 1e-9
    assert report.benchmark_return == report.time_weighted_return
    assert_ratio(report.benchmark_return, close(period, "SPX", END) / close(period, "SPX", START) - 1)


def test_beta_is_the_regression_slope_on_the_benchmark(
    aapl_hold: tuple[ValueHistory, PerformanceReport], period: pd.DataFrame
) -> None:
    _, report = aapl_hold
    stock = period["AAPL"].pct_change().dropna().to_numpy()
    market = period["SPX"].pct_change().dropna().to_numpy()
    slope = float(np.polyfit(market, stock, 1)[0])  # least squares: cov/var
    assert_ratio(report.beta, slope)


def test_a_benchmark_that_does_not_cover_the_history_is_refused(closes: pd.DataFrame) -> None:
    history = value_history(
        [PositionChange(BEFORE, "AAPL", Decimal(1), external=True)], [], closes, start=START, end=END
    )
    late = closes["MTUM"].loc[pd.Timestamp(START) + pd.Timedelta(days=30) :]
    with pytest.raises(ValueError, match="benchmark MTUM"):
        performance(history, late, benchmark_symbol="MTUM")


# --- External flows: deposits and transfers are not return --------------------------------------


@pytest.fixture(scope="module")
def with_deposit(closes: pd.DataFrame, spx: pd.Series) -> tuple[ValueHistory, PerformanceReport]:
    """50 AAPL held from the start; 20,000 deposited mid-period, 100 AAPL bought with it that day."""
    cost = Decimal(repr(float(closes.at[pd.Timestamp(DEPOSIT_DAY), "AAPL"]))) * 100
    positions = [
        PositionChange(BEFORE, "AAPL", Decimal(50), external=True),
        PositionChange(DEPOSIT_DAY, "AAPL", Decimal(100), external=False),
    ]
    cash = [
        CashChange(DEPOSIT_DAY, Decimal(20000), external=True),
        CashChange(DEPOSIT_DAY, -cost, external=False),
    ]
    history = value_history(positions, cash, closes, start=START, end=END)
    return history, performance(history, spx)


def test_a_deposit_is_a_flow_not_a_gain(
    with_deposit: tuple[ValueHistory, PerformanceReport], period: pd.DataFrame
) -> None:
    history, report = with_deposit
    assert history.flows[pd.Timestamp(DEPOSIT_DAY)] == 20000
    assert history.flows.drop(pd.Timestamp(DEPOSIT_DAY)).eq(0).all()
    assert report.net_flows == Decimal("20000.00")
    leftover = 20000 - 100 * close(period, "AAPL", DEPOSIT_DAY)
    assert float(report.end_value) == pytest.approx(150 * close(period, "AAPL", END) + leftover, abs=0.006)


def test_twr_with_a_deposit_chain_links_the_sub_periods(
    with_deposit: tuple[ValueHistory, PerformanceReport], period: pd.DataFrame
) -> None:
    _, report = with_deposit
    p0, pd_, p1 = (close(period, "AAPL", day) for day in (START, DEPOSIT_DAY, END))
    cash_after = 20000 - 100 * pd_
    before_deposit = (50 * pd_) / (50 * p0)  # the deposit arrives at the close: not in this growth
    after_deposit = (150 * p1 + cash_after) / (150 * pd_ + cash_after)
    assert_ratio(report.time_weighted_return, before_deposit * after_deposit - 1)
    naive = report.end_value / report.start_value - 1
    assert abs(naive - report.time_weighted_return) > Decimal("0.5"), "the deposit would count as a gain"


def test_mwr_with_a_deposit_is_the_xirr_of_the_cash_flows(
    with_deposit: tuple[ValueHistory, PerformanceReport], period: pd.DataFrame
) -> None:
    _, report = with_deposit
    start_value = 50 * close(period, "AAPL", START)
    end_value = 150 * close(period, "AAPL", END) + 20000 - 100 * close(period, "AAPL", DEPOSIT_DAY)
    expected = xirr([(START, -start_value), (DEPOSIT_DAY, -20000.0), (END, end_value)])
    assert_ratio(report.money_weighted_return, expected)
    assert report.time_weighted_return_annualized is not None and report.money_weighted_return is not None
    assert abs(report.money_weighted_return - report.time_weighted_return_annualized) > Decimal("0.01")


def test_a_transfer_in_of_shares_is_a_flow_at_that_days_close(
    closes: pd.DataFrame, period: pd.DataFrame, spx: pd.Series
) -> None:
    positions = [PositionChange(DEPOSIT_DAY, "MSFT", Decimal(10), external=True)]
    history = value_history(positions, [], closes, start=START, end=END, opening_cash=Decimal(10000))
    report = performance(history, spx)
    msft = close(period, "MSFT", DEPOSIT_DAY)
    assert history.flows[pd.Timestamp(DEPOSIT_DAY)] == pytest.approx(10 * msft, rel=1e-15)
    assert history.values[pd.Timestamp(DEPOSIT_DAY)] == pytest.approx(10000 + 10 * msft, rel=1e-15)
    # Idle cash earns nothing and the transfer is no gain: all the return is MSFT's after the day.
    expected = (10000 + 10 * close(period, "MSFT", END)) / (10000 + 10 * msft) - 1
    assert_ratio(report.time_weighted_return, expected)
    assert float(report.net_flows) == pytest.approx(10 * msft, abs=0.006)


def test_a_transfer_out_is_a_negative_flow(closes: pd.DataFrame, period: pd.DataFrame) -> None:
    positions = [
        PositionChange(BEFORE, "KO", Decimal(100), external=True),
        PositionChange(DEPOSIT_DAY, "KO", Decimal(-60), external=True),
    ]
    history = value_history(positions, [], closes, start=START, end=END)
    ko = close(period, "KO", DEPOSIT_DAY)
    assert history.flows[pd.Timestamp(DEPOSIT_DAY)] == pytest.approx(-60 * ko, rel=1e-15)
    assert history.values[pd.Timestamp(END)] == pytest.approx(40 * close(period, "KO", END), rel=1e-15)


# --- Internal trades, income, and the calendar -----------------------------------------------------


def test_an_internal_buy_changes_the_value_only_by_price_moves(
    closes: pd.DataFrame, period: pd.DataFrame
) -> None:
    day = pd.Timestamp(DEPOSIT_DAY)
    previous = period.index[period.index.get_loc(day) - 1]
    cost = Decimal(repr(close(period, "AAPL", DEPOSIT_DAY))) * 30
    positions = [
        PositionChange(BEFORE, "KO", Decimal(20), external=True),
        PositionChange(DEPOSIT_DAY, "AAPL", Decimal(30), external=False),
    ]
    cash = [CashChange(DEPOSIT_DAY, -cost, external=False)]
    history = value_history(positions, cash, closes, start=START, end=END, opening_cash=Decimal(5000))
    assert (history.flows == 0).all()
    ko_move = 20 * (period.at[day, "KO"] - period.at[previous, "KO"])
    assert history.values[day] - history.values[previous] == pytest.approx(ko_move, abs=1e-9)


def test_a_cash_only_portfolio_earns_nothing_and_ratios_are_undefined(
    closes: pd.DataFrame, spx: pd.Series
) -> None:
    history = value_history([], [], closes, start=START, end=END, opening_cash=Decimal("1000.00"))
    report = performance(history, spx)
    assert report.time_weighted_return == Decimal("0.000000")
    assert report.volatility == Decimal("0.000000")
    assert report.max_drawdown == Decimal("0.000000")
    assert report.sharpe is None and report.sortino is None
    assert report.beta == Decimal("0.000000")
    assert report.money_weighted_return == Decimal("0.000000")


def test_a_dividend_in_cash_is_return_not_a_flow(closes: pd.DataFrame, spx: pd.Series) -> None:
    cash = [CashChange(DEPOSIT_DAY, Decimal("12.50"), external=False)]
    history = value_history([], cash, closes, start=START, end=END, opening_cash=Decimal(1000))
    report = performance(history, spx)
    assert report.net_flows == Decimal("0.00")
    assert report.time_weighted_return == Decimal("0.012500")


def test_a_change_on_a_weekend_takes_effect_on_the_next_trading_day(closes: pd.DataFrame) -> None:
    def on(day: date) -> ValueHistory:
        cash = [CashChange(day, Decimal(5000), external=True)]
        positions = [PositionChange(day, "MSFT", Decimal(5), external=True)]
        return value_history(positions, cash, closes, start=START, end=END, opening_cash=Decimal(100))

    saturday, monday = on(SATURDAY), on(MONDAY)
    pd.testing.assert_series_equal(saturday.values, monday.values)
    pd.testing.assert_series_equal(saturday.flows, monday.flows)
    assert saturday.flows[pd.Timestamp(MONDAY)] > 5000


def test_changes_after_the_period_are_ignored(closes: pd.DataFrame) -> None:
    late = [CashChange(END + timedelta(days=1), Decimal(1), external=True)]
    history = value_history([], late, closes, start=START, end=END, opening_cash=Decimal(7))
    assert (history.values == 7).all() and (history.flows == 0).all()


def test_an_empty_stretch_is_skipped_and_the_benchmark_uses_the_same_days(
    closes: pd.DataFrame, period: pd.DataFrame, spx: pd.Series
) -> None:
    cash = [CashChange(DEPOSIT_DAY, Decimal(10000), external=True)]
    positions = [PositionChange(DEPOSIT_DAY, "AAPL", Decimal(20), external=True)]
    history = value_history(positions, cash, closes, start=START, end=END)
    report = performance(history, spx)
    assert report.start_value == Decimal("0.00")
    first, last = 10000 + 20 * close(period, "AAPL", DEPOSIT_DAY), 10000 + 20 * close(period, "AAPL", END)
    assert_ratio(report.time_weighted_return, last / first - 1)
    assert_ratio(report.benchmark_return, close(period, "SPX", END) / close(period, "SPX", DEPOSIT_DAY) - 1)


def test_a_gap_inside_a_symbols_data_is_filled_forward() -> None:
    index = pd.DatetimeIndex(pd.to_datetime(["2021-03-01", "2021-03-02", "2021-03-03", "2021-03-04"]))
    frame = pd.DataFrame({"XYZ": [10.0, np.nan, 12.0, 13.0]}, index=index)
    held = [PositionChange(date(2021, 2, 26), "XYZ", Decimal(2), external=True)]
    history = value_history(held, [], frame, start=date(2021, 3, 1), end=date(2021, 3, 4))
    assert history.values.tolist() == [20.0, 20.0, 24.0, 26.0]


# --- Reporting --------------------------------------------------------------------------------------


def test_annualised_twr_is_withheld_for_a_period_under_a_year(closes: pd.DataFrame, spx: pd.Series) -> None:
    held = [PositionChange(BEFORE, "AAPL", Decimal(1), external=True)]
    history = value_history(held, [], closes, start=START, end=date(2018, 12, 31))
    report = performance(history, spx)
    assert report.days < 365
    assert report.time_weighted_return_annualized is None
    assert report.money_weighted_return is not None  # XIRR is an annual rate for any period


def test_value_series_and_as_dict(aapl_hold: tuple[ValueHistory, PerformanceReport]) -> None:
    history, report = aapl_hold
    assert len(report.value_series) == len(history.values)
    assert report.value_series[0][0] == START and report.value_series[-1][0] == END
    assert all(value.as_tuple().exponent == -2 for _, value in report.value_series)
    data = report.as_dict()
    assert data["time_weighted_return"] == report.time_weighted_return
    assert data["value_series"][0] == {"date": START, "value": report.start_value}
    assert set(data) >= {"money_weighted_return", "sharpe", "sortino", "beta", "max_drawdown", "benchmark"}


def test_mwr_is_none_when_the_cash_flows_never_change_sign() -> None:
    history = synthetic([100.0, 50.0, 0.0])
    report = performance(history, flat_benchmark(history))
    assert report.time_weighted_return == Decimal("-1.000000")
    assert report.max_drawdown == Decimal("1.000000")
    assert report.money_weighted_return is None
    assert report.beta is None  # against a flat benchmark


def test_a_loss_on_the_first_day_counts_as_drawdown() -> None:
    history = synthetic([100.0, 90.0, 95.0, 99.0])
    report = performance(history, flat_benchmark(history))
    assert_ratio(report.max_drawdown, brute_force_max_drawdown(history.values.tolist()))
    assert report.max_drawdown == Decimal("0.100000")


def test_sortino_is_none_without_a_day_below_the_risk_free_rate() -> None:
    history = synthetic([100.0, 101.0, 103.0, 104.0])
    report = performance(history, flat_benchmark(history))
    assert report.sortino is None
    assert report.sharpe is not None and report.sharpe > 0
    assert report.max_drawdown == Decimal("0.000000")


# --- Bad inputs ---------------------------------------------------------------------------------------


def test_end_before_start_is_refused(closes: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="before start"):
        value_history([], [], closes, start=END, end=START)


def test_a_holding_before_its_symbols_prices_start_is_refused(closes: pd.DataFrame) -> None:
    held = [PositionChange(date(2013, 5, 31), "MTUM", Decimal(1), external=True)]
    with pytest.raises(ValueError, match=r"no close for MTUM on 2013-06-03.*from 2014-01-02"):
        value_history(held, [], closes, start=date(2013, 6, 3), end=date(2014, 6, 30))


def test_a_holding_after_its_symbols_prices_end_is_refused() -> None:
    index = pd.DatetimeIndex(pd.to_datetime(["2021-03-01", "2021-03-02", "2021-03-03"]))
    frame = pd.DataFrame({"OLD": [5.0, 5.5, np.nan], "SPX": [1.0, 1.0, 1.0]}, index=index)
    held = [PositionChange(date(2021, 2, 1), "OLD", Decimal(1), external=True)]
    with pytest.raises(ValueError, match="no close for OLD on 2021-03-03"):
        value_history(held, [], frame, start=date(2021, 3, 1), end=date(2021, 3, 3))


def test_a_symbol_without_a_column_is_refused(closes: pd.DataFrame) -> None:
    held = [PositionChange(BEFORE, "NOPE", Decimal(1), external=True)]
    with pytest.raises(ValueError, match="no column for NOPE"):
        value_history(held, [], closes, start=START, end=END)


def test_a_period_without_a_trading_day_is_refused(closes: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no trading day"):
        value_history([], [], closes, start=SATURDAY, end=SATURDAY + timedelta(days=1))


@pytest.mark.parametrize("days", [0, 1])
def test_an_empty_or_one_day_history_is_refused(days: int) -> None:
    history = synthetic([100.0] * days)
    with pytest.raises(ValueError, match="at least two trading days"):
        performance(history, pd.Series([1.0], index=pd.DatetimeIndex(["2021-01-04"])))


def test_a_history_that_was_never_invested_is_refused(closes: pd.DataFrame, spx: pd.Series) -> None:
    history = value_history([], [], closes, start=START, end=END)
    with pytest.raises(ValueError, match="at least two are needed"):
        performance(history, spx)
