"""A person's notifications (newest first, read or not) and where they want each kind: app, e-mail.

Notifications are made by the event bus from the events of the person's own
account (``wealthalloc.events.notifications``); here they are listed, counted
and marked read. Each is the caller's own: someone else's id is 404, as if it
did not exist. Changing preferences is the person's (not an API key's), like
the rest of their account settings; security e-mail stays on.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from serve_apps.api.deps import ClientIp, CurrentPrincipal, PersonPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.pagination import decode_cursor, next_links
from wealthalloc.notifications import PreferenceError, changed, effective
from wealthalloc.security.access import Principal
from wealthalloc.storage import notifications as store
from wealthalloc.storage.audit import append_audit, new_entry

router = APIRouter(prefix="/api/v1", tags=["notifications"])


class PreferencesBody(BaseModel):
    """A partial update: only the kinds and channels named change."""

    model_config = ConfigDict(extra="forbid")

    kinds: dict[str, dict[str, Any]] = Field(
        max_length=20, description='e.g. {"trade_fill": {"email": false}}; channels in_app and email'
    )


async def _own(res: Any, principal: Principal) -> Any:
    """The pool, once the caller may read their own account (an API key needs a read scope)."""
    await require_access(res, principal, principal.user_id, write=False, what="notification")
    assert res.pool is not None
    return res.pool


@router.get("/notifications", summary="My notifications, newest first")
async def list_notifications(
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    unread: bool | None = Query(default=None, description="true: unread only; false: read only"),
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    pool = await _own(res, principal)
    before = decode_cursor(cursor)
    async with pool.connection() as conn:
        rows = await store.list_notifications(
            conn, principal.user_id, unread=unread, limit=limit, before=before
        )
    links = next_links(request, rows, limit, at="created_at")
    return success(request, [store.public(row) for row in rows], links=links)


@router.get("/notifications/unread-count", summary="How many of my notifications are unread")
async def unread_count(principal: CurrentPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    pool = await _own(res, principal)
    async with pool.connection() as conn:
        count = await store.unread_count(conn, principal.user_id)
    return success(request, {"unread": count})


@router.post("/notifications/read-all", summary="Mark every notification of mine read")
async def read_all(principal: CurrentPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    pool = await _own(res, principal)
    async with pool.connection() as conn, conn.transaction():
        marked = await store.mark_all_read(conn, principal.user_id)
    return success(request, {"marked": marked})


@router.post("/notifications/{notification_id}/read", summary="Mark one notification read (idempotent)")
async def read_one(
    notification_id: uuid.UUID, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    pool = await _own(res, principal)
    async with pool.connection() as conn, conn.transaction():
        row = await store.mark_read(conn, principal.user_id, notification_id)
    if row is None:
        raise ApiError(404, "NOT_FOUND", "No such notification.")
    return success(request, store.public(row))


def _preferences(principal: Principal, overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        "kinds": {kind: channels.as_dict() for kind, channels in effective(overrides).items()},
        "email": principal.email,
    }


@router.get("/me/notification-preferences", summary="Where each kind of notification reaches me")
async def read_preferences(principal: CurrentPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    pool = await _own(res, principal)
    async with pool.connection() as conn:
        overrides = await store.preferences_of(conn, principal.user_id)
    return success(request, _preferences(principal, overrides))


@router.put("/me/notification-preferences", summary="Change where some kinds reach me (partial)")
async def update_preferences(
    body: PreferencesBody, principal: PersonPrincipal, request: Request, res: ResourcesDep, ip: ClientIp
) -> JSONResponse:
    assert res.pool is not None
    async with res.pool.connection() as conn, conn.transaction():
        if await store.lock_user(conn, principal.user_id) is None:
            raise ApiError(404, "NOT_FOUND", "No such user.")
        before = await store.preferences_of(conn, principal.user_id, for_update=True)
        try:
            after = changed(before, body.kinds)
        except PreferenceError as exc:
            raise ApiError(
                400, "VALIDATION_ERROR", exc.message, [{"field": f"body.{exc.field}", "message": exc.message}]
            ) from exc
        await store.save_preferences(conn, principal.user_id, after)
        await append_audit(
            conn,
            new_entry(
                "user.notification_preferences_updated",
                actor_id=principal.user_id,
                subject=f"user:{principal.user_id}",
                details={"kinds": after},
                ip=ip,
            ),
        )
    return success(request, _preferences(principal, after))
