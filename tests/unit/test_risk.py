"""Portfolio risk: volatility, historical and Gaussian VaR/CVaR, beta, concentration, sectors, score.

Every expected figure is computed here another way than the module does it:
from the bundled real closes with a covariance matrix, skfolio's measures,
scipy's normal distribution and regression, pandas' rolling windows, or by
hand on a few returns. Ratios are reported with six decimals, so "equal"
means within half a unit of the sixth decimal.
"""

from __future__ import annotations

import json
import math
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skfolio.measures as sk
from scipy import stats

from wealthalloc.domain.risk import (
    MIN_OBSERVATIONS,
    RiskReport,
    daily_returns,
    portfolio_risk,
    risk_score,
)
from wealthalloc.marketdata import INDEX_SYMBOL, PriceHistory

TOLERANCE = 5e-7 + 1e-12  # six decimals, half-even
WEIGHTS = {"AAPL": 0.30, "MSFT": 0.20, "KO": 0.20, "XOM": 0.20}  # 10 % cash
SECTORS = {"AAPL": "Information Technology", "MSFT": "Information Technology", "KO": "Consumer Staples"}


@pytest.fixture(scope="module")
def returns(data_dir: Path) -> pd.DataFrame:
    """Real daily returns over 2019-2020 (the 2020 crash included), SPX among the columns."""
    closes = PriceHistory(data_dir / "prices").frame(
        ["AAPL", "MSFT", "KO", "XOM", "AMD", INDEX_SYMBOL], start=date(2018, 12, 31), end=date(2020, 12, 31)
    )
    frame = daily_returns(closes)
    assert isinstance(frame, pd.DataFrame)
    return frame


@pytest.fixture(scope="module")
def report(returns: pd.DataFrame) -> RiskReport:
    return portfolio_risk(WEIGHTS, SECTORS, returns, returns[INDEX_SYMBOL])


def portfolio_series(returns: pd.DataFrame, weights: dict[str, float]) -> pd.Series:
    """The daily portfolio return, summed column by column rather than as a matrix product."""
    total = pd.Series(0.0, index=returns.index)
    for symbol, weight in weights.items():
        total = total + weight * returns[symbol]
    return total


def close_to(actual: Decimal | None, expected: float) -> bool:
    return actual is not None and abs(float(actual) - expected) <= TOLERANCE


def test_volatility_is_the_quadratic_form_of_the_covariance_matrix(
    report: RiskReport, returns: pd.DataFrame
) -> None:
    symbols = list(WEIGHTS)
    weights = np.array([WEIGHTS[symbol] for symbol in symbols])
    covariance = np.cov(returns[symbols].to_numpy().T, ddof=1)
    expected = math.sqrt(float(weights @ covariance @ weights)) * math.sqrt(252)
    assert close_to(report.volatility, expected)
    assert report.observations == len(returns) == 505  # 252 + 253 trading days
    assert (report.start, report.end) == (date(2019, 1, 2), date(2020, 12, 31))


def test_historical_var_and_cvar_agree_with_skfolio(report: RiskReport, returns: pd.DataFrame) -> None:
    series = portfolio_series(returns, WEIGHTS).to_numpy()
    assert close_to(report.var_historical, float(sk.value_at_risk(series, beta=0.95)))
    assert close_to(report.cvar_historical, float(sk.cvar(series, beta=0.95)))
    assert report.cvar_historical >= report.var_historical > 0


def test_parametric_var_and_cvar_agree_with_scipy_normal(report: RiskReport, returns: pd.DataFrame) -> None:
    series = portfolio_series(returns, WEIGHTS)
    mean, std = float(series.mean()), float(series.std(ddof=1))
    var = -stats.norm.ppf(0.05, loc=mean, scale=std)
    # E[L | L >= VaR] for a normal loss by scipy's numerical integration, not phi(z) / (1 - c).
    loss = stats.norm(loc=-mean, scale=std)
    cvar = loss.expect(lambda x: x, lb=var, conditional=True)
    assert close_to(report.var_parametric, var)
    assert close_to(report.cvar_parametric, cvar)


def test_real_tails_are_fatter_than_gaussian_ones(report: RiskReport) -> None:
    # 2020's crash: the worst 5 % of days lost more than a normal distribution allows.
    assert report.cvar_historical > report.cvar_parametric


def test_beta_is_the_regression_slope_on_the_index(report: RiskReport, returns: pd.DataFrame) -> None:
    series = portfolio_series(returns, WEIGHTS)
    slope = stats.linregress(returns[INDEX_SYMBOL].to_numpy(), series.to_numpy()).slope
    assert close_to(report.beta, float(slope))


