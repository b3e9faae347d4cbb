"""Operators' routes: user management and the audit trail. Admins only."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from serve_apps.api.deps import AdminPrincipal, ClientIp, ResourcesDep
from serve_apps.api.envelope import ApiError, success
from wealthalloc.security.access import Role
from wealthalloc.storage.audit import audit_page

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get("/users", summary="Users in email order, a page at a time")
async def list_users(
    admin: AdminPrincipal,
    request: Request,
    res: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: Annotated[
        str | None, Query(max_length=320, description="The last email of the previous page")
    ] = None,
) -> JSONResponse:
    users = await res.accounts.users(after_email=after, limit=limit)
    links = (
        {"next": f"/api/v1/admin/users?limit={limit}&after={users[-1]['email']}"}
        if len(users) == limit
        else {}
    )
    return success(request, users, links=links)


class UserChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    tier: Literal["standard", "premium"] | None = None


@router.patch("/users/{user_id}", summary="Change a user's role or tier")
async def update_user(
    user_id: uuid.UUID,
    body: UserChanges,
    admin: AdminPrincipal,
    request: Request,
    res: ResourcesDep,
    ip: ClientIp,
) -> JSONResponse:
    if body.role is None and body.tier is None:
        raise ApiError(400, "VALIDATION_ERROR", "Give a role or a tier to change.")
    return success(
        request, await res.accounts.set_role_and_tier(admin, user_id, role=body.role, tier=body.tier, ip=ip)
    )


@router.delete(
    "/users/{user_id}", status_code=204, summary="Delete a user (their tokens and keys stop working)"
)
async def delete_user(user_id: uuid.UUID, admin: AdminPrincipal, res: ResourcesDep, ip: ClientIp) -> Response:
    await res.accounts.delete_user(admin, user_id, ip=ip)
    return Response(status_code=204)


@router.get("/audit", summary="The audit trail, newest first")
async def audit(
    admin: AdminPrincipal,
    request: Request,
    res: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, description="Rows older than this sequence")] = None,
    actor_id: uuid.UUID | None = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        rows = await audit_page(conn, before_sequence=before, limit=limit, actor_id=actor_id, action=action)
    links = (
        {"next": f"/api/v1/admin/audit?limit={limit}&before={rows[-1]['sequence']}"}
        if len(rows) == limit
        else {}
    )
    return success(request, rows, links=links)
