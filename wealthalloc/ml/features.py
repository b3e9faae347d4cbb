"""Feature windows for the anomaly model: per-symbol daily features, a strict time split, scaling.

A *window* is ``window`` consecutive trading days of one symbol, each day a
row of features:

* ``log_return``: ``ln(C_t / C_{t-1})``;
* ``realised_vol``: the sample standard deviation of the log returns of the
  ``vol_lookback`` days ending at ``t`` (daily, not annualised);
* ``relative_return``: the log return minus the index's log return that day,
  the part of the move the market does not explain;
* ``log_volume_ratio``: ``ln((V_t + 1) / (mean(V_{t-L..t-1}) + 1))``, only
  when the symbol's Parquet file has a ``volume`` column. The bundled data
  has closes only, so models trained on it have three features; a feature
  set is fixed per model (it is recorded in the model's metadata), so a
  symbol without volume cannot be scored by a model trained with it.

Every feature of day ``t`` is computed from closes up to ``t`` only (causal),
so a window's content depends on nothing after its last day.

With ``normalise_lookback`` set (60 days by default), the returns are
divided by the symbol's realised volatility over that many days *before*
``t``, and the realised volatility by the same figure: the windows then read
"how unusual is this for this stock lately", which does not change between a
calm year and a crash, nor between a utility and a chip maker. On held-out
years with injected anomalies this raised the autoencoder's PR-AUC and cut
its false alarms in 2020 and 2022 (``training/evaluate.py``); ``None`` keeps
the raw values.

The split is by date: train, validation and test are consecutive periods and
each window lies entirely inside one of them (windows are cut from each
period's days separately, so none straddles a boundary). The scaler is fitted
on the training days only.

Inputs that reach a model go through :func:`validate_windows` first, which
refuses wrong shapes, NaN or infinite values, empty and oversized batches with
a ``ValueError`` that says what was wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq
from numpy.lib.stride_tricks import sliding_window_view

from wealthalloc.marketdata import INDEX_SYMBOL, PriceHistory

LOG_RETURN = "log_return"
REALISED_VOL = "realised_vol"
RELATIVE_RETURN = "relative_return"
LOG_VOLUME_RATIO = "log_volume_ratio"
BASE_FEATURES: tuple[str, ...] = (LOG_RETURN, REALISED_VOL, RELATIVE_RETURN)
"""The features every symbol has; :data:`LOG_VOLUME_RATIO` follows them when volume exists."""

MAX_BATCH = 4096
"""The most windows one call may score: a bound on the memory and time one request can take."""

Segment = Literal["train", "validation", "test"]
SEGMENTS: tuple[Segment, ...] = ("train", "validation", "test")
FloatArray = npt.NDArray[np.float32]

_MIN_SCALE = 1e-8


@dataclass(frozen=True)
class FeatureSpec:
    """How daily features and windows are made; recorded with a model so serving makes the same.

    Attributes
    ----------
    window : int
        Days per window.
    vol_lookback : int
        Days of the realised volatility feature (and of the volume average).
    normalise_lookback : int or None
        Returns and volatility are divided by the realised volatility of
        this many days before each day (see the module docstring); ``None``
        keeps them raw.
    index_symbol : str
        The index the relative return is measured against.
    use_volume : bool
        Add :data:`LOG_VOLUME_RATIO` when the prices have a volume column.
    """

    window: int = 30
    vol_lookback: int = 20
    normalise_lookback: int | None = 60
    index_symbol: str = INDEX_SYMBOL
    use_volume: bool = True

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must be at least 2 days, got {self.window}")
        if self.vol_lookback < 2:
            raise ValueError(f"vol_lookback must be at least 2 days, got {self.vol_lookback}")
        if self.normalise_lookback is not None and self.normalise_lookback < 2:
            raise ValueError(f"normalise_lookback must be at least 2 days, got {self.normalise_lookback}")

    @property
    def warmup_days(self) -> int:
        """Leading days of a symbol without every feature (their lookbacks are not full yet)."""
        normalise = 0 if self.normalise_lookback is None else self.normalise_lookback + 1
        return max(self.vol_lookback, normalise)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


@dataclass(frozen=True)
class TimeSplit:
    """Three consecutive periods by date: train up to ``train_end``, then validation, then test.

    All bounds are inclusive: train is ``[train_start, train_end]``,
    validation ``(train_end, validation_end]``, test
    ``(validation_end, test_end]``; an open bound (``None``) reaches the
    first or last day of the data.
    """

    train_end: date
    validation_end: date
    train_start: date | None = None
    test_end: date | None = None

    def __post_init__(self) -> None:
        bounds = [self.train_start, self.train_end, self.validation_end, self.test_end]
        known = [bound for bound in bounds if bound is not None]
        if any(later <= earlier for earlier, later in zip(known, known[1:], strict=False)):
            raise ValueError(
                "split bounds must increase: train_start < train_end < validation_end < test_end, got "
                + ", ".join(str(bound) for bound in bounds)
            )

    def segment_of(self, day: date) -> Segment | None:
        """Which period ``day`` falls in; ``None`` before the training start or after the test end."""
        if self.train_start is not None and day < self.train_start:
            return None
        if day <= self.train_end:
            return "train"
        if day <= self.validation_end:
            return "validation"
        if self.test_end is None or day <= self.test_end:
            return "test"
        return None

    def mask(self, days: pd.DatetimeIndex, segment: Segment) -> npt.NDArray[np.bool_]:
        """Which of ``days`` fall in ``segment``."""
        lower: date | None
        upper: date | None
        if segment == "train":
            lower, upper, lower_open = self.train_start, self.train_end, False
        elif segment == "validation":
            lower, upper, lower_open = self.train_end, self.validation_end, True
        elif segment == "test":
            lower, upper, lower_open = self.validation_end, self.test_end, True
        else:
            raise ValueError(f"unknown segment {segment!r}; expected one of {', '.join(SEGMENTS)}")
        keep = np.ones(len(days), dtype=bool)
        if lower is not None:
            stamp = pd.Timestamp(lower)
            keep &= np.asarray(days > stamp if lower_open else days >= stamp)
        if upper is not None:
            keep &= np.asarray(days <= pd.Timestamp(upper))
        return keep

    def to_dict(self) -> dict[str, str | None]:
        return {name: None if value is None else value.isoformat() for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimeSplit:
        def day(name: str) -> date | None:
            value = data.get(name)
            return None if value is None else date.fromisoformat(str(value))

        train_end, validation_end = day("train_end"), day("validation_end")
        if train_end is None or validation_end is None:
            raise ValueError("a split needs train_end and validation_end")
        return cls(
            train_end=train_end,
            validation_end=validation_end,
            train_start=day("train_start"),
            test_end=day("test_end"),
        )


@dataclass(frozen=True, eq=False)  # arrays: elementwise ==, unhashable
class Windows:
    """A batch of windows and where each came from.

    Attributes
    ----------
    values : ndarray of float32, shape (n, window, n_features)
    symbols : ndarray of str, shape (n,)
    starts, ends : ndarray of datetime64[D], shape (n,)
        The first and last day of each window.
    feature_names : tuple of str
    """

    values: FloatArray
    symbols: npt.NDArray[np.str_]
    starts: npt.NDArray[np.datetime64]
    ends: npt.NDArray[np.datetime64]
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def window(self) -> int:
        return int(self.values.shape[1])

    @classmethod
    def empty(cls, window: int, feature_names: Sequence[str]) -> Windows:
        return cls(
            values=np.zeros((0, window, len(feature_names)), dtype=np.float32),
            symbols=np.array([], dtype=np.str_),
            starts=np.array([], dtype="datetime64[D]"),
            ends=np.array([], dtype="datetime64[D]"),
            feature_names=tuple(feature_names),
        )

    def take(self, selection: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | Sequence[int]) -> Windows:
        """The windows picked by a boolean mask or positions."""
        picked = np.asarray(selection)
        return Windows(
            values=self.values[picked],
            symbols=self.symbols[picked],
            starts=self.starts[picked],
            ends=self.ends[picked],
            feature_names=self.feature_names,
        )

    def with_values(self, values: FloatArray) -> Windows:
        """The same windows with other values of the same shape (scaled ones, for example)."""
        if values.shape != self.values.shape:
            raise ValueError(f"values of shape {values.shape} for windows of shape {self.values.shape}")
        return Windows(values, self.symbols, self.starts, self.ends, self.feature_names)

    @staticmethod
    def concat(parts: Sequence[Windows]) -> Windows:
        """The windows of ``parts`` one after another; every part must have the same features and length."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for part in parts[1:]:
            if part.feature_names != first.feature_names or part.window != first.window:
                raise ValueError("windows with different features or lengths cannot be concatenated")
        return Windows(
            values=np.concatenate([part.values for part in parts]),
            symbols=np.concatenate([part.symbols for part in parts]),
            starts=np.concatenate([part.starts for part in parts]),
            ends=np.concatenate([part.ends for part in parts]),
            feature_names=first.feature_names,
        )


