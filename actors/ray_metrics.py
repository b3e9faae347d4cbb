"""The platform's metrics through Ray's metrics agent too, for the Ray dashboard's Grafana.

Every process of the platform records into ``prometheus_client`` registries
(``wealthalloc/ops/metrics.py`` in each actor and replica, ``ApiMetrics`` in an
API replica), and ``/metrics`` shows them. An operator who watches the cluster
through the Ray dashboard reads what each node's metrics agent exports
instead; this module copies the same figures there, under the same names (Ray
prefixes ``ray_``: ``ray_wealthalloc_trades_executed_total``) and with the
``source`` label a scrape of ``/metrics`` gives them (``shard-3``,
``broker-gateway``, ``anomaly-<replica>``, ``api-<host>-<pid>``), so the
dashboard's queries read the same in both places. Each process exports only
its own series (Ray adds ``WorkerId``), so a ``sum`` over them is the
cluster's figure.

The copy runs on a daemon thread every :data:`MIRROR_INTERVAL_S`, never on a
request: the recording sites stay one ``prometheus_client`` call, and Ray
exports on its own period anyway (about ten seconds). Counters travel as
their increase since the previous pass (a counter that has not counted yet
as 0, so it exists in Ray from the start), gauges as their value. A histogram's
new observations are replayed bucket by bucket at the bucket's midpoint (the
value Ray's recorder itself reports for a sum), so its buckets and count are
exact and ``histogram_quantile`` reads the same; a pass replays at most
:data:`REPLAY_BUDGET` observations and leaves the rest to the next one, which
bounds what a pass costs under load (about 6 µs an observation).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import ray
from prometheus_client.metrics_core import Metric
from ray.util import metrics as ray_metrics

from wealthalloc.logging import get_logger

log = get_logger(__name__)

MIRROR_INTERVAL_S = 5.0
REPLAY_BUDGET = 20_000
"""Histogram observations one pass replays at most; the remainder waits for the next pass."""


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


_LabelSet = tuple[tuple[str, str], ...]


class RayMetricsMirror:
    """Copies ``prometheus_client`` collectors into ``ray.util.metrics``; see the module docstring.

    ``source`` labels every series whose family has no ``source`` of its own.
    ``refresh`` callables run before each pass, for gauges whose value is read
    rather than recorded (the books a shard holds); one that fails is logged
    and the pass goes on.
    """

    def __init__(
        self,
        collectors: Iterable[Collector] = (),
        *,
        source: str | None = None,
        refresh: Iterable[Callable[[], None]] = (),
        interval_s: float = MIRROR_INTERVAL_S,
    ) -> None:
        self._collectors = list(collectors)
        self._source = source
        self._refresh = list(refresh)
        self._interval_s = interval_s
        self._metrics: dict[str, Any] = {}
        # What was already passed on to Ray: a counter's value, a histogram's observations per bucket.
        self._counted: dict[tuple[int, str, _LabelSet], float] = {}
        self._replayed: dict[tuple[int, str, _LabelSet], list[int]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, *collectors: Collector, refresh: Callable[[], None] | None = None) -> None:
        """Copy ``collectors`` too from the next pass on (one already watched is not copied twice)."""
        with self._lock:
            for collector in collectors:
                if all(known is not collector for known in self._collectors):
                    self._collectors.append(collector)
            if refresh is not None:
                self._refresh.append(refresh)

    def start(self) -> RayMetricsMirror:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ray-metrics-mirror", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval_s + 1)

    def sync(self) -> None:
        """One pass: every collector's families as they stand now, into Ray's metrics."""
        with self._lock:
            for refresh in self._refresh:
                try:
                    refresh()
                except Exception as exc:  # a gauge keeps its last value; the others still go
                    log.warning("ray_metrics_refresh_failed", error=repr(exc))
            budget = REPLAY_BUDGET
            for collector in self._collectors:
                for family in collector.collect():
                    if family.type == "counter":
                        self._counter(id(collector), family)
                    elif family.type == "gauge":
                        self._gauge(family)
                    elif family.type == "histogram":
                        budget = self._histogram(id(collector), family, budget)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.sync()
            except Exception as exc:  # the next pass tries again; the platform never notices
                log.warning("ray_metrics_sync_failed", error=repr(exc))

    # Families -------------------------------------------------------------------------------------

    def _counter(self, source: int, family: Metric) -> None:
        for sample in family.samples:
            if sample.name != family.name + "_total":
                continue  # _created
            key = (source, family.name, _label_set(sample.labels))
            first = key not in self._counted
            increase = sample.value - self._counted.get(key, 0.0)
            self._counted[key] = sample.value
            if increase > 0:
                tags = self._tags(sample.labels)
                self._metric(ray_metrics.Counter, family, tags).inc(increase, tags=tags)
            elif first:
                # A series Ray has never been given does not exist there: a panel or an alert on
                # "trades executed" would read "no data" instead of 0 until the first trade. Ray's
                # Counter.inc refuses 0, so the point is recorded as it records every increment.
                tags = self._tags(sample.labels)
                self._metric(ray_metrics.Counter, family, tags)._record(0.0, tags=tags)

    def _gauge(self, family: Metric) -> None:
        for sample in family.samples:
            tags = self._tags(sample.labels)
            self._metric(ray_metrics.Gauge, family, tags).set(sample.value, tags=tags)

    def _histogram(self, source: int, family: Metric, budget: int) -> int:
        cumulative: dict[_LabelSet, list[tuple[float, float]]] = {}
        for sample in family.samples:
            if sample.name == family.name + "_bucket":
                labels = _label_set({k: v for k, v in sample.labels.items() if k != "le"})
                cumulative.setdefault(labels, []).append((float(sample.labels["le"]), sample.value))
        for labels, buckets in cumulative.items():
            buckets.sort()
            bounds = [bound for bound, _ in buckets if not math.isinf(bound)]
            if not bounds or bounds[0] <= 0:
                continue  # Ray takes positive boundaries only
            totals = [total for _, total in buckets]
            counts = [int(total - below) for total, below in zip(totals, [0.0, *totals[:-1]], strict=True)]
            key = (source, family.name, labels)
            replayed = self._replayed.setdefault(key, [0] * len(counts))
            tags = self._tags(dict(labels))
            histogram = self._metric(ray_metrics.Histogram, family, tags, boundaries=bounds)
            for index, count in enumerate(counts):
                due = min(count - replayed[index], budget)
                if due <= 0:
                    continue
                value = _inside_bucket(bounds, index)
                for _ in range(due):
                    histogram.observe(value, tags=tags)
                replayed[index] += due
                budget -= due
        return budget

    def _tags(self, labels: dict[str, str]) -> dict[str, str]:
        if self._source is None or "source" in labels:
            return dict(labels)
        return {**labels, "source": self._source}

    def _metric(self, kind: Any, family: Metric, labels: dict[str, str], **options: Any) -> Any:
        metric = self._metrics.get(family.name)
        if metric is None:
            metric = kind(family.name, family.documentation, tag_keys=tuple(labels), **options)
            self._metrics[family.name] = metric
        return metric


def _label_set(labels: dict[str, str]) -> _LabelSet:
    return tuple(sorted(labels.items()))


def _inside_bucket(bounds: list[float], index: int) -> float:
    """A value that falls in bucket ``index``: its midpoint, or twice the last bound for ``+Inf``."""
    if index >= len(bounds):
        return bounds[-1] * 2
    lower = bounds[index - 1] if index else 0.0
    return (lower + bounds[index]) / 2


_process_mirror: RayMetricsMirror | None = None
_process_lock = threading.Lock()


def export_through_ray(
    *collectors: Collector, source: str, refresh: Callable[[], None] | None = None
) -> RayMetricsMirror | None:
    """This process's mirror, started on the first call and watching ``collectors`` from now on;
    ``source`` names the process as ``/metrics`` does (the first call's name stays).

    Outside Ray (a test that builds an app in-process) there is no metrics
    agent to export to, and nothing is started.
    """
    global _process_mirror
    if not ray.is_initialized():
        return None
    with _process_lock:
        if _process_mirror is None:
            _process_mirror = RayMetricsMirror(source=source).start()
        _process_mirror.watch(*collectors, refresh=refresh)
        return _process_mirror
