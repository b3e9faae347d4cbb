"""Portfolios as their owner, a linked advisor or an admin sees them.

Every route starts from :func:`serve_apps.api.deps.require_access`: someone
else's portfolio is 404 to an investor, and read-only to a linked advisor.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StringConstraints

from serve_apps.api.deps import CurrentPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.resources import Resources
from wealthalloc.security.access import Principal
from wealthalloc.storage import portfolios as store

router = APIRouter(prefix="/api/v1/portfolios", tags=["portfolios"])


async def _accessible(res: Resources, principal: Principal, portfolio_id: uuid.UUID, *, write: bool) -> None:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        owner = await store.owner_of(conn, portfolio_id)
    if owner is None:
        raise ApiError(404, "NOT_FOUND", "No such portfolio.")
    await require_access(res, principal, owner, write=write, what="portfolio")


async def _with_holdings(res: Resources, portfolio_id: uuid.UUID) -> dict[str, Any]:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        row = await store.portfolio(conn, portfolio_id)
        if row is None:
            raise ApiError(404, "NOT_FOUND", "No such portfolio.")
        return {**row, "holdings": await store.holdings(conn, portfolio_id)}


@router.get("", summary="My portfolios, or a client's (advisor, admin) with user_id")
async def list_portfolios(
    principal: CurrentPrincipal, request: Request, res: ResourcesDep, user_id: uuid.UUID | None = None
) -> JSONResponse:
    owner = user_id or principal.user_id
    await require_access(res, principal, owner, write=False, what="user")
    assert res.pool is not None
    async with res.pool.connection() as conn:
        rows = await store.portfolios_of(conn, owner)
    return success(request, rows)


@router.get("/{portfolio_id}", summary="One portfolio with its holdings")
async def read_portfolio(
    portfolio_id: uuid.UUID, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    await _accessible(res, principal, portfolio_id, write=False)
    return success(request, await _with_holdings(res, portfolio_id))


class PortfolioChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    lot_method: Literal["fifo", "hifo", "specific"] | None = None


@router.patch("/{portfolio_id}", summary="Rename a portfolio or change its lot relief method")
async def update_portfolio(
    portfolio_id: uuid.UUID,
    body: PortfolioChanges,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
) -> JSONResponse:
    await _accessible(res, principal, portfolio_id, write=True)
    if body.name is None and body.lot_method is None:
        raise ApiError(400, "VALIDATION_ERROR", "Give a name or a lot_method to change.")
    assert res.pool is not None
    async with res.pool.connection() as conn, conn.transaction():
        row = await store.rename(
            conn, portfolio_id, name=body.name, lot_method=body.lot_method, actor_id=principal.user_id
        )
    if row is None:
        raise ApiError(404, "NOT_FOUND", "No such portfolio.")
    return success(request, await _with_holdings(res, portfolio_id))
