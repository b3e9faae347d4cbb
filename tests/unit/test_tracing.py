"""Tracing: off and free unless configured; when on, one span per request that continues a
caller's trace, a context that crosses a process boundary as W3C headers, and log lines that
name the trace they were written in. Spans are read from the SDK's in-memory exporter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from serve_apps.api.app import create_app
from serve_apps.api.envelope import success
from wealthalloc.config import Settings
from wealthalloc.logging import get_logger
from wealthalloc.ops import tracing
from wealthalloc.storage.postgres import TracedCursor, async_pool
from wealthalloc.storage.redis_client import TracedRedis, async_redis

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for one test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url="postgresql://postgres@127.0.0.1:1/none",
        redis_url="redis://127.0.0.1:1/0",
        **overrides,  # type: ignore[arg-type]
    )


def _probe_router() -> APIRouter:
    router = APIRouter()

    @router.get("/probe/logged")
    async def logged(request: Request):  # type: ignore[no-untyped-def]
        get_logger("probe").warning("probe_inside_request")
        return success(request, {"ok": True})

    @router.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    return router


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(_settings(tmp_path, log_level="INFO"), extra_routers=[_probe_router()])
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


def _named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


# Off ------------------------------------------------------------------------------------------------


def test_without_an_endpoint_nothing_is_traced_and_the_clients_are_the_plain_ones(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.otlp_endpoint == ""
    assert tracing.configure_tracing(settings, "test") is False
    assert not tracing.enabled()
    assert tracing.carrier() is None
    with tracing.span("nothing") as current:
        assert current is None
    assert type(async_redis(settings)) is aioredis.Redis
    assert "cursor_factory" not in async_pool(settings).kwargs


def test_an_endpoint_is_completed_with_the_traces_path() -> None:
    assert (
        tracing.traces_url(Settings(otlp_endpoint="http://collector:4318"))
        == "http://collector:4318/v1/traces"
    )
    given = Settings(otlp_endpoint="http://collector:4318/v1/traces/")
    assert tracing.traces_url(given) == "http://collector:4318/v1/traces"


# On -------------------------------------------------------------------------------------------------


def test_while_tracing_the_storage_clients_are_built_traced(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    assert isinstance(async_redis(settings), TracedRedis)
    assert async_pool(settings).kwargs["cursor_factory"] is TracedCursor


def test_a_request_is_one_server_span_named_by_its_route(
    spans: InMemorySpanExporter, client: TestClient
) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200
    span = _named(spans, "GET /health/live")
    assert span.kind == SpanKind.SERVER and span.parent is None
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/health/live"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["request_id"] == response.headers["x-request-id"]


def test_a_request_continues_the_trace_its_caller_sent(
    spans: InMemorySpanExporter, client: TestClient
) -> None:
    client.get("/health/live", headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    span = _named(spans, "GET /health/live")
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN


def test_a_server_error_marks_the_span_as_failed(spans: InMemorySpanExporter, client: TestClient) -> None:
    assert client.get("/probe/crash").status_code == 500
    span = _named(spans, "GET /probe/crash")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 500


def test_a_context_crosses_to_another_process_as_w3c_headers(spans: InMemorySpanExporter) -> None:
    with tracing.span("shard place_order", kind=SpanKind.CLIENT):
        headers = tracing.carrier()
    assert headers is not None and set(headers) == {"traceparent"}
    # What the actor does with them, in its own process: a child of the caller's client span.
    with tracing.continued(headers, "PortfolioShard.place_order"):
        pass
    client_span = _named(spans, "shard place_order")
    server_span = _named(spans, "PortfolioShard.place_order")
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.parent is not None and server_span.parent.span_id == client_span.context.span_id
    assert server_span.kind == SpanKind.SERVER


def test_no_headers_start_a_trace_of_their_own(spans: InMemorySpanExporter) -> None:
    with tracing.continued(None, "BrokerGateway.submit"):
        pass
    assert _named(spans, "BrokerGateway.submit").parent is None


# Logs -----------------------------------------------------------------------------------------------


def test_a_log_line_inside_a_request_names_its_request_trace_and_span(
    spans: InMemorySpanExporter, client: TestClient, log_lines: io.StringIO
) -> None:
    response = client.get("/probe/logged")
    assert response.status_code == 200
    line = next(json.loads(x) for x in log_lines.getvalue().splitlines() if "probe_inside_request" in x)
    span = _named(spans, "GET /probe/logged")
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert line["span_id"] == format(span.context.span_id, "016x")


def test_without_tracing_a_log_line_keeps_its_request_id_and_names_no_trace(
    client: TestClient, log_lines: io.StringIO
) -> None:
    response = client.get("/probe/logged")
    line = next(json.loads(x) for x in log_lines.getvalue().splitlines() if "probe_inside_request" in x)
    assert line["request_id"] == response.headers["x-request-id"]
    assert "trace_id" not in line and "span_id" not in line


def test_a_log_line_outside_a_request_carries_no_request_id(
    client: TestClient, log_lines: io.StringIO
) -> None:
    client.get("/probe/logged")
    get_logger("probe").warning("probe_outside_request")
    line = next(json.loads(x) for x in log_lines.getvalue().splitlines() if "probe_outside_request" in x)
    assert "request_id" not in line
