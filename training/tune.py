"""Tune the anomaly autoencoder with Ray Tune (ASHA) and publish the best model to the registry.

The entry point data scientists submit to a cluster::

    ray job submit --working-dir . -- python -m training.tune --smoke
    ray job submit -- python -m training.tune --num-samples 32 --max-epochs 30 --no-promote

How a run goes, and why:

1. The daily features of every symbol are computed once, in the driver, and
   reach the trials through Ray's object store (:func:`ray.tune.with_parameters`):
   they depend on the prices and lookbacks, not on anything searched, so no
   trial reads a price file again, and a worker node needs no prices directory.
2. Each trial cuts windows of its own length from those features, fits the
   scaler on the training days and trains one :class:`AutoencoderConfig`
   drawn from the search space (window length, units, latent size, dropout,
   learning rate, batch size). A Keras callback reports the validation loss
   after every epoch, so the ASHA scheduler stops the trials that lag behind
   at each rung and gives their CPUs (or GPUs) to the promising ones.
3. A trial that trains to the end saves its :class:`ModelBundle` (model,
   scaler, threshold chosen on validation) as a Tune checkpoint in its last
   report. That report, not the callback, carries the last epoch: ASHA stops
   every trial reaching ``max_t``, and would otherwise stop a finished trial
   before its model is saved.
4. The driver takes the finished trial with the lowest validation loss,
   evaluates its bundle on the held-out period beside the baselines
   (:func:`training.default_model.register_bundle`), publishes it with the
   search space, the best configuration and every trial's outcome in its
   metadata, and promotes it unless ``--no-promote``.

Each trial asks for ``tune_cpus_per_trial`` CPUs and ``tune_gpus_per_trial``
GPUs (settings); with the latter at 0 a trial gets one GPU when the cluster
has any. A ``--smoke`` run asks for less when fewer CPUs are free, so it
also runs on the cluster ``make run`` starts, whose Serve replicas hold most
of a laptop's CPUs (:func:`fit_to_free_cpus`). Ray is the cluster's when
there is one (``RAY_ADDRESS``, which ``ray job submit`` sets,
``WEALTHALLOC_RAY_ADDRESS``, or one running on this machine), else a local
Ray started for the run.

Exit status 0 with the new version id alone on the last line of stdout; 1
when the data is missing, no trial finished or the registry refused the
model; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from training.default_model import register_bundle
from wealthalloc.config import Settings, get_settings
from wealthalloc.logging import configure_logging, get_logger
from wealthalloc.marketdata import STOCKS, MarketDataError, PriceHistory
from wealthalloc.ml.autoencoder import AutoencoderConfig, ModelBundle, train
from wealthalloc.ml.features import (
    Dataset,
    FeatureScaler,
    FeatureSpec,
    TimeSplit,
    split_rows,
    split_windows,
    symbol_features,
)
from wealthalloc.ml.registry import ModelRegistry, RegistryError

log = get_logger("training.tune")  # not __name__: "__main__" under `python -m`

METRIC = "val_loss"
"""What ASHA and the final choice minimise: the mean squared reconstruction error on validation windows."""

TIME_ATTR = "epoch"
"""The result key ASHA counts rungs in; one report per epoch, so rungs are epochs."""

SEARCHED: tuple[str, ...] = ("window", "units", "latent", "dropout", "learning_rate", "batch_size")
"""The :class:`AutoencoderConfig` fields a search space may vary."""

SearchSpace = Mapping[str, Mapping[str, Sequence[float]]]
"""``{field: {"choice": [values]}}``, ``{field: {"uniform": [low, high]}}`` or
``{field: {"loguniform": [low, high]}}``: plain JSON, so the registry keeps it
verbatim in the version's metadata. A field left out keeps its
:class:`AutoencoderConfig` default."""

FULL_SEARCH_SPACE: SearchSpace = {
    "window": {"choice": [20, 30, 40, 60]},
    "units": {"choice": [16, 32, 64]},
    "latent": {"choice": [4, 8, 16]},
    "dropout": {"uniform": [0.0, 0.3]},
    "learning_rate": {"loguniform": [3e-4, 3e-3]},
    "batch_size": {"choice": [64, 128, 256]},
}

SMOKE_SEARCH_SPACE: SearchSpace = {
    "window": {"choice": [20, 30]},
    "units": {"choice": [8, 16]},
    "latent": {"choice": [4, 8]},
    "dropout": {"uniform": [0.0, 0.2]},
    "learning_rate": {"loguniform": [1e-3, 5e-3]},
    "batch_size": {"choice": [128, 256]},
}

SMOKE_SYMBOLS: tuple[str, ...] = ("AAPL", "JPM", "XOM")
"""Three sectors' worth of behaviour, small enough for a few minutes on a laptop."""

