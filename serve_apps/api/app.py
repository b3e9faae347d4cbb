"""The FastAPI application behind the Ray Serve ingress.

``create_app`` builds the whole HTTP surface from a ``Settings``: middleware,
the error envelope, operations routes and the versioned API. The same app runs
under Serve in production and under a plain ASGI test client in unit tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from serve_apps.api import health
from serve_apps.api.errors import install_error_handlers
from serve_apps.api.metrics import CONTENT_TYPE_LATEST
from serve_apps.api.middleware import RequestContextMiddleware
from serve_apps.api.resources import Resources
from serve_apps.api.routes import (
    admin,
    advisors,
    alerts,
    api_keys,
    auth,
    intelligence,
    market,
    me,
    portfolios,
    quotes,
    recommendations,
    tax,
    trades,
    webhooks,
)
from wealthalloc.config import VERSION, Settings
from wealthalloc.logging import configure_logging

WEB_DIR = Path(__file__).resolve().parents[2] / "web"

API_DESCRIPTION = """
Portfolios and tax lots, valuation and performance, trading through a paper
broker or Interactive Brokers, tax-loss harvesting under the wash-sale rule,
and anomaly detection. Money and quantities are decimal strings; every
response carries `X-Request-ID`; errors use one envelope.
"""


def create_app(
    settings: Settings, *, extra_routers: Sequence[APIRouter] = (), behind_serve: bool = False
) -> FastAPI:
    configure_logging(settings.log_level, settings.log_format)
    resources = Resources(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await resources.open()
        try:
            yield
        finally:
            await resources.close()

    app = FastAPI(
        title="WealthAlloc API",
        version=VERSION,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.resources = resources
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=resources.metrics,
        max_body_bytes=settings.max_body_bytes,
        behind_serve=behind_serve,
    )

    app.include_router(health.router)
    app.include_router(_operations_router())
    for module in (
        auth,
        me,
        api_keys,
        advisors,
        portfolios,
        trades,
        tax,
        webhooks,
        alerts,
        admin,
        market,
        quotes,
        intelligence,
        recommendations,
    ):
        app.include_router(module.router)
    for router in extra_routers:
        app.include_router(router)
    return app


def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", summary="Prometheus metrics of this replica", response_class=Response)
    async def metrics(request: Request) -> Response:
        res: Resources = request.app.state.resources
        return Response(res.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/", include_in_schema=False, response_model=None)
    async def index() -> Response:
        page = WEB_DIR / "index.html"
        if page.is_file():
            return FileResponse(page)
        return RedirectResponse("/docs")

    return router
