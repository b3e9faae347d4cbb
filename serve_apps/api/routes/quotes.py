"""Quotes and price history.

Quotes come from the configured provider through the Redis cache (60 s); when
the provider fails, the last cached quote is served, marked ``stale``. History
comes from the daily closes of the data: weekly and monthly bars are built
from them, and the daily bars of a close-only source carry no open, high, low
or volume (null, not invented).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from serve_apps.api.deps import CurrentPrincipal, ResourcesDep
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.resources import Resources
from wealthalloc.marketdata.quotes import QuoteUnavailable

router = APIRouter(prefix="/api/v1", tags=["market"])

SymbolPath = Annotated[str, Path(pattern=r"^[A-Za-z.^-]{1,12}$")]
MAX_BARS = 5000


def _known(res: Resources, symbol: str) -> str:
    symbol = symbol.upper()
    if symbol not in res.prices:
        raise ApiError(404, "UNKNOWN_SYMBOL", f"No security {symbol} is known.", {"symbol": symbol})
    return symbol


@router.get("/quotes/{symbol}", summary="Bid, ask and last price, cached for 60 s")
async def quote(
    symbol: SymbolPath, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    symbol = _known(res, symbol)
    try:
        found, cached = await res.quotes.quote(symbol)
    except QuoteUnavailable as exc:
        raise ApiError(503, "QUOTE_UNAVAILABLE", f"No quote for {symbol} can be had right now.") from exc
    res.metrics.cache_lookup("quote", hit=cached)
    return success(
        request,
        {
            "symbol": found.symbol,
            "bid": found.bid,
            "ask": found.ask,
            "last": found.last,
            "timestamp": found.timestamp,
            "source": found.source,
            "stale": found.stale,
        },
    )


@router.get("/history/{symbol}", summary="Daily, weekly or monthly bars between two dates")
async def history(
    symbol: SymbolPath,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    start: date | None = None,
    end: date | None = None,
    interval: Literal["1d", "1wk", "1mo"] = "1d",
) -> JSONResponse:
    symbol = _known(res, symbol)
    today = res.clock.today()
    end = min(end or today, today)
    start = start or end - timedelta(days=365)
    if start > end:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            "start must be on or before end (and end is at most today's market date).",
            {"start": start, "end": end},
        )
    closes = res.prices.closes(symbol)
    closes = closes[(closes.index >= pd.Timestamp(start)) & (closes.index <= pd.Timestamp(end))]
    bars = _bars(closes, interval)
    if len(bars) > MAX_BARS:
        raise ApiError(400, "VALIDATION_ERROR", f"At most {MAX_BARS} bars at once: narrow the dates.")
    return success(
        request, {"symbol": symbol, "interval": interval, "start": start, "end": end, "bars": bars}
    )


def _bars(closes: pd.Series, interval: str) -> list[dict[str, object]]:
    if interval == "1d":
        return [
            {"date": ts.date(), "open": None, "high": None, "low": None, "close": _money(v), "volume": None}
            for ts, v in closes.items()
        ]
    rule = "W-FRI" if interval == "1wk" else "ME"
    grouped = closes.resample(rule)
    frame = pd.DataFrame(
        {"open": grouped.first(), "high": grouped.max(), "low": grouped.min(), "close": grouped.last()}
    ).dropna()
    return [
        {
            "date": ts.date(),
            "open": _money(row["open"]),
            "high": _money(row["high"]),
            "low": _money(row["low"]),
            "close": _money(row["close"]),
            "volume": None,
        }
        for ts, row in frame.iterrows()
    ]


def _money(value: float) -> str:
    return f"{value:.4f}"
