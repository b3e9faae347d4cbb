"""The risk of a portfolio's current weights: volatility, VaR and CVaR, beta, concentration, a score.

The question answered is "how risky is what I hold now?", so the weights are
held fixed and applied to each past day's returns (the portfolio is taken as
rebalanced to today's weights every day). That is the textbook risk of a
position, and unlike the realised history of :mod:`~wealthalloc.domain.performance`
it does not depend on when the client bought what.

Conventions, and why:

* **Inputs are simple daily returns** (``closes.pct_change()``, see
  :func:`daily_returns`): a portfolio's simple return is the weighted sum of
  its assets' simple returns, which is not true of log returns.
* **Weights are fractions of the whole portfolio**, non-negative (the
  platform holds no short positions); what they leave below 1 is cash, with a
  zero return. A sum above 1 (leverage) is refused, beyond a small tolerance
  for weights that were rounded to six decimals.
* **One set of days for every figure**: the days on which every held symbol
  and the index have a finite return. Volatility, VaR and beta then describe
  the same sample, and a reviewer can reproduce each from one table.
* **Sample statistics (``ddof=1``)** for volatility, the parametric model and
  beta's covariance and variance, as in :mod:`~wealthalloc.domain.performance`.
  Volatility is annualised with ``sqrt(252)``.
* **VaR and CVaR are positive loss fractions.** With losses ``L = -R`` the
  historical VaR at confidence ``c`` is the lower ``c``-quantile of the
  empirical loss distribution, ``inf{l : F_L(l) >= c}``: with 100 days at 95 %
  it is the sixth largest loss. CVaR is Rockafellar and Uryasev's
  ``VaR + E[max(L - VaR, 0)] / (1 - c)``, the mean of the worst ``1 - c`` of the
  days (counting a fraction of a day when ``(1 - c) n`` is not whole). Both are
  coherent with skfolio's ``value_at_risk`` and ``cvar``. A quantile that is a
  gain (a portfolio that did not lose on 95 % of days) reports a loss of 0.
* **The parametric figures assume Gaussian returns** with the sample mean
  ``mu`` and deviation ``sigma``: ``VaR = -mu_h + sigma_h z`` and
  ``CVaR = -mu_h + sigma_h phi(z) / (1 - c)`` with ``z = Phi^-1(c)``,
  ``mu_h = h mu`` and ``sigma_h = sqrt(h) sigma`` for a horizon of ``h`` days.
  Beside the historical figures they show how fat the real tails are.
* **A horizon of h days** takes the historical figures from the overlapping
  h-day compounded returns ``prod(1 + r) - 1``; there are ``n - h + 1`` of them.
* **Beta** is ``cov(R_p, R_index) / var(R_index)``; ``None`` when the index
  did not move (undefined, never zero).
* **Concentration** is the Herfindahl-Hirschman index of the holdings'
  weights *among themselves*, ``sum((w_i / W)^2)`` with ``W`` the invested
  weight: 1 for a single stock, ``1/N`` for ``N`` equal positions (0 for a
  portfolio of cash only). ``effective_positions`` is ``1 / HHI``. It counts
  positions, not what is inside them: one broad ETF is "concentrated".
* **Sector exposure** sums the weights per sector; a symbol without a sector
  is ``"Unclassified"``. Cash is not a sector (as in
  :mod:`~wealthalloc.domain.allocation`), so the exposures add up to the
  invested weight and ``cash_weight`` is reported beside them.

Risk score (0..100), a weighted blend of three terms, each clipped to [0, 1]::

    score = 100 * (0.5 * min(volatility / 0.50, 1)
                   + 0.3 * min(cvar_95_1d / 0.065, 1)
                   + 0.2 * invested_weight * hhi)

``0.50`` is the full-scale volatility of :mod:`~wealthalloc.domain.valuation`'s
score (a speculative single stock); ``0.065`` is the one-day 95 % CVaR of a
Gaussian with that volatility (``0.50 / sqrt(252) * phi(1.645) / 0.05``), so a
stock that volatile fills both market terms; the concentration term scales
the HHI by the invested weight, so cash dilutes it as it dilutes the others.
The CVaR term always uses the one-day historical CVaR at 95 %, whatever the
report's own ``confidence`` and ``horizon_days``, so scores stay comparable
between requests. The score is non-decreasing in volatility, in CVaR and in
concentration; it is 0 for cash and 100 for a single stock that volatile.

Ratios are ``Decimal`` with six decimals, money with two and the score with
two (half-even); inside, the statistics are float. Pure: no Ray, database or
HTTP.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wealthalloc.domain.money import CENT
from wealthalloc.domain.valuation import RISK_SCORE_FULL_SCALE_VOLATILITY

RATIO = Decimal("0.000001")
"""Volatility, VaR, CVaR, beta, weights and the HHI: six decimals."""

SCORE = Decimal("0.01")
"""The risk score: two decimals, as stored in the ``portfolios`` table."""

PERIODS_PER_YEAR = 252
"""Trading days per year, for annualising the daily volatility."""

MIN_OBSERVATIONS = 20
"""Fewer common days than this are not a sample worth a risk figure."""

WEIGHT_TOLERANCE = 1e-4
"""How far above 1 the weights may sum: weights rounded to six decimals over many holdings."""

UNCLASSIFIED = "Unclassified"
"""The sector of a symbol that ``sectors`` does not name."""

RISK_SCORE_FULL_SCALE_CVAR = 0.065
"""One-day 95 % CVaR that fills the score's tail term: a Gaussian at 50 % annual volatility."""

