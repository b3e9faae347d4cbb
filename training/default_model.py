"""The small model a fresh machine trains so that anomaly scoring works from the first ``make run``.

Without a promoted version the anomaly detector has nothing to load and
``/health`` reports the model missing. :func:`ensure_default_model` fills
that gap: one configuration (no search, no Ray), a few epochs on a few
symbols of the bundled prices, about a minute on a laptop CPU, with a
progress bar. It is evaluated like any tuned model, so ``wealthalloc models
list`` shows how it compares with the baselines; a data scientist replaces it
with ``python -m training.tune``.

This module also holds the step both entry points end with,
:func:`register_bundle`: evaluate on the held-out period, write the model
card into the bundle, publish it to the registry and promote it.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from wealthalloc.config import Settings
from wealthalloc.logging import get_logger
from wealthalloc.marketdata import MarketDataError, PriceHistory
from wealthalloc.ml.autoencoder import AutoencoderConfig, ModelBundle, train
from wealthalloc.ml.features import FeatureSpec, TimeSplit, build_dataset
from wealthalloc.ml.registry import EVALUATION_KEY, ModelRegistry

log = get_logger(__name__)


@dataclass(frozen=True)
class DefaultModelRecipe:
    """What the default model is trained on and how big it is; tests pass a smaller one.

    The defaults train in about a minute on two CPU cores: five symbols from
    different sectors, eight years of training days at a stride of two,
    a 16-unit model for at most eight epochs. 2018-2019 set the threshold and
    2020-2022 (the pandemic crash, the 2022 sell-off) are held out for the
    evaluation.

    Attributes
    ----------
    symbols : tuple of str
        Those missing from the prices directory are skipped.
    split : TimeSplit
    spec : FeatureSpec
        Its ``window`` must equal the config's.
    config : AutoencoderConfig
    stride : int
        Days between the starts of consecutive training windows.
    evaluate : bool
        Evaluate on the test period and keep the table in the metadata.
    events_per_kind : int
        Injected anomalies of each kind per symbol, for the evaluation.
    isolation_trees : int
        Trees of the IsolationForest baseline.
    """

    symbols: tuple[str, ...] = ("AAPL", "JNJ", "JPM", "KO", "XOM")
    split: TimeSplit = field(
        default_factory=lambda: TimeSplit(
            train_start=date(2010, 1, 1),
            train_end=date(2017, 12, 31),
            validation_end=date(2019, 12, 31),
            test_end=date(2022, 12, 31),
        )
    )
    spec: FeatureSpec = field(default_factory=lambda: FeatureSpec(window=30))
    config: AutoencoderConfig = field(
        default_factory=lambda: AutoencoderConfig(
            window=30,
            units=16,
            latent=4,
            dropout=0.0,
            learning_rate=2e-3,
            batch_size=128,
            epochs=8,
            patience=2,
        )
    )
    stride: int = 2
    evaluate: bool = True
    events_per_kind: int = 2
    isolation_trees: int = 100

    def __post_init__(self) -> None:
        if self.spec.window != self.config.window:
            raise ValueError(
                f"spec window {self.spec.window} differs from config window {self.config.window}"
            )


@dataclass(frozen=True, eq=False)
class RegisteredModel:
    """A version :func:`register_bundle` published.

    Attributes
    ----------
    version : str
    promoted : bool
    evaluation : DataFrame or None
        The table of :func:`training.evaluate.evaluate`, when the model was evaluated.
    """

    version: str
    promoted: bool
    evaluation: pd.DataFrame | None


def ensure_default_model(
    settings: Settings,
    *,
    progress: bool = True,
    recipe: DefaultModelRecipe | None = None,
    force: bool = False,
) -> str | None:
    """Train, publish and promote the default model when the registry has no usable promoted version.

    Parameters
    ----------
    settings : Settings
        Gives the registry (``registry_uri``) and the prices (``prices_dir``).
    progress : bool, default=True
        A progress bar on stderr while training.
    recipe : DefaultModelRecipe, optional
        What to train; :class:`DefaultModelRecipe`'s defaults when ``None``.
    force : bool, default=False
        Train and promote even when a version is promoted already.

    Returns
    -------
    str or None
        The new version, or ``None`` when a promoted version was there (and
        ``force`` was not given).

    Raises
    ------
    MarketDataError
        When none of the recipe's symbols, or the index, has prices.
    """
    registry = ModelRegistry(settings.registry_uri)
    current = registry.promoted()
    if not force and current is not None and registry.exists(current):
        return None
    recipe = recipe or DefaultModelRecipe()
    prices = PriceHistory(settings.prices_dir)
    available = set(prices.symbols())
    symbols = [symbol for symbol in recipe.symbols if symbol in available]
    if not symbols or recipe.spec.index_symbol not in available:
        raise MarketDataError(
            f"no prices for the default model's symbols in {settings.prices_dir}"
            " (run `wealthalloc data load` first)"
        )
    started = time.perf_counter()
    dataset = build_dataset(prices, symbols, recipe.split, recipe.spec, stride=recipe.stride)
    train_windows, val_windows = dataset.scaled("train"), dataset.scaled("validation")
    steps = math.ceil(len(train_windows) / recipe.config.batch_size)
    with tqdm(
        total=recipe.config.epochs * steps,
        desc="Training the default anomaly model",
        unit="batch",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    ) as bar:
        trained = train(
            recipe.config, train_windows, val_windows, callbacks=[progress_callback(bar)], progress=False
        )
    bundle = ModelBundle.from_training(trained, dataset)
    registered = register_bundle(
        bundle,
        registry=registry,
        prices=prices if recipe.evaluate else None,
        promote=True,
        metadata={"trained_by": "training.default_model"},
        events_per_kind=recipe.events_per_kind,
        isolation_trees=recipe.isolation_trees,
    )
    log.info(
        "default_model.promoted",
        version=registered.version,
        registry=registry.uri,
        symbols=symbols,
        val_loss=trained.metrics["val_loss"],
        seconds=round(time.perf_counter() - started, 1),
    )
    return registered.version


def register_bundle(
    bundle: ModelBundle,
    *,
    registry: ModelRegistry,
    prices: PriceHistory | None,
    promote: bool,
    metadata: Mapping[str, Any] | None = None,
    events_per_kind: int = 2,
    isolation_trees: int = 200,
    seed: int = 0,
) -> RegisteredModel:
    """Evaluate a bundle, save it with its model card, publish it and (optionally) promote it.

    Evaluating before publishing means a version carries its evaluation from
    the moment it exists: ``models list`` can compare versions and nobody
    promotes one whose numbers were never looked at.

    Parameters
    ----------
    bundle : ModelBundle
    registry : ModelRegistry
    prices : PriceHistory or None
        The real prices the evaluation injects anomalies into; ``None``
        publishes without an evaluation.
    promote : bool
    metadata : mapping, optional
        More entries for the version's ``metadata.json`` (see
        :meth:`~wealthalloc.ml.registry.ModelRegistry.publish`).
    events_per_kind, isolation_trees, seed : int
        Passed to :func:`training.evaluate.evaluate`.

    Returns
    -------
    RegisteredModel
    """
    from training.evaluate import evaluate, write_model_card

    extra = dict(metadata or {})
    table: pd.DataFrame | None = None
    with tempfile.TemporaryDirectory(prefix="wealthalloc-bundle-") as scratch:
        directory = bundle.save(Path(scratch) / "bundle")
        if prices is not None:
            table = evaluate(
                bundle, prices, events_per_kind=events_per_kind, isolation_trees=isolation_trees, seed=seed
            )
            extra[EVALUATION_KEY] = evaluation_metadata(table)
            write_model_card(table, directory / "model-card.md", bundle=bundle)
        version = registry.publish(directory, metadata=extra)
    log.info("registry.published", version=version, registry=registry.uri, evaluated=table is not None)
    if promote:
        registry.promote(version)
        log.info("registry.promoted", version=version, registry=registry.uri)
    return RegisteredModel(version=version, promoted=promote, evaluation=table)


def evaluation_metadata(table: pd.DataFrame) -> dict[str, Any]:
    """An evaluation table as JSON: ``{"table": {method: {metric: value}}, "attrs": {...}}``.

    NaN (a recall of a kind with no window) becomes ``null``: metadata is
    strict JSON, which other languages and tools read.
    """
    rows = {
        str(method): {str(column): _json_value(value) for column, value in row.items()}
        for method, row in table.to_dict(orient="index").items()
    }
    return {"table": rows, "attrs": _json_value(dict(table.attrs))}


def progress_callback(bar: tqdm[Any]) -> Any:
    """A Keras callback that advances ``bar`` per batch and shows the losses of the last epoch.

    When early stopping ends training before the last epoch, the bar is
    completed rather than left short.

    Returns
    -------
    keras.callbacks.Callback
    """
    from wealthalloc.ml.autoencoder import _keras

    base: Any = _keras().callbacks.Callback

    class TqdmProgress(base):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
            bar.update(1)

        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            losses = {key: f"{float(value):.4f}" for key, value in (logs or {}).items() if "loss" in key}
            bar.set_postfix({"epoch": epoch + 1, **losses}, refresh=True)

        def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
            if bar.total is not None and bar.n < bar.total:
                bar.update(bar.total - bar.n)

    return TqdmProgress()


def _json_value(value: Any) -> Any:
    """``value`` with NumPy scalars as Python ones and non-finite floats as ``None``, recursively."""
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
