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

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

import redis.asyncio as aioredis

from wealthalloc.brokers.base import Quote
from wealthalloc.brokers.paper import quote_from_close
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
from wealthalloc.marketdata.quotes import QuoteCache, QuoteUnavailable

log = get_logger(__name__)

QuoteLookup = Callable[[str], Awaitable[QuoteSeen | None]]


class PlanQuotes:
    """Reads the quotes of a plan's symbols and refuses the plan when one of its market orders would
    execute on a stale one.

    Parameters
    ----------
    lookup : callable
        ``symbol -> QuoteSeen | None`` (None: no quote at all, the venue prices the order).
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
        found = await asyncio.gather(*(self._lookup(name) for name in names))
        return dict(zip(names, found, strict=True))

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
    chain: Any = None

    async def provider(symbol: str) -> Quote:
        nonlocal chain
        from wealthalloc.marketdata.providers import (
            CACHE,
            IbkrQuotes,
            build_chain,
            http_client,
            network_configured,
        )

        if network_configured(settings):
            if chain is None:
                ibkr = (
                    IbkrQuotes(live, connected)
                    if settings.broker == "ibkr" and live is not None and connected is not None
                    else None
                )
                chain = build_chain(
                    settings, http=http_client(settings), redis=redis, prices=prices, today=today, ibkr=ibkr
                )
            answer = await chain.answer(symbol)
            if answer.served_by == CACHE:  # the cache in front serves the kept quote, marked stale
                tried = "; ".join(f"{a.provider}: {a.outcome}" for a in answer.attempts)
                raise RuntimeError(f"no live quote for {symbol} ({tried})")
            quote: Quote = answer.quote
            return quote
        if settings.broker == "ibkr":
            if live is None:
                raise RuntimeError("no broker gateway to ask")
            return await live(symbol)
        close = prices.close_on(symbol, today())
        return quote_from_close(symbol, close, settings.paper_spread_bps, datetime.now(UTC))

    cache = QuoteCache(
        redis,
        provider,
        ttl_seconds=settings.quote_cache_seconds,
        stale_after_s=settings.market_data_stale_seconds,
    )

    async def lookup(symbol: str) -> QuoteSeen | None:
        try:
            found, _ = await cache.quote(symbol)
        except (QuoteUnavailable, LookupError):
            return None
        return QuoteSeen(symbol=found.symbol, as_of=found.timestamp, source=found.source, stale=found.stale)

    return PlanQuotes(lookup, max_age_s=settings.market_data_stale_seconds)
