"""Training on the real bundled prices: the default model, a Ray Tune run, and `wealthalloc models`.

Every model here is tiny (one symbol, 20-day windows, 8 units, at most two
epochs), so the real code paths (Keras, Ray Tune with ASHA, the evaluation,
the registry on disk) run in seconds rather than minutes.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import ray
from typer.testing import CliRunner

from training.default_model import DefaultModelRecipe, ensure_default_model
from training.evaluate import AUTOENCODER, METHODS
from training.tune import (
    SEARCHED,
    SMOKE_SEARCH_SPACE,
    TuneOptions,
    build_parser,
    fit_to_free_cpus,
    main,
    options_from_args,
    trial_resources,
)
from wealthalloc.cli import app
from wealthalloc.config import Settings, get_settings
from wealthalloc.marketdata import PriceHistory
from wealthalloc.ml.autoencoder import AutoencoderConfig, ModelBundle
from wealthalloc.ml.features import FeatureSpec, TimeSplit, build_dataset
from wealthalloc.ml.registry import ModelRegistry

SPLIT = TimeSplit(
    train_start=date(2014, 1, 1),
    train_end=date(2016, 12, 31),
    validation_end=date(2017, 12, 31),
    test_end=date(2018, 12, 31),
)
TINY_RECIPE = DefaultModelRecipe(
    symbols=("AAPL", "NOT-A-SYMBOL"),  # a symbol without prices is skipped, not fatal
    split=SPLIT,
    spec=FeatureSpec(window=20),
    config=AutoencoderConfig(window=20, units=8, latent=4, dropout=0.0, batch_size=64, epochs=2, patience=2),
    stride=3,
    events_per_kind=1,
    isolation_trees=20,
)


@dataclass(frozen=True)
class DefaultModelRun:
    settings: Settings
    version: str
    seconds: float
    second_call: str | None


@pytest.fixture(scope="module")
def default_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DefaultModelRun:
    """The default model, trained once for the module into its own registry; copy it to change it."""
    settings = Settings(
        data_dir=data_dir, model_registry_uri=str(tmp_path_factory.mktemp("registry") / "models")
    )
    started = time.perf_counter()
    version = ensure_default_model(settings, progress=False, recipe=TINY_RECIPE)
    seconds = time.perf_counter() - started
    assert version is not None
    return DefaultModelRun(settings, version, seconds, ensure_default_model(settings, recipe=TINY_RECIPE))


def registry_copy(run: DefaultModelRun, tmp_path: Path) -> ModelRegistry:
    target = tmp_path / "models"
    shutil.copytree(run.settings.registry_uri, target)
    return ModelRegistry(str(target))


def test_the_default_model_is_trained_evaluated_published_and_promoted_once(
    default_run: DefaultModelRun,
) -> None:
    registry = ModelRegistry(default_run.settings.registry_uri)

    assert registry.versions() == [default_run.version]
    assert registry.promoted() == default_run.version
    assert default_run.second_call is None, "a promoted version exists: nothing to train"
    metadata = registry.describe(default_run.version)
    assert metadata["trained_by"] == "training.default_model"
    assert metadata["data"]["symbols"] == ["AAPL"]
    assert metadata["config"]["window"] == 20
    table = metadata["evaluation"]["table"]
    assert set(table) == set(METHODS)
    assert 0.0 <= table[AUTOENCODER]["pr_auc"] <= 1.0
    assert (Path(registry.version_path(default_run.version)) / "model-card.md").is_file()
    assert default_run.seconds < 120


def test_the_promoted_bundle_loads_and_scores_real_windows(
    default_run: DefaultModelRun, data_dir: Path
) -> None:
    registry = ModelRegistry(default_run.settings.registry_uri)
    version = registry.promoted()
    assert version is not None
    bundle = ModelBundle.load(registry.version_path(version))
    test = build_dataset(PriceHistory(data_dir / "prices"), ["AAPL"], SPLIT, bundle.spec).test

    errors, flagged = bundle.score(test)

    assert len(test) > 100
    assert errors.shape == flagged.shape == (len(test),)
    assert np.isfinite(errors).all() and (errors >= 0).all()
    assert flagged.mean() < 0.5, "ordinary days of a later year are mostly not anomalies"


def test_force_trains_and_promotes_another_version(default_run: DefaultModelRun, tmp_path: Path) -> None:
    registry = registry_copy(default_run, tmp_path)
    settings = default_run.settings.model_copy(update={"model_registry_uri": registry.uri})

    version = ensure_default_model(settings, progress=False, recipe=TINY_RECIPE, force=True)

    assert version is not None and version != default_run.version
    assert registry.versions() == [default_run.version, version]
    assert registry.promoted() == version


def test_a_damaged_promotion_is_repaired_by_training(default_run: DefaultModelRun, tmp_path: Path) -> None:
    """A PROMOTED pointer naming a version that is gone counts as no model: `make run` trains one."""
    registry = registry_copy(default_run, tmp_path)
    (Path(registry.uri) / "PROMOTED").write_text("v20000101-000000-dead\n")
    settings = default_run.settings.model_copy(update={"model_registry_uri": registry.uri})

    version = ensure_default_model(settings, progress=False, recipe=TINY_RECIPE)

    assert version is not None and registry.promoted() == version


def test_tune_runs_asha_on_a_local_ray_and_publishes_the_best_trial(
    ray_local: None, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(str(tmp_path / "models"))
    argv = [
        "--smoke",
        "--num-samples=2",
        "--max-epochs=2",
        "--symbols=AAPL",
        f"--registry={registry.uri}",
        f"--prices={data_dir / 'prices'}",
        f"--storage-path={tmp_path / 'tune'}",
        "--verbose=0",
    ]
    started = time.perf_counter()

    assert main(argv) == 0

    seconds = time.perf_counter() - started
    version = capsys.readouterr().out.strip().splitlines()[-1]
    assert registry.versions() == [version]
    assert registry.promoted() == version
    metadata = registry.describe(version)
    tuning = metadata["tuning"]
    assert metadata["trained_by"] == "training.tune"
    assert tuning["search_space"] == json.loads(json.dumps(SMOKE_SEARCH_SPACE))
    assert tuning["scheduler"]["name"] == "ASHA" and tuning["scheduler"]["max_t"] == 2
    assert len(tuning["trials"]) == 2
    finished = [trial for trial in tuning["trials"] if trial["status"] == "finished"]
    assert finished, tuning["trials"]
    best = min(finished, key=lambda trial: trial["val_loss"])
    assert tuning["best_val_loss"] == pytest.approx(best["val_loss"])
    assert {name: tuning["best_config"][name] for name in SEARCHED} == best["config"]
    assert metadata["config"] == tuning["best_config"]
    assert tuning["resources_per_trial"] == trial_resources(get_settings(), ray.cluster_resources())
    assert set(metadata["evaluation"]["table"]) == set(METHODS)
    bundle = ModelBundle.load(registry.version_path(version))
    assert bundle.config.window == best["config"]["window"]
    print(f"tiny tune run: {seconds:.1f} s")


def test_tune_options_follow_the_command_line() -> None:
    parser = build_parser(Settings())

    smoke = options_from_args(parser.parse_args(["--smoke", "--symbols", "ko, aapl,KO", "--max-epochs", "5"]))
    full = options_from_args(parser.parse_args(["--no-promote", "--num-samples", "3"]))

    assert smoke.symbols == ("KO", "AAPL") and smoke.max_epochs == 5 and smoke.num_samples == 4
    assert full.num_samples == 3 and full.symbols == TuneOptions.full().symbols
    assert parser.parse_args(["--no-promote"]).promote is False
    assert parser.parse_args([]).promote is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--num-samples", "0"])
    with pytest.raises(ValueError, match="cannot search"):
        TuneOptions(
            symbols=("AAPL",),
            split=SPLIT,
            search_space={"epochs": {"choice": [1]}},
            num_samples=1,
            max_epochs=1,
        )


def test_trials_get_the_resources_of_the_settings_and_a_gpu_when_the_cluster_has_one() -> None:
    two_cpus = Settings(tune_cpus_per_trial=2)

    assert trial_resources(two_cpus, {"CPU": 8.0}) == {"cpu": 2, "gpu": 0}
    assert trial_resources(two_cpus, {"CPU": 8.0, "GPU": 2.0}) == {"cpu": 2, "gpu": 1}
    assert trial_resources(Settings(tune_gpus_per_trial=0.5), {"GPU": 4.0})["gpu"] == 0.5


def test_a_smoke_run_asks_for_the_free_cpus_and_a_full_run_waits_for_its_own() -> None:
    wanted = {"cpu": 1.0, "gpu": 0.0}

    assert fit_to_free_cpus(wanted, {"CPU": 0.5}, shrink=True) == {"cpu": 0.5, "gpu": 0.0}
    assert fit_to_free_cpus(wanted, {"CPU": 0.5}, shrink=False) == wanted
    assert fit_to_free_cpus(wanted, {"CPU": 4.0}, shrink=True) == wanted
    assert fit_to_free_cpus(wanted, {}, shrink=True) == wanted, "nothing free: wait rather than ask for 0"


runner = CliRunner()


def test_models_list_shows_the_versions_and_which_is_promoted(
    default_run: DefaultModelRun, tmp_path: Path
) -> None:
    registry = registry_copy(default_run, tmp_path)
    info = registry.list_versions()[0]

    result = runner.invoke(app, ["models", "list", "--registry", registry.uri])

    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["VERSION", "CREATED", "PROMOTED", "THRESHOLD", "VAL_LOSS", "AE_F1", "AE_PR_AUC"]
    cells = row.split()
    assert cells[0] == default_run.version
    assert "*" in cells
    assert f"{info.metrics['val_loss']:.4f}" in cells
    f1 = info.evaluation_metric(AUTOENCODER, "f1")
    assert f1 is not None and f"{f1:.3f}" in cells


def test_models_list_of_an_empty_registry_says_how_to_get_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "list", "--registry", str(tmp_path / "none")])

    assert result.exit_code == 0
    assert "no model versions" in result.stdout and "train-default" in result.stdout


def test_models_promote_and_describe(default_run: DefaultModelRun, tmp_path: Path) -> None:
    registry = registry_copy(default_run, tmp_path)
    (Path(registry.uri) / "PROMOTED").unlink()

    promoted = runner.invoke(app, ["models", "promote", default_run.version, "--registry", registry.uri])
    described = runner.invoke(app, ["models", "describe", default_run.version, "--registry", registry.uri])

    assert promoted.exit_code == 0, promoted.output
    assert f"promoted {default_run.version}" in promoted.stdout
    assert registry.promoted() == default_run.version
    assert described.exit_code == 0, described.output
    metadata = json.loads(described.stdout)
    assert metadata == registry.describe(default_run.version)
    assert metadata["registry"]["version"] == default_run.version


@pytest.mark.parametrize("command", ["promote", "describe"])
@pytest.mark.parametrize("version", ["v20990101-000000-beef", "../escape"])
def test_models_refuses_an_unknown_or_malformed_version(
    default_run: DefaultModelRun, tmp_path: Path, command: str, version: str
) -> None:
    registry = registry_copy(default_run, tmp_path)

    result = runner.invoke(app, ["models", command, version, "--registry", registry.uri])

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert version in result.stderr
    assert registry.promoted() == default_run.version


def test_models_train_default_leaves_a_promoted_version_alone(
    default_run: DefaultModelRun, tmp_path: Path
) -> None:
    registry = registry_copy(default_run, tmp_path)
    env = {
        "WEALTHALLOC_DATA_DIR": str(default_run.settings.data_dir),
        "WEALTHALLOC_MODEL_REGISTRY_URI": registry.uri,
    }

    result = runner.invoke(app, ["models", "train-default"], env=env)

    assert result.exit_code == 0, result.output
    assert f"{default_run.version} is promoted already" in result.stdout
    assert registry.versions() == [default_run.version]


def test_models_train_default_without_prices_fails_in_one_line(tmp_path: Path) -> None:
    env = {"WEALTHALLOC_DATA_DIR": str(tmp_path), "WEALTHALLOC_MODEL_REGISTRY_URI": str(tmp_path / "models")}

    result = runner.invoke(app, ["models", "train-default"], env=env)

    assert result.exit_code == 1
    assert "wealthalloc data load" in result.stderr
