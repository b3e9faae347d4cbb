"""Recommendations a user can check: each one carries the figures it was decided on.

A recommendation is only worth accepting if the person can see why it was made,
so every one here comes with its *evidence* (the measurements, on the bundled
daily history up to the market clock's day, that triggered it), a *confidence*
in 0..1 computed from that evidence by a formula stated below (never a
constant), and the *orders* that carry it out, sized in whole shares at today's
closes so that accepting places exactly what was shown. Pure: no Ray, database
or HTTP; the same inputs give the same recommendations.

Three families, and why each fires
==================================

``reduce_risk`` (one per holding that calls for it)
    * *Concentration*: the holding is above ``max_position_weight`` of the
      portfolio's value, or the Herfindahl-Hirschman index of the holdings'
      weights among themselves (as in :mod:`~wealthalloc.domain.risk`) is above
      ``max_hhi`` and this is the largest holding. The trim brings the weight
      down to the cap (or, for the HHI, to the weight at which the HHI meets its
      limit, never below the second-largest holding); the proceeds stay in cash.
      Confidence ``1 - exp(-3 * over)`` with ``over`` the relative excess
      (``weight / cap - 1``, or ``hhi / max_hhi - 1``): 0.26 at 10 % over the
      limit, 0.78 at 50 %, 0.95 at twice the limit.
    * *Anomaly*: the anomaly detector's reconstruction error of the holding's
      newest window is above the model's threshold. A fixed fraction
      (``anomaly_trim``) of the position is sold. Confidence
      ``1 - threshold / error``: 0 at the threshold, approaching 1 as the error
      dwarfs it.
    * Both at once: one recommendation, the larger trim, and the confidences
      combined as independent evidence, ``1 - (1 - c1)(1 - c2)``.

``rebalance`` (at most one per portfolio)
    The held symbols with enough history plus a few candidates are optimised
    with skfolio for the owner's risk tolerance, each weight in
    ``[0, max_position_weight]`` (so a target never itself calls for
    ``reduce_risk``):

    ============  ============================================  =================================
    tolerance     optimiser                                      its objective (better is)
    ============  ============================================  =================================
    conservative  ``MeanRisk`` minimising CVaR at 95 %          1-day CVaR 95 % (lower)
    moderate      ``RiskBudgeting``: equal risk contributions   effective number of bets (higher)
    aggressive    ``MeanRisk`` maximising mean / st. deviation  annualised Sharpe ratio (higher)
    ============  ============================================  =================================

    Candidates fill the universe up to ``universe_size`` securities: the
    tradable symbols not held whose returns are least correlated with the
    current portfolio's (they diversify it most), excluding any the anomaly
    detector flags. A portfolio that took them in is optimised over the same
    names the next time, so accepting a rebalance does not lead to another. Cash and holdings without
    enough history keep their weight; the optimised weights share what is left.
    Offered when the move is worth it: at least ``min_turnover`` of the
    invested value changes hands, the objective improves, and the confidence
    reaches ``min_confidence``. Confidence is the geometric mean of *how much*
    the objective improves (``1 - exp(-3 * relative improvement)``) and *how
    consistently*: the history is cut into ``blocks`` consecutive periods and
    the target must beat the current weights in each (share of periods won).
    Both are measured on the same history the optimiser saw, so they show the
    optimiser's case, not a forecast; the evidence says so. The orders come from
    :func:`~wealthalloc.domain.allocation.rebalance` with the target as symbol
    weights (sells first), the buys trimmed so their cash reservations (price
    collar and commission) fit the cash plus the sales' proceeds.

``buy`` and ``sell`` signals (time-series momentum)
    The "12-1" momentum of a symbol: its daily log returns from 252 to 21
    trading days ago (the last month is skipped, where short-term reversal
    lives). Their t-statistic ``mean / (std / sqrt(n))`` measures how clearly
    the trend differs from no trend, and the confidence is ``2 * Phi(|t|) - 1``,
    the share of the statistic's normal distribution on its side of zero. A
    signal needs the 200-day moving average to agree (close above it for a
    buy, below it for a sell). ``sell`` applies to holdings not already given
    a ``reduce_risk`` and sells ``sell_fraction`` of the position; ``buy``
    proposes ``signal_weight`` of the portfolio's value (never above the
    position cap, never more than the cash can reserve) in the symbols with the
    highest confidence, excluding any the anomaly detector flags. The 20-day
    z-score of the close (short-term stretch) is shown as evidence beside it.

Figures in the evidence are decimal strings (weights, returns and risk with
six decimals), as everywhere in the API; money and quantities are ``Decimal``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from wealthalloc.domain.allocation import Position, TargetAllocation, rebalance
from wealthalloc.domain.money import money
from wealthalloc.domain.risk import daily_returns, portfolio_risk
from wealthalloc.trading.proposed import ProposedOrder
from wealthalloc.trading.rules import CommissionModel

__all__ = [
    "RECOMMENDER_VERSION",
    "AnomalyFlag",
    "Holding",
    "Listing",
    "Momentum",
    "OptimisedAllocation",
    "PortfolioState",
    "ProposedOrder",
    "Recommendation",
    "Recommender",
    "RecommenderSettings",
    "book_fingerprint",
    "effective_bets",
    "momentum",
    "optimise",
    "risk_contributions",
]

RECOMMENDER_VERSION = "recommender-1"
"""Written to ``ai_recommendations.model_version``; bump it when a rule or formula changes."""

Kind = Literal["buy", "sell", "rebalance", "reduce_risk"]
RiskTolerance = Literal["conservative", "moderate", "aggressive"]
Side = Literal["buy", "sell"]

PERIODS_PER_YEAR = 252
MOMENTUM_LOOKBACK = 252
"""Trading days back to the start of the momentum window (about a year)."""
MOMENTUM_SKIP = 21
"""The most recent trading days left out of the momentum window (about a month)."""
MOVING_AVERAGE_DAYS = 200
STRETCH_DAYS = 20
MIN_HISTORY_SHARE = 0.98
"""A symbol needs a return on this share of the lookback's days to be measured at all."""
CVAR_CONFIDENCE = 0.95

