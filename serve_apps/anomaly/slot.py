"""The model a detector replica serves, and how it is replaced when another version is promoted.

A :class:`ModelSlot` holds one :class:`LoadedModel` at a time. :meth:`ModelSlot.refresh`
reads the registry's ``PROMOTED`` pointer and, when it names a version other
than the one served, loads that version completely (files, checksums, Keras,
a warm-up pass) *beside* the served one and only then swaps the reference.
A request that started on the old model finishes on it; the next one sees the
new model; no request ever sees a half-loaded one.

A version that cannot be loaded leaves the served model in place and is
recorded as :attr:`ModelSlot.failure`, which ``/health`` shows. A damaged or
missing version is remembered and not retried (versions are immutable, so it
will not heal); an I/O error reading a remote registry is retried at the
next poll. Nothing here knows about Ray: the Serve deployment calls
:meth:`refresh` from its polling task, tests and benches call it directly.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from serve_apps.anomaly.errors import InvalidWindowsError
from wealthalloc.logging import get_logger
from wealthalloc.ml.autoencoder import ModelBundle, ModelBundleError, reconstruction_errors
from wealthalloc.ml.features import validate_windows
from wealthalloc.ml.registry import ModelRegistry, RegistryError

log = get_logger(__name__)

WARM_UP_SIZES = (1, 2)
"""Batch sizes of the warm-up pass besides the largest: TensorFlow traces its predict function for the
first shapes it sees, so paying that before the swap keeps it off the first requests' latency."""


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A registry version loaded and warmed up, ready to score.

    Attributes
    ----------
    version : str
        The registry's id of the version.
    bundle : ModelBundle
    loaded_at : str
        ISO 8601, UTC.
    """

    version: str
    bundle: ModelBundle
    loaded_at: str

    @property
    def window(self) -> int:
        return self.bundle.config.window

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.bundle.feature_names

    @property
    def threshold(self) -> float:
        return self.bundle.threshold

    def validate(
        self, windows: object, symbols: Sequence[str] | None, max_windows: int | None
    ) -> npt.NDArray[np.float32]:
        """The batch as contiguous float32 when this model can score it.

        Raises
        ------
        InvalidWindowsError
            With what is wrong: not numeric, empty, more than ``max_windows``,
            the wrong window length or feature count, NaN or infinite values,
            or a symbol list of another length than the batch.
        """
        try:
            values = validate_windows(windows, self.window, len(self.feature_names), max_windows)
        except ValueError as exc:
            raise InvalidWindowsError(str(exc)) from None
        if symbols is not None and len(symbols) != len(values):
            raise InvalidWindowsError(
                f"{len(symbols)} symbols for {len(values)} windows; give one per window"
            )
        return values

    def errors(
        self, values: npt.NDArray[np.float32], symbols: Sequence[str] | None
    ) -> npt.NDArray[np.float64]:
        """Reconstruction errors of raw feature windows already checked by :meth:`validate`.

        What :meth:`ModelBundle.errors` does without checking the batch again:
        a batch of many requests was checked request by request.
        """
        scaled = self.bundle.scaler.transform(values, symbols)
        return reconstruction_errors(self.bundle.model, scaled, self.bundle.config.score_reduction)

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "loaded_at": self.loaded_at,
            "threshold": self.threshold,
            "window": self.window,
            "feature_names": list(self.feature_names),
            "features": self.bundle.spec.to_dict(),
            "score_reduction": self.bundle.config.score_reduction,
            "created_at": self.bundle.created_at,
        }


@dataclass(frozen=True)
class LoadFailure:
    """A promoted version that could not be loaded.

    Attributes
    ----------
    version : str
    error : str
        Why, as the loader said it.
    at : str
        When, ISO 8601 UTC.
    retried : bool
        Whether the next poll tries again (an I/O error) or not (a damaged or missing version).
    """

    version: str
    error: str
    at: str
    retried: bool


class ModelSlot:
    """The promoted model of one registry, reloaded when the promotion changes.

    Parameters
    ----------
    registry : ModelRegistry
    warm_up_batch : int
        The largest batch the warm-up pass scores (the deployment's batch size).
    """

    def __init__(self, registry: ModelRegistry, *, warm_up_batch: int = 256) -> None:
        self.registry = registry
        self.warm_up_batch = warm_up_batch
        self.current: LoadedModel | None = None
        self.failure: LoadFailure | None = None
        self.promoted: str | None = None
        self.checked_at: str | None = None
        self.registry_error: str | None = None
        self._unloadable: set[str] = set()
        self._refreshing = threading.Lock()

    def refresh(self) -> LoadedModel | None:
        """Load the promoted version when it is not the one served; returns the model served afterwards.

        Blocking (file reads, Keras): the deployment runs it in a thread. Two
        concurrent calls do the work once.
        """
        with self._refreshing:
            try:
                promoted = self.registry.promoted()
            except Exception as exc:  # a registry that cannot be read now: keep serving, say why
                self.registry_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "anomaly.registry_unreadable", registry=self.registry.uri, error=self.registry_error
                )
                return self.current
            self.registry_error = None
            self.promoted, self.checked_at = promoted, _now()
            served = self.current
            if served is not None and served.version == promoted:
                self.failure = None  # promoted back to the served version: nothing is failing now
                return served
            if promoted is None or promoted in self._unloadable:
                return served
            try:
                loaded = self._load(promoted)
            except (ModelBundleError, RegistryError) as exc:
                self._unloadable.add(promoted)
                self.failure = LoadFailure(promoted, str(exc), _now(), retried=False)
                log.error(
                    "anomaly.model_load_failed",
                    version=promoted,
                    error=str(exc),
                    serving=served.version if served else None,
                )
                return served
            except Exception as exc:  # I/O of a remote registry, memory: worth another try
                self.failure = LoadFailure(promoted, f"{type(exc).__name__}: {exc}", _now(), retried=True)
                log.warning("anomaly.model_load_retrying", version=promoted, error=self.failure.error)
                return served
            self.current = loaded  # the swap: readers see the old model or the new one, whole
            self.failure = None
            log.info(
                "anomaly.model_loaded",
                version=loaded.version,
                previous=served.version if served else None,
                threshold=loaded.threshold,
            )
            return loaded

    def status(self) -> dict[str, Any]:
        """What ``/health`` reports: the version served, the one promoted, and the last load failure."""
        current = self.current
        return {
            "registry": self.registry.uri,
            "promoted_version": self.promoted,
            "loaded_version": current.version if current else None,
            "model": current.describe() if current else None,
            "load_failure": asdict(self.failure) if self.failure else None,
            "registry_error": self.registry_error,
            "checked_at": self.checked_at,
        }

    def _load(self, version: str) -> LoadedModel:
        """Load ``version``: in place from a directory registry, through a temporary copy otherwise."""
        if not self.registry.exists(version):
            raise RegistryError(
                f"the promoted version {version!r} is not a complete version of {self.registry.uri}"
            )
        if "://" in self.registry.uri:
            with tempfile.TemporaryDirectory(prefix="wealthalloc-model-") as scratch:
                # Keras reads the whole file into memory, so the copy can go once loaded.
                bundle = ModelBundle.load(self.registry.download(version, scratch))
        else:
            bundle = ModelBundle.load(self.registry.version_path(version))
        model = LoadedModel(version=version, bundle=bundle, loaded_at=_now())
        n_features = len(model.feature_names)
        for size in sorted({*WARM_UP_SIZES, max(1, self.warm_up_batch)}):
            model.errors(np.zeros((size, model.window, n_features), dtype=np.float32), None)
        return model


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
