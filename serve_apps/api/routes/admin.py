"""Operators' routes: user management and the audit trail. Admins only.

An admin-scoped API key reaches these routes like its admin owner's token (docs/security.md's
matrix): operators script them, and a key is only ever as strong as its owner.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from serve_apps.api.deps import AdminPrincipal, ClientIp, ResourcesDep
from serve_apps.api.envelope import ApiError, success
from wealthalloc.events.audit_chain import GENESIS_HASH, ChainedEntry, entry_hash, verify_chain
from wealthalloc.security.access import Role
from wealthalloc.storage.audit import audit_page, row_to_chained

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


# Trimmed, so a blank reason is refused rather than recorded as one.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class DisableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="Why (a ticket, a hold): kept with the user and in the audit trail")


class EnableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


@router.post(
    "/users/{user_id}/disable",
    summary="Suspend a user: every login ends at once, API keys and sign-ins are refused until enabled",
)
async def disable_user(
    user_id: uuid.UUID,
    body: DisableRequest,
    admin: AdminPrincipal,
    request: Request,
    res: ResourcesDep,
    ip: ClientIp,
) -> JSONResponse:
    return success(request, await res.accounts.disable_user(admin, user_id, reason=body.reason, ip=ip))


@router.post(
    "/users/{user_id}/enable",
    summary="Lift a suspension: the user signs in again and their API keys work again",
)
async def enable_user(
    user_id: uuid.UUID,
    admin: AdminPrincipal,
    request: Request,
    res: ResourcesDep,
    ip: ClientIp,
    body: EnableRequest | None = None,
) -> JSONResponse:
    reason = body.reason if body is not None else None
    return success(request, await res.accounts.enable_user(admin, user_id, reason=reason, ip=ip))


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


@router.get("/audit/verify", summary="The audit chain walked from its start: intact, or its first broken row")
async def verify_audit(admin: AdminPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM audit_log ORDER BY sequence")
        rows = [row_to_chained(row) for row in await cur.fetchall()]
    report = verify_chain(rows)
    result = {
        "valid": report.intact,
        "checked": report.entries,
        "first_bad_id": None if report.intact else _first_break(rows),
        "problems": report.problems[:20],
    }
    return success(request, result)


def _first_break(rows: list[ChainedEntry]) -> uuid.UUID | None:
    """The first row, in sequence order, whose own hash or link to the row before it does not hold:
    where an operator starts looking (every row after it is suspect too)."""
    expected_prev = GENESIS_HASH
    for row in rows:
        if row.prev_hash != expected_prev or entry_hash(row.prev_hash, row.entry) != row.hash:
            return row.entry.id
        expected_prev = row.hash
    return None