RATIO = Decimal("0.000001")
CONFIDENCE = Decimal("0.0001")
"""Four decimals: ``ai_recommendations.confidence`` is NUMERIC(5,4)."""
_ONE_SHARE = Decimal(1)
_ZERO = Decimal(0)
_NORMAL = NormalDist()
_KIND_ORDER = {"reduce_risk": 0, "rebalance": 1, "sell": 2, "buy": 3}

_METHOD_TEXT = {
    "min_cvar": "minimising the 95% CVaR (the average of the worst 5% of days)",
    "risk_parity": "risk parity (every holding contributing the same share of the risk)",
    "max_sharpe": "maximising return per unit of volatility",
    "min_variance": "minimising volatility",
}

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Holding:
    """A position as valued today: whole lots aggregated, at today's close."""

    symbol: str
    shares: Decimal
    price: Decimal
    sector: str
    asset_class: str

    @property
    def market_value(self) -> Decimal:
        return self.shares * self.price


@dataclass(frozen=True)
class PortfolioState:
    """What the portfolio holds on ``as_of``: cash and holdings at that day's closes."""

    as_of: date
    cash: Decimal
    holdings: tuple[Holding, ...]

    @property
    def total_value(self) -> Decimal:
        return self.cash + sum((h.market_value for h in self.holdings), _ZERO)

    def weights(self) -> dict[str, float]:
        """Each holding's share of the total value (cash included in the total)."""
        total = self.total_value
        if total <= 0:
            return {}
        return {h.symbol: float(h.market_value / total) for h in self.holdings if h.market_value > 0}


@dataclass(frozen=True)
class Listing:
    """A security that could be bought: today's close, its sector and asset class."""

    symbol: str
    price: Decimal
    sector: str
    asset_class: str


@dataclass(frozen=True)
class AnomalyFlag:
    """The anomaly detector's verdict on a symbol's newest window."""

    symbol: str
    reconstruction_error: float
    threshold: float
    model_version: str
    window_end: date | None = None

    @property
    def is_anomaly(self) -> bool:
        return self.threshold > 0 and self.reconstruction_error > self.threshold


@dataclass(frozen=True)
class RecommenderSettings:
    """The limits and sizes the rules use (the module docstring says what each does).

    ``max_position_weight``, ``max_hhi`` and ``min_confidence`` come from
    ``Settings.recommendations_*``; the rest are the platform's defaults.
    ``collar`` and ``commission`` are the broker's, so a buy is sized to what
    the order desk will let it reserve.
    """

    max_position_weight: Decimal = Decimal("0.25")
    max_hhi: Decimal = Decimal("0.30")
    min_confidence: Decimal = Decimal("0.55")
    min_turnover: Decimal = Decimal("0.10")
    universe_size: int = 10
    blocks: int = 4
    drift_band: Decimal = Decimal("0.02")
    min_trade_value: Decimal = Decimal("100")
    signal_weight: Decimal = Decimal("0.05")
    sell_fraction: Decimal = Decimal("0.5")
    anomaly_trim: Decimal = Decimal("0.25")
    max_buy_signals: int = 2
    collar: Decimal = Decimal("0.05")
    sale_haircut: Decimal = Decimal("0.01")
    commission: CommissionModel = field(default_factory=CommissionModel)

    def __post_init__(self) -> None:
        for name in ("max_position_weight", "max_hhi", "sell_fraction", "anomaly_trim", "signal_weight"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.blocks < 1 or self.universe_size < 1 or self.max_buy_signals < 0:
            raise ValueError("blocks and universe_size must be at least 1; max_buy_signals not negative")


# -------------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Recommendation:
    """One recommendation: what to do, why (``rationale`` and ``evidence``), how sure, and the orders."""

    kind: Kind
    symbol: str | None
    rationale: str
    confidence: Decimal
    orders: tuple[ProposedOrder, ...]
    evidence: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not (_ZERO <= self.confidence <= 1):
            raise ValueError(f"confidence {self.confidence} is outside [0, 1]")
        if not self.orders:
            raise ValueError("a recommendation without orders cannot be accepted")

    @property
    def key(self) -> tuple[str, str]:
        """What a regeneration matches an open recommendation by: its kind and symbol."""
        return self.kind, self.symbol or ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "symbol": self.symbol,
            "rationale": self.rationale,
            "confidence": _text(self.confidence),
            "orders": [order.as_dict() for order in self.orders],
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class OptimisedAllocation:
    """Weights from :func:`optimise`: non-negative, adding to 1, each within the bound."""

    method: str
    weights: dict[str, float]
    max_weight: float


@dataclass(frozen=True)
class Momentum:
    """The trend of one symbol, as the signals read it (see the module docstring)."""

    symbol: str
    momentum_return: float
    t_stat: float
    days: int
    close: float
    moving_average: float
    stretch_z: float

    @property
    def confidence(self) -> float:
        return 2.0 * _NORMAL.cdf(abs(self.t_stat)) - 1.0

    def as_evidence(self) -> dict[str, Any]:
        return {
            "momentum_return_12_1": _ratio_text(self.momentum_return),
            "momentum_t_stat": _ratio_text(self.t_stat),
            "momentum_days": self.days,
            "close": _ratio_text(self.close),
            "moving_average_200d": _ratio_text(self.moving_average),
            "stretch_z_20d": _ratio_text(self.stretch_z),
        }


# ------------------------------------------------------------------------------------------ functions


def book_fingerprint(as_of: date, cash: Decimal, shares: Mapping[str, Decimal]) -> str:
    """A digest of the book a recommendation was sized on: the day, the cash and the shares held.

    Accepting compares it with the book as it is then: orders sized on another
    book (a trade since, another recommendation accepted, a new day) would not
    do what the user was shown, so they are refused as stale instead.
    """
    parts = [as_of.isoformat(), _canonical(cash)]
    parts += [f"{symbol}={_canonical(q)}" for symbol, q in sorted(shares.items()) if q != 0]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def optimise(returns: pd.DataFrame, tolerance: RiskTolerance, *, max_weight: float) -> OptimisedAllocation:
    """Long-only weights over ``returns``' columns for a risk tolerance (table in the module docstring).

    Parameters
    ----------
    returns : DataFrame
        Simple daily returns, one column per symbol, no missing values.
    tolerance : {"conservative", "moderate", "aggressive"}
    max_weight : float
        Upper bound of every weight; raised to ``1 / n`` when ``n`` columns could
        not otherwise add up to 1.

    Returns
    -------
    OptimisedAllocation
        Weights by column; the maximum-ratio problem falls back to minimum
        variance (``method="min_variance"``) when it has no solution (every
        expected return negative).

    Raises
    ------
    ValueError
        For no columns, a missing or infinite return, or a problem the solver cannot solve.
    """
    from skfolio import RiskMeasure
    from skfolio.optimization import MeanRisk, ObjectiveFunction, RiskBudgeting

    if returns.empty or returns.shape[1] == 0:
        raise ValueError("nothing to optimise: no returns")
    values = returns.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("returns must be finite: drop the days with gaps first")
    n = values.shape[1]
    upper = max(float(max_weight), 1.0 / n)
    bounds = {"min_weights": 0.0, "max_weights": upper}
    if tolerance == "conservative":
        method = "min_cvar"
        model: Any = MeanRisk(
            risk_measure=RiskMeasure.CVAR,
            objective_function=ObjectiveFunction.MINIMIZE_RISK,
            cvar_beta=CVAR_CONFIDENCE,
            **bounds,
        )
    elif tolerance == "moderate":
        method = "risk_parity"
        model = RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, **bounds)
    elif tolerance == "aggressive":
        method = "max_sharpe"
        model = MeanRisk(
            risk_measure=RiskMeasure.VARIANCE, objective_function=ObjectiveFunction.MAXIMIZE_RATIO, **bounds
        )
    else:
        raise ValueError(f"unknown risk tolerance {tolerance!r}")
    try:
        model.fit(values)
        raw = np.asarray(model.weights_, dtype=np.float64)
        if raw.shape != (n,) or not np.isfinite(raw).all():
            raise ValueError("no weights")
    except Exception as exc:
        if method != "max_sharpe":
            raise ValueError(f"the {method} optimiser found no solution: {exc}") from exc
        method = "min_variance"
        model = MeanRisk(
            risk_measure=RiskMeasure.VARIANCE, objective_function=ObjectiveFunction.MINIMIZE_RISK, **bounds
        )
        try:
            model.fit(values)
        except Exception as again:
            raise ValueError(f"the {method} optimiser found no solution: {again}") from again
        raw = np.asarray(model.weights_, dtype=np.float64)
    clean = np.where(raw < 1e-6, 0.0, raw)  # solver dust below a millionth is no position
    clean = clean / clean.sum()
    return OptimisedAllocation(
        method=method,
        weights={str(symbol): float(w) for symbol, w in zip(returns.columns, clean, strict=True)},
        max_weight=upper,
    )


