"""Whose a portfolio is, whether this caller may read or change it, and how a change is keyed.

Every route that names a portfolio in its path takes its owner as a dependency
(:data:`PortfolioReader`, :data:`PortfolioWriter`) instead of checking in its
body: someone else's portfolio is 404 to an investor and read-only to a linked
advisor (:func:`serve_apps.api.deps.require_access`), and the check runs
before anything else the route does. Routes that reach a portfolio through
another id (an order, a harvest, a recommendation) call :func:`owner_checked`
once they have read it. A change that moves money or shares carries an
``Idempotency-Key`` (:func:`require_key`) and travels to the shard as a
:class:`~wealthalloc.portfolios.service.Mutation` (:func:`mutation`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from pydantic import StringConstraints

from serve_apps.api.deps import CurrentPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError
from serve_apps.api.resources import Resources
from wealthalloc.portfolios.service import Mutation
from wealthalloc.security.access import Principal
from wealthalloc.storage import books

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]
Symbol = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z.^-]{1,12}$")
]
MAX_OWNERS_REMEMBERED = 100_000


async def owner_checked(
    res: Resources, principal: Principal, portfolio_id: uuid.UUID, *, write: bool
) -> uuid.UUID:
    """The portfolio's owner, once ``principal`` may read it (or change it, with ``write``).

    Owners never change, so each replica remembers them (bounded) and asks PostgreSQL once.
    """
    owner = res.portfolio_owners.get(portfolio_id)
    if owner is None:
        assert res.pool is not None
        async with res.pool.connection() as conn:
            owner = await books.owner_of(conn, portfolio_id)
        if owner is None:
            raise ApiError(404, "NOT_FOUND", "No such portfolio.")
        if len(res.portfolio_owners) >= MAX_OWNERS_REMEMBERED:
            res.portfolio_owners.clear()
        res.portfolio_owners[portfolio_id] = owner
    await require_access(res, principal, owner, write=write, what="portfolio")
    return owner


async def _readable(portfolio_id: uuid.UUID, principal: CurrentPrincipal, res: ResourcesDep) -> uuid.UUID:
    return await owner_checked(res, principal, portfolio_id, write=False)


async def _writable(portfolio_id: uuid.UUID, principal: CurrentPrincipal, res: ResourcesDep) -> uuid.UUID:
    return await owner_checked(res, principal, portfolio_id, write=True)


#: The owner of the path's ``portfolio_id``, which the caller may read.
PortfolioReader = Annotated[uuid.UUID, Depends(_readable)]
#: The owner of the path's ``portfolio_id``, which the caller may change.
PortfolioWriter = Annotated[uuid.UUID, Depends(_writable)]


def mutation(
    request: Request, principal: Principal, owner: uuid.UUID, key: str | None, body: Any
) -> Mutation:
    """The change as the shard records it: whose book, who asked, under which key, with what."""
    return Mutation(
        user_id=owner,
        actor_id=principal.user_id,
        idempotency_key=key,
        method=request.method,
        path=request.url.path,
        body=body,
    )


def require_key(key: str | None) -> None:
    """Refuse a change that moves money or shares without an ``Idempotency-Key``."""
    if not key or not key.strip():
        raise ApiError(
            400,
            "IDEMPOTENCY_KEY_REQUIRED",
            "This request moves money or shares: send an Idempotency-Key header (e.g. a UUID).",
        )
