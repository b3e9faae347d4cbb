"""The chain and the history provider as the settings describe them.

Composition happens here and only here: the clients, guards and links take
their collaborators in the constructor, and this module reads the settings
once to build them, so a test builds the same objects pointed at its fake
server by passing different settings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import httpx
import redis.asyncio as aioredis

from wealthalloc.config import Settings
from wealthalloc.marketdata._errors import MarketDataError
from wealthalloc.marketdata._prices import PriceHistory
from wealthalloc.marketdata.providers._alpha_vantage import AlphaVantageClient
from wealthalloc.marketdata.providers._base import HistoryProvider, QuoteFetch
from wealthalloc.marketdata.providers._chain import Link, ProviderChain, bundled_link, cache_link
from wealthalloc.marketdata.providers._guard import GuardPolicy, ProviderGuard, SharedLimiter
from wealthalloc.marketdata.providers._polygon import PolygonClient

NETWORK_PROVIDERS = ("polygon", "alpha_vantage")


def network_configured(settings: Settings) -> bool:
    """Whether the chain has a provider beyond the platform's original ones (an API key is set)."""
    return any(name in settings.market_data_chain and _key(settings, name) for name in NETWORK_PROVIDERS)


def http_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client for every provider of a process; its timeouts match the guards'."""
    timeout = settings.market_data_timeout_seconds
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
        headers={"User-Agent": "wealthalloc-marketdata"},
    )


def policy(settings: Settings, name: str) -> GuardPolicy:
    """The guard policy of provider ``name`` from the settings."""
    per_minute = {
        "polygon": settings.polygon_requests_per_minute,
        "alpha_vantage": settings.alpha_vantage_requests_per_minute,
    }[name]
    return GuardPolicy(
        name=name,
        requests_per_minute=per_minute,
        timeout_s=settings.market_data_timeout_seconds,
        retries=settings.market_data_retries,
        backoff_initial_s=settings.market_data_backoff_initial_seconds,
        backoff_max_s=settings.market_data_backoff_max_seconds,
        breaker_failures=settings.market_data_breaker_failures,
        breaker_cooldown_s=settings.market_data_breaker_cooldown_seconds,
    )


def polygon_client(settings: Settings, http: httpx.AsyncClient, limiter: SharedLimiter) -> PolygonClient:
    return PolygonClient(
        http,
        api_key=settings.polygon_api_key.get_secret_value(),
        base_url=settings.polygon_base_url,
        guard=ProviderGuard(policy(settings, "polygon"), limiter),
        spread_bps=settings.paper_spread_bps,
        use_last_trade=settings.polygon_last_trade,
    )


def alpha_vantage_client(
    settings: Settings, http: httpx.AsyncClient, limiter: SharedLimiter
) -> AlphaVantageClient:
    return AlphaVantageClient(
        http,
        api_key=settings.alpha_vantage_api_key.get_secret_value(),
        base_url=settings.alpha_vantage_base_url,
        guard=ProviderGuard(policy(settings, "alpha_vantage"), limiter),
        spread_bps=settings.paper_spread_bps,
    )


def build_chain(
    settings: Settings,
    *,
    http: httpx.AsyncClient,
    redis: aioredis.Redis | None,
    prices: PriceHistory,
    today: Callable[[], date],
    ibkr: QuoteFetch | None = None,
    limiter: SharedLimiter | None = None,
) -> ProviderChain:
    """The chain of ``settings.market_data_chain``, skipping what is not configured.

    Parameters
    ----------
    http : httpx.AsyncClient
        Shared by the provider clients; the caller closes it.
    redis : Redis, optional
        The quote cache and the shared rate limiter; None leaves the cache
        out and keeps budgets in memory.
    prices, today
        The bundled history and the market clock's day.
    ibkr : callable, optional
        Live quotes from the broker gateway, an :class:`IbkrQuotes` that is
        skipped while the gateway is disconnected; None (the paper broker)
        leaves IBKR out.
    limiter : SharedLimiter, optional
        Built on ``redis`` when omitted.
    """
    limiter = limiter or SharedLimiter(redis)
    links: list[Link] = []
    for name in dict.fromkeys(settings.market_data_chain):
        if name == "ibkr" and ibkr is not None:
            links.append(Link("ibkr", ibkr))
        elif name == "polygon" and _key(settings, name):
            links.append(Link(name, polygon_client(settings, http, limiter).quote))
        elif name == "alpha_vantage" and _key(settings, name):
            links.append(Link(name, alpha_vantage_client(settings, http, limiter).quote))
        elif name == "cache" and redis is not None:
            links.append(cache_link(redis, ttl_seconds=settings.quote_cache_seconds))
        elif name == "bundled":
            links.append(bundled_link(prices, today, settings.paper_spread_bps))
    return ProviderChain(links, stale_after_s=settings.market_data_stale_seconds)


def history_provider(
    settings: Settings, *, http: httpx.AsyncClient, limiter: SharedLimiter, name: str | None = None
) -> HistoryProvider:
    """The provider daily bars are fetched from: ``name``, else the first keyed one in chain order.

    Raises
    ------
    MarketDataError
        When no provider with history has an API key.
    """
    candidates = [name] if name else [n for n in settings.market_data_chain if n in NETWORK_PROVIDERS]
    for candidate in candidates:
        if candidate not in NETWORK_PROVIDERS:
            raise MarketDataError(f"{candidate} has no daily history to fetch; use polygon or alpha_vantage")
        if not _key(settings, candidate):
            continue
        if candidate == "polygon":
            return polygon_client(settings, http, limiter)
        return alpha_vantage_client(settings, http, limiter)
    raise MarketDataError(
        "no market data provider has an API key: set WEALTHALLOC_POLYGON_API_KEY"
        " or WEALTHALLOC_ALPHA_VANTAGE_API_KEY"
    )


def _key(settings: Settings, name: str) -> str:
    if name == "polygon":
        return settings.polygon_api_key.get_secret_value()
    if name == "alpha_vantage":
        return settings.alpha_vantage_api_key.get_secret_value()
    return ""
