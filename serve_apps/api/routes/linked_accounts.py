"""Linked accounts: a person's accounts at other brokers, synced into one of their portfolios.

``ibkr`` accounts are read through the ``AccountConnections`` actor (one gateway
connection each); ``csv`` accounts through a positions statement the person
uploads (``docs/linked-accounts.md`` has the format). Either way the broker's
positions are reconciled with the portfolio on the owning shard: differences
become reconciliation items, positions only the broker holds arrive as pending
transfer-in lots. The account number is sealed before it is stored and answered
only masked (``****4567``).

Also here: an advisor or admin confirming a pending transfer-in with a reason
(``POST /portfolios/{id}/lots/{lot_id}/confirm``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

import psycopg.errors
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from actors.account_connections import connections_handle
from actors.portfolio_shard import PortfolioShard
from serve_apps.api.deps import CurrentPrincipal, PersonPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.ownership import PortfolioReader, owner_checked
from serve_apps.api.resources import Resources
from wealthalloc.errors import ServiceError
from wealthalloc.linked_accounts import (
    InvalidAccountNumber,
    StatementError,
    mask,
    normalize,
    parse_statement,
)
from wealthalloc.logging import get_logger
from wealthalloc.portfolios.linked_books import CONFIRMING_ROLES, account_ref
from wealthalloc.portfolios.service import Mutation
from wealthalloc.security.access import Principal
from wealthalloc.security.encryption import EncryptionUnavailable, KeyRing, key_ring
from wealthalloc.storage import linked_accounts as store
from wealthalloc.storage.outbox import add_event

router = APIRouter(prefix="/api/v1", tags=["linked accounts"])
log = get_logger(__name__)

TOPIC = "portfolio.updates"
MAX_STATEMENT_CHARS = 512_000
# A sync through the gateway waits on the broker: bounded so a request never hangs on it.
SYNC_TIMEOUT_S = 60.0

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Statement = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STATEMENT_CHARS)]


class LinkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["ibkr", "csv"] = Field(
        description="ibkr: read through the IB Gateway; csv: a statement"
    )
    account_number: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The account number at the broker; stored encrypted, always answered masked"
    )
    name: Name
    portfolio_id: uuid.UUID = Field(description="Your portfolio the account syncs into")
    statement: Statement | None = Field(
        default=None,
        description="csv only: the positions statement (symbol,quantity,cost_basis,acquired_date)",
    )

    @model_validator(mode="after")
    def _valid_for_provider(self) -> LinkBody:
        try:
            self.account_number = normalize(self.provider, self.account_number)
        except InvalidAccountNumber as exc:
            raise ValueError(str(exc)) from None
        if self.provider == "csv" and self.statement is None:
            raise ValueError("a csv account needs its statement")
        if self.provider == "ibkr" and self.statement is not None:
            raise ValueError("an ibkr account is read from the gateway: send no statement")
        return self


class SyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statement: Statement | None = Field(default=None, description="csv accounts: the new statement")


class ConfirmBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)] = Field(
        description="Why the transfer is known to be real (kept on the lot and in the audit trail)"
    )


def view(row: dict[str, Any]) -> dict[str, Any]:
    """An account as every answer shows it: the number only masked."""
    return {
        "id": row["id"],
        "provider": row["provider"],
        "name": row["name"],
        "portfolio_id": row["portfolio_id"],
        "account_number": row["account_number_masked"],
        "account_number_masked": row["account_number_masked"],
        "status": row["status"],
        "syncing": row["unlinked_at"] is None,
        "last_synced_at": row["last_synced_at"],
        "last_sync_error": row["last_sync_error"],
        "broker_cash": row["broker_cash"],
        "created_date": row["created_date"],
        "unlinked_at": row["unlinked_at"],
    }


def _ring(res: Resources) -> KeyRing:
    try:
        return key_ring(res.settings)
    except EncryptionUnavailable as exc:
        raise ApiError(
            503,
            "LINKED_ACCOUNTS_UNAVAILABLE",
            "Linked accounts need the account-number keys (linked_account_keys, linked_account_index_key).",
        ) from exc


_HANDLES: dict[str, Any] = {}


def _connections(res: Resources) -> Any:
    """The namespace's AccountConnections actor, looked up once per replica."""
    namespace = res.settings.ray_namespace
    if namespace not in _HANDLES:
        _HANDLES[namespace] = connections_handle(res.settings)
    return _HANDLES[namespace]


