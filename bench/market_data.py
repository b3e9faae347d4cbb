"""Market data: how long from a provider's answer to a Quote, beside the bundled-history quote.

One process, no network: the fake Polygon / Alpha Vantage of the tests
(tests/fakes/market_data_server.py) answers on loopback, and the real clients
(httpx, the guard with its limiter and breaker, the chain) ask it. A transport
wrapper notes the moment each answer's body has fully arrived, so the figures
split a quote's time into:

- answer -> Quote: from the last byte of the provider's answer to the Quote
  object (JSON parsed with Decimal numbers, errors checked, bid/ask built,
  the guard's and the chain's bookkeeping);
- request -> Quote: the whole chain call, loopback HTTP round trip included
  (the fake is a threaded ``http.server``, slower than a real API's edge, and
  far faster than a real API across the internet);
- bundled: the chain's bundled-history link (the Parquet close of the market
  clock's day, cached in memory, straddled by the spread), what quotes cost
  today with no provider configured.

The shared limiter keeps its buckets in memory here (no Redis); with Redis
each provider call adds one round trip to it (about 0.1-0.3 ms on loopback).

    .venv/bin/python bench/market_data.py [--quotes 2000]

The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _support import print_figures  # noqa: E402

from tests.fakes.market_data_server import (  # noqa: E402
    ALPHA_VANTAGE_KEY,
    POLYGON_KEY,
    FakeMarketDataServer,
)
from wealthalloc.config import Settings  # noqa: E402
from wealthalloc.marketdata import PriceHistory  # noqa: E402
from wealthalloc.marketdata._bundled import _write_atomically, price_table  # noqa: E402
from wealthalloc.marketdata.providers import SharedLimiter, build_chain, bundled_link  # noqa: E402


class AnswerClock(httpx.AsyncBaseTransport):
    """Reads each answer's whole body, then notes the time: where 'answer -> Quote' starts."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.last_answer_at = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        await response.aread()  # the body is kept on the response: the client reads it from there
        self.last_answer_at = time.perf_counter()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, seconds: list[float]) -> dict[str, float]:
    micros = [s * 1e6 for s in seconds]
    figures = {
        "p50_us": statistics.median(micros),
        "p99_us": percentile(micros, 0.99),
        "mean_us": statistics.fmean(micros),
    }
    print(
        f"{name:<34} p50 {figures['p50_us']:9.1f} us   p99 {figures['p99_us']:9.1f} us"
        f"   mean {figures['mean_us']:9.1f} us   (n={len(seconds)})"
    )
    return figures


async def measure(n: int, prices: PriceHistory, fake: FakeMarketDataServer, data_dir: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {"quotes": n}
    today: Callable[[], date] = lambda: date(2022, 12, 28)  # noqa: E731
    bundled = bundled_link(prices, today, Settings(_env_file=None).paper_spread_bps)  # type: ignore[call-arg]
    await bundled.fetch("AAPL")  # the first read loads the Parquet file
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await bundled.fetch("AAPL")
        times.append(time.perf_counter() - started)
    figures["bundled"] = summary("bundled history -> Quote", times)

    providers: tuple[tuple[str, list[Any]], ...] = (
        ("polygon", ["polygon"]),
        ("alpha_vantage", ["alpha_vantage"]),
    )
    for provider, chain_names in providers:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=data_dir,
            market_data_chain=chain_names,
            polygon_api_key=SecretStr(POLYGON_KEY),
            polygon_base_url=fake.url,
            polygon_requests_per_minute=10_000_000,
            alpha_vantage_api_key=SecretStr(ALPHA_VANTAGE_KEY),
            alpha_vantage_base_url=fake.url,
            alpha_vantage_requests_per_minute=10_000_000,
        )
        clock = AnswerClock()
        async with httpx.AsyncClient(transport=clock) as http:
            chain = build_chain(
                settings, http=http, redis=None, prices=prices, today=today, limiter=SharedLimiter(None)
            )
            for _ in range(20):  # connection set up, imports, caches
                await chain.answer("AAPL")
            parse, total = [], []
            for _ in range(n):
                started = time.perf_counter()
                answer = await chain.answer("AAPL")
                done = time.perf_counter()
                assert answer.served_by == provider, answer.attempts
                parse.append(done - clock.last_answer_at)
                total.append(done - started)
        figures[provider] = {
            "answer_to_quote": summary(f"{provider}: answer -> Quote", parse),
            "request_to_quote": summary(f"{provider}: request -> Quote", total),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotes", type=int, default=2000, help="Quotes measured per path.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeMarketDataServer() as fake:
        prices_dir = Path(tmp) / "prices"
        prices_dir.mkdir()
        closes = pd.Series([181.25, 182.5], index=pd.DatetimeIndex(["2022-12-27", "2022-12-28"]))
        _write_atomically(price_table(closes), prices_dir / "AAPL.parquet")
        figures = asyncio.run(measure(args.quotes, PriceHistory(prices_dir), fake, Path(tmp)))
    bundled_p50 = figures["bundled"]["p50_us"]
    for provider in ("polygon", "alpha_vantage"):
        ratio = figures[provider]["answer_to_quote"]["p50_us"] / bundled_p50
        print(f"{provider}: answer -> Quote is {ratio:.1f}x the bundled quote (p50)")
    print_figures(
        {
            "bundled_quote_p50_us": bundled_p50,
            "polygon_answer_to_quote_p50_us": figures["polygon"]["answer_to_quote"]["p50_us"],
            "polygon_answer_to_quote_p99_us": figures["polygon"]["answer_to_quote"]["p99_us"],
            "polygon_request_to_quote_p50_us": figures["polygon"]["request_to_quote"]["p50_us"],
            "alpha_vantage_answer_to_quote_p50_us": figures["alpha_vantage"]["answer_to_quote"]["p50_us"],
            "alpha_vantage_request_to_quote_p50_us": figures["alpha_vantage"]["request_to_quote"]["p50_us"],
            "quotes": args.quotes,
        }
    )


if __name__ == "__main__":
    main()