MIN_TRIAL_CPUS = 0.1
"""The smallest CPU share :func:`fit_to_free_cpus` lets a smoke trial ask for."""

_INTEGER_FIELDS = frozenset({"window", "units", "latent", "batch_size"})


class TuningError(Exception):
    """The run produced no model that can be published; the message says why."""


@dataclass(frozen=True)
class TuneOptions:
    """What one tuning run searches, on which data, and how much it may spend.

    :meth:`full` is a cluster run; :meth:`smoke` fits in a few minutes on a
    laptop CPU and exists so the whole path (Tune, checkpoints, evaluation,
    registry) can be exercised anywhere.

    Attributes
    ----------
    symbols : tuple of str
    split : TimeSplit
        Train, validation (early stopping, threshold, ASHA's metric) and the
        held-out test period the published model is evaluated on.
    search_space : SearchSpace
    num_samples : int
        Configurations drawn from the search space.
    max_epochs : int
        Epochs of a trial ASHA lets run to the end (its ``max_t``).
    grace_period : int
        Epochs every trial gets before ASHA may stop it.
    reduction_factor : int
        ASHA keeps one trial in ``reduction_factor`` at each rung.
    patience : int
        Early stopping inside a trial (epochs without a better validation loss).
    stride : int
        Days between the starts of consecutive training windows.
    spec : FeatureSpec
        Lookbacks of the daily features; its ``window`` is replaced by each trial's.
    seed : int
        Seeds the sampling of configurations, each trial's training and the evaluation.
    events_per_kind, isolation_trees : int
        Passed to :func:`training.evaluate.evaluate` for the chosen model.
    """

    symbols: tuple[str, ...]
    split: TimeSplit
    search_space: SearchSpace
    num_samples: int
    max_epochs: int
    grace_period: int = 2
    reduction_factor: int = 2
    patience: int = 3
    stride: int = 1
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    seed: int = 0
    events_per_kind: int = 2
    isolation_trees: int = 200

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("no symbols to train on")
        for name in ("num_samples", "max_epochs", "grace_period", "patience", "stride", "events_per_kind"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.reduction_factor < 2:
            raise ValueError(f"reduction_factor must be at least 2, got {self.reduction_factor}")
        if self.isolation_trees < 1:
            raise ValueError(f"isolation_trees must be at least 1, got {self.isolation_trees}")
        tune_domains(self.search_space)  # refuses an unknown field or kind before anything starts

    @classmethod
    def full(cls) -> TuneOptions:
        """Every bundled stock, 2005-2017 to train, 2018-2019 to validate, 2020-2022 held out."""
        return cls(
            symbols=STOCKS,
            split=TimeSplit(
                train_start=date(2005, 1, 1),
                train_end=date(2017, 12, 31),
                validation_end=date(2019, 12, 31),
                test_end=date(2022, 12, 31),
            ),
            search_space=FULL_SEARCH_SPACE,
            num_samples=16,
            max_epochs=20,
        )

    @classmethod
    def smoke(cls) -> TuneOptions:
        """Three symbols, four training years at a stride of three, four small trials of three epochs."""
        return cls(
            symbols=SMOKE_SYMBOLS,
            split=TimeSplit(
                train_start=date(2014, 1, 1),
                train_end=date(2017, 12, 31),
                validation_end=date(2019, 12, 31),
                test_end=date(2022, 12, 31),
            ),
            search_space=SMOKE_SEARCH_SPACE,
            num_samples=4,
            max_epochs=3,
            grace_period=1,
            patience=2,
            stride=3,
            events_per_kind=1,
            isolation_trees=50,
        )

    def describe(self) -> dict[str, Any]:
        """The run's settings as JSON, for the published version's metadata."""
        return {
            "symbols": list(self.symbols),
            "split": self.split.to_dict(),
            "num_samples": self.num_samples,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "stride": self.stride,
            "features": {name: value for name, value in self.spec.to_dict().items() if name != "window"},
            "seed": self.seed,
            "scheduler": {
                "name": "ASHA",
                "metric": METRIC,
                "mode": "min",
                "time_attr": TIME_ATTR,
                "max_t": self.max_epochs,
                "grace_period": min(self.grace_period, self.max_epochs),
                "reduction_factor": self.reduction_factor,
            },
        }


@dataclass(frozen=True, eq=False)
class TuneOutcome:
    """What :func:`run_tuning` published.

    Attributes
    ----------
    version : str
    promoted : bool
    best_config : dict
        The chosen trial's full :class:`AutoencoderConfig`.
    best_val_loss : float
    trials : list of dict
        Each trial's id, searched values, validation loss, epochs and status
        (``finished``, ``stopped early`` by ASHA, or ``error``).
    experiment_path : str
        Where Tune kept the results and checkpoints.
    seconds : float
    evaluation : DataFrame or None
        The held-out evaluation of the published model.
    """

    version: str
    promoted: bool
    best_config: dict[str, Any]
    best_val_loss: float
    trials: list[dict[str, Any]]
    experiment_path: str
    seconds: float
    evaluation: pd.DataFrame | None


def tune_domains(space: SearchSpace) -> dict[str, Any]:
    """Ray Tune's sampling domains for a :data:`SearchSpace`.

    Raises
    ------
    ValueError
        For a field :data:`SEARCHED` does not name, an unknown kind, an
        empty choice, or bounds that are not ``low < high`` (positive for
        ``loguniform``).
    """
    domains: dict[str, Any] = {}
    for name, dimension in space.items():
        if name not in SEARCHED:
            raise ValueError(f"cannot search {name!r}; searchable: {', '.join(SEARCHED)}")
        if len(dimension) != 1:
            raise ValueError(
                f"{name}: give exactly one of choice, uniform, loguniform, got {dict(dimension)}"
            )
        ((kind, values),) = dimension.items()
        values = list(values)
        if kind == "choice":
            if not values:
                raise ValueError(f"{name}: an empty choice")
            domains[name] = tune.choice(values)
            continue
        if kind not in ("uniform", "loguniform"):
            raise ValueError(f"{name}: unknown kind {kind!r} (choice, uniform or loguniform)")
        if len(values) != 2 or not values[0] < values[1] or (kind == "loguniform" and values[0] <= 0):
            raise ValueError(f"{name}: {kind} needs [low, high] with low < high, got {values}")
        sampler = tune.uniform if kind == "uniform" else tune.loguniform
        domains[name] = sampler(float(values[0]), float(values[1]))
    return domains


def trial_config(sampled: Mapping[str, Any], options: TuneOptions) -> AutoencoderConfig:
    """The model config of one trial: the sampled values (as plain Python numbers) and the run's settings."""
    values: dict[str, Any] = {
        name: int(sampled[name]) if name in _INTEGER_FIELDS else float(sampled[name])
        for name in SEARCHED
        if name in sampled
    }
    return AutoencoderConfig(
        **values, epochs=options.max_epochs, patience=options.patience, seed=options.seed
    )


def trial_resources(settings: Settings, cluster: Mapping[str, float]) -> dict[str, float]:
    """CPUs and GPUs per trial: the settings', and one GPU when none is set and the cluster has GPUs."""
    gpus = settings.tune_gpus_per_trial
    if gpus == 0 and cluster.get("GPU", 0) >= 1:
        gpus = 1
    return {"cpu": settings.tune_cpus_per_trial, "gpu": gpus}


def fit_to_free_cpus(
    resources: Mapping[str, float], available: Mapping[str, float], *, shrink: bool
) -> dict[str, float]:
    """The per-trial request, made to fit the CPUs the cluster has free now when ``shrink`` (``--smoke``).

    A trial that asks for more CPUs than are free waits until some are
    released or the autoscaler adds a node. On a cluster that will not grow,
    such as the one ``make run`` starts on a laptop, whose Serve replicas hold
    most of its CPUs, it would wait for ever; so a smoke run asks for what is
    free (at least :data:`MIN_TRIAL_CPUS`, one trial at a time), and any other
    run says why it may wait.
    """
    wanted = float(resources.get("cpu", 1))
    free = float(available.get("CPU", 0.0))
    if free >= wanted:
        return dict(resources)
    if shrink and free >= MIN_TRIAL_CPUS:
        fitted = math.floor(free * 100) / 100
        log.warning("tune.cpus_per_trial_reduced", requested=wanted, free=free, cpus_per_trial=fitted)
        return {**resources, "cpu": fitted}
    log.warning(
        "tune.waiting_for_cpus",
        requested=wanted,
        free=free,
        hint="trials start once CPUs are released or nodes join (WEALTHALLOC_TUNE_CPUS_PER_TRIAL)",
    )
    return dict(resources)


def load_features(prices: PriceHistory, options: TuneOptions) -> dict[str, pd.DataFrame]:
    """The daily features of every symbol of the run, computed once for all trials.

    Raises
    ------
    MarketDataError
        When a symbol or the index has no prices.
    """
    missing = [name for name in (*options.symbols, options.spec.index_symbol) if name not in prices]
    if missing:
        raise MarketDataError(
            f"no prices for {', '.join(missing)} in {prices.prices_dir} (run `wealthalloc data load` first)"
        )
    return symbol_features(prices, options.symbols, options.spec)


def dataset_from_features(
    features: Mapping[str, pd.DataFrame], split: TimeSplit, spec: FeatureSpec, stride: int
) -> Dataset:
    """What :func:`~wealthalloc.ml.features.build_dataset` returns, from features already computed.

    Trials share the driver's features and differ in window length only, so
    each one cuts its windows and fits its scaler here instead of reading
    prices again.
    """
    train_rows = {symbol: split_rows(frame, split)["train"] for symbol, frame in features.items()}
    windows = split_windows(features, split, spec.window, stride)
    return Dataset(
        spec=spec,
        split=split,
        symbols=tuple(features),
        scaler=FeatureScaler.fit(train_rows),
        train=windows["train"],
        validation=windows["validation"],
        test=windows["test"],
        stride=stride,
    )


def train_trial(
    config: Mapping[str, Any],
    *,
    features: Mapping[str, pd.DataFrame],
    options: TuneOptions,
    cpus: float = 1,
) -> None:
    """One Tune trial, in a Ray worker: train one configuration, report each epoch, save the finished model.

    The last report carries the bundle as a checkpoint and ``finished``;
    a trial ASHA stops earlier leaves no checkpoint and cannot be chosen.
    """
    model_config = trial_config(config, options)
    _limit_threads(cpus)
    spec = replace(options.spec, window=model_config.window)
    dataset = dataset_from_features(features, options.split, spec, options.stride)
    trained = train(
        model_config,
        dataset.scaled("train"),
        dataset.scaled("validation"),
        callbacks=[epoch_reporter(model_config.epochs)],
        progress=False,
    )
    bundle = ModelBundle.from_training(trained, dataset)
    with tempfile.TemporaryDirectory(prefix="wealthalloc-trial-") as scratch:
        bundle.save(scratch)
        tune.report(
            {
                TIME_ATTR: int(trained.metrics["epochs_run"]),
                METRIC: _finite_or_inf(trained.metrics["val_loss"]),
                "train_loss": _finite_or_inf(trained.metrics["train_loss"]),
                "best_epoch": int(trained.metrics["best_epoch"]),
                "threshold": trained.threshold,
                "train_windows": len(dataset.train),
                "finished": True,
            },
            checkpoint=tune.Checkpoint.from_directory(scratch),
        )


def epoch_reporter(final_epoch: int) -> Any:
    """A Keras callback reporting each epoch's validation loss to Tune, except epoch ``final_epoch``.

    The last epoch is reported by :func:`train_trial` with the saved model
    (see the module docstring). A loss that is not finite is reported as
    infinity, so ASHA stops a diverging trial rather than let NaN compare
    as "not worse".

    Returns
    -------
    keras.callbacks.Callback
    """
    from wealthalloc.ml.autoencoder import _keras

    base: Any = _keras().callbacks.Callback

    class TuneEpochReport(base):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            if epoch + 1 >= final_epoch:
                return
            values = logs or {}
            tune.report(
                {
                    TIME_ATTR: epoch + 1,
                    METRIC: _finite_or_inf(values.get("val_loss")),
                    "train_loss": _finite_or_inf(values.get("loss")),
                    "finished": False,
                }
            )

    return TuneEpochReport()


class TrialLogger(tune.Callback):
    """Each trial's results as structured log events, for log shippers and ``ray job logs`` readers."""

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        log.info(
            "tune.trial_result",
            trial=trial.trial_id,
            epoch=result.get(TIME_ATTR),
            val_loss=result.get(METRIC),
            finished=bool(result.get("finished")),
        )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        log.info(
            "tune.trial_complete",
            trial=trial.trial_id,
            config={name: trial.config.get(name) for name in SEARCHED if name in trial.config},
            epoch=last.get(TIME_ATTR),
            val_loss=last.get(METRIC),
            finished=bool(last.get("finished")),
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        log.warning("tune.trial_error", trial=trial.trial_id, error_file=trial.error_file)


def run_tuning(
    options: TuneOptions,
    *,
    prices: PriceHistory,
    registry: ModelRegistry,
    resources: Mapping[str, float],
    promote: bool = True,
    storage_path: str | None = None,
    verbose: int = 1,
) -> TuneOutcome:
    """Search, pick the best finished trial, evaluate it, publish it (and promote it).

    Ray must be initialised (see :func:`connect_ray`).

    Parameters
    ----------
    options : TuneOptions
    prices : PriceHistory
        Read in this process only: trials get the features through the object store.
    registry : ModelRegistry
    resources : mapping
        ``{"cpu": ..., "gpu": ...}`` per trial (:func:`trial_resources`).
    promote : bool
    storage_path : str, optional
        Where Tune keeps results and checkpoints (a directory or URI; shared
        storage on a multi-node cluster); Ray's default, ``~/ray_results``,
        when ``None``.
    verbose : int
        Tune's progress output: 0 silent, 1 status tables, 2 every result.

    Raises
    ------
    MarketDataError
        When a symbol or the index has no prices.
    TuningError
        When no trial finished training with a finite validation loss.
    RegistryError
        When the registry refuses the model.
    """
    started = time.perf_counter()
    features = load_features(prices, options)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, features=features, options=options, cpus=resources.get("cpu", 1)),
        dict(resources),
    )
    name = f"wealthalloc-tune-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    tuner = tune.Tuner(
        trainable,
        param_space=tune_domains(options.search_space),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="min",
            num_samples=options.num_samples,
            scheduler=ASHAScheduler(
                time_attr=TIME_ATTR,
                max_t=options.max_epochs,
                grace_period=min(options.grace_period, options.max_epochs),
                reduction_factor=options.reduction_factor,
            ),
            search_alg=BasicVariantGenerator(random_state=options.seed),
            reuse_actors=True,  # a worker imports TensorFlow once, not once per trial
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=_storage_path(storage_path),
            callbacks=[TrialLogger()],
            verbose=verbose,
        ),
    )
    log.info("tune.started", name=name, resources_per_trial=dict(resources), **options.describe())
    grid = tuner.fit()
    results = [grid[index] for index in range(len(grid))]
    trials = [_trial_summary(result) for result in results]
    finished = [(loss, result) for result in results if (loss := _finished_loss(result)) is not None]
    if not finished:
        errors = sum(trial["status"] == "error" for trial in trials)
        raise TuningError(
            f"no trial finished training with a finite {METRIC} ({len(trials)} trials, {errors} failed;"
            f" see {grid.experiment_path})"
        )
    best_val_loss, best = min(finished, key=lambda pair: pair[0])
    assert best.checkpoint is not None  # _finished_loss checked; for the type checker
    with best.checkpoint.as_directory() as directory:
        bundle = ModelBundle.load(directory)
    best_config = bundle.config.to_dict()
    registered = register_bundle(
        bundle,
        registry=registry,
        prices=prices,
        promote=promote,
        metadata={
            "trained_by": "training.tune",
            "tuning": {
                "search_space": {name: dict(dimension) for name, dimension in options.search_space.items()},
                "best_config": best_config,
                "best_trial": str((best.metrics or {}).get("trial_id", "")),
                "best_val_loss": best_val_loss,
                "resources_per_trial": dict(resources),
                "experiment_path": str(grid.experiment_path),
                "trials": trials,
                **options.describe(),
            },
        },
        events_per_kind=options.events_per_kind,
        isolation_trees=options.isolation_trees,
        seed=options.seed,
    )
    seconds = time.perf_counter() - started
    log.info(
        "tune.published",
        version=registered.version,
        promoted=registered.promoted,
        val_loss=best_val_loss,
        config=best_config,
        seconds=round(seconds, 1),
    )
    return TuneOutcome(
        version=registered.version,
        promoted=registered.promoted,
        best_config=best_config,
        best_val_loss=best_val_loss,
        trials=trials,
        experiment_path=str(grid.experiment_path),
        seconds=seconds,
        evaluation=registered.evaluation,
    )


