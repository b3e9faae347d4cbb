"""The market the platform lives in: the clock's trading day and the securities it knows."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from serve_apps.api.envelope import ApiError, success
from serve_apps.api.resources import Resources
from wealthalloc.marketdata import NoPriceError

router = APIRouter(prefix="/api/v1/market", tags=["market"])


@router.get("/clock", summary="Today's trading day in the data, and the real date it stands for")
async def market_clock(request: Request) -> JSONResponse:
    res: Resources = request.app.state.resources
    today = res.clock.today()
    return success(
        request,
        {
            "market_date": today,
            "real_date": res.clock.to_real(today),
            "offset_years": res.clock.offset_years(),
            "data_start": res.prices.first_date,
            "data_end": res.prices.last_date,
        },
    )


@router.get("/securities", summary="Every symbol with prices, with its sector and asset class")
async def securities(request: Request) -> JSONResponse:
    res: Resources = request.app.state.resources
    rows = []
    for symbol in res.prices.symbols():
        security = res.securities.get(symbol)
        rows.append(
            {
                "symbol": symbol,
                "name": security.name if security else None,
                "asset_class": security.asset_class if security else "unknown",
                "sector": security.sector if security else "Unknown",
                "currency": security.currency if security else "USD",
            }
        )
    return success(request, rows, headers={"Cache-Control": "max-age=300"})


class PricesQuery(BaseModel):
    """Closes of several symbols on one day of the data (the market clock's today when omitted)."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[
        Annotated[
            str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z.^-]{1,12}$")
        ]
    ] = Field(min_length=1, max_length=100)
    on: date | None = None


@router.post("/prices", summary="Closes of several symbols on one trading day, as decimal strings")
async def prices_on(query: PricesQuery, request: Request) -> JSONResponse:
    res: Resources = request.app.state.resources
    day = query.on or res.clock.today()
    known = set(res.prices.symbols())  # one directory listing, not one per requested symbol
    unknown = sorted({s for s in query.symbols if s not in known})
    if unknown:
        raise ApiError(404, "UNKNOWN_SYMBOL", f"No prices for {', '.join(unknown)}.", {"symbols": unknown})
    closes = {}
    for symbol in dict.fromkeys(query.symbols):
        try:
            closes[symbol] = res.prices.close_on(symbol, day)
        except NoPriceError as exc:
            raise ApiError(400, "NO_PRICE", str(exc), {"symbol": symbol, "on": day}) from exc
    return success(request, {"on": day, "closes": closes})
