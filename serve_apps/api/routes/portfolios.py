"""Portfolios: the book a person sees, changed only through the shard that owns it.

Every route that names a portfolio takes its owner as a dependency
(:mod:`serve_apps.api.ownership`): someone else's portfolio is 404 to an
investor and read-only to a linked advisor. Reads come from the Redis snapshot
when it is there and of today's market date, else from the owning shard.
Changes that move money or shares need an ``Idempotency-Key`` header.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from actors.portfolio_shard import PortfolioShard
from serve_apps.api.deps import CurrentPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.ownership import (
    IdempotencyKey,
    PortfolioReader,
    PortfolioWriter,
    Symbol,
    mutation,
    owner_checked,
    require_key,
)
from serve_apps.api.resources import Resources
from serve_apps.api.schemas import NonNegativeMoney, PositiveShares, SignedCash
from wealthalloc.portfolios.service import snapshot_key
from wealthalloc.security.access import Principal

router = APIRouter(prefix="/api/v1", tags=["portfolios"])

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


async def _snapshot(res: Resources, owner: uuid.UUID, portfolio_id: uuid.UUID) -> dict[str, Any]:
    if res.redis is not None:
        try:
            cached = await res.redis.get(snapshot_key(owner, portfolio_id))
        except Exception:  # a dead cache is a slower read, not a failed one
            cached = None
        if cached is not None:
            snapshot: dict[str, Any] = json.loads(cached)
            if snapshot.get("as_of") == res.clock.today().isoformat():
                res.metrics.cache_lookup("portfolio_snapshot", hit=True)
                return snapshot
        res.metrics.cache_lookup("portfolio_snapshot", hit=False)
    result: dict[str, Any] = await res.shards.call(owner, PortfolioShard.snapshot, owner, portfolio_id)
    return result


# Reads ------------------------------------------------------------------------------------------


@router.get("/portfolio", summary="My default portfolio, valued today")
async def default_portfolio(principal: CurrentPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    data = await res.shards.call(principal.user_id, PortfolioShard.snapshot, principal.user_id, None)
    return success(request, data, links={"portfolio": f"/api/v1/portfolios/{data['id']}"})


@router.get(
    "/dashboard", summary="Totals, allocation, top holdings and harvestable losses across my portfolios"
)
async def dashboard(principal: CurrentPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    return success(
        request, await res.shards.call(principal.user_id, PortfolioShard.dashboard, principal.user_id)
    )


@router.get("/portfolios", summary="My portfolios, or a client's (advisor, admin) with user_id")
async def list_portfolios(
    principal: CurrentPrincipal, request: Request, res: ResourcesDep, user_id: uuid.UUID | None = None
) -> JSONResponse:
    owner = user_id or principal.user_id
    await require_access(res, principal, owner, write=False, what="user")
    return success(request, await res.shards.call(owner, PortfolioShard.portfolios, owner))


@router.get("/portfolios/{portfolio_id}", summary="One portfolio with holdings, valued today")
async def read_portfolio(
    portfolio_id: uuid.UUID,
    owner: PortfolioReader,
    request: Request,
    res: ResourcesDep,
) -> JSONResponse:
    return success(request, await _snapshot(res, owner, portfolio_id))


@router.get("/portfolios/{portfolio_id}/holdings", summary="Holdings derived from the open lots")
async def holdings(
    portfolio_id: uuid.UUID,
    owner: PortfolioReader,
    request: Request,
    res: ResourcesDep,
) -> JSONResponse:
    return success(request, (await _snapshot(res, owner, portfolio_id))["holdings"])


@router.get("/portfolios/{portfolio_id}/lots", summary="Open tax lots, with term and unrealized gain")
async def lots(
    portfolio_id: uuid.UUID,
    owner: PortfolioReader,
    request: Request,
    res: ResourcesDep,
    symbol: Annotated[Symbol | None, Query()] = None,
) -> JSONResponse:
    return success(request, await res.shards.call(owner, PortfolioShard.lots, owner, portfolio_id, symbol))


# Changes ----------------------------------------------------------------------------------------


class NewPortfolio(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    account_type: Literal["taxable", "ira", "roth_ira"] = "taxable"
    base_currency: Literal["USD"] = "USD"
    lot_method: Literal["fifo", "hifo", "specific"] = "fifo"
    is_default: bool = False
    target_allocation: dict[str, dict[str, str]] = Field(default_factory=dict)


@router.post("/portfolios", status_code=201, summary="Open a portfolio (same name again returns it)")
async def create_portfolio(
    body: NewPortfolio, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    await require_access(res, principal, principal.user_id, write=True, what="portfolio")
    m = mutation(request, principal, principal.user_id, None, body.model_dump())
    outcome = await res.shards.outcome(
        principal.user_id, PortfolioShard.create_portfolio, m, body.model_dump()
    )
    created, status = outcome.unwrap(), outcome.status
    data = await res.shards.call(
        principal.user_id, PortfolioShard.snapshot, principal.user_id, uuid.UUID(str(created["id"]))
    )
    return success(request, data, status_code=status, links={"self": f"/api/v1/portfolios/{data['id']}"})


class PortfolioChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    lot_method: Literal["fifo", "hifo", "specific"] | None = None
    is_default: bool | None = None
    target_allocation: dict[str, dict[str, str]] | None = None
    dividend_reinvestment: list[Symbol] | None = Field(
        default=None, max_length=500, description="Symbols whose dividends this portfolio reinvests"
    )


@router.patch("/portfolios/{portfolio_id}", summary="Rename, set the lot method, the default or the target")
async def update_portfolio(
    portfolio_id: uuid.UUID,
    owner: PortfolioWriter,
    body: PortfolioChanges,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
) -> JSONResponse:
    changes = body.model_dump(exclude_unset=True)
    if not changes or any(v is None for v in changes.values()):
        raise ApiError(400, "VALIDATION_ERROR", "Give at least one field to change, none of them null.")
    if "dividend_reinvestment" in changes:
        unknown = sorted({s for s in changes["dividend_reinvestment"] if s not in res.prices})
        if unknown:
            raise ApiError(400, "UNKNOWN_SYMBOL", "Unknown securities.", {"symbols": unknown})
        changes["dividend_reinvestment"] = sorted(set(changes["dividend_reinvestment"]))
    m = mutation(request, principal, owner, None, changes)
    return success(
        request, await res.shards.call(owner, PortfolioShard.update_portfolio, m, portfolio_id, changes)
    )


@router.delete("/portfolios/{portfolio_id}", status_code=204, summary="Close an empty portfolio")
async def delete_portfolio(
    portfolio_id: uuid.UUID,
    owner: PortfolioWriter,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
) -> Response:
    await res.shards.call(
        owner, PortfolioShard.delete_portfolio, mutation(request, principal, owner, None, None), portfolio_id
    )
    res.portfolio_owners.pop(portfolio_id, None)
    return Response(status_code=204)


class CashBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: SignedCash = Field(
        description="Decimal string, at most 4 decimal places (the balance's own precision, so any balance"
        ' can be withdrawn to zero); negative withdraws: "-250.00"'
    )
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


@router.post("/portfolios/{portfolio_id}/cash", status_code=201, summary="Deposit or withdraw cash")
async def move_cash(
    portfolio_id: uuid.UUID,
    owner: PortfolioWriter,
    body: CashBody,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    if principal.api_key_id is not None:
        # A key is a program acting for its owner: it may trade inside the account, but money
        # crosses the account's edge only when the person does it, signed in.
        what = "Withdrawing" if body.amount < 0 else "Depositing"
        raise ApiError(
            403,
            "FORBIDDEN",
            f"{what} cash needs a signed-in person: sign in and use your access token, not an API key.",
        )
    require_key(idempotency_key)
    m = mutation(request, principal, owner, idempotency_key, body.model_dump(mode="json"))
    outcome = await res.shards.outcome(
        owner, PortfolioShard.move_cash, m, portfolio_id, body.amount, body.description
    )
    return success(request, outcome.unwrap(), status_code=outcome.status)


# The fields each kind of acquisition needs, and those it may have (Pub 551: see
# wealthalloc.domain.acquisitions); acquired_at is the purchase, gift or death date.
_LOT_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "transfer": (frozenset({"cost_basis"}), frozenset()),
    "gift": (
        frozenset({"donor_cost_basis", "donor_acquired_at", "fair_market_value"}),
        frozenset({"gift_tax_paid", "taxable_gift"}),
    ),
    "inheritance": (
        frozenset({"fair_market_value"}),
        frozenset({"alternate_valuation_date", "alternate_fair_market_value"}),
    ),
}


class LotBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    shares: PositiveShares
    acquisition: Literal["transfer", "gift", "inheritance"] = Field(
        default="transfer", description="How the shares came: moved in from another broker, a gift, a bequest"
    )
    acquired_at: date = Field(
        description="transfer: the purchase date; gift: the date of the gift; inheritance: the date of death"
    )
    cost_basis: NonNegativeMoney | None = Field(default=None, description="transfer: total cost of the lot")
    donor_cost_basis: NonNegativeMoney | None = Field(
        default=None, description="gift: the donor's adjusted basis of the shares, in total"
    )
    donor_acquired_at: date | None = Field(default=None, description="gift: when the donor acquired them")
    fair_market_value: NonNegativeMoney | None = Field(
        default=None, description="gift: total FMV on the date of the gift; inheritance: at the date of death"
    )
    gift_tax_paid: NonNegativeMoney | None = Field(default=None, description="gift: gift tax the donor paid")
    taxable_gift: NonNegativeMoney | None = Field(
        default=None, description="gift: the amount of the gift for gift tax (after the annual exclusion)"
    )
    alternate_valuation_date: date | None = Field(
        default=None, description="inheritance: the alternate valuation date, when the estate elected it"
    )
    alternate_fair_market_value: NonNegativeMoney | None = Field(
        default=None, description="inheritance: total FMV at the alternate valuation date"
    )

    @field_validator("acquired_at", "donor_acquired_at", "alternate_valuation_date")
    @classmethod
    def _plausible(cls, value: date | None) -> date | None:
        if value is not None and value.year < 1900:
            raise ValueError("must be in 1900 or later")
        return value

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> LotBody:
        required, optional = _LOT_FIELDS[self.acquisition]
        given = {name for name in _ALL_KIND_FIELDS if getattr(self, name) is not None}
        missing = sorted(required - given)
        if missing:
            raise ValueError(f"a {self.acquisition} needs {', '.join(missing)}")
        foreign = sorted(given - required - optional)
        if foreign:
            raise ValueError(f"{', '.join(foreign)}: not used for a {self.acquisition}")
        return self


_ALL_KIND_FIELDS = frozenset().union(*(req | opt for req, opt in _LOT_FIELDS.values()))


@router.post(
    "/portfolios/{portfolio_id}/lots",
    status_code=201,
    summary="Record a lot transferred in from another broker, received as a gift, or inherited",
)
async def import_lot(
    portfolio_id: uuid.UUID,
    owner: PortfolioWriter,
    body: LotBody,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_key(idempotency_key)
    # Defaults left out: a transfer's key keeps the fingerprint it had before the other kinds.
    m = mutation(
        request, principal, owner, idempotency_key, body.model_dump(mode="json", exclude_defaults=True)
    )
    outcome = await res.shards.outcome(owner, PortfolioShard.import_lot, m, portfolio_id, body.model_dump())
    return success(request, outcome.unwrap(), status_code=outcome.status)


# Analysis ---------------------------------------------------------------------------------------


@router.get(
    "/portfolios/{portfolio_id}/performance", summary="Returns and risk over a period, with the value series"
)
async def performance(
    portfolio_id: uuid.UUID,
    owner: PortfolioReader,
    request: Request,
    res: ResourcesDep,
    start: date | None = None,
    end: date | None = None,
    benchmark: Annotated[Symbol, Query()] = "SPX",
) -> JSONResponse:
    data = await res.shards.call(
        owner, PortfolioShard.performance, owner, portfolio_id, start, end, benchmark
    )
    return success(request, data)


@router.get("/portfolios/{portfolio_id}/allocation", summary="Current against target weights, and the drift")
async def allocation(
    portfolio_id: uuid.UUID,
    owner: PortfolioReader,
    request: Request,
    res: ResourcesDep,
) -> JSONResponse:
    return success(request, await res.shards.call(owner, PortfolioShard.allocation, owner, portfolio_id))


class RebalanceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = True
    drift_band: Annotated[Decimal, Field(gt=0, le=Decimal("0.5"), decimal_places=4)] = Decimal("0.05")
    whole_shares: bool = True


@router.post(
    "/portfolios/{portfolio_id}/rebalance",
    summary="The orders that bring the portfolio back within its bands",
)
async def rebalance(
    portfolio_id: uuid.UUID,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    body: RebalanceBody | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    body = body or RebalanceBody()
    if not body.dry_run:
        owner = await owner_checked(res, principal, portfolio_id, write=True)
        require_key(idempotency_key)
        m = mutation(request, principal, owner, idempotency_key, body.model_dump(mode="json"))
        outcome = await res.shards.outcome(
            owner, PortfolioShard.rebalance_now, m, portfolio_id, body.drift_band, body.whole_shares
        )
        return success(request, outcome.unwrap(), status_code=outcome.status)
    owner = await owner_checked(res, principal, portfolio_id, write=False)
    data = await res.shards.call(
        owner, PortfolioShard.rebalance, owner, portfolio_id, body.drift_band, body.whole_shares
    )
    return success(request, data)


MAX_BOOKS_REBALANCED = 100


class RebalanceBooksBody(RebalanceBody):
    portfolio_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=MAX_BOOKS_REBALANCED)]

    @field_validator("portfolio_ids")
    @classmethod
    def _each_once(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(value)) < len(value):
            raise ValueError("names a portfolio more than once")
        return value


@router.post(
    "/portfolios:rebalance",
    summary=f"Rebalance up to {MAX_BOOKS_REBALANCED} of one investor's portfolios in one call",
)
async def rebalance_books(
    body: RebalanceBooksBody,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Each named portfolio's plan (``dry_run``, the default), or every plan placed in one
    transaction: order ``i`` of the ``n``-th portfolio under the derived key ``{key}/{n}/{i}``.
    ``portfolios`` answers each one as ``POST /portfolios/{id}/rebalance`` does, with its
    ``portfolio_id``. All the portfolios must have one owner."""
    owner = await _one_owner(res, principal, body.portfolio_ids, write=not body.dry_run)
    args = (body.portfolio_ids, body.drift_band, body.whole_shares)
    if body.dry_run:
        plans = await res.shards.call(owner, PortfolioShard.rebalance_books, owner, *args)
        return success(request, {"dry_run": True, "portfolios": plans})
    require_key(idempotency_key)
    m = mutation(request, principal, owner, idempotency_key, body.model_dump(mode="json"))
    outcome = await res.shards.outcome(owner, PortfolioShard.rebalance_books_now, m, *args)
    return success(request, outcome.unwrap(), status_code=outcome.status)


async def _one_owner(
    res: Resources, principal: Principal, portfolio_ids: list[uuid.UUID], *, write: bool
) -> uuid.UUID:
    """The one owner of every portfolio named, each of which ``principal`` may read (or change)."""
    owners: set[uuid.UUID] = set()
    for n, portfolio_id in enumerate(portfolio_ids):
        try:
            owners.add(await owner_checked(res, principal, portfolio_id, write=write))
        except ApiError as exc:
            detail = {"field": f"body.portfolio_ids.{n}", "portfolio_id": str(portfolio_id)}
            raise ApiError(exc.status, exc.code, exc.message, [detail]) from exc
    if len(owners) > 1:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            "portfolio_ids: the portfolios rebalanced together must all have one owner.",
            [{"field": "body.portfolio_ids", "message": "portfolios of several owners"}],
        )
    return owners.pop()
