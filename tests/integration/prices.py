"""Publishing a day's closing prices the way the event bus's daily publisher does, for tests that
react to market moves (price alerts, live portfolio values)."""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from decimal import Decimal

from wealthalloc.config import Settings
from wealthalloc.events.price_alerts import DailyPricePublisher
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
