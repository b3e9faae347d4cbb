"""The newest window of a symbol's features, as of a market day, made the way a model was trained.

``GET /api/v1/portfolios/{id}/anomalies`` asks "is what each holding did
lately unusual?": that is the window of the model's ``FeatureSpec.window``
trading days ending on the market clock's day (or the symbol's last close
before it). The features come from :func:`wealthalloc.ml.features.daily_features`
with the model's own spec, so serving computes exactly what training saw.

Only the closes the window needs are read into the computation: every
feature is causal with fixed lookbacks (see :mod:`wealthalloc.ml.features`),
so the last ``window`` rows computed from a tail of ``window + warm-up``
closes equal those computed from the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

from wealthalloc.logging import get_logger
from wealthalloc.marketdata import MarketDataError, PriceHistory, UnknownSymbolError
from wealthalloc.ml.features import LOG_VOLUME_RATIO, FeatureSpec, daily_features, read_volume

log = get_logger(__name__)

TAIL_MARGIN = 10
"""Closes read beyond the strict minimum, so a day the feature step drops still leaves a full window."""


class NoWindowError(Exception):
    """The symbol has no complete window as of that day; the message says why."""


@dataclass(frozen=True, eq=False)
class LatestWindow:
    """One symbol's newest window.

    Attributes
    ----------
    symbol : str
    values : ndarray of float32, shape (window, n_features)
        Raw (unscaled) features, oldest day first.
    start, end : date
        The first and last day of the window.
    """

    symbol: str
    values: npt.NDArray[np.float32]
    start: date
    end: date


def latest_window(
    prices: PriceHistory,
    symbol: str,
    spec: FeatureSpec,
    feature_names: Sequence[str],
    as_of: date,
) -> LatestWindow:
    """The ``spec.window`` days of features of ``symbol`` ending at its last close on or before ``as_of``.

    Parameters
    ----------
    prices : PriceHistory
    symbol : str
    spec : FeatureSpec
        The model's.
    feature_names : sequence of str
        The model's features, in order; volume is read only when they include it.
    as_of : date
        The market day; nothing after it is read.

    Raises
    ------
    NoWindowError
        When the symbol or the index has no prices, the history before
        ``as_of`` is too short, or the symbol lacks a feature the model needs
        (volume).
    """
    stamp = pd.Timestamp(as_of)
    try:
        closes = prices.closes(symbol)
        index = prices.closes(spec.index_symbol)
    except UnknownSymbolError:
        raise NoWindowError(f"no prices for {symbol} or the index {spec.index_symbol}") from None
    except MarketDataError as exc:
        log.warning("anomaly.prices_unreadable", symbol=symbol, error=str(exc))
        raise NoWindowError(f"the prices of {symbol} cannot be read") from None
    closes = closes[closes.index <= stamp].tail(spec.window + spec.warmup_days + 1 + TAIL_MARGIN)
    needed = spec.window + spec.warmup_days + 1
    if len(closes) < needed:
        raise NoWindowError(f"{symbol} has {len(closes)} closes up to {as_of}; a window needs {needed}")
    first = closes.index[0] - pd.Timedelta(days=TAIL_MARGIN)
    index = index[(index.index >= first) & (index.index <= stamp)]
    volume = read_volume(prices, symbol) if LOG_VOLUME_RATIO in feature_names else None
    if LOG_VOLUME_RATIO in feature_names and volume is None:
        raise NoWindowError(f"the model needs volume and {symbol}'s prices have none")
    try:
        features = daily_features(closes, index, spec, volume=volume)
    except ValueError as exc:
        raise NoWindowError(f"{symbol}: {exc}") from None
    if tuple(features.columns) != tuple(feature_names):
        raise NoWindowError(
            f"{symbol} has features {list(features.columns)}; the model needs {list(feature_names)}"
        )
    if len(features) < spec.window:
        raise NoWindowError(
            f"{symbol} has {len(features)} complete days up to {as_of}; a window needs {spec.window}"
        )
    rows = features.tail(spec.window)
    days = pd.DatetimeIndex(rows.index)
    return LatestWindow(
        symbol=symbol,
        values=np.ascontiguousarray(rows.to_numpy(dtype=np.float32)),
        start=days[0].date(),
        end=days[-1].date(),
    )
