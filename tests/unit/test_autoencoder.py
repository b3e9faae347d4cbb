"""The LSTM autoencoder: architecture, threshold, scoring, and a saved bundle that refuses damage.

One tiny model (two symbols, 20-day windows, 8 units, 2 epochs) is trained on
real bundled closes for the whole module: a few seconds on a CPU.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from wealthalloc.marketdata import PriceHistory
from wealthalloc.ml.autoencoder import (
    METADATA_FILE,
    MODEL_FILE,
    AutoencoderConfig,
    ModelBundle,
    ModelBundleError,
    TrainedModel,
    build_model,
    data_hash,
    reconstruction_errors,
    train,
)
from wealthalloc.ml.features import MAX_BATCH, Dataset, FeatureSpec, TimeSplit, build_dataset

CONFIG = AutoencoderConfig(window=20, units=8, latent=4, dropout=0.0, batch_size=64, epochs=2, seed=7)
SPLIT = TimeSplit(
    train_start=date(2014, 1, 1),
    train_end=date(2016, 12, 31),
    validation_end=date(2017, 12, 31),
    test_end=date(2018, 12, 31),
)


class EpochCounter(keras.callbacks.Callback):  # type: ignore[misc]
    """A callback of the kind Ray Tune passes in, to see that train() runs it."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs += 1


@pytest.fixture(scope="module")
def dataset(data_dir: Path) -> Dataset:
    return build_dataset(
        PriceHistory(data_dir / "prices"), ["AAPL", "KO"], SPLIT, FeatureSpec(window=20), stride=3
    )


@pytest.fixture(scope="module")
def counter() -> EpochCounter:
    return EpochCounter()


@pytest.fixture(scope="module")
def trained(dataset: Dataset, counter: EpochCounter) -> TrainedModel:
    return train(
        CONFIG, dataset.scaled("train"), dataset.scaled("validation"), callbacks=[counter], progress=False
    )


@pytest.fixture(scope="module")
def bundle(trained: TrainedModel, dataset: Dataset) -> ModelBundle:
    return ModelBundle.from_training(trained, dataset)


@pytest.fixture
def saved(bundle: ModelBundle, tmp_path: Path) -> Path:
    return bundle.save(tmp_path / "versions" / "v1")


def test_the_model_is_an_lstm_autoencoder_that_rebuilds_its_input_shape() -> None:
    model = build_model(CONFIG, 3)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "LSTM", "LSTM", "RepeatVector", "LSTM", "LSTM", "TimeDistributed"]
    assert model.get_layer("latent").output.shape == (None, 4)
    assert type(model.get_layer("reconstruction").layer).__name__ == "Dense"
    assert model.input_shape == model.output_shape == (None, 20, 3)


def test_training_runs_the_callbacks_and_reports_its_metrics(
    trained: TrainedModel, counter: EpochCounter, dataset: Dataset
) -> None:
    assert counter.epochs == 2
    assert trained.metrics["epochs_run"] == 2
    assert trained.metrics["train_windows"] == len(dataset.train)
    assert trained.metrics["val_loss"] == min(trained.history["val_loss"])
    assert trained.data_hash == data_hash(dataset.scaled("train").values, dataset.scaled("validation").values)


def test_errors_are_the_worst_day_or_the_mean_of_the_squared_errors(
    trained: TrainedModel, dataset: Dataset
) -> None:
    windows = dataset.scaled("test").values[:50]
    rebuilt = np.asarray(trained.model.predict(windows, verbose=0), dtype=np.float64)
    squared = (rebuilt - windows) ** 2
    worst_day = np.array([max(day.mean() for day in window) for window in squared])
    np.testing.assert_allclose(trained.errors(windows), worst_day, rtol=1e-5)  # the config's default
    np.testing.assert_allclose(
        reconstruction_errors(trained.model, windows, "mean"), squared.reshape(50, -1).mean(axis=1), rtol=1e-5
    )
    with pytest.raises(ValueError, match="reduction"):
        reconstruction_errors(trained.model, windows, "median")  # type: ignore[arg-type]


def test_the_threshold_is_the_validation_quantile(trained: TrainedModel, dataset: Dataset) -> None:
    errors = reconstruction_errors(trained.model, dataset.scaled("validation").values, "max_day")
    assert trained.threshold == pytest.approx(float(np.quantile(errors, 0.95)), rel=1e-12)
    assert np.mean(errors > trained.threshold) == pytest.approx(0.05, abs=2 / len(errors))


def test_the_bundle_scores_raw_windows_with_its_scaler(bundle: ModelBundle, dataset: Dataset) -> None:
    errors, flagged = bundle.score(dataset.test)
    expected = reconstruction_errors(bundle.model, dataset.scaled("test").values, "max_day")
    np.testing.assert_allclose(errors, expected)
    np.testing.assert_array_equal(flagged, errors > bundle.threshold)
    raw = dataset.test.values[:10]
    by_symbol, _ = bundle.score(raw, dataset.test.symbols[:10].tolist())
    np.testing.assert_allclose(by_symbol, errors[:10])


