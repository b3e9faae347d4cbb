"""Quotes and daily history from real market-data providers, in a chain that falls back to what we have.

:func:`build_chain` reads the settings and builds a :class:`ProviderChain`
of IBKR (:class:`IbkrQuotes`, skipped while the gateway is disconnected),
:class:`PolygonClient`, :class:`AlphaVantageClient`, the Redis quote cache
and the bundled history. Each HTTP provider runs under
a :class:`ProviderGuard`: its documented budget in a Redis token bucket
shared by every process, a timeout, retries with backoff, and a circuit
breaker. :func:`fetch_history` writes a provider's daily bars into the
Parquet price store. No Ray and no database here.
"""

from wealthalloc.marketdata.providers._alpha_vantage import AlphaVantageClient
from wealthalloc.marketdata.providers._base import (
    CircuitOpen,
    DailyBar,
    HistoryProvider,
    MalformedAnswer,
    NotEntitled,
    ProviderError,
    ProviderRejected,
    ProviderSkipped,
    ProviderUnavailable,
    QuoteFetch,
    RateLimited,
    SymbolNotFound,
    close_of,
    quote_age,
    to_decimal,
)
from wealthalloc.marketdata.providers._chain import (
    BUNDLED,
    CACHE,
    Attempt,
    ChainAnswer,
    Link,
    NoQuoteError,
    ProviderChain,
    bundled_link,
    cache_link,
)
from wealthalloc.marketdata.providers._factory import (
    build_chain,
    history_provider,
    http_client,
    network_configured,
    policy,
)
from wealthalloc.marketdata.providers._guard import GuardPolicy, ProviderGuard, SharedLimiter
from wealthalloc.marketdata.providers._history import FetchSummary, fetch_history
from wealthalloc.marketdata.providers._http import redact
from wealthalloc.marketdata.providers._ibkr import (
    IbkrQuotes,
    broker_connected,
    broker_quotes,
    quote_from_snapshot,
)
from wealthalloc.marketdata.providers._polygon import PolygonClient
from wealthalloc.marketdata.providers._source import QuoteSource
from wealthalloc.marketdata.providers._store import StoreReport, write_daily_bars

__all__ = [
    "BUNDLED",
    "CACHE",
    "AlphaVantageClient",
    "Attempt",
    "ChainAnswer",
    "CircuitOpen",
    "DailyBar",
    "FetchSummary",
    "GuardPolicy",
    "HistoryProvider",
    "IbkrQuotes",
    "Link",
    "MalformedAnswer",
    "NoQuoteError",
    "NotEntitled",
    "PolygonClient",
    "ProviderChain",
    "ProviderError",
    "ProviderGuard",
    "ProviderRejected",
    "ProviderSkipped",
    "ProviderUnavailable",
    "QuoteSource",
    "QuoteFetch",
    "RateLimited",
    "SharedLimiter",
    "StoreReport",
    "SymbolNotFound",
    "broker_connected",
    "broker_quotes",
    "build_chain",
    "bundled_link",
    "cache_link",
    "close_of",
    "fetch_history",
    "history_provider",
    "http_client",
    "network_configured",
    "policy",
    "quote_from_snapshot",
    "quote_age",
    "redact",
    "to_decimal",
    "write_daily_bars",
]