def test_concentration_and_sector_exposure_by_hand(report: RiskReport) -> None:
    # Among the holdings (0.9 invested): 1/3, 2/9, 2/9, 2/9 -> 9/81 + 3 * 4/81 = 21/81.
    assert report.hhi == Decimal("0.259259")
    assert report.effective_positions == Decimal("3.857143")  # 81 / 21
    assert (report.invested_weight, report.cash_weight) == (Decimal("0.900000"), Decimal("0.100000"))
    assert report.sector_exposure == {
        "Information Technology": Decimal("0.500000"),
        "Consumer Staples": Decimal("0.200000"),
        "Unclassified": Decimal("0.200000"),
    }
    assert list(report.sector_exposure) == ["Information Technology", "Consumer Staples", "Unclassified"]


def test_risk_score_is_the_documented_blend(report: RiskReport, returns: pd.DataFrame) -> None:
    series = portfolio_series(returns, WEIGHTS).to_numpy()
    volatility = float(np.std(series, ddof=1)) * math.sqrt(252)
    cvar = float(sk.cvar(series, beta=0.95))
    expected = 100 * (0.5 * min(volatility / 0.5, 1) + 0.3 * min(cvar / 0.065, 1) + 0.2 * 0.9 * (21 / 81))
    assert abs(float(report.risk_score) - expected) <= 0.005 + 1e-9
    assert 0 < report.risk_score < 100


def test_five_day_horizon_uses_overlapping_compounded_returns(returns: pd.DataFrame) -> None:
    report = portfolio_risk(WEIGHTS, SECTORS, returns, returns[INDEX_SYMBOL], horizon_days=5)
    daily = portfolio_series(returns, WEIGHTS)
    five_day = ((1 + daily).rolling(5).apply(np.prod, raw=True) - 1).dropna().to_numpy()
    assert len(five_day) == len(daily) - 4
    assert close_to(report.var_historical, float(sk.value_at_risk(five_day, beta=0.95)))
    assert close_to(report.cvar_historical, float(sk.cvar(five_day, beta=0.95)))
    mean, std = float(daily.mean()) * 5, float(daily.std(ddof=1)) * math.sqrt(5)
    assert close_to(report.var_parametric, -stats.norm.ppf(0.05, loc=mean, scale=std))
    one_day = portfolio_risk(WEIGHTS, SECTORS, returns, returns[INDEX_SYMBOL])
    assert report.risk_score == one_day.risk_score  # the score always uses the one-day 95 % CVaR
    assert report.volatility == one_day.volatility


def test_losses_in_money_given_a_portfolio_value(returns: pd.DataFrame) -> None:
    report = portfolio_risk(
        WEIGHTS, SECTORS, returns, returns[INDEX_SYMBOL], portfolio_value=Decimal("250000.00")
    )
    assert report.var_historical_amount == (Decimal("250000.00") * report.var_historical).quantize(
        Decimal("0.01")
    )
    assert report.cvar_parametric_amount is not None and report.cvar_parametric_amount > 0
    data = report.as_dict()
    json.dumps(data)  # JSON-ready
    assert data["portfolio_value"] == "250000.00"
    assert data["start"] == "2019-01-02"
    assert data["beta"] == format(report.beta, "f")


def hand_frame(values: list[float]) -> tuple[pd.DataFrame, pd.Series]:
    days = pd.bdate_range("2021-01-04", periods=len(values), name="date")
    asset = pd.Series(values, index=days)
    return pd.DataFrame({"X": asset}), asset / 2


def test_var_and_cvar_on_twenty_hand_made_days() -> None:
    # Losses: eighteen gains of 1 %, then 3 % and 5 %. 0.95 x 20 = 19: VaR is the 19th smallest
    # loss (3 %); (1 - 0.95) x 20 = 1 day: CVaR is the worst day alone (5 %).
    frame, index = hand_frame([0.01] * 9 + [-0.05] + [0.01] * 9 + [-0.03])
    report = portfolio_risk({"X": 1}, {"X": "Tech"}, frame, index)
    assert report.var_historical == Decimal("0.030000")
    assert report.cvar_historical == Decimal("0.050000")
    assert report.beta == Decimal("2.000000")
    assert report.hhi == Decimal("1.000000") and report.effective_positions == Decimal("1.000000")


def test_cvar_counts_a_fraction_of_a_day() -> None:
    # 30 days: 0.95 x 30 = 28.5 -> VaR is the 29th smallest loss (3 %); the tail holds 1.5 days:
    # the 5 % day and half of the 3 % day, (0.05 + 0.5 x 0.03) / 1.5.
    frame, index = hand_frame([0.01] * 14 + [-0.05] + [0.01] * 14 + [-0.03])
    report = portfolio_risk({"X": 1}, {}, frame, index)
    assert report.var_historical == Decimal("0.030000")
    assert report.cvar_historical == Decimal("0.043333")
    assert report.sector_exposure == {"Unclassified": Decimal("1.000000")}


