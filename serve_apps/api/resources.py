"""What one API replica holds open: database pool, Redis client, metrics, market data.

Built once per replica in the app's lifespan and reached by routes through the
typed dependencies in ``deps.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import redis.asyncio as aioredis

from serve_apps.api.metrics import ApiMetrics
from wealthalloc.config import Settings
from wealthalloc.marketdata import MarketClock, PriceHistory, SecurityReference
from wealthalloc.storage.postgres import AsyncPool, async_pool
from wealthalloc.storage.redis_client import async_redis


@dataclass
class Resources:
    settings: Settings
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    started_at: float = field(default_factory=time.time)
    pool: AsyncPool | None = None
    redis: aioredis.Redis | None = None

    async def open(self) -> None:
        self.pool = async_pool(self.settings)
        # wait=False: the replica starts even while the database is down, and
        # /health says so instead of the replica crash-looping.
        await self.pool.open(wait=False)
        self.redis = async_redis(self.settings)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.redis is not None:
            await self.redis.aclose()

    @cached_property
    def prices(self) -> PriceHistory:
        return PriceHistory(self.settings.prices_dir)

    @cached_property
    def clock(self) -> MarketClock:
        return MarketClock(self.prices.trading_days(), pinned=self.settings.market_clock_date)

    @cached_property
    def securities(self) -> SecurityReference:
        return SecurityReference()
