"""Operations metrics recorded where things happen, in whichever process that is.

A fill is applied in a shard actor, a batch is scored in a detector replica,
a registration in an API replica: each process records into its own
:data:`REGISTRY` here with one line at the site. An API replica's ``/metrics``
then asks each actor for :func:`snapshot` and shows them all, each series
labelled with the ``source`` it came from (``serve_apps/api/metrics.py``), so
one scrape sees the cluster. Plain ``prometheus_client`` objects, no Ray: the
domain code that records here runs the same in a test without a cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

REGISTRY = CollectorRegistry(auto_describe=True)

# Business ------------------------------------------------------------------------------------------

TRADES_EXECUTED = Counter(
    "wealthalloc_trades_executed",
    "Fills applied to the books, by side (buy, sell) and broker (paper, ibkr).",
    ["side", "broker"],
    registry=REGISTRY,
)
TAX_SAVINGS_HARVESTED = Counter(
    "wealthalloc_tax_savings_harvested_dollars",
    "Estimated tax savings of the harvests executed, in dollars.",
    registry=REGISTRY,
)
RECOMMENDATIONS_DECIDED = Counter(
    "wealthalloc_recommendations_decided",
    "Recommendations a person accepted or dismissed.",
    ["decision"],
    registry=REGISTRY,
)
REGISTRATIONS = Counter(
    "wealthalloc_registrations",
    "Investor accounts created.",
    registry=REGISTRY,
)

# Portfolio shards ----------------------------------------------------------------------------------

SHARD_BOOKS_CACHED = Gauge(
    "wealthalloc_shard_books_cached",
    "Users' books held in a shard's memory.",
    registry=REGISTRY,
)
SHARD_EVICTIONS = Counter(
    "wealthalloc_shard_evictions",
    "Books dropped from a shard's memory, by reason (lru: over shard_max_books, idle: unused).",
    ["reason"],
    registry=REGISTRY,
)
SHARD_LOCK_WAIT = Histogram(
    "wealthalloc_shard_lock_wait_seconds",
    "Time a call waited for its user's lock in a shard (the single-writer queue).",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
SHARD_COMMIT_GROUP = Histogram(
    "wealthalloc_shard_commit_group_changes",
    "Changes committed together in one transaction by a shard's group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
SHARD_CALLS = Histogram(
    "wealthalloc_shard_call_seconds",
    "Calls to the portfolio shards by method, as the caller (API replica, gateway) timed them.",
    ["method"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)

# Model ---------------------------------------------------------------------------------------------

MODEL_BATCH_SIZE = Histogram(
    "wealthalloc_model_batch_windows",
    "Windows scored in one forward pass of the anomaly model (the size of a @serve.batch).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
MODEL_INFERENCE = Histogram(
    "wealthalloc_model_inference_seconds",
    "Time of one forward pass of the anomaly model over a batch.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)


def trades_executed(side: str, broker: str, fills: int = 1) -> None:
    if fills:
        TRADES_EXECUTED.labels(side, broker).inc(fills)


def harvest_executed(estimated_tax_savings: Decimal | float | None) -> None:
    # A float is exact enough for a dashboard; the dollars of record stay NUMERIC in tax_harvests.
    TAX_SAVINGS_HARVESTED.inc(max(0.0, float(estimated_tax_savings or 0)))


def recommendation_decided(decision: str) -> None:
    RECOMMENDATIONS_DECIDED.labels(decision).inc()


def model_batch(windows: int, seconds: float) -> None:
    MODEL_BATCH_SIZE.observe(windows)
    MODEL_INFERENCE.observe(seconds)


class TimedLock:
    """An ``asyncio.Lock`` whose acquisition is timed into :data:`SHARD_LOCK_WAIT`."""

    __slots__ = ("_lock",)

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def __aenter__(self) -> None:
        started = time.perf_counter()
        await self._lock.acquire()
        SHARD_LOCK_WAIT.observe(time.perf_counter() - started)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()


def snapshot() -> list[Metric]:
    """This process's families as they stand, to travel to an API replica (they pickle)."""
    return list(REGISTRY.collect())


class Snapshots:
    """Families from several processes as one collector: each sample gains a ``source`` label, and a
    family that several sources report is written once (Prometheus refuses a name declared twice)."""

    def __init__(self, sources: Mapping[str, Iterable[Metric]]) -> None:
        families: dict[str, Metric] = {}
        for source, metrics in sources.items():
            for metric in metrics:
                family = families.get(metric.name)
                if family is None:
                    family = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                    families[metric.name] = family
                family.samples.extend(
                    sample._replace(labels={**sample.labels, "source": source}) for sample in metric.samples
                )
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families.values()
