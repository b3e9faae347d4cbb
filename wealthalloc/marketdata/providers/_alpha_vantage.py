"""Alpha Vantage's REST API: ``GLOBAL_QUOTE`` as a quote and ``TIME_SERIES_DAILY`` as daily bars.

Every call is ``GET /query?function=...&symbol=...&apikey=...`` and every
answer is HTTP 200, errors included, so the body decides
(https://www.alphavantage.co/documentation/):

- ``{"Global Quote": {"01. symbol", "05. price", "07. latest trading day", ...}}``,
  all values strings; ``{"Global Quote": {}}`` for an unknown symbol;
- ``{"Meta Data": {...}, "Time Series (Daily)": {"2024-01-05": {"1. open", "2. high",
  "3. low", "4. close", "5. volume"}}}``;
- ``{"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is
  5 calls per minute..."}``: rate limited (older wording), and
  ``{"Information": "... rate limit ..."}`` (current wording) likewise; any other
  ``Information`` (an invalid key, a premium-only endpoint) is a refusal;
- ``{"Error Message": "Invalid API call..."}``: no such symbol (or function).

``TIME_SERIES_DAILY`` closes are as traded, not adjusted for splits and
dividends (the adjusted series is a premium endpoint).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx

from wealthalloc.brokers.base import Quote
from wealthalloc.brokers.paper import quote_from_close
from wealthalloc.marketdata.providers._base import (
    DailyBar,
    MalformedAnswer,
    ProviderRejected,
    RateLimited,
    SymbolNotFound,
    close_of,
    to_decimal,
)
from wealthalloc.marketdata.providers._guard import ProviderGuard
from wealthalloc.marketdata.providers._http import JsonAnswer, get_json

NAME = "alpha_vantage"
_RATE_WORDS = ("call frequency", "rate limit", "requests per day", "spreading out", "per minute")
COMPACT_DAYS = 140
"""``outputsize=compact`` returns the last 100 trading days, about 140 calendar days."""


class AlphaVantageClient:
    """Quotes and daily bars from Alpha Vantage, every request under ``guard`` (5/min on a free key)."""

    name = NAME

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str,
        guard: ProviderGuard,
        spread_bps: Decimal,
        today: Any = None,
    ) -> None:
        self._http = http
        self._key = api_key
        self._url = base_url.rstrip("/") + "/query"
        self._guard = guard
        self._spread = spread_bps
        self._today = today or (lambda: datetime.now(UTC).date())

    @property
    def guard(self) -> ProviderGuard:
        return self._guard

    async def quote(self, symbol: str) -> Quote:
        """``GLOBAL_QUOTE``: the latest price, as of its latest trading day's close (or now, if earlier)."""
        ticker = symbol.strip().upper()
        return await self._guard.call(partial(self._quote, ticker))

    async def _quote(self, ticker: str) -> Quote:
        body = await self._get("GLOBAL_QUOTE", ticker, {})
        fields = body.get("Global Quote")
        if not isinstance(fields, dict):
            raise MalformedAnswer(NAME, "no 'Global Quote' object")
        if not fields:
            raise SymbolNotFound(NAME, f"no quote for {ticker}")
        price = to_decimal(fields.get("05. price"), provider=NAME, what="05. price")
        day = _day(fields.get("07. latest trading day"))
        as_of = min(close_of(day), datetime.now(UTC))
        return replace(quote_from_close(ticker, price, self._spread, as_of), source=NAME)

    async def daily_bars(self, symbol: str, since: date, until: date) -> list[DailyBar]:
        """``TIME_SERIES_DAILY`` between ``since`` and ``until`` (inclusive), oldest first.

        ``outputsize=full`` only when ``since`` is older than the compact
        window, because the free key may not have it.
        """
        ticker = symbol.strip().upper()
        size = "compact" if since >= self._today() - timedelta(days=COMPACT_DAYS) else "full"
        body = await self._guard.call(
            partial(self._get, "TIME_SERIES_DAILY", ticker, {"outputsize": size}), wait_for_budget=True
        )
        series = body.get("Time Series (Daily)")
        if not isinstance(series, dict):
            raise MalformedAnswer(NAME, "no 'Time Series (Daily)' object")
        bars = []
        for key, row in series.items():
            day = _day(key)
            if not since <= day <= until:
                continue
            if not isinstance(row, dict):
                raise MalformedAnswer(NAME, f"the bar of {key} is not an object")
            bars.append(
                DailyBar(
                    day=day,
                    open=to_decimal(row.get("1. open"), provider=NAME, what="1. open"),
                    high=to_decimal(row.get("2. high"), provider=NAME, what="2. high"),
                    low=to_decimal(row.get("3. low"), provider=NAME, what="3. low"),
                    close=to_decimal(row.get("4. close"), provider=NAME, what="4. close"),
                    volume=to_decimal(row.get("5. volume", "0"), provider=NAME, what="5. volume"),
                )
            )
        return sorted(bars, key=lambda bar: bar.day)

    async def _get(self, function: str, ticker: str, extra: dict[str, str]) -> dict[str, Any]:
        """One call with its documented failures raised, inside the guard (a "Note" is retried then)."""
        params = {"function": function, "symbol": ticker, "apikey": self._key, **extra}
        return _checked(await get_json(self._http, NAME, self._url, params=params), ticker)


def _checked(answer: JsonAnswer, ticker: str) -> dict[str, Any]:
    body = answer.body
    if answer.status == 429:
        raise RateLimited(NAME, "HTTP 429", retry_after_s=answer.retry_after_s)
    if answer.status >= 400:
        raise ProviderRejected(NAME, f"HTTP {answer.status}: {answer.text[:120]}")
    if not isinstance(body, dict):
        raise MalformedAnswer(NAME, f"expected a JSON object, got {type(body).__name__}")
    note = body.get("Note")
    if isinstance(note, str):
        raise RateLimited(NAME, note[:160])
    information = body.get("Information")
    if isinstance(information, str):
        if any(word in information.lower() for word in _RATE_WORDS):
            raise RateLimited(NAME, information[:160])
        raise ProviderRejected(NAME, information[:160])
    error = body.get("Error Message")
    if isinstance(error, str):
        raise SymbolNotFound(NAME, f"{ticker}: {error[:160]}")
    return body


def _day(value: object) -> date:
    if not isinstance(value, str):
        raise MalformedAnswer(NAME, f"a trading day is {type(value).__name__}, not text")
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError as exc:
        raise MalformedAnswer(NAME, f"not a date: {value[:20]!r}") from exc
