"""How a portfolio did over a period: its daily value, time- and money-weighted return, and risk.

Two questions have two different answers, so the report carries both:

* **Time-weighted return (TWR)** judges the *investments*: deposits and
  withdrawals are chosen by the client, not the manager, so their effect is
  removed by chain-linking daily returns. This is the number to compare with a
  benchmark (GIPS requires it for that).
* **Money-weighted return (MWR)** judges the *client's experience*: money
  added just before a rally earns more than money added after it. It is the
  internal rate of return of the actual cash flows (XIRR).

Conventions, and why:

* **Flows happen at the end of the day.** A deposit, withdrawal or transfer
  of shares dated ``t`` is in the value at ``t``'s close but earned nothing
  that day, so the day's return is ``r_t = (V_t - F_t) / V_{t-1} - 1``. Our
  records have a day, not a time; end of day is what a custodian statement
  shows, and it never lets a flow look like a gain. A change dated on a
  weekend or holiday takes effect at the next trading day's close.
* **The period starts at the first trading day's close.** Changes dated
  before ``start`` are the opening state, and the first value includes any
  flow of the first day itself (``ValueHistory.flows`` still reports it, as
  what happened that day, but :func:`performance` counts it as part of
  ``start_value`` and not in ``net_flows``, so it is never counted twice).
* **An empty portfolio has no return.** A day whose previous value is under
  half a cent is skipped: nothing was invested, and dividing by a residue
  would turn float noise into returns. The wealth index, drawdown, volatility,
  Sharpe, Sortino, beta and the benchmark's return all use the same days.
* **Sample statistics (``ddof=1``)** for volatility, the downside deviation
  and beta's covariance and variance: the daily returns are a sample of the
  process, and this is what ``numpy.std(ddof=1)``, pandas and skfolio's
  unbiased measures give, so a reviewer can check a figure in one line.
* **Annualisation** of daily statistics uses ``periods_per_year`` (252
  trading days): volatility ``x sqrt(252)``, Sharpe and Sortino
  ``mean / deviation x sqrt(252)``. The annual ``risk_free_rate`` is turned
  into a daily rate by compounding, ``(1 + rf) ** (1 / 252) - 1``. Rates of
  return are annualised on calendar days, ACT/365 (as XIRR does).
* **A TWR is annualised only over a year or more** (``days >= 365``):
  stretching three good weeks into an annual rate promises what nobody
  earned, and GIPS forbids it. ``time_weighted_return_annualized`` is
  ``None`` for shorter periods; the cumulative TWR is always there. The MWR
  is an annual rate by definition (it is a spreadsheet's XIRR), so it is
  given for any period; over a few days it can be extreme.
* **Sortino** divides the mean excess return by the downside deviation
  ``sqrt(sum(min(r - rf_daily, 0)^2) / (n - 1))`` over *all* days, the
  minimum acceptable return being the daily risk-free rate (skfolio's
  ``semi_deviation(min_acceptable_return=rf_daily)``).
* **Maximum drawdown is a positive fraction**: ``0.25`` is a 25 % fall from
  the highest earlier point of the flow-neutral wealth index (which starts at
  1, so a loss on the first day counts). Measuring it on raw values would
  let a deposit hide a fall and a withdrawal fake one. ``0`` when it never
  fell.
* **``None`` means "undefined", never zero**: Sharpe without volatility,
  Sortino without a day below the risk-free rate, beta against a flat
  benchmark, an MWR whose cash flows are all of one sign or whose NPV has no
  root, or more than one (then no single rate is *the* IRR).

Rates and ratios are ``Decimal`` with six decimals, money with two (both
half-even, as in :mod:`wealthalloc.domain.money`); inside, the statistics
are float, which is plenty for an estimate that is itself noisy.

Pure: no Ray, database or HTTP. Closes come in as a ``DataFrame`` (for
example :meth:`wealthalloc.marketdata.PriceHistory.frame`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wealthalloc.domain.money import CENT

RATIO = Decimal("0.000001")
"""Rates of return and ratios: six decimals (0.0001 %)."""

EMPTY_VALUE = 0.005
"""A portfolio worth less than half a cent is empty: it rounds to 0.00 on any statement."""

DAYS_PER_YEAR = 365
"""ACT/365: the day count for annualising rates of return and discounting cash flows."""

_FloatArray = npt.NDArray[np.float64]

# Wide enough for any finite float at six decimals: the default 28 digits would
# refuse an extreme annualised rate instead of reporting it.
_WIDE = Context(prec=400, rounding=ROUND_HALF_EVEN)

# The IRR is searched for as y = ln(growth over the whole period), not as an
# annual rate, so a three-day period and a thirty-year one scan the same grid.
_IRR_GRID = np.linspace(-30.0, 30.0, 1201)


@dataclass(frozen=True)
class PositionChange:
    """``shares`` of ``symbol`` entering (+) or leaving (-) the portfolio at the end of ``day``.

    ``external=True``: transferred in or out (a flow, valued at that day's
    close); ``False``: bought or sold with the portfolio's cash (record the
    cash side as a :class:`CashChange` with ``external=False``).
    """

    day: date
    symbol: str
    shares: Decimal
    external: bool


@dataclass(frozen=True)
class CashChange:
    """Cash entering (+) or leaving (-) the portfolio at the end of ``day``.

    ``external=True``: a deposit or withdrawal (a flow); ``False``: trade
    proceeds or costs, fees, dividends, interest (part of the return).
    """

    day: date
    amount: Decimal
    external: bool


@dataclass(frozen=True, eq=False)  # Series fields: elementwise ==, unhashable
class ValueHistory:
    """A portfolio's value and external flows at each trading day's close.

    Attributes
    ----------
    values : Series
        ``DatetimeIndex`` of trading days -> cash + sum(shares x close), float.
    flows : Series
        Same index -> that day's external flow, float: external cash plus
        external shares x that day's close (+ in, - out).
    """

    values: pd.Series
    flows: pd.Series


@dataclass(frozen=True)
class PerformanceReport:
    """What :func:`performance` found; see the module docstring for each convention.

    ``days`` is calendar days from ``start`` to ``end`` (what annualisation
    uses); ``value_series`` has one entry per trading day.
    """

    start: date
    end: date
    days: int
    start_value: Decimal
    end_value: Decimal
    net_flows: Decimal
    time_weighted_return: Decimal
    time_weighted_return_annualized: Decimal | None
    money_weighted_return: Decimal | None
    volatility: Decimal
    sharpe: Decimal | None
    sortino: Decimal | None
    max_drawdown: Decimal
    beta: Decimal | None
    benchmark: str
    benchmark_return: Decimal
    value_series: list[tuple[date, Decimal]]

    def as_dict(self) -> dict[str, Any]:
        """Fields by name; ``value_series`` as ``[{"date": ..., "value": ...}]`` for JSON."""
        data = asdict(self)
        data["value_series"] = [{"date": day, "value": value} for day, value in self.value_series]
        return data


def value_history(
    positions: Sequence[PositionChange],
    cash: Sequence[CashChange],
    closes: pd.DataFrame,
    *,
    start: date,
    end: date,
    opening_cash: Decimal = Decimal(0),
) -> ValueHistory:
    """The portfolio's value and external flows at each trading day's close from ``start`` to ``end``.

    Parameters
    ----------
    positions, cash : sequences of changes
        In any order. Those dated before ``start`` are the opening state
        (not flows); one dated on a non-trading day takes effect on the next
        trading day; those after the period's last trading day are ignored.
    closes : DataFrame
        ``DatetimeIndex`` of trading days (its rows are the calendar) x one
        float column per symbol. Rows before ``start`` may be present: a
        gap is filled forward from them. NaN gaps inside a symbol's data are
        filled forward; outside it there is no price.
    start, end : date
        Inclusive.
    opening_cash : Decimal
        Cash held before any change; part of the opening state.

    Raises
    ------
    ValueError
        When ``end`` is before ``start``, ``closes`` has no trading day in
        between, a symbol has no column, or a held or transferred symbol has
        no close on a day (before its data starts or after it ends).
    """
    start, end = _as_date(start), _as_date(end)
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    table = _closes_table(closes)
    in_period = (table.index >= pd.Timestamp(start)) & (table.index <= pd.Timestamp(end))
    days = table.index[in_period]
    if len(days) == 0:
        raise ValueError(f"closes have no trading day from {start} to {end}")
    n = len(days)
    calendar = days.to_numpy(dtype="datetime64[D]")

    def slot(day: date) -> int | None:
        """The index of the trading day a change dated ``day`` takes effect on; None after the period."""
        position = int(np.searchsorted(calendar, np.datetime64(_as_date(day), "D"), side="left"))
        return position if position < n else None

    cash_deltas: dict[int, Decimal] = defaultdict(Decimal)
    cash_flows: dict[int, Decimal] = defaultdict(Decimal)
    cash_deltas[0] += opening_cash
    for change in cash:
        _check_finite(change.amount, f"cash change on {change.day}")
        where = slot(change.day)
        if where is None:
            continue
        cash_deltas[where] += change.amount
        if change.external and _as_date(change.day) >= start:
            cash_flows[where] += change.amount

    share_deltas: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    share_flows: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for position_change in positions:
        _check_finite(position_change.shares, f"{position_change.symbol} on {position_change.day}")
        where = slot(position_change.day)
        if where is None:
            continue
        share_deltas[position_change.symbol][where] += position_change.shares
        if position_change.external and _as_date(position_change.day) >= start:
            share_flows[position_change.symbol][where] += position_change.shares

    values = _steps(cash_deltas, n)
    flows = np.zeros(n)
    for where, amount in cash_flows.items():
        flows[where] += float(amount)

    missing = sorted(set(share_deltas) - set(table.columns))
    if missing:
        raise ValueError(f"closes have no column for {', '.join(map(str, missing))}")
    for symbol, deltas in share_deltas.items():
        column = table[symbol]
        prices = column.ffill(limit_area="inside").to_numpy(dtype=np.float64)[in_period]
        held = _steps(deltas, n)
        transferred = np.zeros(n)
        for where, shares in share_flows[symbol].items():
            transferred[where] = float(shares)
        needed = (held != 0) | (transferred != 0)
        unpriced = needed & np.isnan(prices)
        if unpriced.any():
            day = days[int(np.argmax(unpriced))].date()
            raise ValueError(f"no close for {symbol} on {day}: {_coverage(column)}")
        values += np.where(held != 0, held * np.nan_to_num(prices), 0.0)
        flows += np.where(transferred != 0, transferred * np.nan_to_num(prices), 0.0)

    index = pd.DatetimeIndex(days, name="date")
    return ValueHistory(
        values=pd.Series(values, index=index, name="value", dtype=np.float64),
        flows=pd.Series(flows, index=index, name="flow", dtype=np.float64),
    )


def performance(
    history: ValueHistory,
    benchmark: pd.Series,
    *,
    benchmark_symbol: str = "SPX",
    risk_free_rate: float = 0.0,
    periods_per_year: int = 252,
) -> PerformanceReport:
    """Returns, risk and the benchmark comparison of ``history``.

    Parameters
    ----------
    history : ValueHistory
        At least three trading days with at least two measurable daily
        returns (a sample standard deviation needs two).
    benchmark : Series
        The benchmark's closes by day (``DatetimeIndex``), covering the
        history's first and last day; a missing day takes the last close.
    benchmark_symbol : str
        Reported as ``benchmark``.
    risk_free_rate : float
        Annual, compounded to a daily rate.
    periods_per_year : int
        Trading days per year, for annualising daily statistics.

    Raises
    ------
    ValueError
        When the history has fewer than two days, fewer than two measurable
        daily returns (the portfolio was empty), non-finite values, or a
        benchmark that does not cover it.
    """
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year}")
    if not math.isfinite(risk_free_rate) or risk_free_rate <= -1:
        raise ValueError(f"risk_free_rate must be a finite annual rate above -1, got {risk_free_rate}")
    index, values, flows = _checked_history(history)
    bench = _aligned_benchmark(benchmark, index, benchmark_symbol)

    previous = values[:-1]
    invested = np.abs(previous) >= EMPTY_VALUE
    returns = ((values[1:] - flows[1:]) / np.where(invested, previous, 1.0) - 1.0)[invested]
    if len(returns) < 2:
        raise ValueError(
            f"{len(returns)} daily return(s) from {index[0].date()} to {index[-1].date()}: "
            "at least two are needed (three trading days with money invested)"
        )
    bench_returns = (bench[1:] / bench[:-1] - 1.0)[invested]

    start, end = index[0].date(), index[-1].date()
    days = (end - start).days
    growth = float(np.prod(1.0 + returns))
    twr = growth - 1.0
    twr_annualized = growth ** (DAYS_PER_YEAR / days) - 1.0 if days >= DAYS_PER_YEAR and growth >= 0 else None

    rf_daily = (1.0 + risk_free_rate) ** (1.0 / periods_per_year) - 1.0
    excess = returns - rf_daily
    scale = math.sqrt(periods_per_year)
    std = float(np.std(returns, ddof=1))
    downside = math.sqrt(float(np.sum(np.minimum(excess, 0.0) ** 2)) / (len(returns) - 1))
    mean_excess = float(np.mean(excess))
    sharpe = mean_excess / std * scale if std > 0 else None
    sortino = mean_excess / downside * scale if downside > 0 else None

    wealth = np.cumprod(1.0 + returns)
    peaks = np.maximum(np.maximum.accumulate(wealth), 1.0)
    max_drawdown = max(float(np.max(1.0 - wealth / peaks)), 0.0)

    bench_variance = float(np.var(bench_returns, ddof=1))
    beta = (
        float(np.cov(returns, bench_returns, ddof=1)[0, 1]) / bench_variance if bench_variance > 0 else None
    )

    years = np.array([(day.date() - start).days for day in index], dtype=np.float64) / DAYS_PER_YEAR
    amounts = -flows.copy()
    amounts[0] = -values[0]  # the opening value is invested at the start; day one's flow is in it
    amounts[-1] += values[-1]  # and everything is taken back at the end
    mwr = _xirr(years, amounts)

    return PerformanceReport(
        start=start,
        end=end,
        days=days,
        start_value=_money(values[0]),
        end_value=_money(values[-1]),
        net_flows=_money(float(np.sum(flows[1:]))),
        time_weighted_return=_ratio(twr),
        time_weighted_return_annualized=_optional_ratio(twr_annualized),
        money_weighted_return=_optional_ratio(mwr),
        volatility=_ratio(std * scale),
        sharpe=_optional_ratio(sharpe),
        sortino=_optional_ratio(sortino),
        max_drawdown=_ratio(max_drawdown),
        beta=_optional_ratio(beta),
        benchmark=benchmark_symbol,
        benchmark_return=_ratio(float(np.prod(1.0 + bench_returns)) - 1.0),
        value_series=[(day.date(), _money(value)) for day, value in zip(index, values, strict=True)],
    )


def _as_date(day: date) -> date:
    # datetime and pandas.Timestamp subclass date; their time of day must not shift a comparison.
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, date):
        return day
    raise TypeError(f"expected a date, got {type(day).__name__}")


def _check_finite(amount: Decimal, what: str) -> None:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"{what}: expected a finite Decimal, got {amount!r}")


def _closes_table(closes: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(closes.index, pd.DatetimeIndex):
        raise ValueError("closes need a DatetimeIndex of trading days")
    if closes.index.tz is not None:
        raise ValueError("closes need a DatetimeIndex without a time zone (exchange calendar days)")
    table = closes.astype(np.float64)
    table.index = closes.index.normalize()  # a close stamped 16:00 is still that day's
    if table.index.has_duplicates:
        raise ValueError("closes have the same day twice")
    table = table.sort_index()
    return table.replace([np.inf, -np.inf], np.nan)


def _steps(deltas: dict[int, Decimal], n: int) -> _FloatArray:
    """Running totals of ``deltas`` (index -> change) over ``n`` days, summed exactly in Decimal."""
    out = np.zeros(n)
    total = Decimal(0)
    slots = sorted(deltas)
    for where, following in zip(slots, [*slots[1:], n], strict=True):
        total += deltas[where]
        out[where:following] = float(total)
    return out


def _coverage(column: pd.Series) -> str:
    known = column.dropna()
    if known.empty:
        return "there are no prices for it"
    return f"its prices run from {known.index[0].date()} to {known.index[-1].date()}"


def _checked_history(history: ValueHistory) -> tuple[pd.DatetimeIndex, _FloatArray, _FloatArray]:
    index = history.values.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError("history values need a DatetimeIndex of trading days")
    if len(index) < 2:
        raise ValueError(
            f"a performance report needs at least two trading days, the history has {len(index)}"
        )
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise ValueError("history days must be increasing and unique")
    if not history.flows.index.equals(index):
        raise ValueError("history flows must have the same days as its values")
    values = history.values.to_numpy(dtype=np.float64)
    flows = history.flows.to_numpy(dtype=np.float64)
    if not (np.isfinite(values).all() and np.isfinite(flows).all()):
        raise ValueError("history values and flows must be finite")
    return index, values, flows


def _aligned_benchmark(benchmark: pd.Series, index: pd.DatetimeIndex, symbol: str) -> _FloatArray:
    if not isinstance(benchmark.index, pd.DatetimeIndex):
        raise ValueError(f"benchmark {symbol} needs a DatetimeIndex")
    closes = benchmark.astype(np.float64).replace([np.inf, -np.inf], np.nan).dropna()
    closes = closes[~closes.index.duplicated(keep="last")].sort_index()
    if closes.empty or closes.index[0] > index[0] or closes.index[-1] < index[-1]:
        span = (
            "no prices"
            if closes.empty
            else f"prices from {closes.index[0].date()} to {closes.index[-1].date()}"
        )
        raise ValueError(
            f"benchmark {symbol} has {span}; the history runs from {index[0].date()} to {index[-1].date()}"
        )
    aligned: _FloatArray = closes.reindex(index, method="ffill").to_numpy(dtype=np.float64)
    if (aligned <= 0).any():
        raise ValueError(f"benchmark {symbol} has a close that is not positive")
    return aligned


def _xirr(years: _FloatArray, amounts: _FloatArray) -> float | None:
    """The one annual rate r with sum(amount / (1 + r) ** years) == 0, or None when there is not exactly one.

    Searched as ``y = horizon x ln(1 + r)``, the log growth over the whole
    period, on a grid from e^-30 to e^30: every sign change of the NPV is
    then narrowed by bisection to float precision.
    """
    keep = amounts != 0
    years, amounts = years[keep], amounts[keep]
    if not ((amounts > 0).any() and (amounts < 0).any()):
        return None
    horizon = float(years.max())
    if horizon <= 0:
        return None
    fractions = years / horizon

    def npv(y: float) -> float:
        return float(np.sum(amounts * np.exp(-y * fractions)))

    grid = np.sum(amounts[None, :] * np.exp(-_IRR_GRID[:, None] * fractions[None, :]), axis=1)
    signs = np.sign(grid)
    roots: list[float] = [float(_IRR_GRID[i]) for i in np.flatnonzero(signs == 0)]
    for i in np.flatnonzero(signs[:-1] * signs[1:] < 0):
        low, high = float(_IRR_GRID[i]), float(_IRR_GRID[i + 1])
        low_sign = signs[i]
        for _ in range(200):
            middle = (low + high) / 2
            if middle in (low, high):
                break
            if np.sign(npv(middle)) == low_sign:
                low = middle
            else:
                high = middle
        roots.append((low + high) / 2)
    if len(roots) != 1:
        return None
    exponent = roots[0] / horizon
    if exponent > 700:  # beyond float range: no meaningful annual rate
        return None
    return math.expm1(exponent)


def _ratio(value: float) -> Decimal:
    if not math.isfinite(value):
        raise ValueError(f"a ratio came out as {value}")
    return Decimal(repr(value)).quantize(RATIO, context=_WIDE)


def _optional_ratio(value: float | None) -> Decimal | None:
    return None if value is None or not math.isfinite(value) else _ratio(value)


def _money(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(CENT, context=_WIDE)
