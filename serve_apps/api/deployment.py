"""The API as a Ray Serve application, composed with the anomaly detector.

``build`` is the application builder that ``serve deploy cluster/serve-config.yaml``
and ``serve.run`` call; its ``args`` override settings for this application
only (tests use that to point a deployment at their own database). It binds
the ``AnomalyDetector`` deployment and hands it to the ingress, so Serve
passes the ingress a ``DeploymentHandle`` to it (deployment composition): the
API scores through the detector's batch queue instead of loading a model in
every API replica, and the two scale separately.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from actors.ray_metrics import export_through_ray
from serve_apps.anomaly.deployment import build_detector
from serve_apps.api.app import create_app
from serve_apps.api.health import CHECK_TIMEOUT_S, refresh_gauges
from serve_apps.api.metrics import API_SOURCE
from serve_apps.api.proxy import answer_unparsable_requests_in_json
from serve_apps.api.resources import Resources
from wealthalloc.config import Settings
from wealthalloc.ops import metrics as ops_metrics


@serve.deployment(name="ApiIngress", max_ongoing_requests=200, health_check_period_s=10)
@serve.ingress()
class ApiIngress:
    def __init__(self, overrides: dict[str, Any], anomaly: DeploymentHandle[Any] | None = None) -> None:
        self._settings = Settings(**overrides)
        self._anomaly = anomaly
        # This replica's own HTTP server (HAProxy's backend) answers unparsable requests in the
        # envelope even where Serve's proxy callback is not configured (serve_apps/api/proxy.py).
        answer_unparsable_requests_in_json()

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = create_app(self._settings, behind_serve=True)
        resources: Resources = app.state.resources
        resources.anomaly = self._anomaly
        # The replica's own metrics and the operations metrics it records, in Ray's dashboard too,
        # with the gauges a scrape would set refreshed on this replica's event loop.
        refresh = _gauge_refresher(resources, asyncio.get_running_loop())
        export_through_ray(
            ops_metrics.REGISTRY, resources.metrics.registry, source=API_SOURCE, refresh=refresh
        )
        return app


GAUGE_REFRESH_S = 15.0
"""How often, at most, the copy into Ray's metrics runs the health checks behind the gauges."""


def _gauge_refresher(resources: Resources, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """A refresh for the mirror's thread: :func:`refresh_gauges` on the replica's loop, waited for,
    every :data:`GAUGE_REFRESH_S` at most, once the replica's pools are open."""
    last = -math.inf

    def refresh() -> None:
        nonlocal last
        if resources.pool is None or time.monotonic() - last < GAUGE_REFRESH_S:
            return
        last = time.monotonic()
        asyncio.run_coroutine_threadsafe(refresh_gauges(resources), loop).result(timeout=3 * CHECK_TIMEOUT_S)

    return refresh


def build(args: dict[str, Any] | None = None) -> Application:
    """The platform's API app, as ``serve run serve_apps.api.deployment:build`` names it.

    Serve calls an app builder with exactly one argument, so the choices tests need beside it
    live in ``compose``.
    """
    return compose(args)


def compose(args: dict[str, Any] | None = None, *, detector: bool = True) -> Application:
    """The API app; ``detector=False`` leaves out the anomaly detector deployment (its model check
    then fails, its routes answer 503): for an app beside the platform's that needs no model."""
    overrides = dict(args or {})
    replicas = int(overrides.pop("num_replicas", 0) or Settings(**overrides).api_replicas)
    deployment: Any = ApiIngress  # @serve.deployment turns the class into a Deployment
    application: Application = deployment.options(num_replicas=replicas).bind(
        overrides, build_detector(overrides) if detector else None
    )
    return application
