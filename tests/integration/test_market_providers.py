"""The provider chain on a real Redis: one rate-limit budget for every replica, the quote cache behind
the live providers, and the bundled history behind the cache.

The providers are the fake Polygon / Alpha Vantage on loopback (tests/fakes/market_data_server.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import redis.asyncio as aioredis

from tests.fakes.market_data_server import (
    ALPHA_VANTAGE,
    ALPHA_VANTAGE_KEY,
    LAST_PRICES,
    POLYGON,
    POLYGON_KEY,
    FakeMarketDataServer,
)
from wealthalloc.config import Settings
from wealthalloc.marketdata import PriceHistory
from wealthalloc.marketdata._bundled import _write_atomically, price_table
from wealthalloc.marketdata.providers import SharedLimiter, build_chain
from wealthalloc.marketdata.quotes import QuoteCache

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[FakeMarketDataServer]:
    with FakeMarketDataServer() as server:
        yield server


def settings_for(fake: FakeMarketDataServer, tmp_path: Path, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "redis_url": redis_url,
        "polygon_api_key": POLYGON_KEY,
        "polygon_base_url": fake.url,
        "alpha_vantage_api_key": ALPHA_VANTAGE_KEY,
        "alpha_vantage_base_url": fake.url,
        "market_data_timeout_seconds": 1.0,
        "market_data_backoff_initial_seconds": 0.01,
        "market_data_backoff_max_seconds": 0.02,
        "market_data_stale_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def bundled(tmp_path: Path) -> PriceHistory:
    prices_dir = tmp_path / "prices"
    prices_dir.mkdir(exist_ok=True)
    closes = pd.Series([181.25, 182.5], index=pd.DatetimeIndex(["2022-12-27", "2022-12-28"]))
    _write_atomically(price_table(closes), prices_dir / "AAPL.parquet")
    return PriceHistory(prices_dir)


def test_two_replicas_share_one_alpha_vantage_budget_of_5_a_minute(
    fake: FakeMarketDataServer, tmp_path: Path, redis_url: str
) -> None:
    settings = settings_for(fake, tmp_path, redis_url, market_data_chain=["alpha_vantage"])
    prices = bundled(tmp_path)

    async def go() -> list[str]:
        outcomes: list[str] = []
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
        try:
            async with httpx.AsyncClient() as http:
                replicas = [
                    build_chain(settings, http=http, redis=client, prices=prices, today=date.today)
                    for client in clients
                ]
                for turn in range(8):
                    try:
                        answer = await replicas[turn % 2].answer("IBM")
                    except Exception as exc:  # NoQuoteError listing the rate-limited attempt
                        outcomes.append(str(exc))
                    else:
                        outcomes.append(answer.served_by)
        finally:
            for client in clients:
                await client.aclose()
        return outcomes

    outcomes = asyncio.run(go())
    assert outcomes[:5] == ["alpha_vantage"] * 5
    assert all("alpha_vantage: rate_limited" in outcome for outcome in outcomes[5:])
    assert fake.count(ALPHA_VANTAGE) == 5


def test_behind_the_api_cache_the_chain_falls_back_to_the_last_quote_then_the_history(
    fake: FakeMarketDataServer, tmp_path: Path, redis_url: str
) -> None:
    settings = settings_for(fake, tmp_path, redis_url)
    prices = bundled(tmp_path)

    async def go() -> list[Any]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            async with httpx.AsyncClient() as http:
                chain = build_chain(
                    settings, http=http, redis=client, prices=prices, today=lambda: date(2022, 12, 28)
                )
                api_cache = QuoteCache(client, chain.quote, ttl_seconds=60)  # as serve_apps/api/resources.py
                live, _ = await api_cache.quote("AAPL")
                await client.delete("quote:AAPL")  # the 60 s TTL has run out
                fake.always(POLYGON, "server_error")
                fake.always(ALPHA_VANTAGE, "rate_limit")
                from_cache = await chain.answer("AAPL")
                await client.flushdb()
                from_history = await chain.answer("AAPL")
                return [live, from_cache, from_history]
        finally:
            await client.aclose()

    live, from_cache, from_history = asyncio.run(go())
    assert live.source == "polygon" and live.last == Decimal(LAST_PRICES["AAPL"])
    assert from_cache.fallback_order == ["polygon", "alpha_vantage", "cache"]
    assert from_cache.quote.stale and from_cache.quote.last == live.last
    assert from_cache.quote.timestamp == live.timestamp
    assert from_history.fallback_order == ["polygon", "alpha_vantage", "cache", "bundled"]
    assert from_history.quote.source == "bundled" and from_history.quote.last == Decimal("182.5000")


def test_a_dead_redis_keeps_the_budget_in_memory(
    fake: FakeMarketDataServer, tmp_path: Path, unused_port: Any
) -> None:
    dead = f"redis://127.0.0.1:{unused_port()}/0"
    settings = settings_for(fake, tmp_path, dead, market_data_chain=["alpha_vantage"])

    async def go() -> None:
        client = aioredis.Redis.from_url(dead, socket_connect_timeout=0.2)
        try:
            async with httpx.AsyncClient() as http:
                limiter = SharedLimiter(client)
                chain = build_chain(
                    settings,
                    http=http,
                    redis=None,
                    prices=bundled(tmp_path),
                    today=date.today,
                    limiter=limiter,
                )
                for _ in range(5):
                    await chain.answer("IBM")
                with pytest.raises(Exception, match="rate_limited"):
                    await chain.answer("IBM")
                decision = await limiter.take(settings_limit(settings))
                assert not decision.allowed
        finally:
            await client.aclose()

    asyncio.run(go())
    assert fake.count(ALPHA_VANTAGE) == 5


def settings_limit(settings: Settings) -> Any:
    from wealthalloc.marketdata.providers import policy

    return policy(settings, "alpha_vantage").limit
