"""Feature windows: values on real closes, a strict time split, a scaler fitted on train only, bad input.

Expected values are recomputed here from the bundled closes with plain numpy
on one day at a time, not with the module's rolling pandas expressions.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wealthalloc.marketdata import INDEX_SYMBOL, PriceHistory
from wealthalloc.ml.features import (
    BASE_FEATURES,
    LOG_VOLUME_RATIO,
    MAX_BATCH,
    FeatureScaler,
    FeatureSpec,
    TimeSplit,
    Windows,
    build_dataset,
    daily_features,
    make_windows,
    split_rows,
    split_windows,
    symbol_features,
    validate_windows,
)

SPLIT = TimeSplit(
    train_start=date(2015, 1, 1),
    train_end=date(2017, 12, 31),
    validation_end=date(2018, 12, 31),
    test_end=date(2019, 12, 31),
)
SPEC = FeatureSpec(window=20, vol_lookback=10, normalise_lookback=None)  # raw values: checkable by hand


@pytest.fixture(scope="module")
def prices(data_dir: Path) -> PriceHistory:
    return PriceHistory(data_dir / "prices")


@pytest.fixture(scope="module")
def closes(prices: PriceHistory) -> pd.Series:
    return prices.closes("AAPL").loc["2014-06-01":"2019-12-31"]


@pytest.fixture(scope="module")
def index_closes(prices: PriceHistory) -> pd.Series:
    return prices.closes(INDEX_SYMBOL)


def test_daily_features_match_a_day_computed_by_hand(closes: pd.Series, index_closes: pd.Series) -> None:
    features = daily_features(closes, index_closes, SPEC)
    assert tuple(features.columns) == BASE_FEATURES
    day = pd.Timestamp("2018-03-15")
    position = closes.index.get_loc(day)
    window = closes.to_numpy()[position - 10 : position + 1]  # 11 closes -> 10 returns ending that day
    returns = np.log(window[1:] / window[:-1])
    index_return = math.log(index_closes[day] / index_closes[closes.index[position - 1]])
    row = features.loc[day]
    assert row["log_return"] == pytest.approx(returns[-1], rel=1e-12)
    assert row["realised_vol"] == pytest.approx(np.std(returns, ddof=1), rel=1e-9)
    assert row["relative_return"] == pytest.approx(returns[-1] - index_return, rel=1e-9, abs=1e-15)


def test_the_first_days_without_a_full_lookback_are_left_out(
    closes: pd.Series, index_closes: pd.Series
) -> None:
    features = daily_features(closes, index_closes, SPEC)
    assert SPEC.warmup_days == 10
    assert features.index[0] == closes.index[10]  # ten returns need eleven closes
    assert not features.isna().any().any()
    normalised = daily_features(closes, index_closes, FeatureSpec(vol_lookback=10, normalise_lookback=30))
    assert normalised.index[0] == closes.index[31]  # a 30-day baseline ending the day before


def test_normalised_features_divide_by_the_volatility_before_the_day(
    closes: pd.Series, index_closes: pd.Series
) -> None:
    raw = daily_features(closes, index_closes, SPEC)
    normalised = daily_features(
        closes, index_closes, FeatureSpec(window=20, vol_lookback=10, normalise_lookback=30)
    )
    day = pd.Timestamp("2019-05-13")  # a day of the 2019 trade-war sell-off
    position = closes.index.get_loc(day)
    before = np.diff(
        np.log(closes.to_numpy()[position - 31 : position])
    )  # 30 returns, the last the day before
    baseline = np.std(before, ddof=1)
    for name in BASE_FEATURES:
        assert normalised.at[day, name] == pytest.approx(raw.at[day, name] / baseline, rel=1e-9)


def test_features_are_causal(closes: pd.Series, index_closes: pd.Series) -> None:
    changed = closes.copy()
    changed.loc["2018-01-01":] *= np.linspace(0.5, 3.0, int((changed.index >= "2018-01-01").sum()))
    before = daily_features(closes, index_closes, SPEC).loc[:"2017-12-31"]
    after = daily_features(changed, index_closes, SPEC).loc[:"2017-12-31"]
    pd.testing.assert_frame_equal(before, after)


def test_windows_are_consecutive_rows_and_the_newest_day_always_ends_one(
    closes: pd.Series, index_closes: pd.Series
) -> None:
    features = daily_features(closes, index_closes, SPEC).iloc[:100]
    every = make_windows(features, "AAPL", 20)
    assert every.values.shape == (81, 20, 3) and every.values.dtype == np.float32
    np.testing.assert_array_equal(every.values[5], features.iloc[5:25].to_numpy(dtype=np.float32))
    assert every.starts[5] == np.datetime64(features.index[5].date())
    assert every.ends[5] == np.datetime64(features.index[24].date())
    strided = make_windows(features, "AAPL", 20, stride=7)
    assert strided.ends[-1] == np.datetime64(features.index[-1].date())
    assert len(strided) == 12 and set(np.diff(strided.ends.astype(np.int64))) <= {7, 8, 9, 10, 11}
    assert len(make_windows(features.iloc[:19], "AAPL", 20)) == 0


def test_no_window_straddles_a_boundary(prices: PriceHistory) -> None:
    features = symbol_features(prices, ["AAPL", "KO"], SPEC)
    windows = split_windows(features, SPLIT, SPEC.window)
    bounds = {
        "train": (pd.Timestamp("2015-01-01"), pd.Timestamp("2017-12-31")),
        "validation": (pd.Timestamp("2018-01-01"), pd.Timestamp("2018-12-31")),
        "test": (pd.Timestamp("2019-01-01"), pd.Timestamp("2019-12-31")),
    }
    for segment, (low, high) in bounds.items():
        part = windows[segment]  # type: ignore[index]  # a str key of a Literal-keyed dict
        assert len(part) > 0
        assert (part.starts >= np.datetime64(low.date())).all(), segment
        assert (part.ends <= np.datetime64(high.date())).all(), segment
        assert set(part.symbols.tolist()) == {"AAPL", "KO"}
    # Every window that fits inside a period is there: a period of d days gives d - window + 1.
    validation_days = len(split_rows(features["KO"], SPLIT)["validation"])
    assert (windows["validation"].symbols == "KO").sum() == validation_days - SPEC.window + 1


def test_later_prices_change_neither_training_windows_nor_the_scaler(
    closes: pd.Series, index_closes: pd.Series
) -> None:
    changed = closes.copy()
    late = changed.index > pd.Timestamp(SPLIT.train_end)
    changed.loc[late] *= np.exp(np.random.default_rng(0).normal(0, 0.2, late.sum()).cumsum())

    def train_part(series: pd.Series) -> tuple[Windows, FeatureScaler]:
        features = {"AAPL": daily_features(series, index_closes, SPEC)}
        scaler = FeatureScaler.fit({"AAPL": split_rows(features["AAPL"], SPLIT)["train"]})
        return split_windows(features, SPLIT, SPEC.window)["train"], scaler

    (clean_windows, clean_scaler), (dirty_windows, dirty_scaler) = train_part(closes), train_part(changed)
    np.testing.assert_array_equal(clean_windows.values, dirty_windows.values)
    assert clean_scaler == dirty_scaler


def test_the_scaler_is_fitted_on_training_days_only(prices: PriceHistory) -> None:
    dataset = build_dataset(prices, ["AAPL", "KO"], SPLIT, SPEC, stride=5)
    features = symbol_features(prices, ["AAPL", "KO"], SPEC)
    train_rows = {symbol: split_rows(frame, SPLIT)["train"] for symbol, frame in features.items()}
    everything = pd.concat(train_rows.values())
    np.testing.assert_allclose(dataset.scaler.mean, everything.mean().to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(dataset.scaler.scale, everything.std(ddof=0).to_numpy(), rtol=1e-10)
    ko = dataset.scaler.per_symbol["KO"]
    np.testing.assert_allclose(ko.mean, train_rows["KO"].mean().to_numpy(), rtol=1e-10)
    all_days = pd.concat(features.values())
    assert not np.allclose(dataset.scaler.mean, all_days.mean().to_numpy(), rtol=1e-3)
    scaled = dataset.scaled("train")
    ko_rows = scaled.values[scaled.symbols == "KO"].reshape(-1, 3)
    assert np.abs(ko_rows.mean(axis=0)).max() < 0.1  # about centred (windows repeat days unevenly)
    assert dataset.describe()["windows"] == {
        name: len(dataset.segment(name)) for name in ("train", "validation", "test")
    }


def test_scaler_json_round_trip_is_exact_and_unknown_symbols_use_all_days(prices: PriceHistory) -> None:
    dataset = build_dataset(prices, ["AAPL", "KO"], SPLIT, SPEC, stride=5)
    restored = FeatureScaler.from_json(dataset.scaler.to_json())
    assert restored == dataset.scaler
    windows = dataset.test
    np.testing.assert_array_equal(
        restored.transform(windows.values, windows.symbols.tolist()),
        dataset.scaler.transform(windows.values, windows.symbols.tolist()),
    )
    back = restored.inverse_transform(
        restored.transform(windows.values, windows.symbols.tolist()), windows.symbols.tolist()
    )
    np.testing.assert_allclose(back, windows.values, rtol=1e-5, atol=1e-7)
    unknown = restored.transform(windows.values[:3], ["XOM"] * 3)
    np.testing.assert_array_equal(unknown, restored.transform(windows.values[:3]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid"),
        ("[1, 2]", "must be an object"),
        ('{"mean": [0.0]}', "not a feature scaler"),
        ('{"feature_names": ["a"], "mean": [0.0], "scale": [0.0]}', "not positive"),
        ('{"feature_names": ["a", "b"], "mean": [0.0], "scale": [1.0]}', "for 2 features"),
    ],
)
def test_a_broken_scaler_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureScaler.from_json(text)


def test_a_constant_feature_is_centred_not_divided_by_zero() -> None:
    rows = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0]})
    scaler = FeatureScaler.fit({"X": rows})
    assert scaler.scale[1] == 1.0
    assert np.isfinite(scaler.transform(rows.to_numpy())).all()


def test_split_bounds_must_increase_and_survive_json() -> None:
    with pytest.raises(ValueError, match="must increase"):
        TimeSplit(train_end=date(2018, 1, 1), validation_end=date(2017, 1, 1))
    with pytest.raises(ValueError, match="must increase"):
        TimeSplit(train_end=date(2018, 1, 1), validation_end=date(2019, 1, 1), test_end=date(2019, 1, 1))
    assert TimeSplit.from_dict(json.loads(json.dumps(SPLIT.to_dict()))) == SPLIT
    assert SPLIT.segment_of(date(2017, 12, 31)) == "train"
    assert SPLIT.segment_of(date(2018, 1, 2)) == "validation"
    assert SPLIT.segment_of(date(2019, 12, 31)) == "test"
    assert SPLIT.segment_of(date(2020, 1, 2)) is None and SPLIT.segment_of(date(2014, 1, 2)) is None


def test_volume_is_a_feature_only_where_the_file_has_it(tmp_path: Path, prices: PriceHistory) -> None:
    days = prices.closes("KO").loc["2018-01-01":"2018-12-31"]
    volume = np.random.default_rng(1).integers(1_000_000, 5_000_000, len(days)).astype(np.float64)
    for symbol, with_volume in (("VOLA", True), ("PLAIN", False)):
        columns = {"date": pa.array(days.index.date, pa.date32()), "close": pa.array(days.to_numpy())}
        if with_volume:
            columns["volume"] = pa.array(volume)
        pq.write_table(pa.table(columns), tmp_path / f"{symbol}.parquet")
    index = prices.closes(INDEX_SYMBOL)
    pq.write_table(
        pa.table({"date": pa.array(index.index.date, pa.date32()), "close": pa.array(index.to_numpy())}),
        tmp_path / f"{INDEX_SYMBOL}.parquet",
    )
    local = PriceHistory(tmp_path)
    with_volume = symbol_features(local, ["VOLA"], SPEC)["VOLA"]
    assert tuple(with_volume.columns) == (*BASE_FEATURES, LOG_VOLUME_RATIO)
    day = with_volume.index[5]
    position = days.index.get_loc(day)
    expected = math.log((volume[position] + 1) / (volume[position - 10 : position].mean() + 1))
    assert with_volume.at[day, LOG_VOLUME_RATIO] == pytest.approx(expected, rel=1e-12)
    assert tuple(symbol_features(local, ["PLAIN"], SPEC)["PLAIN"].columns) == BASE_FEATURES
    assert (
        tuple(
            symbol_features(local, ["VOLA"], FeatureSpec(normalise_lookback=None, use_volume=False))[
                "VOLA"
            ].columns
        )
        == BASE_FEATURES
    )
    with pytest.raises(ValueError, match="different features"):
        symbol_features(local, ["VOLA", "PLAIN"], SPEC)


def test_bad_closes_are_refused(closes: pd.Series, index_closes: pd.Series) -> None:
    negative = closes.copy()
    negative.iloc[40] = -1.0
    with pytest.raises(ValueError, match="positive"):
        daily_features(negative, index_closes, SPEC)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        daily_features(closes.reset_index(drop=True), index_closes, SPEC)
    with pytest.raises(ValueError, match="no close before"):
        daily_features(closes, index_closes.loc["2016-01-01":], SPEC)
    with pytest.raises(ValueError, match="window"):
        FeatureSpec(window=1)


def good_batch(size: int = 4) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(size, 20, 3))


def test_a_good_batch_comes_back_as_contiguous_float32() -> None:
    batch = good_batch()
    checked = validate_windows(batch.tolist(), 20, 3, 8)
    assert checked.dtype == np.float32 and checked.flags.c_contiguous
    np.testing.assert_allclose(checked, batch, rtol=1e-6)
    assert len(validate_windows(good_batch(MAX_BATCH + 1), 20, 3, None)) == MAX_BATCH + 1


def with_value(value: float) -> np.ndarray:
    batch = good_batch()
    batch[2, 7, 1] = value
    return batch


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (np.zeros((0, 20, 3)), "empty batch"),
        ([], "empty batch"),
        (np.zeros((20, 3)), r"shape \(batch, 20, 3\); got 2 dimension"),
        (np.zeros((2, 20, 3, 1)), "got 4 dimension"),
        (np.zeros((2, 19, 3)), "20 days long, got 19"),
        (np.zeros((2, 20, 4)), "3 features per day, got 4"),
        (with_value(float("nan")), r"NaN or infinite values \(first in window 2\)"),
        (with_value(float("inf")), "NaN or infinite"),
        (with_value(1e300), "too large for float32"),
        (np.zeros((9, 20, 3)), "batch of 9 windows exceeds the limit of 8"),
        ([["a"]], "numeric array"),
        ([[1.0, 2.0], [3.0]], "numeric array"),
    ],
)
def test_bad_batches_are_refused_with_the_reason(batch: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_windows(batch, 20, 3, 8)
