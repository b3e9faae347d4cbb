"""The market the platform lives in: the clock's trading day and the securities it knows."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_apps.api.envelope import success
from serve_apps.api.resources import Resources

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
