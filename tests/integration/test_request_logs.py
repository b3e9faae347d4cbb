"""A request's log lines are JSON that name the request, the person who made it and its trace,
and never a password or a token.

The API runs in this process (real PostgreSQL and Redis) so that what its loggers write can be
captured; spans go to the SDK's in-memory exporter.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from serve_apps.api.app import create_app
from serve_apps.api.deps import CurrentPrincipal
from serve_apps.api.envelope import success
from tests.integration.people import PASSWORD, Investor
from wealthalloc.config import Settings
from wealthalloc.logging import get_logger
from wealthalloc.ops import tracing

pytestmark = pytest.mark.integration


def _probe_router() -> APIRouter:
    router = APIRouter()

    @router.get("/probe/as-user")
    async def as_user(request: Request, principal: CurrentPrincipal):  # type: ignore[no-untyped-def]
        get_logger("probe").info("probe_as_user")
        return success(request, {"ok": True})

    return router


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()


@pytest.fixture
def client(spans: InMemorySpanExporter, api_settings: dict[str, Any], redis_url: str) -> Iterator[TestClient]:
    settings = Settings(**{**api_settings, "redis_url": redis_url, "log_level": "INFO", "log_format": "json"})
    app = create_app(settings, extra_routers=[_probe_router()])
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Whatever the JSON renderer writes, captured beside stderr."""
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def test_a_signed_in_request_logs_its_request_id_user_id_and_trace_id(
    client: TestClient, spans: InMemorySpanExporter, log_lines: io.StringIO, database_url: str
) -> None:
    investor = Investor(client, database_url)
    response = investor.get("/probe/as-user")
    assert response.status_code == 200, response.text

    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.startswith("{")]
    line = next(line for line in lines if line.get("event") == "probe_as_user")
    span = next(span for span in spans.get_finished_spans() if span.name == "GET /probe/as-user")
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["user_id"] == investor.id
    assert line["trace_id"] == format(span.context.trace_id, "032x")

    # Signing up and in logged lines too; none holds the password or the bearer token.
    token = investor.headers["Authorization"].removeprefix("Bearer ")
    assert PASSWORD not in log_lines.getvalue() and token not in log_lines.getvalue()


def test_the_user_id_does_not_outlive_its_request(
    client: TestClient, log_lines: io.StringIO, database_url: str
) -> None:
    investor = Investor(client, database_url)
    assert investor.get("/probe/as-user").status_code == 200
    assert client.get("/probe/as-user").status_code == 401  # anonymous: credentials missing
    get_logger("probe").info("probe_after_requests")
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.startswith("{")]
    assert "user_id" not in next(line for line in lines if line.get("event") == "probe_after_requests")