def connect_ray(address: str | None) -> bool:
    """Join the cluster at ``address`` (``"auto"``: one already running), or start a local Ray.

    Returns
    -------
    bool
        Whether this call initialised Ray, so the caller shuts it down;
        ``False`` when the process was connected already (a test, a notebook).
    """
    if ray.is_initialized():
        return False
    target = address or "auto"
    if target == "auto":
        try:
            ray.init(address="auto")
        except ConnectionError:
            log.info("tune.local_ray", reason="no running Ray cluster found; starting one for this run")
            ray.init()
        return True
    ray.init(address=None if target == "local" else target)
    return True


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.tune",
        description=(
            "Tune the LSTM autoencoder with Ray Tune (ASHA over window length, units, latent size, dropout,"
            " learning rate and batch size), evaluate the best trial on the held-out period and publish it"
            " to the model registry. Submit with `ray job submit -- python -m training.tune`."
        ),
        epilog="Prints the new version id alone on the last line. Exit 0 when published, 1 otherwise.",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a run of a few minutes on CPU: {', '.join(SMOKE_SYMBOLS)}, 4 trials of at most 3 epochs",
    )
    parser.add_argument(
        "--num-samples", type=_positive, default=None, help="configurations to try (default: 16, smoke 4)"
    )
    parser.add_argument(
        "--max-epochs",
        type=_positive,
        default=None,
        help="epochs of a trial run to the end (default: 20, smoke 3)",
    )
    parser.add_argument(
        "--symbols",
        type=_symbols,
        default=None,
        help="comma-separated symbols to train on (default: the 20 bundled stocks, smoke "
        f"{','.join(SMOKE_SYMBOLS)})",
    )
    parser.add_argument(
        "--registry",
        default=settings.registry_uri,
        help="model registry: a directory or pyarrow filesystem URI (default: %(default)s)",
    )
    parser.add_argument(
        "--prices",
        default=str(settings.prices_dir),
        help="directory of Parquet prices (default: %(default)s)",
    )
    parser.add_argument(
        "--promote",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="promote the published version, so serving loads it (default: promote)",
    )
    parser.add_argument(
        "--storage-path",
        default=None,
        help="where Tune keeps results and checkpoints; shared storage (s3://, NFS) on a multi-node cluster"
        " (default: ~/ray_results)",
    )
    parser.add_argument(
        "--address",
        default=settings.ray_address or "auto",
        help="Ray cluster address; 'auto' joins a running one or starts a local Ray, 'local' always starts"
        " one (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds sampling, training and evaluation (default: 0)"
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="Tune's progress output: 0 none, 1 status tables (default), 2 every result",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> TuneOptions:
    """The preset (full or ``--smoke``) with the arguments given on the command line applied."""
    options = TuneOptions.smoke() if args.smoke else TuneOptions.full()
    changes: dict[str, Any] = {"seed": args.seed}
    if args.num_samples is not None:
        changes["num_samples"] = args.num_samples
    if args.max_epochs is not None:
        changes["max_epochs"] = args.max_epochs
    if args.symbols:
        changes["symbols"] = args.symbols
    return replace(options, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.tune``: see the module docstring and ``--help``."""
    settings = get_settings()
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    configure_logging(settings.log_level, settings.log_format)
    try:
        options = options_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    registry = ModelRegistry(args.registry)
    prices = PriceHistory(args.prices)
    started_ray = connect_ray(args.address)
    try:
        resources = fit_to_free_cpus(
            trial_resources(settings, ray.cluster_resources()),  # type: ignore[no-untyped-call]
            ray.available_resources(),  # type: ignore[no-untyped-call]
            shrink=args.smoke,
        )
        outcome = run_tuning(
            options,
            prices=prices,
            registry=registry,
            resources=resources,
            promote=args.promote,
            storage_path=args.storage_path,
            verbose=args.verbose,
        )
    except (TuningError, MarketDataError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if started_ray:
            ray.shutdown()
    finished = sum(trial["status"] == "finished" for trial in outcome.trials)
    print(
        f"{len(outcome.trials)} trials ({finished} finished) in {outcome.seconds:.0f} s; best val_loss"
        f" {outcome.best_val_loss:.4f} with "
        + ", ".join(f"{name}={outcome.best_config[name]}" for name in SEARCHED)
    )
    print(f"published to {registry.uri}{' and promoted' if outcome.promoted else ' (not promoted)'}:")
    print(outcome.version)
    return 0


def _finished_loss(result: Any) -> float | None:
    """The validation loss of a trial that trained to the end and saved its model; ``None`` otherwise."""
    metrics = result.metrics or {}
    if result.error is not None or result.checkpoint is None or not metrics.get("finished"):
        return None
    loss = float(metrics.get(METRIC, math.inf))
    return loss if math.isfinite(loss) else None


def _trial_summary(result: Any) -> dict[str, Any]:
    metrics = result.metrics or {}
    if result.error is not None:
        status = "error"
    elif metrics.get("finished"):
        status = "finished"
    else:
        status = "stopped early"
    loss = metrics.get(METRIC)
    config = result.config or {}
    return {
        "trial_id": str(metrics.get("trial_id", "")),
        "config": {
            name: int(config[name]) if name in _INTEGER_FIELDS else float(config[name])
            for name in SEARCHED
            if name in config
        },
        METRIC: float(loss) if isinstance(loss, int | float) and math.isfinite(loss) else None,
        "epochs": int(metrics.get(TIME_ATTR, 0)),
        "status": status,
    }


def _limit_threads(cpus: float) -> None:
    """Keep TensorFlow to the CPUs Ray gave the trial.

    By default TensorFlow spreads every op over all cores of the node, so
    trials sharing a node would fight for them. The setting only takes
    before TensorFlow's first op in the process; a reused worker keeps it.
    """
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    import tensorflow as tf

    threads = max(1, int(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # initialised already by an earlier trial of this worker, with the same setting


def _storage_path(path: str | None) -> str | None:
    if path is None or "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def _finite_or_inf(value: Any) -> float:
    number = float(value) if isinstance(value, int | float) else math.nan
    return number if math.isfinite(number) else math.inf


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _symbols(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip().upper() for part in text.split(",") if part.strip()))
    if not names:
        raise argparse.ArgumentTypeError("give at least one symbol")
    return names


if __name__ == "__main__":
    raise SystemExit(main())
