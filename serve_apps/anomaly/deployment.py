"""``AnomalyDetector``: the promoted LSTM autoencoder on Ray Serve, batched, hot-reloaded.

Input: **raw feature windows**, shape ``(n, window, n_features)``, as
:mod:`wealthalloc.ml.features` makes them (``daily_features`` then
``make_windows`` with the model's ``FeatureSpec``), *not* scaled. The
replica scales them with the scaler saved beside the model: a caller cannot
then scale with the wrong version's statistics, and a new version with new
statistics needs no change in any caller. An optional symbol per window
selects that symbol's scaling statistics (the overall ones otherwise).
``/api/v1/anomaly/model`` tells callers the window length and features.

Output (:class:`AnomalyScores`): each window's reconstruction error, the
model's threshold, ``is_anomaly = error > threshold`` and the model version
that scored them.

Batching: every request (and every piece of a request larger than
``anomaly_max_batch_size``) waits up to ``anomaly_batch_wait_timeout_s`` on
``@serve.batch`` and is scored with other requests' windows in one forward
pass of at most ``anomaly_max_batch_size`` *windows* (``batch_size_fn``
counts windows, not requests): many small requests cost one model call.
Each request is checked on arrival (shape, NaN, size), so one bad request
never fails the batch it would have joined.

Hot reload: a task polls the registry every ``anomaly_poll_seconds`` and
swaps in a newly promoted version once it is fully loaded (see
:mod:`serve_apps.anomaly.slot`); a version that fails to load leaves the
previous one serving and shows in :meth:`AnomalyDetector.status`. A batch is
scored by one model: a request prepared for a version that was swapped out
while it waited is prepared again for the new one.

Replicas, CPUs, GPUs and autoscaling come from ``Settings`` (``anomaly_*``),
see :func:`detector_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
from ray import serve
from ray.serve import Application

from actors.ray_metrics import export_through_ray
from serve_apps.anomaly import replica_metrics
from serve_apps.anomaly.errors import ModelUnavailableError
from serve_apps.anomaly.slot import LoadedModel, ModelSlot
from serve_apps.anomaly.windows import LatestWindow, NoWindowError, latest_window
from wealthalloc.config import Settings
from wealthalloc.logging import configure_logging, get_logger
from wealthalloc.marketdata import PriceHistory
from wealthalloc.ml.registry import ModelRegistry
from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.storage.redis_client import async_redis

log = get_logger(__name__)

MAX_ATTEMPTS = 3
"""Tries of a request whose model was swapped while it waited in a batch (each swap takes seconds)."""


@dataclass(frozen=True, eq=False)
class AnomalyScores:
    """What one scoring call returns.

    Attributes
    ----------
    model_version : str
    threshold : float
    errors : ndarray of float64, shape (n,)
        Reconstruction error of each window, in the order given.
    is_anomaly : ndarray of bool, shape (n,)
    """

    model_version: str
    threshold: float
    errors: npt.NDArray[np.float64]
    is_anomaly: npt.NDArray[np.bool_]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "threshold": self.threshold,
            "count": len(self.errors),
            "reconstruction_errors": [float(value) for value in self.errors],
            "is_anomaly": [bool(flag) for flag in self.is_anomaly],
        }


@dataclass(frozen=True)
class SymbolAnomaly:
    """One symbol's newest window, scored; ``"unscored"`` with the reason in ``detail`` when it has none."""

    symbol: str
    status: str
    model_version: str
    threshold: float
    reconstruction_error: float | None = None
    is_anomaly: bool | None = None
    window_start: date | None = None
    window_end: date | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "status": self.status,
            "reconstruction_error": self.reconstruction_error,
            "threshold": self.threshold,
            "is_anomaly": self.is_anomaly,
            "model_version": self.model_version,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class LatestScores:
    """What :meth:`AnomalyDetector.latest` returns: the model that scored, and one row per symbol."""

    model_version: str
    threshold: float
    symbols: list[SymbolAnomaly]


@dataclass(frozen=True, eq=False)
class _Item:
    """One request's windows waiting in the batch queue, prepared for one model version."""

    values: npt.NDArray[np.float32]
    symbols: tuple[str, ...] | None
    version: str


