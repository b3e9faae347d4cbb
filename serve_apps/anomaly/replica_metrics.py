"""Every detector replica's operations metrics, where each API replica's ``/metrics`` finds them.

A call through the detector's ``DeploymentHandle`` reaches the one replica
Serve picks: asked that way alone, a scrape would report a different
replica's counters each time (a counter that jumps up and down) and never
the others'. So each replica writes its own figures to Redis every
:data:`PUBLISH_INTERVAL_S` under a key of its own that expires after
:data:`TTL_S` (a replica scaled down or lost leaves the scrape by itself),
and a scrape reads them all, each labelled ``source="anomaly-<replica>"``;
the replica the scrape's own call reaches replaces its entry with figures of
that moment. The figures travel in Prometheus's text format, which a reader
parses: nothing read from Redis is ever unpickled.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from wealthalloc.ops import metrics as ops_metrics

KEY_PREFIX = "metrics:anomaly:"
PUBLISH_INTERVAL_S = 5.0
TTL_S = 3 * int(PUBLISH_INTERVAL_S)
"""Three missed publications and a replica is taken for gone."""


def replica_name() -> str:
    """This replica's Serve id; host and pid where the detector runs outside Serve (a test)."""
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # RayServeException outside a replica
        return f"{socket.gethostname()}-{os.getpid()}"


def source(replica: str) -> str:
    return f"anomaly-{replica}"


async def publish(client: Any, replica: str) -> None:
    """Write this process's operations metrics under ``replica``'s key, to expire unless renewed."""
    await client.set(KEY_PREFIX + replica, generate_latest(ops_metrics.REGISTRY), ex=TTL_S)


async def published(client: Any) -> dict[str, list[Metric]]:
    """The figures every live replica last wrote, by ``source``."""
    keys = [key async for key in client.scan_iter(match=KEY_PREFIX + "*", count=100)]
    if not keys:
        return {}
    values = await client.mget(keys)
    found: dict[str, list[Metric]] = {}
    for key, value in zip(keys, values, strict=True):
        if value is None:
            continue  # expired between SCAN and MGET
        name = (key.decode() if isinstance(key, bytes) else str(key)).removeprefix(KEY_PREFIX)
        text = value.decode() if isinstance(value, bytes) else str(value)
        found[source(name)] = list(text_string_to_metric_families(text))
    return found
