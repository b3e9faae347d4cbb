"""Evaluation: injected anomalies and their labels, the metrics on hand examples, the comparison table.

The table test scores with an untrained autoencoder: what is checked is the
plumbing (same windows for every method, thresholds from validation, labels
from injection), not how good a model is.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from training.evaluate import (
    FLAT_LINE,
    KINDS,
    LEVEL_SHIFT,
    METHODS,
    PRICE_JUMP,
    VOLATILITY_BURST,
    detection_metrics,
    evaluate,
    inject_anomalies,
    main,
    write_model_card,
)
from wealthalloc.marketdata import PriceHistory
from wealthalloc.ml.autoencoder import AutoencoderConfig, ModelBundle, build_model
from wealthalloc.ml.features import FeatureSpec, TimeSplit, build_dataset


@pytest.fixture(scope="module")
def prices(data_dir: Path) -> PriceHistory:
    return PriceHistory(data_dir / "prices")


@pytest.fixture(scope="module")
def closes(prices: PriceHistory) -> pd.Series:
    return prices.closes("JNJ").loc["2017-01-01":"2019-12-31"]


def log_returns(series: pd.Series) -> np.ndarray:
    return np.diff(np.log(series.to_numpy()))


@pytest.mark.parametrize("kind", KINDS)
def test_labels_mark_exactly_the_days_whose_return_changed(closes: pd.Series, kind: str) -> None:
    injection = inject_anomalies(closes, [kind], np.random.default_rng(3))
    (event,) = injection.events
    labels = injection.labels.to_numpy()
    start, end = closes.index.get_loc(event.start), closes.index.get_loc(event.end)
    assert np.flatnonzero(labels).tolist() == list(range(start, end + 1))
    assert set(injection.kinds[labels]) == {kind} and set(injection.kinds[~labels]) == {""}
    before, after = log_returns(closes), log_returns(injection.series)
    changed = ~np.isclose(before, after, rtol=0, atol=1e-12)
    # Return i is day i + 1's: every changed return is on a labelled day, and nothing else moved.
    assert not changed[~labels[1:]].any()
    length = end - start + 1
    if kind == PRICE_JUMP:
        assert length == 2 and changed[start - 1] and changed[start]
        assert after[start - 1] - before[start - 1] == pytest.approx(event.magnitude, abs=1e-9)
        assert after[start] - before[start] == pytest.approx(-event.magnitude, abs=1e-9)
        assert injection.series.iloc[end + 1 :].equals(closes.iloc[end + 1 :])
    elif kind == LEVEL_SHIFT:
        assert length == 1
        ratio = injection.series.iloc[start:] / closes.iloc[start:]
        np.testing.assert_allclose(np.log(ratio), event.magnitude, atol=1e-12)
    elif kind == VOLATILITY_BURST:
        assert 5 <= length <= 15 and 3 <= event.magnitude <= 5
        np.testing.assert_allclose(
            after[start - 1 : end], before[start - 1 : end] * event.magnitude, atol=1e-12
        )
    else:
        assert kind == FLAT_LINE and length == event.magnitude + 1
        frozen = injection.series.iloc[start:end]
        assert (frozen == closes.iloc[start - 1]).all()
        assert injection.series.iloc[end] == pytest.approx(closes.iloc[end], rel=1e-12)  # catch-up day
    assert injection.series.iloc[:start].equals(closes.iloc[:start])


def test_jumps_are_five_to_eight_recent_sigmas(closes: pd.Series) -> None:
    injection = inject_anomalies(closes, [PRICE_JUMP, LEVEL_SHIFT] * 3, np.random.default_rng(5))
    returns = log_returns(closes)
    for event in injection.events:
        start = closes.index.get_loc(event.start)
        sigma = np.std(returns[start - 61 : start - 1], ddof=1)
        assert 5 <= abs(event.magnitude) / sigma <= 8


def test_injection_is_reproducible_spread_out_and_after_earliest(closes: pd.Series) -> None:
    kinds = [kind for kind in KINDS for _ in range(2)]
    first = inject_anomalies(closes, kinds, np.random.default_rng(11), earliest=date(2018, 1, 1), spacing=25)
    again = inject_anomalies(closes, kinds, np.random.default_rng(11), earliest=date(2018, 1, 1), spacing=25)
    assert first.events == again.events and first.series.equals(again.series)
    assert sorted(event.kind for event in first.events) == sorted(kinds)
    assert first.events[0].start >= pd.Timestamp("2018-01-01")
    positions = [(closes.index.get_loc(e.start), closes.index.get_loc(e.end)) for e in first.events]
    gaps = [later[0] - earlier[1] - 1 for earlier, later in zip(positions, positions[1:], strict=False)]
    assert min(gaps) >= 25
    assert not first.labels.iloc[-1]  # the last day stays clean
    other = inject_anomalies(closes, kinds, np.random.default_rng(12), earliest=date(2018, 1, 1))
    assert other.events != first.events


def test_injection_refuses_unknown_kinds_and_series_too_short(closes: pd.Series) -> None:
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        inject_anomalies(closes, ["meteor"], np.random.default_rng(0))
    with pytest.raises(ValueError, match="no room"):
        inject_anomalies(closes.iloc[:120], list(KINDS) * 3, np.random.default_rng(0))


def test_metrics_on_a_hand_example() -> None:
    labels = [True, False, True, False, True, False]
    scores = [0.9, 0.8, 0.7, 0.4, 0.2, 0.1]
    # Flag > 0.5: 0.9 (hit), 0.8 (false alarm), 0.7 (hit); the 0.2 anomaly is missed.
    metrics = detection_metrics(labels, scores, 0.5)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    # Ranked: hit (P 1, R 1/3), miss, hit (P 2/3, R 2/3), miss, hit (P 3/5, R 1).
    expected_ap = (1 / 3) * 1 + (1 / 3) * (2 / 3) + (1 / 3) * (3 / 5)
    assert metrics["pr_auc"] == pytest.approx(expected_ap)
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(labels, scores))


def test_metrics_count_ties_together_and_handle_no_alerts() -> None:
    labels = [True, False, False, True]
    scores = [0.5, 0.5, 0.1, 0.0]
    metrics = detection_metrics(labels, scores, 1.0)
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (0.0, 0.0, 0.0)
    # The tie at 0.5 is one step: P 1/2 at R 1/2; then P 2/4 at R 1.
    assert metrics["pr_auc"] == pytest.approx(0.5) == average_precision_score(labels, scores)
    assert math.isnan(detection_metrics([False, False], [0.1, 0.2], 0.5)["pr_auc"])
    with pytest.raises(ValueError, match="equal-length"):
        detection_metrics([True], [0.1, 0.2], 0.5)


@pytest.fixture(scope="module")
def untrained_bundle(prices: PriceHistory) -> ModelBundle:
    split = TimeSplit(
        train_start=date(2015, 1, 1),
        train_end=date(2016, 12, 31),
        validation_end=date(2017, 12, 31),
        test_end=date(2019, 12, 31),
    )
    dataset = build_dataset(prices, ["JNJ"], split, FeatureSpec(window=15, vol_lookback=10), stride=3)
    config = AutoencoderConfig(window=15, units=4, latent=2, threshold_quantile=0.95)
    model = build_model(config, 3)
    bundle = ModelBundle(model=model, config=config, spec=dataset.spec, scaler=dataset.scaler, threshold=0.0)
    errors = bundle.errors(dataset.validation, max_batch=None)
    return ModelBundle(
        model=model,
        config=config,
        spec=dataset.spec,
        scaler=dataset.scaler,
        threshold=float(np.quantile(errors, 0.95)),
        data=dataset.describe(),
        data_hash="sha256:test",
    )


@pytest.fixture(scope="module")
def table(untrained_bundle: ModelBundle, prices: PriceHistory) -> pd.DataFrame:
    return evaluate(untrained_bundle, prices, events_per_kind=1, seed=4, isolation_trees=20)


def test_the_table_compares_three_methods_on_the_same_windows(
    table: pd.DataFrame, untrained_bundle: ModelBundle
) -> None:
    assert list(table.index) == list(METHODS)
    expected = ["precision", "recall", "f1", "pr_auc", "threshold", "flagged"]
    assert list(table.columns) == expected + [f"recall_{kind}" for kind in KINDS]
    scores = table[["precision", "recall", "f1", "pr_auc", "flagged"]].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert table.at["lstm_autoencoder", "threshold"] == untrained_bundle.threshold
    attrs = table.attrs
    assert attrs["events"] == 4 and attrs["symbols"] == ["JNJ"]
    # Two test years of 15-day windows: each window is scored by all three methods.
    assert 480 < attrs["test_windows"] < 505 and 0 < attrs["anomalous_windows"] < attrs["test_windows"]


def test_one_quantile_can_set_every_threshold(untrained_bundle: ModelBundle, prices: PriceHistory) -> None:
    table = evaluate(
        untrained_bundle, prices, events_per_kind=1, seed=4, isolation_trees=20, threshold_quantile=0.5
    )
    assert table.attrs["threshold_quantile"] == 0.5
    assert table.at["lstm_autoencoder", "threshold"] < untrained_bundle.threshold  # the median, not the 0.95
    assert (table["flagged"] > 0.3).all()  # half the clean windows are above a median
    with pytest.raises(ValueError, match="threshold_quantile"):
        evaluate(untrained_bundle, prices, threshold_quantile=1.5)


def test_the_rolling_zscore_finds_price_jumps(table: pd.DataFrame) -> None:
    # A 5-8 sigma jump is what a z-score is built for; if it missed these, the labels would be wrong.
    assert table.at["rolling_zscore", "recall_price_jump"] > 0.5


def test_the_model_card_names_every_method_and_the_winner(
    table: pd.DataFrame, untrained_bundle: ModelBundle, tmp_path: Path
) -> None:
    path = write_model_card(table, tmp_path / "docs" / "model-card.md", bundle=untrained_bundle)
    text = path.read_text()
    for method in METHODS:
        assert f"| {method} |" in text
    assert "## Verdict" in text and "PR-AUC" in text and "sha256:test" in text


def test_main_evaluates_a_registry_version(
    untrained_bundle: ModelBundle, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "models"
    untrained_bundle.save(registry / "versions" / "v1")
    out = tmp_path / "card.md"
    code = main(
        [
            "--registry",
            str(registry),
            "--out",
            str(out),
            "--prices",
            str(data_dir / "prices"),
            "--events-per-kind",
            "1",
        ]
    )
    assert code == 0 and out.is_file()
    assert "model card for version v1" in capsys.readouterr().out
    assert main(["--registry", str(tmp_path / "empty"), "--out", str(out)]) == 2
