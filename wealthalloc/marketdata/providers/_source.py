"""The quote behind the Redis quote cache, one definition for every process that prices orders.

The API prices ``POST /trades`` and the portfolio shards price the market
orders of their own plans (rebalance, harvest, recommendation). Both put a
:class:`~wealthalloc.marketdata.quotes.QuoteCache` in front of a
:class:`QuoteSource`, so an order is judged by the same quote whichever
path placed it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

import httpx
import redis.asyncio as aioredis

from wealthalloc.brokers.base import Quote
from wealthalloc.config import Settings
from wealthalloc.marketdata._prices import PriceHistory
from wealthalloc.marketdata.providers._chain import CACHE, ProviderChain
from wealthalloc.marketdata.providers._factory import build_chain, http_client, network_configured
from wealthalloc.marketdata.providers._ibkr import IbkrQuotes

LiveQuote = Callable[[str], Awaitable[Quote]]


class QuoteSource:
    """``await source(symbol)``: the provider's quote for the cache to keep.

    With a Polygon or Alpha Vantage key set, the provider chain answers (built on first use; its
    pooled HTTP client lives until :meth:`aclose`). Without one, as before the chain existed: the
    broker gateway's quote when the broker is IBKR, else the bundled close priced with the paper
    spread.

    Parameters
    ----------
    live : callable, optional
        The broker gateway's snapshot quote; None where there is no gateway to ask.
    connected : callable, optional
        Whether the gateway is connected to IBKR now (the chain skips IBKR while it is not).
    http : httpx.AsyncClient, optional
        The providers' client (a bench passes one on its own transport); made on first use when
        omitted. Either way this source closes it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        redis: aioredis.Redis | None,
        prices: PriceHistory,
        today: Callable[[], date],
        live: LiveQuote | None = None,
        connected: Callable[[], Awaitable[bool]] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._prices = prices
        self._today = today
        self._live = live
        self._connected = connected
        self._http = http
        self._chain: ProviderChain | None = None

    async def __call__(self, symbol: str) -> Quote:
        settings = self._settings
        if network_configured(settings):
            answer = await self.chain().answer(symbol)
            if answer.served_by == CACHE:
                # The QuoteCache in front serves that same last quote, marked stale, without
                # storing it again as a fresh one.
                tried = "; ".join(f"{a.provider}: {a.outcome}" for a in answer.attempts)
                raise RuntimeError(f"no live quote for {symbol} ({tried})")
            quote: Quote = answer.quote
            return quote
        if settings.broker == "ibkr":
            if self._live is None:
                raise RuntimeError("no broker gateway to ask")
            return await self._live(symbol)
        from wealthalloc.brokers.paper import quote_from_close  # the paper broker reads market data

        close = self._prices.close_on(symbol, self._today())
        return quote_from_close(symbol, close, settings.paper_spread_bps, datetime.now(UTC))

    def chain(self) -> ProviderChain:
        """The provider chain (built on first use), for a caller that wants its attempts too."""
        if self._chain is None:
            ibkr = (
                IbkrQuotes(self._live, self._connected)
                if self._settings.broker == "ibkr" and self._live is not None and self._connected is not None
                else None
            )
            if self._http is None:
                self._http = http_client(self._settings)
            self._chain = build_chain(
                self._settings,
                http=self._http,
                redis=self._redis,
                prices=self._prices,
                today=self._today,
                ibkr=ibkr,
            )
        return self._chain

    @property
    def http(self) -> httpx.AsyncClient | None:
        """The providers' HTTP client, once there is one."""
        return self._http

    async def aclose(self) -> None:
        """Close the chain's HTTP client (its pooled sockets)."""
        if self._http is not None:
            await self._http.aclose()
        self._http, self._chain = None, None
