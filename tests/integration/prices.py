"""Prices as the platform's tests set them: a day's closing prices published the way the event
bus's daily publisher does (price alerts, live portfolio values), and a quote put in the API's
quote cache as if its provider had answered it (stale-quote refusals)."""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from decimal import Decimal

import redis.asyncio as aioredis

from wealthalloc.brokers.base import Quote
from wealthalloc.config import Settings
from wealthalloc.events.price_alerts import DailyPricePublisher
from wealthalloc.marketdata.quotes import QuoteCache
from wealthalloc.storage.postgres import async_pool


def publish(database_url: str, closes: dict[str, Decimal], day: date) -> int:
    """Announce ``closes`` as ``day``'s prices, as the daily publisher does when the clock gets there;
    1 when this announced the day, 0 when it had been announced already."""

    async def run() -> int:
        pool = async_pool(Settings(database_url=database_url), name="test-prices")
        await pool.open()
        try:
            publisher = DailyPricePublisher(pool=pool, today=lambda: day, closes=lambda _: closes)
            return await publisher.publish_once() + await publisher.publish_once()
        finally:
            await pool.close()

    return asyncio.run(run())


def some_future_day() -> date:
    """A day no other test announces (the mark of a day is written once per database)."""
    return date(2090, 1, 1) + timedelta(days=random.randrange(3000))


def cache_quote(session_redis_url: str, symbol: str, quote: Quote | None) -> None:
    """Put ``quote`` in the API's quote cache as its provider's answer for ``symbol`` (None: forget
    the symbol, so the API asks its provider again)."""

    async def answered(_: str) -> Quote:
        assert quote is not None
        return quote

    async def go() -> None:
        client = aioredis.Redis.from_url(session_redis_url)
        try:
            await client.delete(f"quote:{symbol}", f"quote:last:{symbol}")
            if quote is not None:
                await QuoteCache(client, answered, ttl_seconds=60).quote(symbol)
        finally:
            await client.aclose()

    asyncio.run(go())