def test_save_and_load_give_identical_scores_and_metadata(
    bundle: ModelBundle, saved: Path, dataset: Dataset
) -> None:
    loaded = ModelBundle.load(saved)
    before, flagged_before = bundle.score(dataset.test)
    after, flagged_after = loaded.score(dataset.test)
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(flagged_before, flagged_after)
    assert loaded.threshold == bundle.threshold
    assert loaded.config == CONFIG and loaded.spec == dataset.spec and loaded.scaler == dataset.scaler
    assert loaded.data_hash == bundle.data_hash and loaded.data_hash.startswith("sha256:")
    assert loaded.data["split"] == SPLIT.to_dict() and loaded.data["symbols"] == ["AAPL", "KO"]
    assert loaded.metrics == bundle.metrics
    metadata = json.loads((saved / METADATA_FILE).read_text())
    assert {"keras", "keras_backend", "numpy", "python"} <= set(metadata["versions"])
    assert metadata["created_at"].endswith("+00:00")
    assert sorted(path.name for path in saved.iterdir()) == [METADATA_FILE, MODEL_FILE]


def test_the_data_hash_follows_the_numbers() -> None:
    data = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    assert data_hash(data) == data_hash(data.copy())
    changed = data.copy()
    changed[1, 2, 0] += 1e-3
    assert data_hash(changed) != data_hash(data)
    assert data_hash(data.reshape(4, 2, 3)) != data_hash(data)
    assert data_hash(data, data) != data_hash(data)


def damage_model(directory: Path) -> None:
    path = directory / MODEL_FILE
    path.write_bytes(path.read_bytes()[:-100])


def garbage_with_matching_hash(directory: Path) -> None:
    import hashlib

    (directory / MODEL_FILE).write_bytes(b"not a zip file")
    meta = json.loads((directory / METADATA_FILE).read_text())
    meta["model_sha256"] = hashlib.sha256(b"not a zip file").hexdigest()
    (directory / METADATA_FILE).write_text(json.dumps(meta))


def edit_metadata(**changes: Any) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        meta = json.loads((directory / METADATA_FILE).read_text())
        for key, value in changes.items():
            if value is None:
                del meta[key]
            else:
                meta[key] = value
        (directory / METADATA_FILE).write_text(json.dumps(meta))

    return edit


def other_window(directory: Path) -> None:
    meta = json.loads((directory / METADATA_FILE).read_text())
    meta["config"]["window"] = 30
    (directory / METADATA_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / MODEL_FILE).unlink(), "model.keras is missing"),
        (lambda d: (d / METADATA_FILE).unlink(), "metadata.json is missing"),
        (lambda d: shutil.rmtree(d), "no model directory"),
        (lambda d: (d / METADATA_FILE).write_text("{not json"), "not valid JSON"),
        (damage_model, "does not match its metadata"),
        (garbage_with_matching_hash, "Keras cannot load"),
        (edit_metadata(format="something.else"), "does not describe"),
        (edit_metadata(format_version=99), "format version 99"),
        (edit_metadata(scaler=None), "incomplete or invalid"),
        (edit_metadata(threshold="NaN"), "not finite"),
        (other_window, r"takes windows of shape \(20, 3\), its metadata says \(30, 3\)"),
    ],
)
def test_a_damaged_bundle_is_refused_with_the_reason(
    saved: Path, damage: Callable[[Path], None], message: str
) -> None:
    damage(saved)
    with pytest.raises(ModelBundleError, match=message):
        ModelBundle.load(saved)


def test_bad_batches_never_reach_the_model(bundle: ModelBundle, dataset: Dataset) -> None:
    good = dataset.test.values[:4]
    with pytest.raises(ValueError, match="empty batch"):
        bundle.score(good[:0])
    with pytest.raises(ValueError, match="20 days long"):
        bundle.score(good[:, :10])
    with pytest.raises(ValueError, match="3 features"):
        bundle.score(good[:, :, :2])
    nan = good.copy()
    nan[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bundle.score(nan)
    with pytest.raises(ValueError, match=f"limit of {MAX_BATCH}"):
        bundle.score(np.zeros((MAX_BATCH + 1, 20, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="2 symbols for 4 windows"):
        bundle.score(good, ["AAPL", "KO"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window": 1}, "window"),
        ({"units": 0}, "units"),
        ({"dropout": 1.0}, "dropout"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"threshold_quantile": 1.0}, "threshold_quantile"),
        ({"epochs": 2.5}, "epochs"),
        ({"score_reduction": "median"}, "score_reduction"),
    ],
)
def test_a_bad_config_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AutoencoderConfig(**changes)


def test_a_config_survives_its_dict() -> None:
    assert AutoencoderConfig.from_dict(json.loads(json.dumps(CONFIG.to_dict()))) == CONFIG
