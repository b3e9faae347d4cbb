"""Quotes through the Redis cache: fresh for ``ttl`` seconds, and the last one kept for bad days.

``quote:{symbol}`` holds the quote for the cache's TTL (60 s). A second key,
``quote:last:{symbol}``, keeps the most recent quote without expiry, so that
when the provider fails the caller still gets a price, marked ``stale`` with
its timestamp, instead of an error. A dead Redis makes quotes slower, never
wrong: the provider is asked directly.

Whether a quote is stale is decided when it is read, never stored: a quote
whose price is older than ``stale_after_s`` is stale however it was served
(fresh, from the cache, or the last one kept), so a price that ages while it
sits in the cache does not stay "fresh" for the cache's TTL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from wealthalloc.brokers.base import Quote
from wealthalloc.logging import get_logger

log = get_logger(__name__)

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
Provider = Callable[[str], Awaitable[Quote]]


class QuoteUnavailable(Exception):
    """The provider failed and no quote was ever cached for the symbol."""


def _dump(quote: Quote) -> str:
    return json.dumps(
        {
            "symbol": quote.symbol,
            "bid": str(quote.bid),
            "ask": str(quote.ask),
            "last": str(quote.last),
            "timestamp": quote.timestamp.isoformat(),
            "source": quote.source,
        }
    )


def _load(raw: bytes | str, *, stale: bool) -> Quote:
    data: dict[str, Any] = json.loads(raw)
    return Quote(
        symbol=data["symbol"],
        bid=Decimal(data["bid"]),
        ask=Decimal(data["ask"]),
        last=Decimal(data["last"]),
        timestamp=datetime.fromisoformat(data["timestamp"]),
        source=data["source"],
        stale=stale,
    )


class QuoteCache:
    def __init__(
        self,
        redis: aioredis.Redis | None,
        provider: Provider,
        *,
        ttl_seconds: int = 60,
        stale_after_s: float = 0.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._redis = redis
        self._provider = provider
        self._ttl = ttl_seconds
        self._stale_after = stale_after_s
        self._now = now

    async def quote(self, symbol: str) -> tuple[Quote, bool]:
        """The quote and whether it came from the cache; ``stale`` as of now (0 turns the age off)."""
        found, cached = await self._quote(symbol)
        return self._aged(found), cached

    async def quotes(self, symbols: Sequence[str]) -> dict[str, Quote | None]:
        """Each symbol's quote, as :meth:`quote` gives it, the cached ones read in one round trip
        (``MGET``); None where the provider failed and no quote was ever kept.

        A plan (or a day's rebalancing of many portfolios) asks for every symbol it trades at once,
        where one ``GET`` a symbol made the quote reads the largest part of the plan's cost.
        """
        names = list(dict.fromkeys(symbols))
        cached = await self._get_many([f"quote:{name}" for name in names])
        found: dict[str, Quote | None] = {}
        for name, raw in zip(names, cached, strict=True):
            if raw is not None:
                try:
                    found[name] = self._aged(_load(raw, stale=False))
                except LookupError:  # a cached value this code cannot read: as good as no quote
                    found[name] = None
        missing = [name for name in names if name not in found]
        fetched = await asyncio.gather(*(self._fetch(name) for name in missing), return_exceptions=True)
        for name, answer in zip(missing, fetched, strict=True):
            if isinstance(answer, QuoteUnavailable):
                found[name] = None
            elif isinstance(answer, BaseException):
                raise answer
            else:
                found[name] = self._aged(answer[0])
        return {name: found[name] for name in names}

    def _aged(self, found: Quote) -> Quote:
        """The quote marked stale when its price is older than ``stale_after_s`` (0 turns this off)."""
        if not found.stale and self._stale_after > 0:
            stamp = found.timestamp
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            if (self._now() - stamp).total_seconds() > self._stale_after:
                return replace(found, stale=True)
        return found

    async def _quote(self, symbol: str) -> tuple[Quote, bool]:
        cached = await self._get(f"quote:{symbol}")
        if cached is not None:
            return _load(cached, stale=False), True
        return await self._fetch(symbol)

    async def _fetch(self, symbol: str) -> tuple[Quote, bool]:
        """Past the cache: the provider's quote (then cached), or the last one kept, marked stale."""
        try:
            fresh = await self._provider(symbol)
        except Exception as exc:
            last = await self._get(f"quote:last:{symbol}")
            if last is None:
                raise QuoteUnavailable(str(exc)) from exc
            log.warning("quote_provider_failed_serving_stale", symbol=symbol, error=str(exc))
            return _load(last, stale=True), True
        await self._put(symbol, fresh)
        return fresh, False

    async def _get(self, key: str) -> bytes | str | None:
        if self._redis is None:
            return None
        try:
            value: bytes | str | None = await self._redis.get(key)
            return value
        except REDIS_DOWN:
            return None

    async def _get_many(self, keys: list[str]) -> list[bytes | str | None]:
        if self._redis is None or not keys:
            return [None] * len(keys)
        try:
            values: list[bytes | str | None] = await self._redis.mget(keys)
            return values
        except REDIS_DOWN:
            return [None] * len(keys)

    async def _put(self, symbol: str, quote: Quote) -> None:
        if self._redis is None:
            return
        payload = _dump(quote)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(f"quote:{symbol}", payload, ex=self._ttl)
                pipe.set(f"quote:last:{symbol}", payload)
                await pipe.execute()
        except REDIS_DOWN as exc:
            log.warning("quote_cache_unavailable", error=str(exc))
