"""Polygon.io's REST API: the last trade (or the previous close) as a quote, and daily aggregates.

Endpoints used (https://polygon.io/docs/stocks):

- ``GET /v2/last/trade/{ticker}``: ``{"status": "OK", "results": {"T", "p", "s", "t", ...}}``,
  ``p`` the price, ``t`` the SIP timestamp in nanoseconds. Plans without
  real-time trades answer 403 ``NOT_AUTHORIZED``; the client then switches to
- ``GET /v2/aggs/ticker/{ticker}/prev``: the previous day's bar,
  ``{"status": "OK", "resultsCount": 1, "results": [{"T", "o", "h", "l", "c", "v", "t"}]}``,
  ``t`` the start of the bar in milliseconds;
- ``GET /v2/aggs/ticker/{ticker}/range/1/day/{from}/{to}``: the same bars for a
  range, ascending, paged by ``next_url``.

Errors: 401 ``{"status": "ERROR", "error": "Unknown API Key"}``, 403
``NOT_AUTHORIZED``, 429 ``{"status": "ERROR", "error": "You've exceeded the
maximum requests per minute..."}``, 404 for an unknown ticker, 5xx. The key
goes in an ``Authorization: Bearer`` header, never in the URL.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import httpx

from wealthalloc.brokers.base import Quote
from wealthalloc.brokers.paper import quote_from_close
from wealthalloc.marketdata.providers._base import (
    EXCHANGE_TZ,
    DailyBar,
    MalformedAnswer,
    NotEntitled,
    ProviderRejected,
    RateLimited,
    SymbolNotFound,
    close_of,
    to_decimal,
)
from wealthalloc.marketdata.providers._guard import ProviderGuard
from wealthalloc.marketdata.providers._http import JsonAnswer, get_json

NAME = "polygon"
_OK = ("OK", "DELAYED")
_MAX_PAGES = 100


class PolygonClient:
    """Quotes and daily bars from Polygon, every request under ``guard``.

    Parameters
    ----------
    http : httpx.AsyncClient
        Owned by the caller (one per process, connection pooling).
    api_key : str
    base_url : str
        ``https://api.polygon.io``; tests point it at a local fake server.
    guard : ProviderGuard
        Budget (5,000/min by default), timeout, retries and breaker.
    spread_bps : Decimal
        Polygon's trade endpoints carry no book: bid and ask straddle the
        price by the paper market's spread, as bundled quotes do.
    use_last_trade : bool
        Start with ``/v2/last/trade``; turned off for good after a 403.
    """

    name = NAME

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str,
        guard: ProviderGuard,
        spread_bps: Decimal,
        use_last_trade: bool = True,
    ) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._base = base_url.rstrip("/")
        self._guard = guard
        self._spread = spread_bps
        self._last_trade = use_last_trade

    @property
    def guard(self) -> ProviderGuard:
        return self._guard

    async def quote(self, symbol: str) -> Quote:
        """The latest trade, or the previous close when the plan has no trades."""
        ticker = _ticker(symbol)
        if self._last_trade:
            try:
                return await self._guard.call(lambda: self._trade_quote(ticker))
            except NotEntitled:
                self._last_trade = False  # this key's plan has no real-time trades: use the close
                self._guard.breaker.record_success()
        return await self._guard.call(lambda: self._prev_quote(ticker))

    async def daily_bars(self, symbol: str, since: date, until: date) -> list[DailyBar]:
        """Adjusted daily bars from ``since`` to ``until`` (inclusive), oldest first, every page followed."""
        ticker = _ticker(symbol)
        span = f"{since:%Y-%m-%d}/{until:%Y-%m-%d}"
        url: str | None = f"{self._base}/v2/aggs/ticker/{ticker}/range/1/day/{span}"
        params: dict[str, str] | None = {"adjusted": "true", "sort": "asc", "limit": "50000"}
        bars: dict[date, DailyBar] = {}
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            page = partial(self._get_checked, url, params, ticker)
            body = await self._guard.call(page, wait_for_budget=True)
            for row in _results_list(body, required=False):
                bar = _bar(row)
                if since <= bar.day <= until:
                    bars[bar.day] = bar
            next_url = body.get("next_url")
            url = next_url if isinstance(next_url, str) and next_url else None
            params = None  # next_url carries the cursor and the query
        return [bars[day] for day in sorted(bars)]

    async def _trade_quote(self, ticker: str) -> Quote:
        body = _checked(await self._get(f"{self._base}/v2/last/trade/{ticker}"), ticker)
        results = body.get("results")
        if not isinstance(results, dict):
            raise MalformedAnswer(NAME, "last trade without 'results'")
        price = to_decimal(results.get("p"), provider=NAME, what="last trade price")
        stamp = results.get("t")
        if isinstance(stamp, bool) or not isinstance(stamp, int | Decimal):
            raise MalformedAnswer(NAME, "last trade without a timestamp 't'")
        as_of = datetime.fromtimestamp(int(stamp) / 1_000_000_000, tz=UTC)
        return self._quote(ticker, price, as_of)

    async def _prev_quote(self, ticker: str) -> Quote:
        body = _checked(await self._get(f"{self._base}/v2/aggs/ticker/{ticker}/prev"), ticker)
        rows = _results_list(body, required=True)
        if not rows:
            raise SymbolNotFound(NAME, f"no previous close for {ticker}")
        bar = _bar(rows[-1])
        return self._quote(ticker, bar.close, close_of(bar.day))

    def _quote(self, ticker: str, price: Decimal, as_of: datetime) -> Quote:
        return replace(quote_from_close(ticker, price, self._spread, as_of), source=NAME)

    async def _get_checked(self, url: str, params: dict[str, str] | None, ticker: str) -> dict[str, Any]:
        return _checked(await self._get(url, params), ticker)

    async def _get(self, url: str, params: dict[str, str] | None = None) -> JsonAnswer:
        return await get_json(self._http, NAME, url, params=params, headers=self._headers)


def _ticker(symbol: str) -> str:
    ticker = symbol.strip().upper()
    # It goes into the URL path: letters and digits first, then only the separators tickers use.
    if not ticker[:1].isalnum() or not all(ch.isalnum() or ch in ".-:" for ch in ticker):
        raise SymbolNotFound(NAME, f"not a ticker: {symbol!r}")
    return ticker


def _checked(answer: JsonAnswer, ticker: str) -> dict[str, Any]:
    """The body of a successful answer; every documented failure as its error."""
    body = answer.body
    message = ""
    if isinstance(body, dict):
        message = str(body.get("error") or body.get("message") or body.get("status") or "")
    if answer.status == 429:
        raise RateLimited(NAME, f"HTTP 429: {message}", retry_after_s=answer.retry_after_s)
    if answer.status == 404:
        raise SymbolNotFound(NAME, f"no data for {ticker}: {message}")
    if answer.status == 403:
        raise NotEntitled(NAME, f"HTTP 403: {message}")
    if answer.status == 401:
        raise ProviderRejected(NAME, f"HTTP 401: {message}")
    if answer.status >= 400:
        raise ProviderRejected(NAME, f"HTTP {answer.status}: {message or answer.text[:120]}")
    if not isinstance(body, dict):
        raise MalformedAnswer(NAME, f"expected a JSON object, got {type(body).__name__}")
    status = body.get("status")
    if status not in _OK:
        raise MalformedAnswer(NAME, f"status {status!r}: {message}")
    return body


def _results_list(body: dict[str, Any], *, required: bool) -> list[Any]:
    results = body.get("results")
    if results is None and not required:
        return []  # Polygon omits "results" when a range has no bars
    if results is None and body.get("resultsCount") == 0:
        return []
    if not isinstance(results, list):
        raise MalformedAnswer(NAME, "'results' is not a list")
    return results


def _bar(row: object) -> DailyBar:
    if not isinstance(row, dict):
        raise MalformedAnswer(NAME, "a bar is not an object")
    stamp = row.get("t")
    if isinstance(stamp, bool) or not isinstance(stamp, int | Decimal):
        raise MalformedAnswer(NAME, "a bar without a timestamp 't'")
    # 't' is the start of the day's window; the exchange's calendar day is New York's.
    day = datetime.fromtimestamp(int(stamp) / 1000, tz=UTC).astimezone(EXCHANGE_TZ).date()
    return DailyBar(
        day=day,
        open=to_decimal(row.get("o"), provider=NAME, what="open"),
        high=to_decimal(row.get("h"), provider=NAME, what="high"),
        low=to_decimal(row.get("l"), provider=NAME, what="low"),
        close=to_decimal(row.get("c"), provider=NAME, what="close"),
        volume=to_decimal(row.get("v", 0), provider=NAME, what="volume"),
    )
