"""A quote's ``stale`` flag is decided when it is read: a price that ages in the Redis cache turns
stale once it is older than the setting, and the cache never stores the flag."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

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


def test_many_quotes_are_read_in_one_round_trip_and_each_is_judged_as_alone(redis_url: str) -> None:
    """A plan's symbols: the cached ones in one MGET (aged as :meth:`quote` ages them), a missing
    one from the provider, and None for one nobody can price."""
    now = PRICED_AT + timedelta(seconds=90)
    asked: list[str] = []

    async def provider(symbol: str) -> Quote:
        asked.append(symbol)
        if symbol == "NOPE":
            raise LookupError("no such symbol")
        return Quote(symbol, D("9.99"), D("10.01"), D("10.00"), now, "polygon")

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.delete("quote:AAPL", "quote:KO", "quote:GE", "quote:NOPE", "quote:last:NOPE")
            seed = QuoteCache(client, provider, ttl_seconds=3600)
            aapl = Quote("AAPL", D("99.99"), D("100.01"), D("100.00"), PRICED_AT, "polygon")
            ko = Quote("KO", D("59.99"), D("60.01"), D("60.00"), now, "polygon")
            await seed._put("AAPL", aapl)
            await seed._put("KO", ko)
            cache = QuoteCache(client, provider, ttl_seconds=3600, stale_after_s=60, now=lambda: now)
            commands: list[str] = []
            client.execute_command = _counting(client.execute_command, commands)  # type: ignore[method-assign]

            found = await cache.quotes(["AAPL", "KO", "GE", "AAPL", "NOPE"])

            assert list(found) == ["AAPL", "KO", "GE", "NOPE"]
            assert found["AAPL"] is not None and found["AAPL"].stale is True  # 90 s old, limit 60
            assert found["KO"] is not None and (found["KO"].stale, found["KO"].last) == (False, D("60.00"))
            assert found["GE"] is not None and found["GE"].last == D("10.00")
            assert found["NOPE"] is None
            assert asked == ["GE", "NOPE"]  # only what the cache did not hold
            # The cached ones at once; then only the kept quote of the one the provider refused.
            assert commands == ["MGET", "GET"]
            assert (await cache.quote("GE"))[1] is True  # the provider's answer was cached
        finally:
            await client.aclose()

    asyncio.run(scenario())


def _counting(execute: Any, seen: list[str]) -> Any:
    async def counted(*args: Any, **options: Any) -> Any:
        seen.append(str(args[0]))
        return await execute(*args, **options)

    return counted


async def _answer(quote: Quote) -> Quote:
    return quote
