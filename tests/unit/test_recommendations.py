"""The recommender: optimised targets within bounds, risk parity, concentration, anomalies, signals.

Every expected figure is computed here another way than the module does it:
risk contributions from a covariance matrix by hand, CVaR and Sharpe with
skfolio's measures, the trend's t-statistic with scipy, weights from the
portfolio's own values. Prices are the bundled real closes, up to a fixed
market day, so the figures are the ones a user would have seen then.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skfolio.measures as sk
from scipy import stats

from wealthalloc.domain.recommendations import (
    AnomalyFlag,
    Holding,
    Listing,
    PortfolioState,
    Recommender,
    RecommenderSettings,
    book_fingerprint,
    momentum,
    optimise,
)
from wealthalloc.domain.risk import daily_returns
from wealthalloc.marketdata import INDEX_SYMBOL, PriceHistory, SecurityReference
from wealthalloc.trading.rules import CommissionModel

AS_OF = date(2021, 6, 30)
LOOKBACK = 504
STOCKS = ["AAPL", "MSFT", "KO", "XOM", "JNJ", "JPM", "PG", "WMT", "PFE", "CVX"]


@pytest.fixture(scope="module")
def prices(data_dir: Path) -> PriceHistory:
    return PriceHistory(data_dir / "prices")


@pytest.fixture(scope="module")
def securities() -> SecurityReference:
    return SecurityReference()


@pytest.fixture(scope="module")
def universe(prices: PriceHistory, securities: SecurityReference) -> list[str]:
    return sorted(s.symbol for s in securities if s.asset_class in ("equity", "etf") and s.symbol in prices)


@pytest.fixture(scope="module")
def closes(prices: PriceHistory, universe: list[str]) -> pd.DataFrame:
    return prices.frame([*universe, INDEX_SYMBOL], end=AS_OF).tail(LOOKBACK + 1)


@pytest.fixture(scope="module")
def listings(prices: PriceHistory, securities: SecurityReference, universe: list[str]) -> dict[str, Listing]:
    out = {}
    for symbol in universe:
        security = securities.get(symbol)
        assert security is not None
        out[symbol] = Listing(symbol, prices.close_on(symbol, AS_OF), security.sector, security.asset_class)
    return out


@pytest.fixture(scope="module")
def returns(closes: pd.DataFrame) -> pd.DataFrame:
    frame = daily_returns(closes[STOCKS]).dropna()
    assert isinstance(frame, pd.DataFrame)
    return frame


def holding(listings: dict[str, Listing], symbol: str, shares: int) -> Holding:
    listing = listings[symbol]
    return Holding(symbol, D(shares), listing.price, listing.sector, listing.asset_class)


def concentrated(listings: dict[str, Listing]) -> PortfolioState:
    """About 68 % Apple, a little Coca-Cola and Johnson & Johnson, the rest cash."""
    return PortfolioState(
        AS_OF,
        D("20000"),
        (holding(listings, "AAPL", 400), holding(listings, "KO", 50), holding(listings, "JNJ", 20)),
    )


def weights_of(portfolio: PortfolioState) -> dict[str, float]:
    total = float(portfolio.cash + sum(h.shares * h.price for h in portfolio.holdings))
    return {h.symbol: float(h.shares * h.price) / total for h in portfolio.holdings}


# The optimiser ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", ["conservative", "moderate", "aggressive"])
def test_the_optimised_weights_add_up_to_one_and_stay_within_their_bounds(
    returns: pd.DataFrame, tolerance: str
) -> None:
    allocation = optimise(returns, tolerance, max_weight=0.2)  # type: ignore[arg-type]

    weights = np.array([allocation.weights[s] for s in STOCKS])
    assert set(allocation.weights) == set(STOCKS)
    assert weights.sum() == pytest.approx(1.0, abs=1e-9)
    assert (weights >= 0).all()
    assert (weights <= 0.2 + 1e-6).all()
    assert allocation.max_weight == 0.2


def test_an_upper_bound_too_tight_to_add_up_to_one_is_raised_to_an_equal_split(returns: pd.DataFrame) -> None:
    allocation = optimise(returns[["AAPL", "KO", "XOM"]], "moderate", max_weight=0.2)

    assert allocation.max_weight == pytest.approx(1 / 3)
    assert sum(allocation.weights.values()) == pytest.approx(1.0)
    assert all(w == pytest.approx(1 / 3, abs=1e-6) for w in allocation.weights.values())


def test_risk_parity_gives_every_holding_the_same_share_of_the_variance(returns: pd.DataFrame) -> None:
    allocation = optimise(returns, "moderate", max_weight=1.0)

    w = np.array([allocation.weights[s] for s in STOCKS])
    covariance = returns[STOCKS].cov().to_numpy()  # pandas, ddof=1; the shares do not depend on ddof
    contributions = w * (covariance @ w)
    shares = contributions / contributions.sum()
    assert allocation.method == "risk_parity"
    np.testing.assert_allclose(shares, np.full(len(STOCKS), 1 / len(STOCKS)), rtol=2e-3)
    # Not simply equal weights: the calmer stocks get more.
    assert allocation.weights["KO"] > allocation.weights["XOM"]


def test_minimum_cvar_has_a_lower_tail_loss_than_equal_weights_or_any_single_stock(
    returns: pd.DataFrame,
) -> None:
    allocation = optimise(returns, "conservative", max_weight=1.0)

    def cvar(weights: np.ndarray) -> float:
        return float(sk.cvar(returns[STOCKS].to_numpy() @ weights, beta=0.95))

    best = cvar(np.array([allocation.weights[s] for s in STOCKS]))
    assert allocation.method == "min_cvar"
    assert best <= cvar(np.full(len(STOCKS), 1 / len(STOCKS))) + 1e-9
    for i in range(len(STOCKS)):
        assert best <= cvar(np.eye(len(STOCKS))[i]) + 1e-9


def test_maximum_sharpe_beats_equal_weights_on_the_history_it_saw(returns: pd.DataFrame) -> None:
    allocation = optimise(returns, "aggressive", max_weight=0.3)

    def sharpe(weights: np.ndarray) -> float:
        return float(
            sk.mean(returns[STOCKS].to_numpy() @ weights)
            / sk.standard_deviation(returns[STOCKS].to_numpy() @ weights)
        )

    assert allocation.method == "max_sharpe"
    assert sharpe(np.array([allocation.weights[s] for s in STOCKS])) >= sharpe(np.full(len(STOCKS), 0.1))


# reduce_risk ----------------------------------------------------------------------------------------


def test_a_holding_above_the_limit_gets_a_reduce_risk_that_sells_it_down_to_the_limit(
    closes: pd.DataFrame, listings: dict[str, Listing]
) -> None:
    portfolio = concentrated(listings)
    recs = Recommender().recommend(
        portfolio, closes, listings, risk_tolerance="moderate", index_symbol=INDEX_SYMBOL
    )

    reduce = [r for r in recs if r.kind == "reduce_risk"]
    assert [r.symbol for r in reduce] == ["AAPL"]
    (rec,) = reduce
    (order,) = rec.orders
    aapl = listings["AAPL"].price
    total = portfolio.total_value
    weight = D(400) * aapl / total
    after = (D(400) - order.quantity) * aapl / total
    assert order.side == "sell" and order.quantity == order.quantity.to_integral_value()
    assert after <= D("0.25") < after + aapl / total  # the fewest whole shares that reach the limit
    evidence = rec.evidence
    assert D(evidence["weight"]) == pytest.approx(weight, abs=D("0.000001"))
    assert evidence["triggers"]["max_weight"]["limit"] == "0.25"
    w = weights_of(portfolio)
    hhi = sum((x / sum(w.values())) ** 2 for x in w.values())
    assert float(evidence["hhi"]) == pytest.approx(hhi, abs=1e-6)
    # The trim lowers the portfolio's risk, and the evidence shows by how much.
    assert float(evidence["risk_after"]["volatility"]) < float(evidence["risk_before"]["volatility"])
    assert float(evidence["risk_after"]["cvar_95"]) < float(evidence["risk_before"]["cvar_95"])
    # Apple carries most of the risk: its share is larger than its weight.
    assert float(evidence["risk_contribution"]) > float(weight)
    # 1 - exp(-3 * over), over = weight / limit - 1.
    assert float(rec.confidence) == pytest.approx(1 - math.exp(-3 * (float(weight) / 0.25 - 1)), abs=1e-4)
    assert "AAPL" in rec.rationale and "25%" in rec.rationale


def test_a_diversified_portfolio_gets_no_reduce_risk(
    closes: pd.DataFrame, listings: dict[str, Listing]
) -> None:
    shares = {"AAPL": 30, "KO": 80, "JNJ": 25, "XOM": 70, "JPM": 30, "PG": 30}
    holdings = tuple(holding(listings, s, n) for s, n in shares.items())
    portfolio = PortfolioState(AS_OF, D("1000"), holdings)
    assert max(weights_of(portfolio).values()) < 0.25

    recs = Recommender().recommend(portfolio, closes, listings, risk_tolerance="moderate")

    assert [r for r in recs if r.kind == "reduce_risk"] == []


def test_one_dominant_holding_is_trimmed_until_the_hhi_meets_its_limit(
    closes: pd.DataFrame, listings: dict[str, Listing]
) -> None:
    # Apple about 50 %, four others about 10 % each: below a 60 % position limit, but an HHI of ~0.36.
    shares = {"AAPL": 37, "KO": 20, "JNJ": 6, "XOM": 17, "PG": 7}
    portfolio = PortfolioState(AS_OF, D("0"), tuple(holding(listings, s, n) for s, n in shares.items()))
    settings = RecommenderSettings(max_position_weight=D("0.60"), max_hhi=D("0.30"))

    recs = Recommender(settings).recommend(portfolio, closes, listings, risk_tolerance="moderate")

    (rec,) = [r for r in recs if r.kind == "reduce_risk"]
    assert rec.symbol == "AAPL" and "concentration_hhi" in rec.evidence["triggers"]
    sold = rec.orders[0].quantity
    values = {h.symbol: float(h.market_value) for h in portfolio.holdings}
    values["AAPL"] -= float(sold * listings["AAPL"].price)
    invested = sum(values.values())
    hhi_after = sum((v / invested) ** 2 for v in values.values())
    values["AAPL"] += float(listings["AAPL"].price)  # one share fewer sold would not have been enough
    invested_less = sum(values.values())
    assert hhi_after <= 0.30 < sum((v / invested_less) ** 2 for v in values.values())


def test_few_equal_holdings_are_not_trimmed_to_cash_for_their_hhi(
    closes: pd.DataFrame, listings: dict[str, Listing]
) -> None:
    # Two holdings can never have an HHI below 0.5: selling either to cash does not cure that.
    portfolio = PortfolioState(AS_OF, D("0"), (holding(listings, "KO", 100), holding(listings, "PG", 37)))
    settings = RecommenderSettings(max_position_weight=D("0.60"), max_hhi=D("0.30"))

    recs = Recommender(settings).recommend(portfolio, closes, listings, risk_tolerance="moderate")

    assert [r for r in recs if r.kind == "reduce_risk"] == []


def test_an_anomaly_flag_on_a_holding_calls_for_a_trim_with_the_models_evidence(
    closes: pd.DataFrame, listings: dict[str, Listing]
) -> None:
    shares = {"AAPL": 30, "KO": 80, "JNJ": 25, "XOM": 70, "JPM": 30, "PG": 30}
    portfolio = PortfolioState(AS_OF, D("1000"), tuple(holding(listings, s, n) for s, n in shares.items()))
    flags = {
        "XOM": AnomalyFlag("XOM", reconstruction_error=0.8, threshold=0.2, model_version="v7"),
        "KO": AnomalyFlag("KO", reconstruction_error=0.1, threshold=0.2, model_version="v7"),  # normal
    }

    recs = Recommender().recommend(portfolio, closes, listings, risk_tolerance="moderate", anomalies=flags)

    (rec,) = [r for r in recs if r.kind == "reduce_risk"]
    assert rec.symbol == "XOM" and rec.orders[0].quantity == D(17)  # a quarter of 70, floored
    assert rec.confidence == D("0.7500")  # 1 - threshold / error
    anomaly = rec.evidence["triggers"]["anomaly"]
    assert anomaly["model_version"] == "v7" and anomaly["ratio_to_threshold"] == pytest.approx(4.0)
    assert rec.evidence["anomaly_check"] == {"checked": True, "model_versions": ["v7"], "flagged": ["XOM"]}
    assert not any(r.kind == "buy" and r.symbol == "XOM" for r in recs)


def test_concentration_and_an_anomaly_on_the_same_holding_make_one_surer_recommendation(
    closes: pd.DataFrame, listings: dict[str, Listing]
) -> None:
    portfolio = concentrated(listings)
    plain = Recommender().recommend(portfolio, closes, listings, risk_tolerance="moderate")
    flags = {"AAPL": AnomalyFlag("AAPL", reconstruction_error=0.3, threshold=0.2, model_version="v7")}
    both = Recommender().recommend(portfolio, closes, listings, risk_tolerance="moderate", anomalies=flags)

    (alone,) = [r for r in plain if r.kind == "reduce_risk"]
    (combined,) = [r for r in both if r.kind == "reduce_risk"]
    expected = 1 - (1 - float(alone.confidence)) * (1 - (1 - 0.2 / 0.3))
    assert float(combined.confidence) == pytest.approx(expected, abs=2e-4)
    assert set(combined.evidence["triggers"]) == {"max_weight", "anomaly"}


# rebalance ------------------------------------------------------------------------------------------


def test_a_concentrated_portfolio_gets_a_rebalance_toward_risk_parity_with_its_evidence(
    closes: pd.DataFrame, listings: dict[str, Listing]
) -> None:
    portfolio = concentrated(listings)
    settings = RecommenderSettings()
    recs = Recommender(settings).recommend(
        portfolio, closes, listings, risk_tolerance="moderate", index_symbol=INDEX_SYMBOL
    )

    (rec,) = [r for r in recs if r.kind == "rebalance"]
    evidence = rec.evidence
    targets = {s: float(w) for s, w in evidence["target_weights"].items()}
    assert evidence["method"] == "risk_parity" and rec.symbol is None
    assert sum(targets.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(targets.values()) <= 0.25 + 1e-6
    assert {"AAPL", "KO", "JNJ"} <= set(targets)
    assert len(evidence["candidates"]) == settings.universe_size - 3  # candidates fill the universe
    assert float(evidence["risk_after"]["volatility"]) < float(evidence["risk_before"]["volatility"])
    assert float(evidence["risk_after"]["cvar_95"]) < float(evidence["risk_before"]["cvar_95"])
    assert float(evidence["objective"]["after"]) > float(evidence["objective"]["before"])
    assert 0 < float(evidence["turnover"]) <= 1
    # Sells first; whole shares; what the buys reserve fits the cash plus the sales' proceeds.
    sides = [o.side for o in rec.orders]
    assert sides == sorted(sides, reverse=True) and sides[0] == "sell"
    assert all(o.quantity == o.quantity.to_integral_value() and o.quantity > 0 for o in rec.orders)
    commission = CommissionModel()
    proceeds = sum(
        (
            o.estimated_value * D("0.99") - commission(o.quantity, o.price)
            for o in rec.orders
            if o.side == "sell"
        ),
        D(0),
    )
    reserved = D(0)
    for o in rec.orders:
        if o.side == "buy":
            cap = (o.price * D("1.05")).quantize(D("0.0001"), rounding="ROUND_CEILING")
            reserved += (o.quantity * cap).quantize(D("0.0001")) + commission(o.quantity, cap)
    assert reserved <= portfolio.cash + proceeds


@pytest.mark.parametrize(("tolerance", "method"), [("conservative", "min_cvar"), ("moderate", "risk_parity")])
def test_the_risk_tolerance_chooses_the_optimiser(
    closes: pd.DataFrame, listings: dict[str, Listing], tolerance: str, method: str
) -> None:
    recs = Recommender().recommend(
        concentrated(listings),
        closes,
        listings,
        risk_tolerance=tolerance,  # type: ignore[arg-type]
    )

    (rec,) = [r for r in recs if r.kind == "rebalance"]
    assert rec.evidence["method"] == method and rec.evidence["risk_tolerance"] == tolerance


def test_a_portfolio_already_at_its_target_gets_no_rebalance(
    closes: pd.DataFrame, listings: dict[str, Listing]
) -> None:
    first = Recommender().recommend(concentrated(listings), closes, listings, risk_tolerance="moderate")
    (rec,) = [r for r in first if r.kind == "rebalance"]
    shares = {h.symbol: h.shares for h in concentrated(listings).holdings}
    cash = concentrated(listings).cash
    for order in rec.orders:
        signed = order.quantity if order.side == "buy" else -order.quantity
        shares[order.symbol] = shares.get(order.symbol, D(0)) + signed
        cash -= signed * order.price
    after = PortfolioState(
        AS_OF, cash, tuple(holding(listings, s, int(n)) for s, n in shares.items() if n > 0)
    )

    again = Recommender().recommend(after, closes, listings, risk_tolerance="moderate")

    assert [r for r in again if r.kind == "rebalance"] == []


# Signals --------------------------------------------------------------------------------------------


def trending(symbol: str, drift: float, days: int = 300, seed: int = 3) -> pd.Series:
    rng = np.random.default_rng(seed)
    logs = drift + 0.01 * rng.standard_normal(days)
    index = pd.bdate_range(end=pd.Timestamp(AS_OF), periods=days + 1)
    return pd.Series(100 * np.exp(np.concatenate([[0.0], np.cumsum(logs)])), index=index, name=symbol)


def test_momentum_is_the_t_statistic_of_the_12_1_log_returns() -> None:
    series = trending("UP", 0.002)

    trend = momentum(series)

    assert trend is not None
    logs = np.diff(np.log(series.to_numpy()[-253:-21]))
    expected = stats.ttest_1samp(logs, 0.0).statistic
    assert trend.t_stat == pytest.approx(expected, rel=1e-9)
    assert trend.days == 231
    assert trend.confidence == pytest.approx(2 * stats.norm.cdf(abs(expected)) - 1)
    assert trend.momentum_return == pytest.approx(series.iloc[-22] / series.iloc[-253] - 1)
    assert momentum(series.iloc[-200:]) is None  # less than a year


def test_a_clear_uptrend_is_a_buy_and_a_clear_downtrend_held_is_a_sell(listings: dict[str, Listing]) -> None:
    up, down = trending("UPCO", 0.002, seed=1), trending("DNCO", -0.002, seed=2)
    closes = pd.concat([up, down], axis=1)
    universe = {
        "UPCO": Listing("UPCO", D(repr(round(float(up.iloc[-1]), 4))), "Industrials", "equity"),
        "DNCO": Listing("DNCO", D(repr(round(float(down.iloc[-1]), 4))), "Energy", "equity"),
    }
    held = Holding("DNCO", D(100), universe["DNCO"].price, "Energy", "equity")
    portfolio = PortfolioState(AS_OF, D("50000"), (held,))
    settings = RecommenderSettings(max_position_weight=D("1"), max_hhi=D("1"))

    recs = Recommender(settings).recommend(portfolio, closes, universe, risk_tolerance="moderate")

    by_kind = {r.kind: r for r in recs}
    buy, sell = by_kind["buy"], by_kind["sell"]
    assert buy.symbol == "UPCO" and sell.symbol == "DNCO"
    assert sell.orders[0].quantity == D(50)  # half the position
    assert float(buy.evidence["momentum_t_stat"]) > 0 > float(sell.evidence["momentum_t_stat"])
    for rec in (buy, sell):
        trend = momentum(closes[rec.symbol].dropna())
        assert trend is not None
        assert rec.confidence == D(repr(trend.confidence)).quantize(D("0.0001"))
    # The buy is about 5 % of the portfolio and what it reserves fits the cash.
    order = buy.orders[0]
    assert order.estimated_value <= D("0.05") * portfolio.total_value
    assert order.estimated_value > D("0.05") * portfolio.total_value - D("1.06") * order.price - 2


# Every recommendation --------------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", ["conservative", "moderate", "aggressive"])
def test_every_confidence_is_between_0_and_1_and_comes_from_the_evidence(
    closes: pd.DataFrame, listings: dict[str, Listing], tolerance: str
) -> None:
    recs = Recommender().recommend(
        concentrated(listings),
        closes,
        listings,
        risk_tolerance=tolerance,  # type: ignore[arg-type]
    )

    assert recs
    for rec in recs:
        assert D(0) <= rec.confidence <= D(1)
        assert rec.confidence == rec.confidence.quantize(D("0.0001"))
        assert rec.rationale and rec.evidence["as_of"] == AS_OF.isoformat() and rec.orders
    assert len({r.confidence for r in recs}) > 1


def test_the_same_inputs_give_the_same_recommendations(
    closes: pd.DataFrame, listings: dict[str, Listing]
) -> None:
    first = Recommender().recommend(concentrated(listings), closes, listings, risk_tolerance="conservative")
    second = Recommender().recommend(concentrated(listings), closes, listings, risk_tolerance="conservative")

    assert [r.as_dict() for r in first] == [r.as_dict() for r in second]


def test_an_empty_portfolio_gets_nothing(closes: pd.DataFrame, listings: dict[str, Listing]) -> None:
    assert (
        Recommender().recommend(PortfolioState(AS_OF, D(0), ()), closes, listings, risk_tolerance="moderate")
        == []
    )


def test_the_book_fingerprint_changes_with_the_book_and_not_with_how_numbers_are_written() -> None:
    base = book_fingerprint(AS_OF, D("100.00"), {"AAPL": D("10"), "KO": D("0")})

    assert base == book_fingerprint(AS_OF, D("100.0000"), {"AAPL": D("10.000000")})
    assert base != book_fingerprint(AS_OF, D("100.01"), {"AAPL": D("10")})
    assert base != book_fingerprint(AS_OF, D("100.00"), {"AAPL": D("11")})
    assert base != book_fingerprint(date(2021, 7, 1), D("100.00"), {"AAPL": D("10")})