def risk_contributions(returns: pd.DataFrame, weights: Mapping[str, float]) -> dict[str, float]:
    """Each symbol's share of the portfolio's variance, ``w_i (S w)_i / w'Sw`` (sample covariance).

    The shares add up to 1; all zero when the portfolio does not vary.
    """
    symbols = [s for s in weights if weights[s] > 0]
    if not symbols:
        return {}
    w = np.array([weights[s] for s in symbols], dtype=np.float64)
    data = returns[symbols].to_numpy(dtype=np.float64)
    covariance = np.atleast_2d(np.cov(data, rowvar=False, ddof=1))
    marginal = covariance @ w
    variance = float(w @ marginal)
    if variance <= 0:
        return dict.fromkeys(symbols, 0.0)
    return {s: float(c) for s, c in zip(symbols, w * marginal / variance, strict=True)}


def effective_bets(returns: pd.DataFrame, weights: Mapping[str, float]) -> float:
    """``1 / sum(c_i^2)`` of the risk contribution shares: how many equal risks the portfolio is worth."""
    shares = np.array(list(risk_contributions(returns, weights).values()), dtype=np.float64)
    total = float(np.sum(shares**2))
    return 1.0 / total if total > 0 else 0.0


def momentum(closes: pd.Series) -> Momentum | None:
    """The symbol's 12-1 momentum, 200-day average and 20-day stretch; ``None`` without a year of closes."""
    series = closes.dropna().astype(np.float64)
    if len(series) < MOMENTUM_LOOKBACK + 1 or (series <= 0).any():
        return None
    values = series.to_numpy()
    window = values[-(MOMENTUM_LOOKBACK + 1) : len(values) - MOMENTUM_SKIP]
    logs = np.diff(np.log(window))
    n = len(logs)
    deviation = float(np.std(logs, ddof=1))
    t_stat = float(np.mean(logs)) / (deviation / math.sqrt(n)) if deviation > 0 else 0.0
    recent = values[-STRETCH_DAYS:]
    spread = float(np.std(recent, ddof=1))
    stretch = (values[-1] - float(np.mean(recent))) / spread if spread > 0 else 0.0
    return Momentum(
        symbol=str(series.name),
        momentum_return=float(window[-1] / window[0] - 1.0),
        t_stat=t_stat,
        days=n,
        close=float(values[-1]),
        moving_average=float(np.mean(values[-MOVING_AVERAGE_DAYS:])),
        stretch_z=float(stretch),
    )


# ------------------------------------------------------------------------------------------- recommender


@dataclass(frozen=True)
class _Context:
    """One run's inputs, prepared once: weights, returns on common days, who has enough history."""

    portfolio: PortfolioState
    total: Decimal
    weights: dict[str, float]
    holdings: dict[str, Holding]
    closes: pd.DataFrame
    returns: pd.DataFrame
    index_returns: pd.Series | None
    measured: frozenset[str]
    listings: Mapping[str, Listing]
    flags: Mapping[str, AnomalyFlag]
    anomaly_models: tuple[str, ...] | None
    tolerance: RiskTolerance


