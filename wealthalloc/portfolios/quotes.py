"""The quotes a shard judges the market orders of its own plans by (rebalance, harvest, recommendation).

An order from ``POST /trades`` arrives with the quote the API read for it. The
orders a rebalance, a harvest or an accepted recommendation places are
decided inside the shard, so the shard reads their quotes itself, through
the same Redis quote cache (``quote:{symbol}``, then the provider, then the
last quote kept, marked stale) and the same provider the API asks. A plan
whose market orders would execute on a stale quote is refused as a whole
with 409 ``QUOTE_STALE`` naming each one
(:func:`wealthalloc.domain.quote_freshness.require_fresh_quotes`), before
anything is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, date, datetime

import redis.asyncio as aioredis

from wealthalloc.brokers.base import Quote
from wealthalloc.config import Settings
from wealthalloc.domain.quote_freshness import (
    PlannedOrder,
    QuoteSeen,
    StaleQuotes,
    quote_shown,
    require_fresh_quotes,
)
from wealthalloc.errors import ServiceError
from wealthalloc.logging import get_logger
from wealthalloc.marketdata import PriceHistory
from wealthalloc.marketdata.providers import QuoteSource
from wealthalloc.marketdata.quotes import QuoteCache

log = get_logger(__name__)

QuoteLookup = Callable[[list[str]], Awaitable[dict[str, QuoteSeen | None]]]


class PlanQuotes:
    """Reads the quotes of a plan's symbols and refuses the plan when one of its market orders would
    execute on a stale one.

    Parameters
    ----------
    lookup : callable
        ``symbols -> {symbol: QuoteSeen | None}``, every symbol in one reading (None: no quote at
        all, the venue prices the order).
    max_age_s : float
        ``market_data_stale_seconds``: a quote priced longer ago is stale (0: only a kept one is).
    now : callable
        The clock the age is measured by.
    """

    def __init__(
        self,
        lookup: QuoteLookup,
        *,
        max_age_s: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._lookup = lookup
        self._max_age_s = max_age_s
        self._now = now

    async def seen(self, symbols: Iterable[str]) -> dict[str, QuoteSeen | None]:
        """The quote read now for each symbol."""
        names = list(dict.fromkeys(symbols))
        if not names:
            return {}
        found = await self._lookup(names)
        return {name: found.get(name) for name in names}

    def refuse_stale(self, orders: list[PlannedOrder], seen: dict[str, QuoteSeen | None]) -> None:
        """Raise 409 ``QUOTE_STALE`` naming every stale quote the plan's market orders would meet."""
        try:
            require_fresh_quotes(orders, seen, now=self._now(), max_age_s=self._max_age_s)
        except StaleQuotes as exc:
            quotes = [
                {
                    "symbol": s.symbol,
                    "as_of": s.as_of.isoformat(),
                    "source": s.source,
                    "age_seconds": round(s.age_s),
                    "max_age_seconds": s.max_age_s,
                }
                for s in exc.stale
            ]
            raise ServiceError(
                409,
                "QUOTE_STALE",
                str(exc),
                {
                    "symbols": [q["symbol"] for q in quotes],
                    "quotes": quotes,
                    "max_age_seconds": self._max_age_s,
                },
            ) from exc

    def shown(self, seen: QuoteSeen | None) -> dict[str, object] | None:
        """The quote as a preview shows it (source, as_of, age_seconds, stale)."""
        return quote_shown(seen, now=self._now(), max_age_s=self._max_age_s)


def shard_quotes(
    settings: Settings,
    *,
    redis: aioredis.Redis | None,
    prices: PriceHistory,
    today: Callable[[], date],
    live: Callable[[str], Awaitable[Quote]] | None = None,
    connected: Callable[[], Awaitable[bool]] | None = None,
) -> PlanQuotes:
    """The plan quotes of a shard: the API's quote cache in Redis, in front of the API's provider.

    ``live`` and ``connected`` reach the broker gateway's IBKR quotes (with ``settings.broker``
    ``ibkr``); without a Polygon or Alpha Vantage key and on the paper broker, the bundled close.
    """
    provider = QuoteSource(settings, redis=redis, prices=prices, today=today, live=live, connected=connected)
    cache = QuoteCache(
        redis,
        provider,
        ttl_seconds=settings.quote_cache_seconds,
        stale_after_s=settings.market_data_stale_seconds,
    )

    async def lookup(symbols: list[str]) -> dict[str, QuoteSeen | None]:
        found = await cache.quotes(symbols)
        return {
            name: None
            if quote is None
            else QuoteSeen(symbol=quote.symbol, as_of=quote.timestamp, source=quote.source, stale=quote.stale)
            for name, quote in found.items()
        }

    return PlanQuotes(lookup, max_age_s=settings.market_data_stale_seconds)