def _today(res: Resources) -> Any:
    return res.clock.today()


@router.post("/linked-accounts", status_code=201, summary="Link an account at another broker to a portfolio")
async def link(
    body: LinkBody, principal: PersonPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    ring = _ring(res)
    owner = await owner_checked(res, principal, body.portfolio_id, write=True)
    if owner != principal.user_id:
        raise ApiError(404, "NOT_FOUND", "No such portfolio.")
    snapshot = _statement(body.statement, res) if body.statement is not None else None
    sealed = ring.encrypt(body.account_number, owner=owner)
    index = ring.blind_index(body.account_number, provider=body.provider)
    assert res.pool is not None
    try:
        async with res.pool.connection() as conn, conn.transaction():
            row = await store.insert_account(
                conn,
                user_id=owner,
                provider=body.provider,
                name=body.name,
                portfolio_id=body.portfolio_id,
                masked=mask(body.account_number),
                sealed=sealed,
                index=index,
            )
            await add_event(
                conn,
                topic=TOPIC,
                event_type="linked_account.linked",
                user_id=owner,
                aggregate_id=row["id"],
                payload=account_ref(row),
            )
    except psycopg.errors.UniqueViolation as exc:
        constraint = exc.diag.constraint_name
        if constraint == store.ONE_LINK:
            raise ApiError(409, "ALREADY_LINKED", "You have linked this account already.") from None
        if constraint == store.ONE_PER_PORTFOLIO:
            raise ApiError(
                409,
                "PORTFOLIO_ALREADY_LINKED",
                "Another account syncs into this portfolio; pick another one.",
            ) from None
        raise
    log.info("linked_account_linked", linked_account_id=str(row["id"]), provider=body.provider)
    sync = await _sync(res, row, snapshot)
    return success(request, {**view(sync.get("account") or row), "sync": _summary(sync)}, status_code=201)


@router.get("/linked-accounts", summary="Your linked accounts (numbers masked)")
async def list_accounts(
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    include_unlinked: Annotated[bool, Query(description="Also accounts unlinked before")] = False,
) -> JSONResponse:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        rows = await store.accounts_of(conn, principal.user_id, include_unlinked=include_unlinked)
    return success(request, [view(r) for r in rows])


@router.get("/linked-accounts/{account_id}", summary="One linked account, with its sync status")
async def get_account(
    account_id: uuid.UUID, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    row = await _readable(res, principal, account_id, write=False)
    return success(request, view(row))


@router.delete(
    "/linked-accounts/{account_id}", summary="Unlink: the account stops syncing, its history stays"
)
async def unlink(
    account_id: uuid.UUID, principal: PersonPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    row = await _readable(res, principal, account_id, write=True)
    assert res.pool is not None
    async with res.pool.connection() as conn, conn.transaction():
        unlinked = await store.unlink(conn, account_id)
        if unlinked is not None:
            await add_event(
                conn,
                topic=TOPIC,
                event_type="linked_account.unlinked",
                user_id=row["user_id"],
                aggregate_id=account_id,
                payload=account_ref(unlinked),
            )
    if unlinked is not None and row["provider"] == "ibkr":
        try:
            await asyncio.wait_for(_connections(res).forget.remote(account_id), 10)
        except (
            Exception
        ) as exc:  # the connection closes with the actor's pool anyway; unlinked is what counts
            log.warning("linked_connection_not_closed", linked_account_id=str(account_id), error=repr(exc))
    return success(request, view(unlinked or row))


@router.post(
    "/linked-accounts/{account_id}/sync", summary="Sync now: the broker's positions against the book"
)
async def sync_now(
    account_id: uuid.UUID,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    body: SyncBody | None = None,
) -> JSONResponse:
    row = await _readable(res, principal, account_id, write=True)
    if row["unlinked_at"] is not None:
        raise ApiError(409, "UNLINKED", "This account was unlinked; it no longer syncs.")
    statement = body.statement if body is not None else None
    if row["provider"] == "csv" and statement is None:
        raise ApiError(400, "VALIDATION_ERROR", "A csv account syncs from a new statement: send it.")
    if row["provider"] == "ibkr" and statement is not None:
        raise ApiError(
            400, "VALIDATION_ERROR", "An ibkr account is read from the gateway: send no statement."
        )
    snapshot = _statement(statement, res) if statement is not None else None
    sync = await _sync(res, row, snapshot)
    if "error" in sync:
        raise ServiceError.from_dict(sync["error"])
    return success(request, {**view(sync.get("account") or row), "sync": _summary(sync)})


@router.get(
    "/linked-accounts/{account_id}/reconciliation",
    summary="Where the broker and the portfolio disagree: open items first",
)
async def reconciliation(
    account_id: uuid.UUID,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    status: Literal["open", "resolved"] | None = None,
) -> JSONResponse:
    await _readable(res, principal, account_id, write=False)
    assert res.pool is not None
    async with res.pool.connection() as conn:
        items = await store.items_of(conn, account_id, status=status)
    return success(request, items)


@router.post(
    "/portfolios/{portfolio_id}/lots/{lot_id}/confirm",
    summary="Confirm a pending transfer-in (advisor or admin, with a reason)",
)
async def confirm_lot(
    portfolio_id: uuid.UUID,
    owner: PortfolioReader,
    lot_id: uuid.UUID,
    body: ConfirmBody,
    principal: PersonPrincipal,
    request: Request,
    res: ResourcesDep,
) -> JSONResponse:
    if principal.role.value not in CONFIRMING_ROLES:
        raise ApiError(
            403,
            "FORBIDDEN",
            "A transfer-in is confirmed by a sync of the linked account, or by an advisor or admin.",
        )
    m = Mutation(
        user_id=owner,
        actor_id=principal.user_id,
        idempotency_key=None,
        method=request.method,
        path=request.url.path,
        body=body.model_dump(mode="json"),
    )
    outcome = await res.shards.outcome(
        owner, PortfolioShard.confirm_lot, m, portfolio_id, lot_id, body.reason
    )
    return success(request, outcome.unwrap(), status_code=outcome.status)


async def _readable(
    res: Resources, principal: Principal, account_id: uuid.UUID, *, write: bool
) -> dict[str, Any]:
    """The account if ``principal`` may see it (or change it): someone else's is 404."""
    assert res.pool is not None
    async with res.pool.connection() as conn:
        row = await store.account(conn, account_id)
    if row is None:
        raise ApiError(404, "NOT_FOUND", "No such linked account.")
    await require_access(res, principal, row["user_id"], write=write, what="linked account")
    return row


def _statement(text: str, res: Resources) -> Any:
    try:
        return parse_statement(text, today=_today(res))
    except StatementError as exc:
        raise ApiError(400, "INVALID_STATEMENT", str(exc), exc.problems[:100]) from None


async def _sync(res: Resources, row: dict[str, Any], snapshot: Any) -> dict[str, Any]:
    """The sync's outcome as plain data (``error`` when the shard refused); a broker that could not be
    reached is not an error of the request: the account says so in its status."""
    if snapshot is not None:
        outcome = await res.shards.outcome(
            row["user_id"], PortfolioShard.apply_snapshot, row["user_id"], row["id"], snapshot
        )
    else:
        handle = _connections(res)
        outcome = await asyncio.wait_for(handle.sync.remote(row["id"]), SYNC_TIMEOUT_S)
    if outcome.error is not None:
        return {"error": outcome.error}
    return dict(outcome.data)


def _summary(sync: dict[str, Any]) -> dict[str, Any]:
    if "error" in sync:
        return {"status": "failed", "error": sync["error"]}
    return {
        "status": (sync.get("account") or {}).get("status"),
        "differences": sync.get("differences"),
        "resolved": sync.get("resolved"),
        "transfers_in": sync.get("transfers_in", []),
        "confirmed": sync.get("confirmed", []),
    }
