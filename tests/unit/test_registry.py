"""The model registry on real directories: publish, promote, list, describe, download, and what it refuses.

The registry never looks inside a model file, so these tests publish small
directories shaped like a saved :class:`~wealthalloc.ml.autoencoder.ModelBundle`
(``model.keras`` bytes and a ``metadata.json``) and need no Keras. Every test
runs twice: on a plain directory path and on the same kind of directory
through a ``file://`` URI, the pyarrow filesystem path an object store takes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from wealthalloc.ml.registry import (
    EVALUATION_KEY,
    METADATA_FILE,
    PROMOTED_POINTER,
    REGISTRY_KEY,
    ModelRegistry,
    RegistryError,
    UnknownVersionError,
    VersionInfo,
    new_version_id,
)

MakeModel = Callable[..., Path]


@pytest.fixture(params=["path", "file-uri"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "registry"
    return ModelRegistry(str(root) if request.param == "path" else root.as_uri())


@pytest.fixture
def make_model(tmp_path: Path) -> MakeModel:
    """A saved-model directory: ``model.keras`` bytes, ``metadata.json`` and whatever else is asked for."""
    counter = iter(range(1000))

    def make(
        *,
        threshold: float = 0.25,
        val_loss: float = 0.5,
        evaluation: dict[str, Any] | None = None,
        extra_files: dict[str, bytes] | None = None,
    ) -> Path:
        directory = tmp_path / f"model-{next(counter)}"
        directory.mkdir()
        (directory / "model.keras").write_bytes(b"weights " * 64)
        metadata: dict[str, Any] = {
            "format": "wealthalloc.lstm-autoencoder",
            "created_at": "2026-01-02T03:04:05+00:00",
            "threshold": threshold,
            "metrics": {"val_loss": val_loss, "train_loss": val_loss * 0.9},
        }
        if evaluation is not None:
            metadata[EVALUATION_KEY] = evaluation
        (directory / METADATA_FILE).write_text(json.dumps(metadata))
        for name, content in (extra_files or {}).items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return directory

    return make


def local_root(registry: ModelRegistry) -> Path:
    """The registry's directory on this disk, to look at (or damage) what it wrote."""
    return Path(registry.uri.removeprefix("file://"))


def test_an_empty_registry_has_nothing(registry: ModelRegistry) -> None:
    assert registry.versions() == []
    assert registry.promoted() is None
    assert registry.latest() is None
    assert registry.list_versions() == []


def test_publish_copies_the_model_and_records_the_version(
    registry: ModelRegistry, make_model: MakeModel
) -> None:
    source = make_model(extra_files={"model-card.md": b"# card", "assets/vocab.txt": b"a b"})

    version = registry.publish(source, metadata={"trained_by": "a test"})

    assert re.fullmatch(r"v\d{8}-\d{6}-[0-9a-f]{4}", version)
    assert registry.versions() == [version]
    assert registry.latest() == version
    assert registry.exists(version)
    assert registry.promoted() is None  # publishing never promotes
    stored = local_root(registry) / "versions" / version
    assert (stored / "model.keras").read_bytes() == (source / "model.keras").read_bytes()
    assert (stored / "model-card.md").read_bytes() == b"# card"
    assert (stored / "assets" / "vocab.txt").read_bytes() == b"a b"
    metadata = registry.describe(version)
    assert metadata["trained_by"] == "a test"
    assert metadata["threshold"] == 0.25
    assert metadata[REGISTRY_KEY]["version"] == version
    published = datetime.fromisoformat(metadata[REGISTRY_KEY]["published_at"])
    assert abs(datetime.now(UTC) - published) < timedelta(minutes=1)


def test_leftovers_of_a_save_are_not_published(registry: ModelRegistry, make_model: MakeModel) -> None:
    source = make_model(extra_files={".123.model.keras": b"half written", ".cache/x": b"x"})

    version = registry.publish(source)

    stored = local_root(registry) / "versions" / version
    assert sorted(path.name for path in stored.rglob("*")) == [METADATA_FILE, "model.keras"]


def test_versions_are_listed_oldest_first(registry: ModelRegistry, make_model: MakeModel) -> None:
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    ids = [new_version_id(start + timedelta(seconds=offset)) for offset in (5, 0, 3600)]
    for version in ids:
        registry.publish(make_model(), version)

    assert registry.versions() == sorted(ids)
    assert registry.latest() == ids[2]


