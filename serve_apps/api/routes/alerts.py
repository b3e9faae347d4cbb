"""Price alerts: a user asks to hear when a symbol crosses a level.

The alert is checked against the current quote when it is set (a level the
price has already reached is refused: it would fire at once), then fired by
the event bus's ``alerts`` group on the first published price at or past the
level, once. The user hears of it through the ``price_alert.triggered`` event:
their webhooks subscribed to it, and the audit trail.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from serve_apps.api.deps import ClientIp, CurrentPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.ownership import Symbol
from serve_apps.api.schemas import PositivePrice
from wealthalloc.domain.price_alerts import AlertOnWrongSide, check_level
from wealthalloc.storage import alerts as store
from wealthalloc.storage.audit import append_audit, new_entry

router = APIRouter(prefix="/api/v1", tags=["alerts"])


class AlertBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    direction: Literal["above", "below"] = Field(
        description="Fire when the price rises to (above) or falls to (below) the level"
    )
    level: PositivePrice = Field(description='A decimal string, e.g. "180.00"')
    note: str | None = Field(default=None, max_length=200)


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "status": "triggered" if row["triggered_at"] is not None else "armed"}


@router.post("/alerts", status_code=201, summary="Set a price alert on a symbol crossing a level")
async def create_alert(
    body: AlertBody, principal: CurrentPrincipal, request: Request, res: ResourcesDep, ip: ClientIp
) -> JSONResponse:
    await require_access(res, principal, principal.user_id, write=True, what="alert")
    if body.symbol not in res.prices:
        raise ApiError(400, "UNKNOWN_SYMBOL", f"No security {body.symbol} is known.", {"symbol": body.symbol})
    quote, _ = await res.quotes.quote(body.symbol)
    try:
        check_level(body.direction, body.level, quote.last)
    except AlertOnWrongSide as exc:
        raise ApiError(
            400, "ALERT_ALREADY_REACHED", str(exc), {"field": "level", "current_price": str(quote.last)}
        ) from exc
    assert res.pool is not None
    async with res.pool.connection() as conn, conn.transaction():
        # Serialise one user's creations so two concurrent requests cannot pass the limit together.
        await conn.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (principal.user_id,))
        if await store.count_armed(conn, principal.user_id) >= res.settings.alert_max_per_user:
            raise ApiError(
                409,
                "TOO_MANY_ALERTS",
                f"You have {res.settings.alert_max_per_user} armed alerts already; delete one first.",
            )
        row = await store.insert_alert(
            conn,
            user_id=principal.user_id,
            symbol=body.symbol,
            direction=body.direction,
            level=body.level,
            reference_price=Decimal(quote.last),
            note=body.note,
        )
        await append_audit(
            conn,
            new_entry(
                "price_alert.created",
                actor_id=principal.user_id,
                subject=f"price_alert:{row['id']}",
                details={"symbol": body.symbol, "direction": body.direction, "level": str(body.level)},
                ip=ip,
            ),
        )
    return success(request, _view(row), status_code=201)


@router.get("/alerts", summary="Your price alerts, newest first")
async def list_alerts(
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    status: Literal["armed", "triggered"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    await require_access(res, principal, principal.user_id, write=False, what="alert")
    assert res.pool is not None
    async with res.pool.connection() as conn:
        rows = await store.alerts_of(conn, principal.user_id, status=status, limit=limit)
    return success(request, [_view(r) for r in rows])


@router.delete("/alerts/{alert_id}", status_code=204, summary="Delete a price alert")
async def delete_alert(alert_id: uuid.UUID, principal: CurrentPrincipal, res: ResourcesDep) -> Response:
    await require_access(res, principal, principal.user_id, write=True, what="alert")
    assert res.pool is not None
    async with res.pool.connection() as conn, conn.transaction():
        if not await store.delete_alert(conn, principal.user_id, alert_id):
            raise ApiError(404, "NOT_FOUND", "No such alert.")
    return Response(status_code=204)
