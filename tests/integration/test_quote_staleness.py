"""A quote's ``stale`` flag is decided when it is read: a price that ages in the Redis cache turns
stale once it is older than the setting, and the cache never stores the flag."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import redis.asyncio as aioredis

from wealthalloc.brokers.base import Quote
from wealthalloc.marketdata.quotes import QuoteCache

pytestmark = pytest.mark.integration

PRICED_AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_a_cached_quote_turns_stale_as_it_ages_past_the_setting(redis_url: str) -> None:
    clock = {"now": PRICED_AT + timedelta(seconds=30)}
    asked: list[str] = []

    async def provider(symbol: str) -> Quote:
        asked.append(symbol)
        return Quote(symbol, D("99.99"), D("100.01"), D("100.00"), PRICED_AT, "polygon")

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            cache = QuoteCache(client, provider, ttl_seconds=3600, stale_after_s=60, now=lambda: clock["now"])
            fresh, cached = await cache.quote("AAPL")
            assert (fresh.stale, cached) == (False, False)

            clock["now"] = PRICED_AT + timedelta(seconds=61)
            aged, cached = await cache.quote("AAPL")
            assert (aged.stale, cached) == (True, True) and asked == ["AAPL"]

            # The flag is not kept: a cache that does not check the age reads the same entry as fresh.
            assert (await QuoteCache(client, provider, ttl_seconds=3600).quote("AAPL"))[0].stale is False
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_without_an_age_limit_only_the_last_known_fallback_is_stale(redis_url: str) -> None:
    async def failing(symbol: str) -> Quote:
        raise RuntimeError("provider down")

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            old = Quote("KO", D("59.99"), D("60.01"), D("60.00"), PRICED_AT - timedelta(days=3), "polygon")
            warm = QuoteCache(client, lambda _: _answer(old), ttl_seconds=1)
            assert (await warm.quote("KO"))[0].stale is False
            await client.delete("quote:KO")
            served, cached = await QuoteCache(client, failing).quote("KO")
            assert served.stale is True and cached is True
        finally:
            await client.aclose()

    asyncio.run(scenario())


async def _answer(quote: Quote) -> Quote:
    return quote