def test_new_version_ids_sort_by_time_and_differ_within_a_second() -> None:
    moment = datetime(2026, 11, 25, 12, 3, 1, tzinfo=UTC)
    assert new_version_id(moment).startswith("v20261125-120301-")
    assert new_version_id(moment - timedelta(seconds=1)) < new_version_id(moment)
    assert len({new_version_id(moment) for _ in range(50)}) > 40  # a random suffix, 65,536 values


def test_a_version_is_immutable(registry: ModelRegistry, make_model: MakeModel) -> None:
    version = registry.publish(make_model(threshold=0.25))
    before = registry.describe(version)

    with pytest.raises(RegistryError, match="already exists"):
        registry.publish(make_model(threshold=9.0), version)

    assert registry.describe(version) == before
    assert registry.versions() == [version]


def test_metadata_may_not_replace_the_models_own_entries(
    registry: ModelRegistry, make_model: MakeModel
) -> None:
    with pytest.raises(RegistryError, match="threshold"):
        registry.publish(make_model(), metadata={"threshold": 0.0})
    with pytest.raises(RegistryError, match=REGISTRY_KEY):
        registry.publish(make_model(), metadata={REGISTRY_KEY: {"version": "forged"}})
    with pytest.raises(RegistryError, match="JSON"):
        registry.publish(make_model(), metadata={"loss": float("nan")})
    assert registry.versions() == []


def test_a_directory_that_is_not_a_saved_model_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RegistryError, match="not a saved model"):
        registry.publish(empty)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / METADATA_FILE).write_text("{not json")
    with pytest.raises(RegistryError, match="not valid JSON"):
        registry.publish(broken)

    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / METADATA_FILE).write_text("[1, 2]")
    with pytest.raises(RegistryError, match="JSON object"):
        registry.publish(listed)
    assert registry.versions() == []


def test_an_incomplete_version_is_invisible(registry: ModelRegistry, make_model: MakeModel) -> None:
    """A copy cut short (no metadata yet) is neither listed, nor the latest, nor promotable."""
    complete = registry.publish(make_model(), new_version_id(datetime(2026, 1, 1, tzinfo=UTC)))
    half = local_root(registry) / "versions" / new_version_id(datetime(2026, 6, 1, tzinfo=UTC))
    half.mkdir(parents=True)
    (half / "model.keras").write_bytes(b"partial")

    assert registry.versions() == [complete]
    assert registry.latest() == complete
    assert not registry.exists(half.name)
    assert [info.version for info in registry.list_versions()] == [complete]
    with pytest.raises(UnknownVersionError):
        registry.promote(half.name)
    with pytest.raises(UnknownVersionError):
        registry.describe(half.name)


def test_promote_points_serving_at_a_version_and_rolls_back(
    registry: ModelRegistry, make_model: MakeModel
) -> None:
    first = registry.publish(make_model(), new_version_id(datetime(2026, 1, 1, tzinfo=UTC)))
    second = registry.publish(make_model(), new_version_id(datetime(2026, 2, 1, tzinfo=UTC)))

    registry.promote(second)
    assert registry.promoted() == second
    registry.promote(first)  # a rollback is a promotion of an older id
    assert registry.promoted() == first

    root = local_root(registry)
    assert (root / PROMOTED_POINTER).read_text().strip() == first
    assert not list(root.glob("*.tmp")), "the pointer is renamed into place, no temporary file left"
    assert [info.promoted for info in registry.list_versions()] == [True, False]


def test_promoting_an_unknown_version_says_which_exist(
    registry: ModelRegistry, make_model: MakeModel
) -> None:
    with pytest.raises(UnknownVersionError, match="the registry has no versions"):
        registry.promote("v20260101-000000-abcd")

    known = registry.publish(make_model())
    registry.promote(known)
    with pytest.raises(UnknownVersionError, match=f"known: {known}"):
        registry.promote("v20260101-000000-abcd")
    assert registry.promoted() == known


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../escape",
        "a/b",
        "..",
        "v1..2",
        ".hidden",
        "-flag",
        "with space",
        "x" * 101,
        "v1\n",
    ],
)
def test_ids_that_cannot_be_versions_are_refused(
    registry: ModelRegistry, make_model: MakeModel, bad: str
) -> None:
    with pytest.raises(RegistryError, match="not a version id"):
        registry.version_path(bad)
    with pytest.raises(RegistryError, match="not a version id"):
        registry.exists(bad)
    with pytest.raises(RegistryError, match="not a version id"):
        registry.promote(bad)
    with pytest.raises(RegistryError, match="not a version id"):
        registry.describe(bad)
    if bad:  # publish(version="") means "no id given": it makes one
        with pytest.raises(RegistryError, match="not a version id"):
            registry.publish(make_model(), bad)
    assert registry.versions() == []
    assert not (local_root(registry).parent / "escape").exists()


