"""The FastAPI application behind the Ray Serve ingress.

``create_app`` builds the whole HTTP surface from a ``Settings``: middleware,
the error envelope, operations routes and the versioned API. The same app runs
under Serve in production and under a plain ASGI test client in unit tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

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
    households,
    intelligence,
    learn,
    linked_accounts,
    market,
    me,
    notifications,
    portfolios,
    quotes,
    recommendations,
    stream,
    tax,
    tax_years,
    trades,
    webhooks,
)
from wealthalloc.config import VERSION, Settings
from wealthalloc.logging import configure_logging
from wealthalloc.ops.tracing import configure_tracing

WEB_DIR = Path(__file__).resolve().parents[2] / "web"

# The dashboard's scripts and styles are files under web/ (served at /static/), never inline, so the
# page's policy allows no inline script at all: injected markup cannot run.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Swagger UI (vendored under web/vendor/swagger-ui) sets style attributes in the markup it renders.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>WealthAlloc API - Swagger UI</title>
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="/openapi.json"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""

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
    configure_tracing(settings, "wealthalloc-api")  # before the pools and clients: they are built traced
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
        docs_url=None,  # served below from the vendored Swagger UI, not from a CDN
        redoc_url=None,
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
    app.mount("/static", StaticFiles(directory=WEB_DIR, check_dir=False), name="static")
    app.include_router(_operations_router())
    for module in (
        auth,
        me,
        api_keys,
        advisors,
        portfolios,
        trades,
        tax,
        tax_years,
        households,
        webhooks,
        alerts,
        admin,
        market,
        quotes,
        intelligence,
        recommendations,
        stream,
        notifications,
        linked_accounts,
        learn,
    ):
        app.include_router(module.router)
    for router in extra_routers:
        app.include_router(router)
    return app


def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics of this replica (admin or the operations token)",
        response_class=Response,
        dependencies=[Depends(health.require_operator)],
    )
    async def metrics(request: Request) -> Response:
        res: Resources = request.app.state.resources
        # The checks run now, so the health, broker and lag gauges a scrape reads are this scrape's
        # (each check has its own timeout), not whatever the last /health call happened to see.
        return Response(await health.scrape(res), media_type=CONTENT_TYPE_LATEST)

    @router.get("/", include_in_schema=False, response_model=None)
    async def index() -> Response:
        page = WEB_DIR / "index.html"
        if page.is_file():
            return FileResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})
        return RedirectResponse("/docs")

    @router.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE, headers={"Content-Security-Policy": DOCS_POLICY})

    return router