class _Stale:
    """The answer for an item prepared for a version that is no longer served."""


_STALE = _Stale()


@dataclass
class BatchStats:
    """How batching went on this replica, for ``status()`` and the tests that check requests were merged."""

    batches: int = 0
    windows: int = 0
    requests: int = 0
    largest_windows: int = 0
    largest_requests: int = 0
    recent: list[int] = field(default_factory=list)

    def record(self, windows: int, requests: int) -> None:
        self.batches += 1
        self.windows += windows
        self.requests += requests
        self.largest_windows = max(self.largest_windows, windows)
        self.largest_requests = max(self.largest_requests, requests)
        self.recent = [*self.recent[-31:], windows]

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "windows": self.windows,
            "requests": self.requests,
            "largest_batch_windows": self.largest_windows,
            "largest_batch_requests": self.largest_requests,
            "recent_batch_windows": list(self.recent),
        }


def _windows_in(items: list[_Item]) -> int:
    """``@serve.batch``'s size of a batch: windows, so the limit bounds the model call, not requests."""
    return sum(len(item.values) for item in items)


@serve.deployment(name="AnomalyDetector", max_ongoing_requests=256, health_check_period_s=10)
class AnomalyDetector:
    """The Serve deployment; see the module docstring. ``overrides`` are Settings overrides (as the API's)."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        settings = Settings(**overrides)
        configure_logging(settings.log_level, settings.log_format)
        self._settings = settings
        self._prices = PriceHistory(settings.prices_dir)
        self._slot = ModelSlot(
            ModelRegistry(settings.registry_uri), warm_up_batch=settings.anomaly_max_batch_size
        )
        self._stats = BatchStats()
        batcher: Any = self._score_batch  # @serve.batch adds these setters to the method
        batcher.set_max_batch_size(settings.anomaly_max_batch_size)
        batcher.set_batch_wait_timeout_s(settings.anomaly_batch_wait_timeout_s)
        self._slot.refresh()  # the first load before the replica takes traffic
        self._replica = replica_metrics.replica_name()
        export_through_ray(ops_metrics.REGISTRY, source=replica_metrics.source(self._replica))
        self._poller: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._ensure_poller()

    # Public methods, called through a DeploymentHandle -------------------------------------------

    async def score(self, windows: npt.ArrayLike, symbols: Sequence[str] | None = None) -> AnomalyScores:
        """Reconstruction errors of raw feature windows ``(n, window, n_features)``.

        Raises
        ------
        InvalidWindowsError
            For a batch the model cannot score (see :meth:`LoadedModel.validate`),
            or more than ``anomaly_max_windows`` windows.
        ModelUnavailableError
            When no model is loaded.
        """
        self._ensure_poller()
        names = None if symbols is None else tuple(str(symbol) for symbol in symbols)
        for _ in range(MAX_ATTEMPTS):
            model = self._model()
            values = model.validate(windows, names, self._settings.anomaly_max_windows)
            errors = await self._errors(model, values, names)
            if errors is not None:
                return AnomalyScores(model.version, model.threshold, errors, errors > model.threshold)
        raise ModelUnavailableError("the model changed while this request waited, several times; retry")

    async def latest(self, symbols: Sequence[str], as_of: date) -> LatestScores:
        """Each symbol's newest window as of the market day ``as_of``, scored, in the order given.

        A symbol without a complete window (too little history, no prices)
        comes back ``"unscored"`` with the reason, rather than failing the others.

        Raises
        ------
        ModelUnavailableError
            When no model is loaded.
        """
        self._ensure_poller()
        unique = list(dict.fromkeys(str(symbol).upper() for symbol in symbols))
        for _ in range(MAX_ATTEMPTS):
            model = self._model()
            built = await asyncio.to_thread(self._latest_windows, model, unique, as_of)
            ready = [window for window in built.values() if isinstance(window, LatestWindow)]
            errors: npt.NDArray[np.float64] | None = np.zeros(0)
            if ready:
                values = np.stack([window.values for window in ready])
                errors = await self._errors(model, values, tuple(window.symbol for window in ready))
            if errors is None:
                continue
            scored = {window.symbol: float(error) for window, error in zip(ready, errors, strict=True)}
            results = []
            for symbol, window in built.items():
                if not isinstance(window, LatestWindow):
                    results.append(
                        SymbolAnomaly(symbol, "unscored", model.version, model.threshold, detail=window)
                    )
                    continue
                error = scored[symbol]
                results.append(
                    SymbolAnomaly(
                        symbol,
                        "scored",
                        model.version,
                        model.threshold,
                        reconstruction_error=error,
                        is_anomaly=error > model.threshold,
                        window_start=window.start,
                        window_end=window.end,
                    )
                )
            return LatestScores(model.version, model.threshold, results)
        raise ModelUnavailableError("the model changed while this request waited, several times; retry")

    def status(self) -> dict[str, Any]:
        """The served and promoted versions, the last load failure and the batching figures."""
        self._ensure_poller()
        return {
            **self._slot.status(),
            "poll_seconds": self._settings.anomaly_poll_seconds,
            "max_batch_size": self._settings.anomaly_max_batch_size,
            "batching": self._stats.as_dict(),
        }

    def metrics(self) -> dict[str, list[Any]]:
        """This replica's operations metrics (batch sizes, inference time) by its source, for the API's
        /metrics; the other replicas' come from Redis (serve_apps/anomaly/replica_metrics.py)."""
        self._ensure_poller()
        return {replica_metrics.source(self._replica): ops_metrics.snapshot()}

    async def reload(self) -> dict[str, Any]:
        """Check the registry now instead of at the next poll (operators, tests); returns :meth:`status`."""
        await asyncio.to_thread(self._slot.refresh)
        return self.status()

    async def check_health(self) -> None:
        """Serve's replica health check: the replica is healthy while it runs; restart a dead poller.

        A missing or broken model is not a reason to restart the replica (a
        restart cannot fix a registry); ``/health`` reports it instead.
        """
        self._ensure_poller()

    # Batching ---------------------------------------------------------------------------------------

    async def _errors(
        self, model: LoadedModel, values: npt.NDArray[np.float32], symbols: tuple[str, ...] | None
    ) -> npt.NDArray[np.float64] | None:
        """Errors of ``values`` through the batch queue, in pieces of at most a batch; ``None`` when stale."""
        size = self._settings.anomaly_max_batch_size
        pieces = [
            _Item(
                values[start : start + size],
                None if symbols is None else symbols[start : start + size],
                model.version,
            )
            for start in range(0, len(values), size)
        ]
        answers = await asyncio.gather(*(self._score_batch(piece) for piece in pieces))
        scored = [answer for answer in answers if not isinstance(answer, _Stale)]
        if len(scored) < len(answers):
            return None
        return np.concatenate(scored) if scored else np.zeros(0)

    # Two batches in flight: while one runs on the model (in a thread, outside the GIL), the next is
    # gathered and scaled, and the previous one's answers go back. Sizes are set from settings in __init__.
    @serve.batch(
        max_batch_size=256, batch_wait_timeout_s=0.005, batch_size_fn=_windows_in, max_concurrent_batches=2
    )
    async def _score_batch(self, items: list[_Item]) -> list[npt.NDArray[np.float64] | _Stale]:
        """One forward pass for the windows of every waiting item prepared for the served model."""
        model = self._slot.current
        fresh = [n for n, item in enumerate(items) if model is not None and item.version == model.version]
        answers: list[npt.NDArray[np.float64] | _Stale] = [_STALE] * len(items)
        if model is None or not fresh:
            return answers
        values = np.concatenate([items[n].values for n in fresh])
        symbols: list[str] | None = None
        if any(items[n].symbols is not None for n in fresh):
            # A window without a symbol gets the statistics of all training days ("" is no symbol).
            symbols = [s for n in fresh for s in (items[n].symbols or ("",) * len(items[n].values))]
        started = time.perf_counter()
        errors = await asyncio.to_thread(model.errors, values, symbols)
        ops_metrics.model_batch(len(values), time.perf_counter() - started)
        self._stats.record(len(values), len(fresh))
        offset = 0
        for n in fresh:
            count = len(items[n].values)
            answers[n] = errors[offset : offset + count]
            offset += count
        return answers

    # Model and polling -----------------------------------------------------------------------------

    def _model(self) -> LoadedModel:
        model = self._slot.current
        if model is None:
            failure = self._slot.failure
            reason = (
                f"version {failure.version} failed to load: {failure.error}"
                if failure
                else f"no version is promoted in {self._slot.registry.uri}"
            )
            raise ModelUnavailableError(f"No anomaly model is loaded: {reason}.")
        return model

    def _latest_windows(
        self, model: LoadedModel, symbols: list[str], as_of: date
    ) -> dict[str, LatestWindow | str]:
        """Each symbol's newest window, or why it has none."""
        built: dict[str, LatestWindow | str] = {}
        for symbol in symbols:
            try:
                built[symbol] = latest_window(
                    self._prices, symbol, model.bundle.spec, model.feature_names, as_of
                )
            except NoWindowError as exc:
                built[symbol] = str(exc)
        return built

    def _ensure_poller(self) -> None:
        """Start the registry poll and the metrics publication on this replica's event loop, again if
        either ever died."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside the event loop (a thread): the next call on the loop starts them
        self._poller = _running(loop, self._poller, self._poll, "poller")
        self._publisher = _running(loop, self._publisher, self._publish, "publisher")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._settings.anomaly_poll_seconds)
            try:
                await asyncio.to_thread(self._slot.refresh)
            except Exception as exc:  # refresh records load failures; nothing may stop the poll
                log.error("anomaly.poll_failed", error=repr(exc))

    async def _publish(self) -> None:
        client = async_redis(self._settings)
        try:
            while True:
                try:
                    await replica_metrics.publish(client, self._replica)
                except Exception as exc:  # Redis away: scrapes miss this replica's figures until it is back
                    log.warning("anomaly.metrics_publish_failed", error=repr(exc))
                await asyncio.sleep(replica_metrics.PUBLISH_INTERVAL_S)
        finally:
            await client.aclose()


def _running(
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[None] | None,
    run: Callable[[], Coroutine[Any, Any, None]],
    role: str,
) -> asyncio.Task[None]:
    """``task`` while it runs; otherwise a new one of ``run``, after logging why the last one ended."""
    if task is not None and not task.done():
        return task
    if task is not None and not task.cancelled():
        with contextlib.suppress(BaseException):
            log.error(f"anomaly.{role}_died", error=repr(task.exception()))
    return loop.create_task(run(), name=f"anomaly-{role}")


def detector_options(settings: Settings) -> dict[str, Any]:
    """Replicas, resources and autoscaling of the detector, from settings.

    Autoscaling is on when ``anomaly_max_replicas`` exceeds ``anomaly_replicas``;
    otherwise the replica count is fixed. ``num_gpus`` is only set when asked
    for, so a CPU-only cluster schedules the replica.
    """
    actor: dict[str, Any] = {"num_cpus": settings.anomaly_num_cpus}
    if settings.anomaly_num_gpus > 0:
        actor["num_gpus"] = settings.anomaly_num_gpus
    options: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": settings.anomaly_max_ongoing_requests,
    }
    if settings.anomaly_max_replicas > settings.anomaly_replicas:
        options["autoscaling_config"] = {
            "min_replicas": settings.anomaly_replicas,
            "initial_replicas": settings.anomaly_replicas,
            "max_replicas": settings.anomaly_max_replicas,
            "target_ongoing_requests": settings.anomaly_target_ongoing_requests,
        }
    else:
        options["num_replicas"] = settings.anomaly_replicas
    return options


def build_detector(overrides: dict[str, Any]) -> Application:
    """The detector bound with ``overrides`` (Settings overrides) and its options from those settings."""
    deployment: Any = AnomalyDetector  # @serve.deployment turns the class into a Deployment
    application: Application = deployment.options(**detector_options(Settings(**overrides))).bind(overrides)
    return application