def test_unknown_versions_are_refused_by_every_reader(registry: ModelRegistry, tmp_path: Path) -> None:
    for call in (
        lambda: registry.describe("v20260101-000000-0000"),
        lambda: registry.download("v20260101-000000-0000", tmp_path / "out"),
        lambda: registry.promote("v20260101-000000-0000"),
    ):
        with pytest.raises(UnknownVersionError, match="v20260101-000000-0000"):
            call()
    assert not (tmp_path / "out").exists()


def test_download_copies_a_version_to_a_local_directory(
    registry: ModelRegistry, make_model: MakeModel, tmp_path: Path
) -> None:
    source = make_model(extra_files={"model-card.md": b"# card"})
    version = registry.publish(source)

    target = registry.download(version, tmp_path / "downloads" / version)

    assert sorted(path.name for path in target.iterdir()) == [METADATA_FILE, "model-card.md", "model.keras"]
    assert (target / "model.keras").read_bytes() == (source / "model.keras").read_bytes()
    assert json.loads((target / METADATA_FILE).read_text()) == registry.describe(version)


def test_list_versions_shows_threshold_metrics_and_evaluation(
    registry: ModelRegistry, make_model: MakeModel
) -> None:
    table = {
        "lstm_autoencoder": {"f1": 0.61, "pr_auc": 0.72, "recall_flat_line": None},
        "rolling_zscore": {"f1": 0.4, "pr_auc": 0.5},
    }
    evaluated = registry.publish(
        make_model(threshold=1.5, val_loss=0.8, evaluation={"table": table}),
        new_version_id(datetime(2026, 1, 1, tzinfo=UTC)),
    )
    plain = registry.publish(make_model(), new_version_id(datetime(2026, 2, 1, tzinfo=UTC)))
    registry.promote(evaluated)

    first, second = registry.list_versions()

    assert isinstance(first, VersionInfo)
    assert (first.version, first.promoted, first.threshold) == (evaluated, True, 1.5)
    assert first.created_at == "2026-01-02T03:04:05+00:00"
    assert first.published_at
    assert first.metrics["val_loss"] == pytest.approx(0.8)
    assert first.evaluation_metric("lstm_autoencoder", "f1") == pytest.approx(0.61)
    assert first.evaluation_metric("rolling_zscore", "pr_auc") == pytest.approx(0.5)
    assert first.evaluation_metric("lstm_autoencoder", "recall_flat_line") is None
    assert first.evaluation_metric("isolation_forest", "f1") is None
    assert (second.version, second.promoted, second.evaluation) == (plain, False, None)
    assert second.evaluation_metric("lstm_autoencoder", "f1") is None


def test_a_damaged_version_is_listed_with_its_problem(registry: ModelRegistry, make_model: MakeModel) -> None:
    """One unreadable metadata file must not hide the other versions from `models list`."""
    good = registry.publish(make_model(), new_version_id(datetime(2026, 1, 1, tzinfo=UTC)))
    damaged = registry.publish(make_model(), new_version_id(datetime(2026, 2, 1, tzinfo=UTC)))
    (local_root(registry) / "versions" / damaged / METADATA_FILE).write_text("{truncated")

    infos = {info.version: info for info in registry.list_versions()}

    assert infos[good].problem is None
    assert infos[damaged].problem is not None and "not valid JSON" in infos[damaged].problem
    with pytest.raises(RegistryError, match="not valid JSON"):
        registry.describe(damaged)


def test_a_path_and_a_file_uri_see_the_same_registry(make_model: MakeModel, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    by_uri = ModelRegistry(root.as_uri())
    version = by_uri.publish(make_model())
    by_uri.promote(version)

    by_path = ModelRegistry(str(root))
    assert by_path.versions() == [version]
    assert by_path.promoted() == version
    assert by_path.describe(version) == by_uri.describe(version)
    assert by_path.version_path(version) == f"{root}/versions/{version}"
    assert by_uri.version_path(version) == f"{root.as_uri()}/versions/{version}"