def test_a_portfolio_that_never_loses_reports_no_loss() -> None:
    frame, index = hand_frame([0.01, 0.02] * 15)
    report = portfolio_risk({"X": 1}, {}, frame, index)
    assert report.var_historical == Decimal("0.000000") == report.cvar_historical


def test_cash_only_has_no_risk(returns: pd.DataFrame) -> None:
    report = portfolio_risk({}, {}, returns, returns[INDEX_SYMBOL], portfolio_value=Decimal("1000"))
    assert report.volatility == Decimal("0.000000")
    assert report.var_historical == report.cvar_parametric == Decimal("0.000000")
    assert report.beta == Decimal("0.000000")
    assert report.hhi == Decimal("0.000000") and report.effective_positions is None
    assert report.cash_weight == Decimal("1.000000") and report.sector_exposure == {}
    assert report.risk_score == Decimal("0.00")
    assert report.var_historical_amount == Decimal("0.00")


def test_risk_score_rises_with_each_of_its_terms(returns: pd.DataFrame) -> None:
    def score(weights: dict[str, float]) -> Decimal:
        return portfolio_risk(weights, {}, returns, returns[INDEX_SYMBOL]).risk_score

    assert score({"KO": 0.5}) < score({"KO": 1.0})  # cash dilutes every term
    assert score({"KO": 1.0}) < score({"AMD": 1.0})  # more volatile, fatter tail
    assert score(dict.fromkeys(WEIGHTS, 0.25)) < score({"AAPL": 0.25, "MSFT": 0.75})
    assert score({"AMD": 1.0}) >= Decimal("90")
    base = {"volatility": 0.2, "cvar_95_1d": 0.03, "hhi": 0.3, "invested_weight": 1.0}
    for name in base:
        higher = {**base, name: base[name] * 1.5}
        assert risk_score(**higher) > risk_score(**base), name
    assert risk_score(volatility=0.9, cvar_95_1d=0.2, hhi=1.0, invested_weight=1.0) == Decimal("100.00")


def test_a_day_missing_for_one_holding_is_left_out_of_every_figure(returns: pd.DataFrame) -> None:
    gappy = returns.copy()
    gappy.iloc[10, gappy.columns.get_loc("KO")] = np.nan
    gappy.iloc[20, gappy.columns.get_loc(INDEX_SYMBOL)] = np.inf
    report = portfolio_risk(WEIGHTS, SECTORS, gappy, gappy[INDEX_SYMBOL])
    assert report.observations == len(returns) - 2


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"AAPL": -0.1}, "non-negative"),
        ({"AAPL": float("nan")}, "finite"),
        ({"AAPL": 0.7, "MSFT": 0.4}, "leverage"),
        ({"TSLA": 0.5}, "no column for TSLA"),
    ],
)
def test_bad_weights_are_refused(returns: pd.DataFrame, weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        portfolio_risk(weights, {}, returns, returns[INDEX_SYMBOL])


def test_weights_rounded_to_six_decimals_may_add_to_slightly_over_one(returns: pd.DataFrame) -> None:
    weights = {symbol: Decimal("0.250001") for symbol in WEIGHTS}
    report = portfolio_risk(weights, {}, returns, returns[INDEX_SYMBOL])
    assert report.cash_weight == Decimal("0.000000")


def test_bad_parameters_and_short_samples_are_refused(returns: pd.DataFrame) -> None:
    index = returns[INDEX_SYMBOL]
    with pytest.raises(ValueError, match="confidence"):
        portfolio_risk(WEIGHTS, {}, returns, index, confidence=1.0)
    with pytest.raises(ValueError, match="horizon_days"):
        portfolio_risk(WEIGHTS, {}, returns, index, horizon_days=0)
    with pytest.raises(ValueError, match="portfolio_value"):
        portfolio_risk(WEIGHTS, {}, returns, index, portfolio_value=Decimal("NaN"))
    short = returns.iloc[: MIN_OBSERVATIONS - 1]
    with pytest.raises(ValueError, match="at least 20"):
        portfolio_risk(WEIGHTS, {}, short, short[INDEX_SYMBOL])
    with pytest.raises(ValueError, match="tail needs at least 100"):
        portfolio_risk(WEIGHTS, {}, returns.iloc[:60], index, confidence=0.99)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        portfolio_risk(WEIGHTS, {}, returns.reset_index(drop=True), index)
