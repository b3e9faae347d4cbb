"""Quote latency: from a provider's answer to the quote in the API's answer to GET /api/v1/quotes/{symbol}.

One process, no network and no Ray: the API app (create_app, the Resources a
replica holds: PostgreSQL pool, Redis, the provider chain) is called in
process, with a real PostgreSQL (a throwaway migrated database) and Redis.
Polygon is the fake of the tests (tests/fakes/market_data_server.py) on
loopback, asked by the real client through the chain the replica builds; a
transport wrapper notes when each answer's body has fully arrived, and the
app wrapper notes when the API hands over the last byte of its own answer.

- provider answer -> API quote: what the issue's closing note asks for: the
  answer parsed into a Decimal quote, the chain's bookkeeping, the Redis quote
  cache written (two keys, one round trip), the route's envelope and JSON,
  through the middleware (request id, rate-limit headers, metrics);
- provider answer -> Quote: the same answer to the ``Quote`` object only
  (the chain alone, as bench/market_data.py measures it), the baseline
  measured in this process: the difference is what the API adds;
- request -> API quote (provider asked): the whole request, auth and the
  loopback HTTP round trip to the fake provider included;
- cache hit: the same request answered from the Redis quote cache (the
  60 s in which no provider is asked).

    .venv/bin/python bench/quote_latency.py [--quotes 1000]

Redis: WEALTHALLOC_BENCH_REDIS_URL (default db 14). The last line printed is
one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psycopg
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _support import PASSWORD, REDIS_URL, print_figures, temporary_database  # noqa: E402

from serve_apps.api.app import create_app  # noqa: E402
from serve_apps.api.resources import Resources  # noqa: E402
from tests.fakes.market_data_server import POLYGON_KEY, FakeMarketDataServer  # noqa: E402
from wealthalloc.config import Settings  # noqa: E402
from wealthalloc.marketdata._bundled import _write_atomically, price_table  # noqa: E402
from wealthalloc.marketdata.providers import QuoteSource  # noqa: E402

SYMBOL = "AAPL"
MARKET_DAY = date(2022, 12, 28)


class AnswerClock(httpx.AsyncBaseTransport):
    """Reads each provider answer's whole body, then notes the time: where the figures start."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.last_answer_at = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        await response.aread()
        self.last_answer_at = time.perf_counter()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class Finished:
    """The API app, noting when it hands over the last byte of each answer: where the figures end."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.at = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def timed(message: Any) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.at = time.perf_counter()
            await send(message)

        await self.app(scope, receive, timed)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, seconds: list[float]) -> dict[str, float]:
    micros = [s * 1e6 for s in seconds]
    figures = {"p50_us": statistics.median(micros), "p99_us": percentile(micros, 0.99)}
    p50, p99 = figures["p50_us"], figures["p99_us"]
    print(f"{name:<42} p50 {p50:9.1f} us   p99 {p99:9.1f} us   (n={len(seconds)})")
    return figures


def settings_for(fake: FakeMarketDataServer, database_url: str, data_dir: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        database_url=database_url,
        redis_url=REDIS_URL,
        data_dir=data_dir,
        log_level="WARNING",
        secret_key=SecretStr("q" * 48),
        bcrypt_rounds=4,
        rate_limit_premium=10**9,
        login_ip_per_minute=10**9,
        market_clock_date=MARKET_DAY,
        market_data_chain=["polygon", "cache", "bundled"],
        polygon_api_key=SecretStr(POLYGON_KEY),
        polygon_base_url=fake.url,
        polygon_requests_per_minute=10_000_000,
        market_data_stale_seconds=0,
    )


async def sign_in(client: httpx.AsyncClient, database_url: str) -> dict[str, str]:
    email = f"quote-bench-{uuid.uuid4().hex[:8]}@example.com"
    created = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE users SET tier = 'premium' WHERE email = %s", (email,))
    answer = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['data']['access_token']}"}


async def measure(n: int, settings: Settings, database_url: str) -> dict[str, Any]:
    app = create_app(settings)
    resources: Resources = app.state.resources
    await resources.open()
    clock = AnswerClock()
    # The quote source the replica builds for itself (serve_apps/api/resources.py), with the answer
    # clock in its HTTP client's transport; close() closes that client as it would the replica's own.
    source = resources.__dict__["quote_source"] = QuoteSource(
        settings,
        redis=resources.redis,
        prices=resources.prices,
        today=lambda: resources.clock.today(),
        http=httpx.AsyncClient(transport=clock),
    )
    chain = source.chain()
    finished = Finished(app)
    assert resources.redis is not None
    try:
        transport = httpx.ASGITransport(app=finished)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            headers = await sign_in(client, database_url)

            async def provider_asked() -> tuple[float, float]:
                await resources.redis.delete(f"quote:{SYMBOL}")  # type: ignore[union-attr]
                started = time.perf_counter()
                answer = await client.get(f"/api/v1/quotes/{SYMBOL}", headers=headers)
                assert answer.status_code == 200 and answer.json()["data"]["source"] == "polygon", answer.text
                return finished.at - clock.last_answer_at, finished.at - started

            async def cache_hit() -> float:
                started = time.perf_counter()
                answer = await client.get(f"/api/v1/quotes/{SYMBOL}", headers=headers)
                assert answer.status_code == 200, answer.text
                return finished.at - started

            async def chain_only() -> float:
                answer = await chain.answer(SYMBOL)
                done = time.perf_counter()
                assert answer.served_by == "polygon", answer.attempts
                return done - clock.last_answer_at

            for _ in range(30):  # connections, imports, the principal cache
                await provider_asked()
                await cache_hit()
                await chain_only()
            to_api, whole, hits, to_quote = [], [], [], []
            for _ in range(n):  # interleaved, so a slow moment of the machine touches every figure alike
                a, w = await provider_asked()
                to_api.append(a)
                whole.append(w)
                hits.append(await cache_hit())
                to_quote.append(await chain_only())
    finally:
        await resources.close()
    return {
        "answer_to_api_quote": summary("provider answer -> API quote", to_api),
        "answer_to_quote": summary("provider answer -> Quote (chain only)", to_quote),
        "request_to_api_quote": summary("request -> API quote (provider asked)", whole),
        "cache_hit": summary("request -> API quote (Redis cache hit)", hits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotes", type=int, default=1000, help="Requests measured per path.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeMarketDataServer() as fake, temporary_database() as db:
        data_dir = Path(tmp)
        (data_dir / "prices").mkdir()
        closes = pd.Series([181.25, 182.5], index=pd.DatetimeIndex(["2022-12-27", "2022-12-28"]))
        _write_atomically(price_table(closes), data_dir / "prices" / f"{SYMBOL}.parquet")
        figures = asyncio.run(measure(args.quotes, settings_for(fake, db, data_dir), db))
    api, chain = figures["answer_to_api_quote"]["p50_us"], figures["answer_to_quote"]["p50_us"]
    print(f"the API adds {api - chain:.0f} us (p50) to the chain's answer -> Quote of {chain:.0f} us")
    print_figures(
        {
            "answer_to_api_quote_p50_us": api,
            "answer_to_api_quote_p99_us": figures["answer_to_api_quote"]["p99_us"],
            "answer_to_quote_p50_us": chain,
            "api_added_p50_us": api - chain,
            "request_to_api_quote_p50_us": figures["request_to_api_quote"]["p50_us"],
            "cache_hit_p50_us": figures["cache_hit"]["p50_us"],
            "quotes": args.quotes,
        }
    )


if __name__ == "__main__":
    main()
