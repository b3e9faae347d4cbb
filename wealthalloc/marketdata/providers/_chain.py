"""The provider chain: ask each link in order, answer with the first quote, say who answered.

The order comes from settings (``market_data_chain``): IBKR live when
connected, Polygon, Alpha Vantage, then the Redis quote cache (the last quote
any provider gave, marked ``stale``), then the bundled history, which always
has a price for the symbols it ships. A link that fails (down, rate limited,
breaker open, no such symbol) is recorded as an :class:`Attempt` and the next
one is asked, as is one that is skipped (IBKR while its gateway is
disconnected, outcome ``skipped``), so a caller (and a test) can see the fallback order that
produced a quote.

Every quote says where its price comes from (``source``), when the price is
as of (``timestamp``) and whether it is ``stale``: taken from the last-known
cache after the live links failed, or older than ``stale_after_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal

import redis.asyncio as aioredis

from wealthalloc.brokers.base import Quote
from wealthalloc.brokers.paper import quote_from_close
from wealthalloc.logging import get_logger
from wealthalloc.marketdata._errors import MarketDataError
from wealthalloc.marketdata._prices import PriceHistory
from wealthalloc.marketdata.providers._base import (
    CircuitOpen,
    MalformedAnswer,
    ProviderError,
    ProviderRejected,
    ProviderSkipped,
    ProviderUnavailable,
    QuoteFetch,
    RateLimited,
    SymbolNotFound,
    quote_age,
)
from wealthalloc.marketdata.quotes import QuoteCache, QuoteUnavailable

log = get_logger(__name__)

CACHE = "cache"
BUNDLED = "bundled"


@dataclass(frozen=True)
class Link:
    """One provider in the chain: its name and how to ask it for a quote."""

    name: str
    fetch: QuoteFetch


@dataclass(frozen=True)
class Attempt:
    """What one link did for one quote: ``ok`` or why not, and how long it took."""

    provider: str
    outcome: str
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class ChainAnswer:
    """A quote and how the chain got it."""

    quote: Quote
    served_by: str
    attempts: tuple[Attempt, ...]

    @property
    def fallback_order(self) -> list[str]:
        """The links asked, in order, ending with the one that answered."""
        return [attempt.provider for attempt in self.attempts]

    def age_seconds(self, now: datetime | None = None) -> float:
        """How old the price is (from its as-of moment)."""
        return quote_age(self.quote, now)


class NoQuoteError(MarketDataError, LookupError):
    """Every link of the chain failed; ``attempts`` says how."""

    def __init__(self, symbol: str, attempts: Sequence[Attempt]) -> None:
        self.symbol = symbol
        self.attempts = tuple(attempts)
        tried = "; ".join(f"{a.provider}: {a.outcome}" for a in attempts) or "no providers configured"
        super().__init__(f"no quote for {symbol} ({tried})")


def _outcome(exc: BaseException) -> str:
    for kind, label in (
        (ProviderSkipped, "skipped"),
        (CircuitOpen, "circuit_open"),
        (RateLimited, "rate_limited"),
        (ProviderUnavailable, "unavailable"),
        (MalformedAnswer, "malformed"),
        (ProviderRejected, "rejected"),
        (SymbolNotFound, "not_found"),
    ):
        if isinstance(exc, kind):
            return label
    return "error"


class ProviderChain:
    """Quotes from the first link that answers.

    Parameters
    ----------
    links : sequence of Link
        In the order to ask them.
    stale_after_s : float
        A quote whose price is older than this is marked ``stale``; 0 turns
        the age check off (only the cache's last-known quotes are stale).
    now : callable
        The current time (UTC), injectable for tests.
    """

    def __init__(
        self,
        links: Sequence[Link],
        *,
        stale_after_s: float = 0.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._links = tuple(links)
        self._stale_after = stale_after_s
        self._now = now

    @property
    def names(self) -> list[str]:
        return [link.name for link in self._links]

    async def answer(self, symbol: str) -> ChainAnswer:
        """The first quote any link gives, with every attempt made for it.

        Raises
        ------
        NoQuoteError
            When every link failed.
        """
        attempts: list[Attempt] = []
        for link in self._links:
            started = time.perf_counter()
            try:
                quote = await link.fetch(symbol)
            except Exception as exc:  # any link's failure, typed or not, moves on to the next link
                attempts.append(Attempt(link.name, _outcome(exc), time.perf_counter() - started, str(exc)))
                if not isinstance(exc, ProviderError | MarketDataError):
                    log.warning("quote_link_failed", provider=link.name, error=repr(exc))
                continue
            attempts.append(Attempt(link.name, "ok", time.perf_counter() - started))
            too_old = self._stale_after > 0 and quote_age(quote, self._now()) > self._stale_after
            if too_old and not quote.stale:
                quote = replace(quote, stale=True)
            return ChainAnswer(quote=quote, served_by=link.name, attempts=tuple(attempts))
        raise NoQuoteError(symbol, attempts)

    async def quote(self, symbol: str) -> Quote:
        """Just the quote: what :class:`~wealthalloc.marketdata.quotes.QuoteCache` takes as its provider."""
        return (await self.answer(symbol)).quote


async def _nothing(symbol: str) -> Quote:
    raise QuoteUnavailable(f"the cache link asks no provider for {symbol}")


def cache_link(redis: aioredis.Redis | None, *, ttl_seconds: int = 60) -> Link:
    """The Redis quote cache as a link: the fresh quote if any, else the last one kept (``stale``).

    Reads the keys :class:`~wealthalloc.marketdata.quotes.QuoteCache` writes
    (``quote:{symbol}``, ``quote:last:{symbol}``) through QuoteCache itself,
    with a provider that always fails, so both agree on the format.
    """
    cache = QuoteCache(redis, _nothing, ttl_seconds=ttl_seconds)

    async def fetch(symbol: str) -> Quote:
        try:
            quote, _ = await cache.quote(symbol)
        except QuoteUnavailable as exc:
            raise SymbolNotFound(CACHE, f"nothing cached for {symbol}") from exc
        return quote

    return Link(CACHE, fetch)


def bundled_link(
    prices: PriceHistory, today: Callable[[], date], spread_bps: Decimal, *, source: str = BUNDLED
) -> Link:
    """The bundled daily history as a link: the market clock's close, straddled by the paper spread.

    Stamped now, as the paper market has always stamped it: in the demo the
    market clock's close *is* the live price.
    """

    async def fetch(symbol: str) -> Quote:
        try:
            close = prices.close_on(symbol, today())
        except MarketDataError as exc:
            raise SymbolNotFound(BUNDLED, str(exc)) from exc
        return replace(quote_from_close(symbol, close, spread_bps, datetime.now(UTC)), source=source)

    return Link(BUNDLED, fetch)