RISK_SCORE_WEIGHTS = (0.5, 0.3, 0.2)
"""Weights of the volatility, CVaR and concentration terms of the risk score."""

_SCORE_CONFIDENCE = 0.95

_FloatArray = npt.NDArray[np.float64]

_WIDE = Context(prec=400, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class RiskReport:
    """What :func:`portfolio_risk` found; the module docstring gives each convention.

    Attributes
    ----------
    start, end : date
        The first and last day of the returns used.
    observations : int
        Daily returns used (the days common to every holding and the index).
    confidence : Decimal
        Of the VaR and CVaR figures, e.g. ``0.95``.
    horizon_days : int
        Of the VaR and CVaR figures.
    volatility : Decimal
        Annualised standard deviation of the daily portfolio return.
    var_historical, cvar_historical, var_parametric, cvar_parametric : Decimal
        Losses over the horizon as positive fractions of the portfolio value.
    beta : Decimal or None
        Against the index; ``None`` when the index did not move.
    hhi : Decimal
        Herfindahl-Hirschman index of the holdings' weights among themselves.
    effective_positions : Decimal or None
        ``1 / hhi``; ``None`` for a portfolio of cash only.
    invested_weight, cash_weight : Decimal
        The weights given, and what they leave to 1.
    sector_exposure : dict of str to Decimal
        Weight per sector, largest first (ties by name); adds to ``invested_weight``.
    risk_score : Decimal
        0..100.
    portfolio_value : Decimal or None
        When given, the ``*_amount`` fields are the losses in money.
    """

    start: date
    end: date
    observations: int
    confidence: Decimal
    horizon_days: int
    volatility: Decimal
    var_historical: Decimal
    cvar_historical: Decimal
    var_parametric: Decimal
    cvar_parametric: Decimal
    beta: Decimal | None
    hhi: Decimal
    effective_positions: Decimal | None
    invested_weight: Decimal
    cash_weight: Decimal
    sector_exposure: dict[str, Decimal] = field(default_factory=dict)
    risk_score: Decimal = Decimal("0.00")
    portfolio_value: Decimal | None = None
    var_historical_amount: Decimal | None = None
    cvar_historical_amount: Decimal | None = None
    var_parametric_amount: Decimal | None = None
    cvar_parametric_amount: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: decimals as strings, dates in ISO form, ``None`` kept."""
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "sector_exposure":
                data[name] = {sector: _text(weight) for sector, weight in value.items()}
            elif isinstance(value, Decimal):
                data[name] = _text(value)
            elif isinstance(value, date):
                data[name] = value.isoformat()
            else:
                data[name] = value
        return data


def daily_returns(closes: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """Simple daily returns of closes (``C_t / C_{t-1} - 1``), the input :func:`portfolio_risk` expects.

    A gap (NaN close) is not filled: the return on and after it is NaN, and
    :func:`portfolio_risk` leaves such days out rather than invent a price.
    The first row, which has no previous close, is dropped.
    """
    return closes.astype(np.float64).pct_change(fill_method=None).iloc[1:]


def portfolio_risk(
    weights: Mapping[str, Decimal | float],
    sectors: Mapping[str, str],
    returns: pd.DataFrame,
    index_returns: pd.Series,
    *,
    confidence: float = 0.95,
    horizon_days: int = 1,
    portfolio_value: Decimal | None = None,
) -> RiskReport:
    """The risk of holding ``weights`` (the rest in cash), measured on past daily returns.

    Parameters
    ----------
    weights : mapping of str to Decimal or float
        Symbol -> fraction of the portfolio's value; non-negative, summing to
        at most 1 (the remainder is cash). Zero weights are ignored.
    sectors : mapping of str to str
        Symbol -> sector; a held symbol missing here is ``"Unclassified"``.
    returns : DataFrame
        Simple daily returns (see :func:`daily_returns`), ``DatetimeIndex``
        rows, one column per symbol; must have a column for each held symbol.
    index_returns : Series
        Simple daily returns of the index beta is measured against.
    confidence : float, default=0.95
        Of VaR and CVaR, strictly between 0.5 and 1.
    horizon_days : int, default=1
        Of VaR and CVaR, at least 1.
    portfolio_value : Decimal, optional
        The portfolio's value, to state the losses in money as well.

    Returns
    -------
    RiskReport

    Raises
    ------
    ValueError
        For a negative, non-finite or leveraged weight set, a held symbol
        without a returns column, a confidence or horizon out of range, a
        non-finite or negative portfolio value, or fewer than
        :data:`MIN_OBSERVATIONS` common days (or fewer h-day returns than the
        tail needs, ``ceil(1 / (1 - confidence))``).
    """
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0.5 and 1, got {confidence}")
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days < 1:
        raise ValueError(f"horizon_days must be a positive integer, got {horizon_days!r}")
    if portfolio_value is not None and (not portfolio_value.is_finite() or portfolio_value < 0):
        raise ValueError(f"portfolio_value must be a finite non-negative Decimal, got {portfolio_value!r}")
    held = _checked_weights(weights)
    missing = sorted(set(held) - set(returns.columns))
    if missing:
        raise ValueError(f"returns have no column for {', '.join(missing)}")

    symbols = sorted(held)
    table = _common_days(returns, index_returns, symbols)
    n = len(table)
    if n < MIN_OBSERVATIONS:
        raise ValueError(
            f"{n} day(s) with a return for every holding and the index; "
            f"at least {MIN_OBSERVATIONS} are needed"
        )
    w = np.array([held[symbol] for symbol in symbols], dtype=np.float64)
    asset_returns = table[symbols].to_numpy(dtype=np.float64)
    portfolio: _FloatArray = asset_returns @ w if symbols else np.zeros(n)
    index = table["__index__"].to_numpy(dtype=np.float64)

    horizon = _horizon_returns(portfolio, horizon_days)
    needed = math.ceil(round(1.0 / (1.0 - confidence), 9))
    if len(horizon) < needed:
        raise ValueError(
            f"{len(horizon)} {horizon_days}-day return(s); a {confidence:.4g} tail needs at least {needed}"
        )
    var_h, cvar_h = _historical_var_cvar(-horizon, confidence)
    mean, std = float(np.mean(portfolio)), float(np.std(portfolio, ddof=1))
    var_p, cvar_p = _gaussian_var_cvar(mean * horizon_days, std * math.sqrt(horizon_days), confidence)
    volatility = std * math.sqrt(PERIODS_PER_YEAR)

    index_variance = float(np.var(index, ddof=1))
    beta = float(np.cov(portfolio, index, ddof=1)[0, 1]) / index_variance if index_variance > 0 else None

    invested = float(sum(held.values()))
    hhi = float(sum((value / invested) ** 2 for value in held.values())) if invested > 0 else 0.0
    exposure: dict[str, float] = defaultdict(float)
    for symbol, value in held.items():
        exposure[sectors.get(symbol) or UNCLASSIFIED] += value

    _, score_cvar = _historical_var_cvar(-portfolio, _SCORE_CONFIDENCE)
    score = risk_score(volatility=volatility, cvar_95_1d=score_cvar, hhi=hhi, invested_weight=invested)

    var_hist, cvar_hist = _ratio(_gain_free(var_h)), _ratio(_gain_free(cvar_h))
    var_gauss, cvar_gauss = _ratio(_gain_free(var_p)), _ratio(_gain_free(cvar_p))

    def amount(loss: Decimal) -> Decimal | None:
        """The loss in money: the value times the reported fraction, so the two always agree."""
        return None if portfolio_value is None else (portfolio_value * loss).quantize(CENT, context=_WIDE)

    days = table.index
    return RiskReport(
        start=days[0].date(),
        end=days[-1].date(),
        observations=n,
        confidence=Decimal(repr(float(confidence))),
        horizon_days=horizon_days,
        volatility=_ratio(volatility),
        beta=None if beta is None else _ratio(beta),
        hhi=_ratio(hhi),
        effective_positions=_ratio(1.0 / hhi) if hhi > 0 else None,
        invested_weight=_ratio(invested),
        cash_weight=_ratio(_gain_free(1.0 - invested)),
        sector_exposure={
            sector: _ratio(value)
            for sector, value in sorted(exposure.items(), key=lambda item: (-item[1], item[0]))
        },
        risk_score=score,
        portfolio_value=portfolio_value,
        var_historical=var_hist,
        cvar_historical=cvar_hist,
        var_parametric=var_gauss,
        cvar_parametric=cvar_gauss,
        var_historical_amount=amount(var_hist),
        cvar_historical_amount=amount(cvar_hist),
        var_parametric_amount=amount(var_gauss),
        cvar_parametric_amount=amount(cvar_gauss),
    )


def risk_score(*, volatility: float, cvar_95_1d: float, hhi: float, invested_weight: float) -> Decimal:
    """The 0..100 blend of the module docstring: volatility, one-day 95 % CVaR and concentration.

    Parameters
    ----------
    volatility : float
        Annualised, as a fraction.
    cvar_95_1d : float
        One-day historical CVaR at 95 %, a positive loss fraction.
    hhi : float
        Herfindahl-Hirschman index of the holdings among themselves, 0..1.
    invested_weight : float
        The fraction of the portfolio not in cash, 0..1.

    Returns
    -------
    Decimal
        Two decimals; 0 when every input is 0 or not finite.
    """
    terms = (
        volatility / RISK_SCORE_FULL_SCALE_VOLATILITY,
        cvar_95_1d / RISK_SCORE_FULL_SCALE_CVAR,
        invested_weight * hhi,
    )
    total = sum(
        weight * min(max(term, 0.0), 1.0) if math.isfinite(term) else 0.0
        for weight, term in zip(RISK_SCORE_WEIGHTS, terms, strict=True)
    )
    return Decimal(repr(100.0 * total)).quantize(SCORE, context=_WIDE)


def _checked_weights(weights: Mapping[str, Decimal | float]) -> dict[str, float]:
    held: dict[str, float] = {}
    for symbol, raw in weights.items():
        value = float(raw)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"weight of {symbol} must be finite and non-negative, got {raw!r}")
        if value > 0:
            held[symbol] = value
    total = sum(held.values())
    if total > 1 + WEIGHT_TOLERANCE:
        raise ValueError(f"weights add up to {total:.6f}; leverage (more than 1) is not supported")
    return held


def _common_days(returns: pd.DataFrame, index_returns: pd.Series, symbols: list[str]) -> pd.DataFrame:
    for name, frame in (("returns", returns), ("index_returns", index_returns)):
        if not isinstance(frame.index, pd.DatetimeIndex):
            raise ValueError(f"{name} need a DatetimeIndex of trading days")
        if frame.index.has_duplicates:
            raise ValueError(f"{name} have the same day twice")
    table = returns[symbols].astype(np.float64)
    table["__index__"] = index_returns.astype(np.float64)
    table = table.replace([np.inf, -np.inf], np.nan).dropna(how="any").sort_index()
    return table


def _horizon_returns(daily: _FloatArray, horizon_days: int) -> _FloatArray:
    """Overlapping compounded ``horizon_days``-day returns; the daily returns themselves for one day."""
    if horizon_days == 1:
        return daily
    growth = np.log1p(daily)
    cumulative = np.concatenate([[0.0], np.cumsum(growth)])
    result: _FloatArray = np.expm1(cumulative[horizon_days:] - cumulative[:-horizon_days])
    return result


def _historical_var_cvar(losses: _FloatArray, confidence: float) -> tuple[float, float]:
    """Lower ``confidence``-quantile of the empirical losses and the Rockafellar-Uryasev CVaR above it."""
    ordered = np.sort(losses)
    n = len(ordered)
    # round(): 0.95 * 100 is 95.00000000000001 in floats, and its ceiling would skip a day.
    rank = min(max(math.ceil(round(confidence * n, 9)), 1), n)
    var = float(ordered[rank - 1])
    cvar = var + float(np.sum(np.maximum(ordered - var, 0.0))) / ((1.0 - confidence) * n)
    return var, cvar


def _gaussian_var_cvar(mean: float, std: float, confidence: float) -> tuple[float, float]:
    standard = NormalDist()
    z = standard.inv_cdf(confidence)
    return -mean + std * z, -mean + std * standard.pdf(z) / (1.0 - confidence)


def _ratio(value: float) -> Decimal:
    if not math.isfinite(value):
        raise ValueError(f"a risk figure came out as {value}")
    return Decimal(repr(float(value))).quantize(RATIO, context=_WIDE)


def _text(value: Decimal) -> str:
    return format(value, "f")


def _gain_free(loss: float) -> float:
    """A loss floored at zero, never ``-0.0``: ``max(-0.0, 0.0)`` is ``-0.0``, shown as "-0.000000"."""
    return loss if loss > 0.0 else 0.0
