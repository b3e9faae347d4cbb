"""Typed dependencies: a route's signature says what it needs.

``CurrentPrincipal`` authenticates the caller (bearer token or ``X-API-Key``),
spends one token of its rate-limit bucket and records the bucket's state for
the response headers. ``PersonPrincipal`` also refuses API keys (403): what
can take money out or hand the account over (keys, webhooks, MFA, password,
profile, advisor links) is done by the person. ``AdminPrincipal`` requires
the admin role.
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
from dataclasses import replace
from typing import Annotated

import structlog
from fastapi import Depends, Request

from serve_apps.api.envelope import ApiError
from serve_apps.api.resources import PRINCIPAL_CACHE_SECONDS, Resources
from wealthalloc.accounts.errors import person_required, unauthenticated
from wealthalloc.accounts.service import REDIS_DOWN
from wealthalloc.logging import get_logger
from wealthalloc.security.access import Access, Principal, Role, access_to_user_data
from wealthalloc.security.rate_limits import Decision, request_limit, user_generation_key

log = get_logger(__name__)


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


# Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a thread pool, and
# that hop costs more than the dependency itself on every request.
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


async def get_client_ip(request: Request, res: ResourcesDep) -> str:
    return client_ip(request, res.settings.trusted_proxy_hops)


ClientIp = Annotated[str, Depends(get_client_ip)]


async def current_principal(request: Request, res: ResourcesDep) -> Principal:
    api_key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization", "")
    if api_key:
        principal = await res.accounts.authenticate_api_key(api_key.strip())
        decision = await _spend_request_token(res, principal)
    elif authorization[:7].lower() == "bearer " and authorization[7:].strip():
        principal, decision = await _bearer(res, authorization[7:].strip())
    else:
        raise unauthenticated("credentials_missing")
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
    # The request's log lines name who made it (an id: never an e-mail, a token or an account number).
    structlog.contextvars.bind_contextvars(user_id=str(principal.user_id))
    return principal


async def _bearer(res: Resources, token: str) -> tuple[Principal, Decision]:
    """The caller of a bearer token, from this replica's cache while nothing about the user changed.

    The token's signature and expiry are checked on every request. Whether its session (login) is
    still live and who the user is (role, tier, still there) come from PostgreSQL, cached per
    replica and session while the user's generation in Redis stays the same. The generation comes
    back in the same round trip as the rate-limit bucket, so the fast path costs no query, and
    every revocation (sign-out, password or MFA change, role change, deletion) moves it: the next
    request of a revoked session goes to PostgreSQL and is refused there, on every replica. When
    the generation cannot be read (Redis down) the cache is not trusted and PostgreSQL answers.
    Entries are re-read after PRINCIPAL_CACHE_SECONDS in any case.

    The generation is always read *before* PostgreSQL: a revocation committed after that read
    moves the generation after it too, so what is cached can never hide it.
    """
    claims = res.accounts.verify_bearer(token)
    if claims.session_id is None:
        raise unauthenticated("token_without_session")
    cached = res.principals.get(claims.session_id)
    if (
        cached is not None
        and cached.principal.user_id == claims.user_id
        and time.monotonic() - cached.loaded_at < PRINCIPAL_CACHE_SECONDS
    ):
        decision = await _spend_request_token(res, cached.principal, watch=True)
        if decision.read_value is not None and decision.read_value == cached.generation:
            # The sign-in time is the token's own (signed) claim, not whatever token filled the cache.
            principal = replace(
                cached.principal, token_id=claims.token_id, authenticated_at=claims.authenticated_at
            )
            return principal, decision
        principal = await res.accounts.authenticate_bearer(token, claims)
        if request_limit(principal, res.settings) != request_limit(cached.principal, res.settings):
            generation = decision.read_value
            decision = await _spend_request_token(res, principal)  # the new tier's bucket
            decision = replace(decision, read_value=generation)
        res.remember(principal, decision.read_value)
        return principal, decision
    generation = await user_generation(res, claims.user_id)
    principal = await res.accounts.authenticate_bearer(token, claims)
    decision = await _spend_request_token(res, principal)
    res.remember(principal, generation)
    return principal, decision


async def user_generation(res: Resources, user_id: uuid.UUID) -> str | None:
    """The user's generation in Redis, or None when Redis cannot say (then nothing is cached)."""
    if res.limiter is None:
        return None
    try:
        return await res.limiter.read(user_generation_key(user_id))
    except REDIS_DOWN as exc:
        log.warning("user_generation_unavailable", error=str(exc))
        return None


async def _spend_request_token(res: Resources, principal: Principal, *, watch: bool = False) -> Decision:
    limit = request_limit(principal, res.settings)
    if res.limiter is not None:
        try:
            return await res.limiter.take(
                limit, also_read=user_generation_key(principal.user_id) if watch else None
            )
        except REDIS_DOWN as exc:
            log.warning("rate_limiter_unavailable_using_local_buckets", error=str(exc))
    return res.local_limiter.take(limit, time.time())


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def require_person(principal: CurrentPrincipal) -> Principal:
    if not principal.is_person:
        raise person_required()
    return principal


PersonPrincipal = Annotated[Principal, Depends(require_person)]


async def refuse_api_keys(request: Request) -> None:
    """For a whole router (``/api/v1/auth``): a request carrying an API key is refused (403)
    before anything else, also on routes that need no credentials."""
    if request.headers.get("x-api-key"):
        raise person_required()


async def require_admin(principal: CurrentPrincipal) -> Principal:
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
