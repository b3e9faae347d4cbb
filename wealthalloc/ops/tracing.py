"""OpenTelemetry traces: one trace per request, across the API replica, the actors it calls,
PostgreSQL, Redis and the broker gateway.

Off unless ``otlp_endpoint`` is set. Off means no tracer at all: :func:`span` hands back a
shared do-nothing context manager and :func:`carrier` ``None``, so the request path pays one
global read per site, and the storage clients are built without their tracing wrappers.

The tracer provider is this module's own rather than OpenTelemetry's global one: the global
can be set once per process, and tests swap in an in-memory exporter (:func:`install`).
Context crosses a Ray actor call as a W3C ``traceparent`` in a small dict (:func:`carrier`
on the caller's side, :func:`continued` in the actor).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from wealthalloc.config import VERSION, Settings

__all__ = [
    "SpanKind",
    "carrier",
    "configure_tracing",
    "continued",
    "current_ids",
    "enabled",
    "install",
    "span",
    "uninstall",
]

_NOOP: AbstractContextManager[None] = nullcontext()
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None


def configure_tracing(settings: Settings, service: str) -> bool:
    """Export this process's spans to ``settings.otlp_endpoint``; does nothing when it is empty or
    tracing already runs here (a Ray worker process can host several actors)."""
    if not settings.otlp_endpoint or _tracer is not None:
        return _tracer is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": VERSION}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(settings))))
    install(provider)
    return True


def traces_url(settings: Settings) -> str:
    """The collector's traces path; an endpoint given with its path already is kept as it is."""
    endpoint = settings.otlp_endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def install(provider: TracerProvider) -> None:
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("wealthalloc", VERSION)


def uninstall() -> None:
    """Back to no tracing (tests); spans still queued are flushed first."""
    global _tracer, _provider
    if _provider is not None:
        _provider.force_flush()
    _tracer = _provider = None


def enabled() -> bool:
    return _tracer is not None


def span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Any]:
    """A child of the current span, made current; a no-op when tracing is off."""
    if _tracer is None:
        return _NOOP
    return _tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def carrier() -> dict[str, str] | None:
    """The current span's context as W3C headers, for a call into another process; ``None`` when
    tracing is off or no span is current (the callee then starts nothing)."""
    if _tracer is None:
        return None
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers or None


@contextmanager
def continued(
    headers: Mapping[str, str] | None,
    name: str,
    *,
    kind: SpanKind = SpanKind.SERVER,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """A span that continues the trace ``headers`` carry (from :func:`carrier` or an HTTP request);
    a new trace when they carry none, nothing at all when tracing is off here."""
    if _tracer is None:
        yield None
        return
    parent = propagate.extract(dict(headers or {}))
    with _tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as current:
        yield current


def current_ids() -> tuple[str, str] | None:
    """The current span's trace and span ids in their hex form (as collectors show them), if any."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
