"""What every market-data provider answers, and how it fails.

A provider link answers a :class:`~wealthalloc.brokers.base.Quote` whose
``source`` names the provider and whose ``timestamp`` is the moment the price
is *as of* (the trade, or the close of the day it comes from), never the
moment we received it: that is how a caller tells how old a quote is
(:func:`quote_age`) and whether it is ``stale``.

Failures are typed so the chain and the circuit breaker can tell "the
provider is down or overloaded" (count it, try the next link) from "the
provider is fine but has no such symbol" (do not count it against the
provider).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Protocol
from zoneinfo import ZoneInfo

from wealthalloc.brokers.base import Quote
from wealthalloc.marketdata._errors import MarketDataError

EXCHANGE_TZ = ZoneInfo("America/New_York")
"""US equities close at 16:00 New York time: a daily close is *as of* then."""

QuoteFetch = Callable[[str], Awaitable[Quote]]
"""One link of the chain as the chain sees it: a symbol in, a quote (or a :class:`ProviderError`) out."""


class ProviderError(MarketDataError):
    """A provider could not answer; ``provider`` names it so a log line says which."""

    def __init__(self, provider: str, message: str) -> None:
        self.provider = provider
        super().__init__(f"{provider}: {message}")


class ProviderUnavailable(ProviderError):
    """Transient: a timeout, a refused connection, a 5xx. Retried with backoff, then counted."""


class RateLimited(ProviderError):
    """Our budget with the provider is spent (our limiter refused, a 429, or Alpha Vantage's "Note" body).

    Not retried on the quote path (the next link answers now) and not counted
    as a failure: the provider is healthy, we were too eager.
    """

    def __init__(self, provider: str, message: str, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(provider, message)


class MalformedAnswer(ProviderError):
    """The provider answered 2xx with a body that is not the documented format. Counted by the breaker."""


class ProviderRejected(ProviderError):
    """The provider refused the request (bad key, plan without this endpoint). Counted by the breaker."""


class NotEntitled(ProviderRejected):
    """The key is valid but its plan lacks this endpoint (Polygon's 403 ``NOT_AUTHORIZED``)."""


class SymbolNotFound(ProviderError, LookupError):
    """The provider is healthy and has no data for the symbol. Not counted against the provider."""


class ProviderSkipped(ProviderError):
    """The provider is not there to ask (IBKR with the gateway disconnected, or trading on paper).

    Not a failure: nothing is counted, nothing is logged, the next link answers.
    """


class CircuitOpen(ProviderError):
    """The provider's breaker is open: it failed repeatedly and is left alone until its cool-down ends."""


@dataclass(frozen=True)
class DailyBar:
    """One day of a symbol's history as a provider reports it; prices are ``Decimal``."""

    day: date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class HistoryProvider(Protocol):
    """A provider that can answer daily bars (Polygon aggregates, Alpha Vantage TIME_SERIES_DAILY)."""

    name: str

    async def daily_bars(self, symbol: str, since: date, until: date) -> list[DailyBar]: ...


def to_decimal(value: object, *, provider: str, what: str) -> Decimal:
    """A JSON number or numeric string as a ``Decimal``, never through a float.

    The JSON is parsed with ``parse_float=Decimal`` so numbers arrive here as
    ``Decimal`` already; strings (Alpha Vantage quotes every number) are
    converted from their text. Anything else, or a non-finite or negative
    price, is a malformed answer.
    """
    if isinstance(value, bool):
        raise MalformedAnswer(provider, f"{what} is a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation as exc:
            raise MalformedAnswer(provider, f"{what} is not a number: {value[:40]!r}") from exc
    else:
        raise MalformedAnswer(provider, f"{what} is missing or not a number ({type(value).__name__})")
    if not number.is_finite() or number < 0:
        raise MalformedAnswer(provider, f"{what} is {number}")
    return number


def close_of(day: date) -> datetime:
    """The moment a daily close is as of: 16:00 in New York that day, in UTC."""
    return datetime.combine(day, time(16, 0), tzinfo=EXCHANGE_TZ).astimezone(UTC)


def quote_age(quote: Quote, now: datetime | None = None) -> float:
    """Seconds between the price's as-of moment and ``now`` (never negative)."""
    moment = now if now is not None else datetime.now(UTC)
    stamp = quote.timestamp if quote.timestamp.tzinfo is not None else quote.timestamp.replace(tzinfo=UTC)
    return max(0.0, (moment - stamp).total_seconds())
