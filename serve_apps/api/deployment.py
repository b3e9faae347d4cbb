"""The API as a Ray Serve application.

``build`` is the application builder that ``serve deploy cluster/serve-config.yaml``
and ``serve.run`` call; its ``args`` override settings for this application
only (tests use that to point a deployment at their own database).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from serve_apps.api.app import create_app
from wealthalloc.config import Settings


@serve.deployment(name="ApiIngress", max_ongoing_requests=200, health_check_period_s=10)
@serve.ingress()
class ApiIngress:
    def __init__(self, overrides: dict[str, Any]) -> None:
        self._settings = Settings(**overrides)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self._settings, behind_serve=True)


def build(args: dict[str, Any] | None = None) -> Application:
    overrides = dict(args or {})
    replicas = int(overrides.pop("num_replicas", 0) or Settings(**overrides).api_replicas)
    deployment: Any = ApiIngress  # @serve.deployment turns the class into a Deployment
    application: Application = deployment.options(num_replicas=replicas).bind(overrides)
    return application
