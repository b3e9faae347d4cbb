"""A small HTTP/1.1 load generator on raw asyncio streams, for the benchmarks in this folder.

httpx spends more CPU per request than the servers measured here, so a
benchmark driven by it measures the client. This client pre-encodes each
request, keeps connections alive and parses only the status line and
Content-Length, which makes it several times cheaper per request; it still
shares the machine's cores with the servers, so figures are comparable only
side by side within one run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, int(len(ordered) * 0.99) - 1)]

    def line(self, label: str) -> str:
        return f"{label} {self.rate:,.0f} req/s p50 {self.p50:.1f} ms p99 {self.p99:.1f} ms"

    def figures(self, unit: str = "req", prefix: str = "") -> dict[str, float]:
        """Rate and latencies for a bench's JSON line: ``{prefix}{unit}_per_s``, ``{prefix}p50_ms``..."""
        return {f"{prefix}{unit}_per_s": self.rate, f"{prefix}p50_ms": self.p50, f"{prefix}p99_ms": self.p99}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: object = None
    fresh_idempotency_key: bool = False

    def encode(self, host: str) -> bytes:
        payload = b"" if self.body is None else json.dumps(self.body).encode()
        headers = {"Host": host, "Connection": "keep-alive", **self.headers}
        if self.fresh_idempotency_key:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(payload))
        head = f"{self.method} {self.path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        return head.encode() + b"\r\n" + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (Content-Length or chunked)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        lowered = name.strip().lower()
        if lowered == "content-length":
            length = int(value.strip())
        elif lowered == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length) if length else b""
    parts = []
    while True:
        size = int((await reader.readline()).strip(), 16)
        parts.append((await reader.readexactly(size + 2))[:-2])
        if size == 0:
            return status, b"".join(parts)


async def run(
    url: str,
    requests: Sequence[Request] | Callable[[int], Request],
    *,
    seconds: float,
    clients: int,
    ok: Callable[[int], bool] = lambda status: status < 400,
) -> Result:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    def request_for(n: int, i: int) -> Request:
        if callable(requests):
            return requests(n + i)
        return requests[n % len(requests)]

    async def client(n: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        i = 0
        try:
            while time.perf_counter() < deadline:
                request = request_for(n, i)
                i += 1
                started = time.perf_counter()
                writer.write(request.encode(f"{host}:{port}"))
                await writer.drain()
                status, _ = await read_response(reader)
                latencies.append((time.perf_counter() - started) * 1000)
                if not ok(status):
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return Result(len(latencies), time.perf_counter() - started, latencies, errors)


def market_buy(symbols: Sequence[str]) -> Callable[[str, dict[str, str], int], Request]:
    """Request i buys one share at market of ``symbols[i]`` in turn, each under a fresh key."""

    def make(portfolio_id: str, headers: dict[str, str], i: int) -> Request:
        body = {
            "portfolio_id": portfolio_id,
            "symbol": symbols[i % len(symbols)],
            "side": "buy",
            "quantity": "1",
            "order_type": "market",
        }
        return Request("POST", "/api/v1/trades", headers, body, fresh_idempotency_key=True)

    return make


async def per_investor(
    url: str,
    people: Sequence[tuple[str, dict[str, str]]],
    make: Callable[[str, dict[str, str], int], Request],
    counted: Callable[[int, bytes], bool],
    *,
    seconds: float,
    clients: int,
    answer_timeout_s: float = 60.0,
) -> Result:
    """One operation at a time per client until time is up, client n acting for investor n, so
    clients do not queue on each other's user lock while there are as many investors.

    ``make(portfolio_id, headers, i)`` is the client's i-th request; ``counted(status, body)`` says
    whether its answer is an operation the bench counts (only those give latencies), and keeps
    whatever else the bench wants to know of the answers.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    not_counted = 0
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal not_counted
        portfolio_id, headers = people[n % len(people)]
        reader, writer = await asyncio.open_connection(host, port)
        i = n
        try:
            while time.perf_counter() < deadline:
                request = make(portfolio_id, headers, i)
                i += 1
                started = time.perf_counter()
                writer.write(request.encode(f"{host}:{port}"))
                await writer.drain()
                status, answer = await asyncio.wait_for(read_response(reader), answer_timeout_s)
                if counted(status, answer):
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    not_counted += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return Result(len(latencies), time.perf_counter() - started, latencies, not_counted)