class Recommender:
    """Turns a portfolio and the history up to its day into recommendations (module docstring).

    Parameters
    ----------
    settings : RecommenderSettings
        Limits and sizes; the defaults are the platform's.
    """

    def __init__(self, settings: RecommenderSettings | None = None) -> None:
        self.settings = settings or RecommenderSettings()

    def recommend(
        self,
        portfolio: PortfolioState,
        closes: pd.DataFrame,
        listings: Mapping[str, Listing],
        *,
        risk_tolerance: RiskTolerance,
        index_symbol: str | None = None,
        anomalies: Mapping[str, AnomalyFlag] | None = None,
    ) -> list[Recommendation]:
        """Every recommendation for ``portfolio``, reduce_risk first, then rebalance, sells and buys.

        Parameters
        ----------
        portfolio : PortfolioState
        closes : DataFrame
            Daily closes up to ``portfolio.as_of`` (the lookback the caller chose),
            one column per symbol: the holdings, the tradable universe and, when
            ``index_symbol`` is given, the index (for the risk figures' beta).
        listings : mapping of str to Listing
            What can be bought, at today's close.
        risk_tolerance : {"conservative", "moderate", "aggressive"}
        index_symbol : str, optional
            A column of ``closes``; without it the before/after risk figures are
            left out of the evidence.
        anomalies : mapping of str to AnomalyFlag, optional
            The detector's verdicts by symbol; ``None`` when it could not be asked.
        """
        if risk_tolerance not in ("conservative", "moderate", "aggressive"):
            raise ValueError(f"unknown risk tolerance {risk_tolerance!r}")
        context = self._context(portfolio, closes, listings, risk_tolerance, index_symbol, anomalies)
        if context is None:
            return []
        found: list[Recommendation] = []
        found += self._reduce_risk(context)
        found += self._rebalance(context)
        trimmed = {r.symbol for r in found if r.kind == "reduce_risk"}
        found += self._signals(context, skip_sells=trimmed)
        return sorted(found, key=lambda r: (_KIND_ORDER[r.kind], -r.confidence, r.symbol or ""))

    # Preparing ------------------------------------------------------------------------------------

    def _context(
        self,
        portfolio: PortfolioState,
        closes: pd.DataFrame,
        listings: Mapping[str, Listing],
        tolerance: RiskTolerance,
        index_symbol: str | None,
        anomalies: Mapping[str, AnomalyFlag] | None,
    ) -> _Context | None:
        total = portfolio.total_value
        if total <= 0:
            return None
        table = closes.sort_index()
        table = table[table.index <= pd.Timestamp(portfolio.as_of)]
        returns = daily_returns(table)
        assert isinstance(returns, pd.DataFrame)
        returns = returns.replace([np.inf, -np.inf], np.nan)
        enough = max(int(MIN_HISTORY_SHARE * len(returns)), 2 * MOMENTUM_SKIP)
        measured = frozenset(
            str(c) for c in returns.columns if c != index_symbol and returns[c].notna().sum() >= enough
        )
        index_returns = None
        if index_symbol is not None and index_symbol in returns.columns:
            index_returns = returns[index_symbol]
        return _Context(
            portfolio=portfolio,
            total=total,
            weights=portfolio.weights(),
            holdings={h.symbol: h for h in portfolio.holdings if h.shares > 0},
            closes=table,
            returns=returns,
            index_returns=index_returns,
            measured=measured,
            listings=listings,
            flags={s: f for s, f in (anomalies or {}).items() if f.is_anomaly},
            anomaly_models=None
            if anomalies is None
            else tuple(sorted({f.model_version for f in anomalies.values()})),
            tolerance=tolerance,
        )

    # reduce_risk ----------------------------------------------------------------------------------

    def _reduce_risk(self, c: _Context) -> list[Recommendation]:
        s = self.settings
        cap = float(s.max_position_weight)
        invested = sum(c.weights.values())
        hhi = sum((w / invested) ** 2 for w in c.weights.values()) if invested > 0 else 0.0
        ranked = sorted(c.weights.items(), key=lambda kv: (-kv[1], kv[0]))
        largest = ranked[0][0] if ranked else None
        out: list[Recommendation] = []
        for symbol, weight in ranked:
            holding = c.holdings[symbol]
            triggers: dict[str, Any] = {}
            confidences: list[float] = []
            target = weight
            if weight > cap:
                over = weight / cap - 1.0
                target = min(target, cap)
                confidences.append(1.0 - math.exp(-3.0 * over))
                triggers["max_weight"] = {
                    "weight": _ratio_text(weight),
                    "limit": _text(s.max_position_weight),
                    "excess": _ratio_text(weight - cap),
                }
            if symbol == largest and hhi > float(s.max_hhi):
                hhi_target = _weight_for_hhi(c.weights, symbol, float(s.max_hhi))
                if hhi_target is not None and hhi_target < weight - 1e-9:
                    over = hhi / float(s.max_hhi) - 1.0
                    target = min(target, hhi_target)
                    confidences.append(1.0 - math.exp(-3.0 * over))
                    triggers["concentration_hhi"] = {
                        "hhi": _ratio_text(hhi),
                        "limit": _text(s.max_hhi),
                        "effective_positions": _ratio_text(1.0 / hhi),
                        "weight_at_limit": _ratio_text(hhi_target),
                    }
            quantity = _ZERO
            if target < weight:
                excess = Decimal(repr(weight - target)) * c.total
                quantity = (excess / holding.price).to_integral_value(rounding=ROUND_CEILING)
                if quantity * holding.price < s.min_trade_value:
                    quantity, triggers, confidences = _ZERO, {}, []
            flag = c.flags.get(symbol)
            if flag is not None:
                trim = (holding.shares * s.anomaly_trim).to_integral_value(rounding=ROUND_FLOOR)
                if trim >= 1:
                    quantity = max(quantity, trim)
                    confidences.append(1.0 - flag.threshold / flag.reconstruction_error)
                    triggers["anomaly"] = _flag_evidence(flag)
            quantity = min(quantity, holding.shares.to_integral_value(rounding=ROUND_FLOOR))
            if quantity < 1 or not confidences:
                continue
            confidence = 1.0 - math.prod(1.0 - x for x in confidences)
            order = ProposedOrder(symbol, "sell", quantity, holding.price)
            after_weight = float((holding.market_value - quantity * holding.price) / c.total)
            evidence: dict[str, Any] = {
                "as_of": c.portfolio.as_of.isoformat(),
                "triggers": triggers,
                "weight": _ratio_text(weight),
                "weight_after": _ratio_text(after_weight),
                "hhi": _ratio_text(hhi),
                "effective_positions": _ratio_text(1.0 / hhi) if hhi > 0 else None,
                "sector": holding.sector,
                "anomaly_check": _anomaly_check(c),
            }
            evidence.update(self._symbol_risk(c, symbol))
            after = dict(c.weights)
            after[symbol] = after_weight
            evidence["risk_before"], evidence["risk_after"] = self._risk_pair(c, c.weights, after)
            out.append(
                Recommendation(
                    kind="reduce_risk",
                    symbol=symbol,
                    rationale=_reduce_rationale(symbol, weight, after_weight, quantity, triggers, evidence),
                    confidence=_confidence(confidence),
                    orders=(order,),
                    evidence=evidence,
                )
            )
        return out

    def _symbol_risk(self, c: _Context, symbol: str) -> dict[str, Any]:
        """The holding's own volatility and its share of the portfolio's risk, when it can be measured."""
        if symbol not in c.measured:
            return {"symbol_volatility": None, "risk_contribution": None}
        held = [s for s in c.weights if s in c.measured]
        table = c.returns[held].dropna()
        volatility = float(np.std(table[symbol].to_numpy(), ddof=1) * math.sqrt(PERIODS_PER_YEAR))
        shares = risk_contributions(table, {s: c.weights[s] for s in held})
        return {
            "symbol_volatility": _ratio_text(volatility),
            "risk_contribution": _ratio_text(shares.get(symbol, 0.0)),
        }

    def _risk_pair(
        self, c: _Context, before: Mapping[str, float], after: Mapping[str, float]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Volatility, 1-day 95 % VaR/CVaR and the risk score of two weight sets, as GET /risk reports them.

        Measured only over the holdings with enough history (``covers``); ``None`` without an index.
        """
        if c.index_returns is None:
            return None, None
        symbols = sorted({s for s in (*before, *after) if s in c.measured})
        table = c.returns[symbols].copy()
        results: list[dict[str, Any] | None] = []
        for weights in (before, after):
            kept = {s: max(weights.get(s, 0.0), 0.0) for s in symbols}
            try:
                report = portfolio_risk(kept, {}, table, c.index_returns, confidence=CVAR_CONFIDENCE)
            except ValueError:
                results.append(None)
                continue
            results.append(
                {
                    "volatility": _text(report.volatility),
                    "var_95": _text(report.var_historical),
                    "cvar_95": _text(report.cvar_historical),
                    "risk_score": _text(report.risk_score),
                    "observations": report.observations,
                    "covers": [s for s in symbols if kept[s] > 0],
                }
            )
        return results[0], results[1]

    # rebalance ------------------------------------------------------------------------------------

    def _rebalance(self, c: _Context) -> list[Recommendation]:
        s = self.settings
        held = sorted(sym for sym in c.weights if sym in c.measured and sym in c.holdings)
        if not held:
            return []
        current = {sym: c.weights[sym] for sym in held}
        optimisable = sum(current.values())
        base = c.returns[held].dropna()
        if len(base) < 60:
            return []
        cap = float(s.max_position_weight)
        # Candidates only fill the universe up to its size: a portfolio that took them in is optimised
        # over the same names next time, instead of being offered new ones on every run.
        wanted = max(s.universe_size, math.ceil(round(1.0 / cap, 9))) - len(held)
        candidates = self._candidates(c, held, base, current, count=wanted)
        universe = held + [sym for sym, _ in candidates]
        table = c.returns[universe].dropna()
        if len(table) < 60 or len(universe) < 2:
            return []
        allocation = optimise(table, c.tolerance, max_weight=cap)
        now = {sym: current.get(sym, 0.0) / optimisable for sym in universe}
        goal = allocation.weights
        turnover = 0.5 * sum(abs(goal[sym] - now[sym]) for sym in universe)
        if turnover < float(s.min_turnover):
            return []
        objective = _OBJECTIVES[allocation.method]
        before_value, after_value = objective(table, now), objective(table, goal)
        improvement = _improvement(allocation.method, before_value, after_value)
        if improvement <= 0:
            return []
        wins, blocks = _consistency(table, now, goal, allocation.method, s.blocks)
        magnitude = 1.0 - math.exp(-3.0 * improvement)
        confidence = math.sqrt(magnitude * wins / blocks)
        if _confidence(confidence) < s.min_confidence:
            return []
        target_of_total = {sym: goal[sym] * optimisable for sym in universe}
        orders = self._rebalance_orders(c, target_of_total)
        if not orders:
            return []
        after_weights = {sym: w for sym, w in c.weights.items() if sym not in target_of_total}
        after_weights.update({sym: w for sym, w in target_of_total.items() if w > 0})
        risk_before, risk_after = self._risk_pair(c, c.weights, after_weights)
        evidence: dict[str, Any] = {
            "as_of": c.portfolio.as_of.isoformat(),
            "risk_tolerance": c.tolerance,
            "method": allocation.method,
            "max_weight": _ratio_text(allocation.max_weight),
            "history": {
                "start": table.index[0].date().isoformat(),
                "end": table.index[-1].date().isoformat(),
                "observations": len(table),
            },
            "current_weights": {sym: _ratio_text(now[sym]) for sym in universe if now[sym] > 0},
            "target_weights": {sym: _ratio_text(goal[sym]) for sym in universe if goal[sym] > 0},
            "weights_of": "the invested part the optimiser covers; cash and unmeasured holdings keep theirs",
            "invested_weight_covered": _ratio_text(optimisable),
            "candidates": [
                {"symbol": sym, "mean_correlation": _ratio_text(corr)} for sym, corr in candidates
            ],
            "turnover": _ratio_text(turnover),
            "objective": {
                "name": _OBJECTIVE_NAMES[allocation.method],
                "before": _ratio_text(before_value),
                "after": _ratio_text(after_value),
                "relative_improvement": _ratio_text(improvement),
            },
            "consistency": {"periods_won": wins, "periods": blocks},
            "in_sample": True,
            "risk_before": risk_before,
            "risk_after": risk_after,
            "anomaly_check": _anomaly_check(c),
        }
        return [
            Recommendation(
                kind="rebalance",
                symbol=None,
                rationale=_rebalance_rationale(c.tolerance, allocation.method, evidence, len(universe)),
                confidence=_confidence(confidence),
                orders=tuple(orders),
                evidence=evidence,
            )
        ]

    def _eligible(self, c: _Context, held: Sequence[str]) -> list[str]:
        return sorted(
            sym
            for sym, listing in c.listings.items()
            if sym not in held
            and sym not in c.holdings
            and sym in c.measured
            and sym not in c.flags
            and listing.asset_class in ("equity", "etf")
            and listing.price > 0
        )

    def _candidates(
        self,
        c: _Context,
        held: Sequence[str],
        base: pd.DataFrame,
        current: Mapping[str, float],
        count: int | None = None,
    ) -> list[tuple[str, float]]:
        """The symbols least correlated, on average, with the current portfolio's returns."""
        count = self.settings.universe_size - len(held) if count is None else count
        if count <= 0:
            return []
        w = np.array([current[sym] for sym in held], dtype=np.float64)
        scored: list[tuple[float, str]] = []
        for sym in self._eligible(c, held):
            joined = pd.concat([base, c.returns[sym]], axis=1, join="inner").dropna()
            if len(joined) < 60:
                continue
            mine = joined[list(held)].to_numpy(dtype=np.float64) @ w
            other = joined[sym].to_numpy(dtype=np.float64)
            if np.std(mine) == 0 or np.std(other) == 0:
                continue
            scored.append((float(np.corrcoef(mine, other)[0, 1]), sym))
        scored.sort()
        return [(sym, corr) for corr, sym in scored[:count]]

    def _rebalance_orders(self, c: _Context, target_of_total: Mapping[str, float]) -> list[ProposedOrder]:
        s = self.settings
        positions = [
            Position(
                symbol=h.symbol, shares=h.shares, price=h.price, asset_class=h.asset_class, sector=h.sector
            )
            for h in c.holdings.values()
        ]
        offered: dict[str, list[Position]] = {}
        for sym in sorted(target_of_total):
            if sym in c.holdings:
                continue
            listing = c.listings[sym]
            offered.setdefault(listing.sector, []).append(
                Position(
                    symbol=sym,
                    shares=_ZERO,
                    price=listing.price,
                    asset_class=listing.asset_class,
                    sector=listing.sector,
                )
            )
        symbols = {
            sym: Decimal(repr(w)).quantize(RATIO, rounding=ROUND_DOWN) for sym, w in target_of_total.items()
        }
        plan = rebalance(
            positions,
            c.portfolio.cash,
            TargetAllocation(symbol=symbols),
            drift_band=s.drift_band,
            min_trade_value=s.min_trade_value,
            whole_shares=True,
            candidates=offered,
        )
        sells = [
            ProposedOrder(o.symbol, "sell", o.quantity, o.price) for o in plan.orders if o.side == "sell"
        ]
        buys = [ProposedOrder(o.symbol, "buy", o.quantity, o.price) for o in plan.orders if o.side == "buy"]
        proceeds = sum(
            (
                money(o.quantity * o.price * (1 - s.sale_haircut)) - s.commission(o.quantity, o.price)
                for o in sells
            ),
            _ZERO,
        )
        buys = self._fit_buys(buys, c.portfolio.cash + proceeds)
        return sells + [b for b in buys if b.quantity >= 1 and b.estimated_value >= s.min_trade_value]

    def _fit_buys(self, buys: list[ProposedOrder], budget: Decimal) -> list[ProposedOrder]:
        """Buys whose reservations (collar and commission) fit ``budget``: every buy scaled down by the
        same fraction first (no name favoured), then a share at a time off the largest."""
        if not buys:
            return []
        prices = {b.symbol: b.price for b in buys}

        def reserved(q: Mapping[str, Decimal]) -> Decimal:
            return sum((self._reserve(n, prices[sym]) for sym, n in q.items() if n > 0), _ZERO)

        quantities = {b.symbol: b.quantity for b in buys}
        needed = reserved(quantities)
        if needed > budget:
            scale = max(budget, _ZERO) / needed
            quantities = {
                sym: (n * scale).to_integral_value(rounding=ROUND_FLOOR) for sym, n in quantities.items()
            }
        while reserved(quantities) > budget:
            biggest = max(
                (sym for sym, n in quantities.items() if n > 0),
                key=lambda sym: (quantities[sym] * prices[sym], sym),
                default=None,
            )
            if biggest is None:
                break
            quantities[biggest] -= _ONE_SHARE
        return [b.with_quantity(quantities[b.symbol]) for b in buys]

    def _reserve(self, quantity: Decimal, price: Decimal) -> Decimal:
        cap = (price * (1 + self.settings.collar)).quantize(Decimal("0.0001"), rounding=ROUND_CEILING)
        return money(quantity * cap) + self.settings.commission(quantity, cap)

    # signals --------------------------------------------------------------------------------------

    def _signals(self, c: _Context, *, skip_sells: Iterable[str | None]) -> list[Recommendation]:
        s = self.settings
        skipped = set(skip_sells)
        cap = float(s.max_position_weight)
        sells: list[Recommendation] = []
        buys: list[Recommendation] = []
        spendable = c.portfolio.cash
        for sym in sorted(set(c.holdings) | set(c.listings)):
            if sym not in c.closes.columns or sym not in c.measured:
                continue
            trend = momentum(c.closes[sym].rename(sym))
            if trend is None:
                continue
            confidence = _confidence(trend.confidence)
            if confidence < s.min_confidence:
                continue
            evidence: dict[str, Any] = {
                "as_of": c.portfolio.as_of.isoformat(),
                **trend.as_evidence(),
                "weight": _ratio_text(c.weights.get(sym, 0.0)),
                "anomaly_check": _anomaly_check(c),
            }
            holding = c.holdings.get(sym)
            if trend.t_stat < 0 and trend.close < trend.moving_average and holding is not None:
                if sym in skipped:
                    continue
                quantity = (holding.shares * s.sell_fraction).to_integral_value(rounding=ROUND_FLOOR)
                if quantity < 1 or quantity * holding.price < s.min_trade_value:
                    continue
                evidence["sell_fraction"] = _text(s.sell_fraction)
                sells.append(
                    Recommendation(
                        kind="sell",
                        symbol=sym,
                        rationale=_signal_rationale("sell", sym, trend, quantity),
                        confidence=confidence,
                        orders=(ProposedOrder(sym, "sell", quantity, holding.price),),
                        evidence=evidence,
                    )
                )
            elif trend.t_stat > 0 and trend.close > trend.moving_average:
                listing = c.listings.get(sym)
                weight = c.weights.get(sym, 0.0)
                if listing is None or sym in c.flags or weight >= cap:
                    continue
                room = Decimal(repr(cap - weight)) * c.total
                value = min(s.signal_weight * c.total, room)
                quantity = self._affordable(value, listing.price, spendable)
                if quantity < 1 or quantity * listing.price < s.min_trade_value:
                    continue
                evidence["signal_weight"] = _text(s.signal_weight)
                evidence["sector"] = listing.sector
                buys.append(
                    Recommendation(
                        kind="buy",
                        symbol=sym,
                        rationale=_signal_rationale("buy", sym, trend, quantity),
                        confidence=confidence,
                        orders=(ProposedOrder(sym, "buy", quantity, listing.price),),
                        evidence=evidence,
                    )
                )
        buys.sort(key=lambda r: (-r.confidence, r.symbol or ""))
        return sells + buys[: s.max_buy_signals]

    def _affordable(self, value: Decimal, price: Decimal, cash: Decimal) -> Decimal:
        """Whole shares worth at most ``value`` whose reservation the cash covers."""
        if price <= 0 or value <= 0:
            return _ZERO
        quantity = (value / price).to_integral_value(rounding=ROUND_FLOOR)
        while quantity > 0 and self._reserve(quantity, price) > cash:
            quantity -= _ONE_SHARE
        return max(quantity, _ZERO)


# ------------------------------------------------------------------------------------------- objectives


def _cvar(returns: pd.DataFrame, weights: Mapping[str, float]) -> float:
    """Historical 1-day CVaR at 95 %, as :mod:`~wealthalloc.domain.risk` defines it (a positive loss)."""
    losses = np.sort(-_series(returns, weights))
    n = len(losses)
    rank = min(max(math.ceil(round(CVAR_CONFIDENCE * n, 9)), 1), n)
    var = float(losses[rank - 1])
    return var + float(np.sum(np.maximum(losses - var, 0.0))) / ((1.0 - CVAR_CONFIDENCE) * n)


def _sharpe(returns: pd.DataFrame, weights: Mapping[str, float]) -> float:
    series = _series(returns, weights)
    deviation = float(np.std(series, ddof=1))
    return float(np.mean(series)) / deviation * math.sqrt(PERIODS_PER_YEAR) if deviation > 0 else 0.0


def _series(returns: pd.DataFrame, weights: Mapping[str, float]) -> FloatArray:
    symbols = list(returns.columns)
    w = np.array([weights.get(sym, 0.0) for sym in symbols], dtype=np.float64)
    result: FloatArray = returns.to_numpy(dtype=np.float64) @ w
    return result


def _volatility(returns: pd.DataFrame, weights: Mapping[str, float]) -> float:
    return float(np.std(_series(returns, weights), ddof=1) * math.sqrt(PERIODS_PER_YEAR))


Objective = Callable[[pd.DataFrame, Mapping[str, float]], float]
_OBJECTIVES: dict[str, Objective] = {
    "min_cvar": _cvar,
    "risk_parity": effective_bets,
    "max_sharpe": _sharpe,
    "min_variance": _volatility,
}
_OBJECTIVE_NAMES = {
    "min_cvar": "cvar_95_1d",
    "risk_parity": "effective_number_of_bets",
    "max_sharpe": "sharpe_ratio",
    "min_variance": "volatility",
}
_LOWER_IS_BETTER = {"min_cvar", "min_variance"}


def _improvement(method: str, before: float, after: float) -> float:
    """The objective's relative improvement (positive is better), whichever way the objective points."""
    if method in _LOWER_IS_BETTER:
        return (before - after) / before if before > 0 else 0.0
    if method == "max_sharpe":
        return (after - before) / max(abs(before), 0.25)  # a Sharpe near 0 would make any change huge
    return (after - before) / before if before > 0 else 0.0


def _consistency(
    table: pd.DataFrame, now: Mapping[str, float], goal: Mapping[str, float], method: str, blocks: int
) -> tuple[int, int]:
    """In how many of ``blocks`` consecutive periods the target beats the current weights."""
    objective = _OBJECTIVES[method]
    edges = np.linspace(0, len(table), blocks + 1).astype(int)
    wins = 0
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        part = table.iloc[start:end]
        if len(part) < 20:
            continue
        if _improvement(method, objective(part, now), objective(part, goal)) > 0:
            wins += 1
    return wins, blocks


def _weight_for_hhi(weights: Mapping[str, float], symbol: str, limit: float) -> float | None:
    """The weight of ``symbol`` (the rest moved to cash) at which the HHI meets ``limit``, if trimming can.

    ``None`` when even trimming it down to the second-largest holding leaves the HHI above the limit:
    then the HHI is high because there are few holdings, not because one dominates, and selling to
    cash is not the cure (adding holdings is; the rebalance recommendation does). Found by bisection:
    the HHI falls as the largest holding shrinks towards the others.
    """
    others = [w for s, w in weights.items() if s != symbol]
    if not others:
        return None
    floor = max(others)

    def hhi(x: float) -> float:
        total = x + sum(others)
        return (x * x + sum(w * w for w in others)) / (total * total)

    low, high = floor, weights[symbol]
    if hhi(low) > limit:
        return None
    for _ in range(60):
        middle = (low + high) / 2
        if hhi(middle) > limit:
            high = middle
        else:
            low = middle
    return low


# ---------------------------------------------------------------------------------------------- words


def _reduce_rationale(
    symbol: str,
    weight: float,
    after: float,
    quantity: Decimal,
    triggers: Mapping[str, Any],
    evidence: Mapping[str, Any],
) -> str:
    reasons = []
    if "max_weight" in triggers:
        limit = float(triggers["max_weight"]["limit"])
        reasons.append(
            f"{symbol} is {weight:.1%} of the portfolio, above the {limit:.0%} limit for one holding"
        )
    if "concentration_hhi" in triggers:
        hhi = triggers["concentration_hhi"]
        reasons.append(
            f"the portfolio is concentrated (HHI {float(hhi['hhi']):.2f}, like holding"
            f" {float(hhi['effective_positions']):.1f} equal positions; limit {float(hhi['limit']):.2f})"
        )
    if "anomaly" in triggers:
        flag = triggers["anomaly"]
        reasons.append(
            f"the anomaly model flags {symbol}'s recent trading (reconstruction error"
            f" {flag['reconstruction_error']:.3g}, {flag['ratio_to_threshold']:.1f}x its threshold)"
        )
    text = "; ".join(reasons)
    text = text[0].upper() + text[1:]
    text += f". Selling {_text(quantity)} shares takes it to {after:.1%}."
    before_risk, after_risk = evidence.get("risk_before"), evidence.get("risk_after")
    if before_risk and after_risk:
        text += (
            f" Portfolio volatility {float(before_risk['volatility']):.1%}"
            f" -> {float(after_risk['volatility']):.1%},"
            f" 1-day 95% CVaR {float(before_risk['cvar_95']):.2%} -> {float(after_risk['cvar_95']):.2%}."
        )
    return text


def _rebalance_rationale(tolerance: str, method: str, evidence: Mapping[str, Any], size: int) -> str:
    objective = evidence["objective"]
    consistency = evidence["consistency"]
    text = (
        f"For a {tolerance} risk tolerance, {_METHOD_TEXT[method]} over your holdings and"
        f" {len(evidence['candidates'])} diversifying candidates ({size} securities) moves"
        f" {float(evidence['turnover']):.0%} of the invested value."
    )
    before_risk, after_risk = evidence.get("risk_before"), evidence.get("risk_after")
    if before_risk and after_risk:
        text += (
            f" Volatility {float(before_risk['volatility']):.1%} -> {float(after_risk['volatility']):.1%},"
            f" 1-day 95% CVaR {float(before_risk['cvar_95']):.2%} -> {float(after_risk['cvar_95']):.2%}"
            f" on {evidence['history']['observations']} days of history."
        )
    text += (
        f" Its objective ({objective['name'].replace('_', ' ')}) goes from {float(objective['before']):.4g}"
        f" to {float(objective['after']):.4g}, better in {consistency['periods_won']} of"
        f" {consistency['periods']} periods of that history."
    )
    return text


def _signal_rationale(side: Side, symbol: str, trend: Momentum, quantity: Decimal) -> str:
    direction = "rose" if trend.momentum_return >= 0 else "fell"
    where = "above" if trend.close > trend.moving_average else "below"
    action = "Buying" if side == "buy" else "Selling"
    return (
        f"{symbol} {direction} {abs(trend.momentum_return):.1%} over the eleven months to a month ago"
        f" (trend t-statistic {trend.t_stat:.2f} over {trend.days} days) and closes {where} its 200-day"
        f" average ({trend.close:.2f} vs {trend.moving_average:.2f}). {action} {_text(quantity)} shares"
        " follows the trend."
    )


def _flag_evidence(flag: AnomalyFlag) -> dict[str, Any]:
    return {
        "reconstruction_error": flag.reconstruction_error,
        "threshold": flag.threshold,
        "ratio_to_threshold": flag.reconstruction_error / flag.threshold,
        "model_version": flag.model_version,
        "window_end": flag.window_end.isoformat() if flag.window_end else None,
    }


def _anomaly_check(c: _Context) -> dict[str, Any]:
    """Whether the anomaly detector was asked (it may be unavailable) and what it flagged."""
    return {
        "checked": c.anomaly_models is not None,
        "model_versions": list(c.anomaly_models or ()),
        "flagged": sorted(c.flags),
    }


# -------------------------------------------------------------------------------------------- numbers


def _confidence(value: float) -> Decimal:
    if not math.isfinite(value):
        return _ZERO
    clipped = min(max(value, 0.0), 1.0)
    return Decimal(repr(clipped)).quantize(CONFIDENCE, rounding=ROUND_HALF_EVEN)


def _ratio_text(value: float) -> str:
    return _text(Decimal(repr(float(value))).quantize(RATIO, rounding=ROUND_HALF_EVEN))


def _text(value: Decimal) -> str:
    return format(value, "f")


def _canonical(value: Decimal) -> str:
    return format(value.normalize(), "f") if value != 0 else "0"