@dataclass(frozen=True)
class ScalerStats:
    """Mean and scale of each feature, in :attr:`FeatureScaler.feature_names` order."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]


@dataclass(frozen=True)
class FeatureScaler:
    """Standardisation ``(x - mean) / scale`` per feature, fitted on training days only.

    With ``per_symbol`` the statistics are kept per symbol as well: a
    chip maker's ordinary day is not a utility's. A symbol the scaler has not
    seen, or a batch given without symbols, uses the statistics of all the
    training days together.

    Serialised as JSON (:meth:`to_json`) beside the model; floats survive
    the round trip exactly (``json`` writes their shortest representation).
    """

    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    per_symbol: dict[str, ScalerStats] = field(default_factory=dict)

    @classmethod
    def fit(cls, rows: Mapping[str, pd.DataFrame], *, per_symbol: bool = True) -> FeatureScaler:
        """Fit on the daily feature rows of the training period, one frame per symbol.

        Each training day counts once (not once per window that contains it),
        so the days at the period's edges weigh as much as the others.

        Raises
        ------
        ValueError
            Without rows, with frames whose columns differ, or with a
            non-finite value.
        """
        frames = [frame for frame in rows.values() if len(frame)]
        if not frames:
            raise ValueError("no training rows to fit the scaler on")
        names = tuple(str(column) for column in frames[0].columns)
        for symbol, frame in rows.items():
            if tuple(str(column) for column in frame.columns) != names:
                raise ValueError(f"features of {symbol} are {list(frame.columns)}, expected {list(names)}")
        stacked = np.concatenate([frame.to_numpy(dtype=np.float64) for frame in frames])
        if not np.isfinite(stacked).all():
            raise ValueError("training rows contain NaN or infinite values")
        overall = _stats(stacked)
        symbols = {
            symbol: _stats(frame.to_numpy(dtype=np.float64))
            for symbol, frame in rows.items()
            if per_symbol and len(frame) >= 2
        }
        return cls(feature_names=names, mean=overall.mean, scale=overall.scale, per_symbol=symbols)

    def transform(self, values: npt.ArrayLike, symbols: Sequence[str] | None = None) -> FloatArray:
        """Scaled copy of windows ``(n, window, n_features)`` or rows ``(n, n_features)``, as float32."""
        array = np.asarray(values, dtype=np.float64)
        if array.shape[-1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features, got {array.shape[-1]}")
        mean, scale = self._broadcast(array, symbols)
        scaled: FloatArray = ((array - mean) / scale).astype(np.float32)
        return scaled

    def inverse_transform(self, values: npt.ArrayLike, symbols: Sequence[str] | None = None) -> FloatArray:
        """The unscaled values of :meth:`transform`'s output."""
        array = np.asarray(values, dtype=np.float64)
        mean, scale = self._broadcast(array, symbols)
        restored: FloatArray = (array * scale + mean).astype(np.float32)
        return restored

    def _broadcast(
        self, array: npt.NDArray[np.float64], symbols: Sequence[str] | None
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        default = ScalerStats(self.mean, self.scale)
        if symbols is None or not self.per_symbol:
            return np.asarray(default.mean), np.asarray(default.scale)
        if len(symbols) != array.shape[0]:
            raise ValueError(f"{len(symbols)} symbols for {array.shape[0]} windows")
        stats = [self.per_symbol.get(str(symbol), default) for symbol in symbols]
        extra = (1,) * (array.ndim - 2)
        mean = np.array([item.mean for item in stats]).reshape(len(stats), *extra, -1)
        scale = np.array([item.scale for item in stats]).reshape(len(stats), *extra, -1)
        return mean, scale

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "per_symbol": {
                symbol: {"mean": list(stats.mean), "scale": list(stats.scale)}
                for symbol, stats in sorted(self.per_symbol.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureScaler:
        """The scaler :meth:`to_dict` described.

        Raises
        ------
        ValueError
            When a field is missing, a length disagrees with the features, or
            a scale is not a positive finite number.
        """
        try:
            names = tuple(str(name) for name in data["feature_names"])
            overall = _checked_stats(data["mean"], data["scale"], len(names), "all symbols")
            symbols = {
                str(symbol): _checked_stats(item["mean"], item["scale"], len(names), str(symbol))
                for symbol, item in dict(data.get("per_symbol") or {}).items()
            }
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a feature scaler: {exc!r}") from exc
        return cls(feature_names=names, mean=overall.mean, scale=overall.scale, per_symbol=symbols)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureScaler:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"feature scaler JSON is not valid: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("feature scaler JSON must be an object")
        return cls.from_dict(data)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Windows of several symbols split by time, and the scaler fitted on the training days.

    The windows hold unscaled features; :meth:`scaled` gives what a model sees.
    """

    spec: FeatureSpec
    split: TimeSplit
    symbols: tuple[str, ...]
    scaler: FeatureScaler
    train: Windows
    validation: Windows
    test: Windows
    stride: int = 1

    def segment(self, name: Segment) -> Windows:
        windows: Windows = getattr(self, name)
        return windows

    def scaled(self, name: Segment) -> Windows:
        """The windows of one period, scaled with the training scaler."""
        windows = self.segment(name)
        return windows.with_values(self.scaler.transform(windows.values, windows.symbols.tolist()))

    def describe(self) -> dict[str, Any]:
        """What a model's metadata records about its data."""
        return {
            "symbols": list(self.symbols),
            "split": self.split.to_dict(),
            "stride": self.stride,
            "windows": {name: len(self.segment(name)) for name in SEGMENTS},
            "feature_names": list(self.train.feature_names),
        }


def daily_features(
    closes: pd.Series,
    index_closes: pd.Series,
    spec: FeatureSpec | None = None,
    *,
    volume: pd.Series | None = None,
) -> pd.DataFrame:
    """One row of features per trading day of ``closes`` that has every feature.

    Parameters
    ----------
    closes : Series
        The symbol's closes, ``DatetimeIndex``; NaN and non-finite closes are
        dropped (a day without a price is not a day of the symbol).
    index_closes : Series
        The index's closes; a symbol's day without an index close takes the
        index's last close before it (so its index return that day is 0).
    spec : FeatureSpec, optional
        Lookbacks and options; the defaults when ``None``.
    volume : Series, optional
        Traded volume by day; adds :data:`LOG_VOLUME_RATIO` when given and
        ``spec.use_volume``.

    Returns
    -------
    DataFrame
        ``DatetimeIndex`` named ``date``; columns :data:`BASE_FEATURES`
        (then :data:`LOG_VOLUME_RATIO`). The first ``spec.warmup_days``
        days, whose lookbacks are not full, are left out, as is any later
        day lacking a feature (a missing volume, a flat normalising baseline).

    Raises
    ------
    ValueError
        For a close or index close that is not positive, or an index without
        a close before the symbol's first day.
    """
    spec = spec or FeatureSpec()
    prices = _clean(closes, "closes")
    index = _clean(index_closes, "index closes")
    if (prices <= 0).any() or (index <= 0).any():
        raise ValueError("closes must be positive to take logarithms")
    aligned_index = index.reindex(prices.index.union(index.index)).ffill().reindex(prices.index)
    log_return = np.log(prices).diff()
    index_return = np.log(aligned_index).diff()
    if index_return.iloc[1:].isna().any():
        raise ValueError(f"the index has no close before {prices.index[0].date()}")
    realised = log_return.rolling(spec.vol_lookback, min_periods=spec.vol_lookback).std(ddof=1)
    columns: dict[str, pd.Series] = {
        LOG_RETURN: log_return,
        REALISED_VOL: realised,
        RELATIVE_RETURN: log_return - index_return,
    }
    if spec.normalise_lookback is not None:
        lookback = spec.normalise_lookback
        baseline = log_return.rolling(lookback, min_periods=lookback).std(ddof=1).shift(1)
        baseline = baseline.where(baseline > _MIN_SCALE)
        columns = {name: column / baseline for name, column in columns.items()}
    if volume is not None and spec.use_volume:
        traded = _clean(volume, "volume").reindex(prices.index)
        if (traded < 0).any():
            raise ValueError("volume must not be negative")
        average = traded.rolling(spec.vol_lookback, min_periods=spec.vol_lookback).mean().shift(1)
        columns[LOG_VOLUME_RATIO] = np.log((traded + 1.0) / (average + 1.0))
    frame = pd.DataFrame(columns).replace([np.inf, -np.inf], np.nan).dropna(how="any").astype(np.float64)
    frame.index.name = "date"
    return frame


def read_volume(prices: PriceHistory, symbol: str) -> pd.Series | None:
    """The ``volume`` column of a symbol's Parquet file, or ``None`` when the file has none.

    :class:`~wealthalloc.marketdata.PriceHistory` reads closes only, so
    this reads the same file for the one extra column.
    """
    path = _price_file(prices.prices_dir, symbol)
    if path is None:
        return None
    names = {name.lower(): name for name in pq.read_schema(path).names}
    if "volume" not in names or "date" not in names:
        return None
    table = pq.read_table(path, columns=[names["date"], names["volume"]]).to_pandas()
    days = pd.to_datetime(table[names["date"]]).dt.normalize()
    series = pd.Series(
        pd.to_numeric(table[names["volume"]], errors="coerce").to_numpy(dtype=np.float64),
        index=pd.DatetimeIndex(days, name="date"),
        name=symbol,
    )
    series = series[~series.index.duplicated(keep="last")].sort_index()
    return series


def symbol_features(
    prices: PriceHistory, symbols: Iterable[str], spec: FeatureSpec | None = None
) -> dict[str, pd.DataFrame]:
    """:func:`daily_features` of each symbol from a prices directory, with volume when its file has it.

    Raises
    ------
    ValueError
        When the symbols disagree on having volume: one model has one
        feature set.
    """
    spec = spec or FeatureSpec()
    index = prices.closes(spec.index_symbol)
    features = {
        symbol: daily_features(prices.closes(symbol), index, spec, volume=read_volume(prices, symbol))
        for symbol in symbols
    }
    shapes = {tuple(frame.columns) for frame in features.values()}
    if len(shapes) > 1:
        raise ValueError(
            "symbols have different features (volume for some only): "
            + "; ".join(f"{symbol}: {list(frame.columns)}" for symbol, frame in features.items())
        )
    return features


def make_windows(features: pd.DataFrame, symbol: str, window: int, stride: int = 1) -> Windows:
    """Every ``window`` consecutive rows of ``features`` (stepping ``stride`` rows), as one batch.

    The last row always ends a window, so the newest day is never skipped.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    names = tuple(str(column) for column in features.columns)
    if len(features) < window:
        return Windows.empty(window, names)
    values = features.to_numpy(dtype=np.float32)
    view = sliding_window_view(values, window, axis=0).transpose(0, 2, 1)
    count = view.shape[0]
    picks = np.arange(count - 1, -1, -stride)[::-1]
    days = pd.DatetimeIndex(features.index).to_numpy(dtype="datetime64[D]")
    return Windows(
        values=np.ascontiguousarray(view[picks]),
        symbols=np.full(len(picks), str(symbol)),  # dtype <U{len}: np.str_ would be <U1
        starts=days[picks],
        ends=days[picks + window - 1],
        feature_names=names,
    )


def split_rows(features: pd.DataFrame, split: TimeSplit) -> dict[Segment, pd.DataFrame]:
    """The rows of each period: train, validation, test."""
    days = pd.DatetimeIndex(features.index)
    return {segment: features.loc[split.mask(days, segment)] for segment in ("train", "validation", "test")}


def split_windows(
    features: Mapping[str, pd.DataFrame], split: TimeSplit, window: int, stride: int = 1
) -> dict[Segment, Windows]:
    """Windows of every symbol, per period, cut from each period's own days (none straddles a boundary)."""
    names = next(iter(features.values())).columns if features else []
    parts: dict[Segment, list[Windows]] = {"train": [], "validation": [], "test": []}
    for symbol, frame in features.items():
        for segment, rows in split_rows(frame, split).items():
            parts[segment].append(make_windows(rows, symbol, window, stride))
    return {
        segment: Windows.concat(found) if found else Windows.empty(window, [str(n) for n in names])
        for segment, found in parts.items()
    }


def build_dataset(
    prices: PriceHistory,
    symbols: Sequence[str],
    split: TimeSplit,
    spec: FeatureSpec | None = None,
    *,
    stride: int = 1,
    per_symbol_scaling: bool = True,
) -> Dataset:
    """Features, windows and the training scaler for ``symbols``, in one call.

    Parameters
    ----------
    prices : PriceHistory
    symbols : sequence of str
    split : TimeSplit
    spec : FeatureSpec, optional
    stride : int, default=1
        Days between the starts of consecutive windows (training on every
        window repeats each day ``window`` times; a stride trades that for speed).
    per_symbol_scaling : bool, default=True
        See :class:`FeatureScaler`.

    Raises
    ------
    ValueError
        When the training period has no rows.
    """
    spec = spec or FeatureSpec()
    features = symbol_features(prices, symbols, spec)
    train_rows = {symbol: split_rows(frame, split)["train"] for symbol, frame in features.items()}
    scaler = FeatureScaler.fit(train_rows, per_symbol=per_symbol_scaling)
    windows = split_windows(features, split, spec.window, stride)
    return Dataset(
        spec=spec,
        split=split,
        symbols=tuple(symbols),
        scaler=scaler,
        train=windows["train"],
        validation=windows["validation"],
        test=windows["test"],
        stride=stride,
    )


def validate_windows(
    array: object, window: int, n_features: int, max_batch: int | None = MAX_BATCH
) -> FloatArray:
    """Check a batch of windows before a model sees it, and return it as contiguous float32.

    Parameters
    ----------
    array : array-like
        Expected shape ``(batch, window, n_features)``.
    window, n_features : int
        What the model was trained on.
    max_batch : int or None, default=MAX_BATCH
        The most windows accepted at once; ``None`` for no limit (offline use).

    Raises
    ------
    ValueError
        With a message naming the problem: not numeric, empty, more windows
        than ``max_batch``, not three dimensions, a window of the wrong length,
        the wrong number of features, or NaN/infinite values (with the first
        window that has one).
    """
    try:
        values = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"windows must be a numeric array: {exc}") from exc
    if values.ndim >= 1 and values.shape[0] == 0:
        raise ValueError("empty batch: no windows to score")
    if values.ndim != 3:
        raise ValueError(
            f"windows must have shape (batch, {window}, {n_features}); got {values.ndim} dimension(s) "
            f"{values.shape}"
        )
    if max_batch is not None and values.shape[0] > max_batch:
        raise ValueError(f"batch of {values.shape[0]} windows exceeds the limit of {max_batch}")
    if values.shape[1] != window:
        raise ValueError(f"windows must be {window} days long, got {values.shape[1]}")
    if values.shape[2] != n_features:
        raise ValueError(f"windows must have {n_features} features per day, got {values.shape[2]}")
    finite = np.isfinite(values)
    if not finite.all():
        first = int(np.argmin(finite.reshape(values.shape[0], -1).all(axis=1)))
        raise ValueError(f"windows contain NaN or infinite values (first in window {first})")
    if np.abs(values).max() > np.finfo(np.float32).max:
        raise ValueError("windows contain values too large for float32")
    return np.ascontiguousarray(values, dtype=np.float32)


def _clean(series: pd.Series, what: str) -> pd.Series:
    if not isinstance(series.index, pd.DatetimeIndex):
        raise ValueError(f"{what} need a DatetimeIndex")
    values = series.astype(np.float64).replace([np.inf, -np.inf], np.nan).dropna()
    values = values[~values.index.duplicated(keep="last")].sort_index()
    if values.empty:
        raise ValueError(f"{what} have no finite value")
    return values


def _stats(rows: npt.NDArray[np.float64]) -> ScalerStats:
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0, ddof=0) if len(rows) else np.ones(rows.shape[1])
    scale = np.where(scale > _MIN_SCALE, scale, 1.0)  # a constant feature is centred, not blown up
    return ScalerStats(mean=tuple(float(x) for x in mean), scale=tuple(float(x) for x in scale))


def _checked_stats(mean: Sequence[Any], scale: Sequence[Any], size: int, what: str) -> ScalerStats:
    means = tuple(float(x) for x in mean)
    scales = tuple(float(x) for x in scale)
    if len(means) != size or len(scales) != size:
        raise ValueError(
            f"scaler for {what} has {len(means)} means and {len(scales)} scales for {size} features"
        )
    if not all(math.isfinite(x) for x in means) or not all(math.isfinite(x) and x > 0 for x in scales):
        raise ValueError(f"scaler for {what} has a non-finite mean or a scale that is not positive")
    return ScalerStats(mean=means, scale=scales)


def _price_file(directory: Path, symbol: str) -> Path | None:
    wanted = symbol.strip().upper()
    for path in sorted(directory.glob("*.parquet")):
        if not path.name.startswith(".") and path.stem.strip().upper() == wanted:
            return path
    return None
