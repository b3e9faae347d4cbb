"""Typed dependencies: a route's signature says what it needs.

``CurrentPrincipal`` authenticates the caller (bearer token or ``X-API-Key``),
spends one token of its rate-limit bucket and records the bucket's state for
the response headers. ``AdminPrincipal`` also requires the admin role.
Access to one user's data (portfolios, orders, lots) is decided by
:func:`require_access`, the single place the permission matrix is applied.

When Redis cannot be reached, requests that carry valid credentials are
limited by an in-process bucket per replica instead (never unlimited, never
refused for the outage); sign-in itself fails closed, see
``wealthalloc.accounts.service``.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import Depends, Request

from serve_apps.api.envelope import ApiError
from serve_apps.api.resources import Resources
from wealthalloc.accounts.errors import unauthenticated
from wealthalloc.accounts.service import REDIS_DOWN
from wealthalloc.logging import get_logger
from wealthalloc.security.access import Access, Principal, Role, access_to_user_data
from wealthalloc.security.rate_limits import Decision, request_limit

log = get_logger(__name__)


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def client_ip(request: Request, trusted_hops: int) -> str:
    """The caller's address: the socket peer, or the entry ``trusted_hops`` proxies in from
    the right of X-Forwarded-For (entries further left are whatever the client wrote)."""
    peer = request.client.host if request.client else "unknown"
    if trusted_hops <= 0:
        return peer
    forwarded = [
        part.strip() for part in request.headers.get("x-forwarded-for", "").split(",") if part.strip()
    ]
    if len(forwarded) >= trusted_hops:
        return forwarded[-trusted_hops]
    return forwarded[0] if forwarded else peer


def get_client_ip(request: Request, res: ResourcesDep) -> str:
    return client_ip(request, res.settings.trusted_proxy_hops)


ClientIp = Annotated[str, Depends(get_client_ip)]


async def current_principal(request: Request, res: ResourcesDep) -> Principal:
    api_key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization", "")
    if api_key:
        principal = await res.accounts.authenticate_api_key(api_key.strip())
    elif authorization[:7].lower() == "bearer " and authorization[7:].strip():
        principal = await res.accounts.authenticate_bearer(authorization[7:].strip())
    else:
        raise unauthenticated("credentials_missing")
    decision = await _spend_request_token(res, principal)
    request.state.rate_limit_headers = decision.headers()
    if not decision.allowed:
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"Over the limit of {decision.limit} requests a minute; retry in {decision.retry_after_s} s.",
            {"limit": decision.limit, "retry_after_seconds": decision.retry_after_s},
            headers={"Retry-After": str(decision.retry_after_s)},
        )
    request.state.principal = principal
    return principal


async def _spend_request_token(res: Resources, principal: Principal) -> Decision:
    limit = request_limit(principal, res.settings)
    if res.limiter is not None:
        try:
            return await res.limiter.take(limit)
        except REDIS_DOWN as exc:
            log.warning("rate_limiter_unavailable_using_local_buckets", error=str(exc))
    return res.local_limiter.take(limit, time.time())


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, "FORBIDDEN", "This needs the admin role.")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]


async def require_access(
    res: Resources, principal: Principal, owner_id: uuid.UUID, *, write: bool, what: str = "resource"
) -> None:
    """Refuse unless ``principal`` may read (or write) data owned by ``owner_id``.

    Not even readable: 404, as if it did not exist. Readable but not writable: 403.
    """
    linked = False
    if principal.role is Role.ADVISOR and principal.user_id != owner_id:
        linked = await res.accounts.may_read_for_client(principal.user_id, owner_id)
    level = access_to_user_data(principal, owner_id, linked_advisor=linked)
    if level is Access.NONE:
        raise ApiError(404, "NOT_FOUND", f"No such {what}.")
    if write and level is not Access.WRITE:
        raise ApiError(403, "FORBIDDEN", f"You may read this {what} but not change it.")
