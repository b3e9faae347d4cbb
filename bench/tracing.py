"""What tracing costs a request: the API's middleware and a route, with tracing off and on.

Requests go straight into the ASGI app (no socket, no server), so the figures are the
app's own time per request: ``off`` is the default (no OTLP endpoint: no tracer at all),
``on`` is a tracer with the batch span processor that production uses, feeding an
exporter that drops the spans (the export itself runs on the processor's own thread).
Then the cost of one span and of one W3C carrier for an actor call, on and off. Prints a
line per figure, then, as the last line, one JSON object of the figures.

    .venv/bin/python bench/tracing.py [--requests 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _support import print_figures  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from serve_apps.api.app import create_app  # noqa: E402
from wealthalloc.config import Settings  # noqa: E402
from wealthalloc.ops import tracing  # noqa: E402

PATH = "/health/live"


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"user-agent", b"bench/tracing")],
        "client": ("127.0.0.1", 40000),
        "server": ("bench", 80),
    }


async def _per_request(app: Any, count: int) -> float:
    """Seconds per request, each one whole through the middleware, the router and the route."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(count):
        await app(_scope(), receive, send)
    elapsed = time.perf_counter() - started
    assert set(statuses) == {200}, set(statuses)
    return elapsed / count


def _span_cost(count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        with tracing.span("bench"):
            pass
    return (time.perf_counter() - started) / count


def _carrier_cost(count: int) -> float:
    with tracing.span("bench parent"):
        started = time.perf_counter()
        for _ in range(count):
            tracing.carrier()
        return (time.perf_counter() - started) / count


def _measure(app: Any, requests: int, rounds: int) -> dict[str, float]:
    asyncio.run(_per_request(app, requests // 4))  # warm-up: the middleware stack is built on first use
    per_request = [asyncio.run(_per_request(app, requests)) for _ in range(rounds)]
    return {
        "request_us": statistics.median(per_request) * 1e6,
        "span_us": statistics.median(_span_cost(requests) for _ in range(rounds)) * 1e6,
        "carrier_us": statistics.median(_carrier_cost(requests) for _ in range(rounds)) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            database_url="postgresql://postgres@127.0.0.1:1/none",
            redis_url="redis://127.0.0.1:1/0",
            log_level="WARNING",
        )
        app = create_app(settings)
        tracing.uninstall()
        off = _measure(app, args.requests, args.rounds)
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=65_536))
        tracing.install(provider)
        try:
            on = _measure(app, args.requests, args.rounds)
        finally:
            tracing.uninstall()
            provider.shutdown()

    overhead = on["request_us"] - off["request_us"]
    print(f"request through the app, tracing off: {off['request_us']:.1f} us")
    print(f"request through the app, tracing on:  {on['request_us']:.1f} us (+{overhead:.1f} us)")
    print(f"one span: off {off['span_us'] * 1000:.0f} ns, on {on['span_us']:.2f} us")
    print(
        f"one carrier for an actor call: off {off['carrier_us'] * 1000:.0f} ns, on {on['carrier_us']:.2f} us"
    )
    print_figures(
        {
            "requests": args.requests,
            "rounds": args.rounds,
            "request_off_us": off["request_us"],
            "request_on_us": on["request_us"],
            "request_overhead_us": overhead,
            "span_off_ns": off["span_us"] * 1000,
            "span_on_us": on["span_us"],
            "carrier_off_ns": off["carrier_us"] * 1000,
            "carrier_on_us": on["carrier_us"],
        }
    )


if __name__ == "__main__":
    main()
