"""Recommendations: listed (and generated when due), generated on request, accepted, dismissed.

Reading generates: ``GET /recommendations`` first runs the recommender for
each portfolio it covers whose last run saw another book, market day or risk
tolerance, or is older than ``recommendations_max_age_seconds``
(:mod:`wealthalloc.portfolios.recommendations`), so what is listed matches the
book as the owning shard values it now. The run asks the ``AnomalyDetector``
deployment for its flags when this replica has it; without them (no detector,
no promoted model, a timeout) the run goes on and each recommendation's
evidence says the check was not made.

Accepting moves shares and money, so it needs an ``Idempotency-Key`` and runs
in the shard that owns the user; dismissing only records why, here. Someone
else's recommendation is 404, like someone else's portfolio.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from actors.portfolio_shard import PortfolioShard
from serve_apps.api.deps import CurrentPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.ownership import IdempotencyKey, PortfolioWriter, mutation, owner_checked, require_key
from serve_apps.api.resources import Resources
from wealthalloc.domain.recommendations import AnomalyFlag
from wealthalloc.logging import get_logger
from wealthalloc.marketdata import MarketDataError
from wealthalloc.portfolios.recommendations import (
    RecommendationEngine,
    RunResult,
    described,
    dismiss,
    needs_run,
    run_portfolio,
)
from wealthalloc.security.access import Principal
from wealthalloc.storage import recommendations as rec_store

log = get_logger(__name__)

router = APIRouter(prefix="/api/v1", tags=["recommendations"])

Status = Literal["open", "accepted", "dismissed", "expired"]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]

_ENGINES: dict[tuple[str, ...], RecommendationEngine] = {}


def engine_of(res: Resources) -> RecommendationEngine:
    """The replica's recommendation engine (it keeps the day's closes and listings between requests)."""
    s = res.settings
    key = (
        str(s.prices_dir),
        str(s.recommendations_max_position_weight),
        str(s.recommendations_max_hhi),
        str(s.recommendations_min_confidence),
        str(s.recommendations_lookback_days),
    )
    engine = _ENGINES.get(key)
    if engine is None:
        engine = _ENGINES[key] = RecommendationEngine.from_settings(s, res.prices, res.securities)
    return engine


async def _anomaly_flags(res: Resources, symbols: list[str], as_of: date) -> dict[str, AnomalyFlag] | None:
    """The detector's verdict on each symbol's newest window; ``None`` when it cannot be asked."""
    handle = res.anomaly
    if handle is None or not symbols:
        return None
    try:
        scored = await asyncio.wait_for(
            handle.latest.remote(symbols, as_of), res.settings.recommendations_anomaly_timeout_seconds
        )
    except Exception as exc:  # no model promoted, a replica restarting, a timeout: recommend without
        log.warning("recommendations.anomaly_flags_unavailable", error=repr(exc))
        return None
    return {
        row.symbol: AnomalyFlag(
            symbol=row.symbol,
            reconstruction_error=float(row.reconstruction_error),
            threshold=float(row.threshold),
            model_version=str(row.model_version),
            window_end=row.window_end,
        )
        for row in scored.symbols
        if row.status == "scored" and row.reconstruction_error is not None
    }


async def _run(res: Resources, owner: uuid.UUID, snapshot: dict[str, Any], *, force: bool) -> RunResult:
    """One portfolio's run, when due (or ``force``): flags from the detector, then the recommender."""
    assert res.pool is not None
    engine = engine_of(res)
    settings = res.settings
    if not force and not await needs_run(
        res.pool, engine, owner, snapshot, settings.recommendations_max_age_seconds
    ):
        return RunResult(ran=False)
    as_of = date.fromisoformat(str(snapshot["as_of"]))
    held = [str(h["symbol"]) for h in snapshot["holdings"]]
    _, listings = await asyncio.to_thread(engine.market, as_of, held)
    flags = await _anomaly_flags(res, sorted({*held, *listings}), as_of)
    return await run_portfolio(
        res.pool,
        engine,
        owner=owner,
        snapshot=snapshot,
        anomalies=flags,
        max_age_s=settings.recommendations_max_age_seconds,
        snooze_days=settings.recommendations_snooze_days,
        force=force,
    )


# Reading ----------------------------------------------------------------------------------------


@router.get(
    "/recommendations",
    summary="My recommendations (or a portfolio's), open ones first; generated fresh when due",
)
async def list_recommendations(
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    portfolio_id: uuid.UUID | None = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    assert res.pool is not None
    if portfolio_id is not None:
        owner = await owner_checked(res, principal, portfolio_id, write=False)
        snapshots = [await res.shards.call(owner, PortfolioShard.snapshot, owner, portfolio_id)]
    else:
        owner = principal.user_id
        snapshots = await res.shards.call(owner, PortfolioShard.portfolios, owner)
    for snapshot in snapshots:
        try:
            await _run(res, owner, snapshot, force=False)
        except Exception as exc:  # what was generated before is still worth listing; the log says why
            log.exception("recommendations.run_failed", portfolio_id=str(snapshot["id"]), error=repr(exc))
    async with res.pool.connection() as conn:
        rows = await rec_store.listing(conn, owner, portfolio_id=portfolio_id, status=status, limit=limit)
    return success(request, await described(res.pool, owner, rows))


async def _recommendation_of(
    res: Resources, principal: Principal, recommendation_id: uuid.UUID, *, write: bool
) -> dict[str, Any]:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        row = await rec_store.recommendation(conn, recommendation_id)
    if row is None:
        raise ApiError(404, "NOT_FOUND", "No such recommendation.")
    await require_access(res, principal, row["user_id"], write=write, what="recommendation")
    return row


@router.get("/recommendations/{recommendation_id}", summary="One recommendation with its evidence and orders")
async def read_recommendation(
    recommendation_id: uuid.UUID, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    row = await _recommendation_of(res, principal, recommendation_id, write=False)
    assert res.pool is not None
    (data,) = await described(res.pool, row["user_id"], [row])
    return success(request, data)


# Generating -------------------------------------------------------------------------------------


@router.post(
    "/portfolios/{portfolio_id}/recommendations/generate",
    summary="Run the recommender for a portfolio now; returns its open recommendations",
)
async def generate(
    portfolio_id: uuid.UUID, owner: PortfolioWriter, request: Request, res: ResourcesDep
) -> JSONResponse:
    # A run writes (new, refreshed and expired recommendations): 403 to a read-only advisor or key.
    snapshot = await res.shards.call(owner, PortfolioShard.snapshot, owner, portfolio_id)
    try:
        result = await _run(res, owner, snapshot, force=True)
    except (ValueError, MarketDataError) as exc:
        raise ApiError(
            422, "RECOMMENDATIONS_UNAVAILABLE", f"Cannot make recommendations for this portfolio: {exc}"
        ) from None
    assert res.pool is not None
    async with res.pool.connection() as conn:
        rows = await rec_store.listing(conn, owner, portfolio_id=portfolio_id, status="open", limit=500)
    return success(
        request,
        {
            "portfolio_id": portfolio_id,
            "as_of": snapshot["as_of"],
            "run": {
                "new": result.new,
                "refreshed": result.refreshed,
                "unchanged": result.unchanged,
                "expired": result.expired,
                "snoozed": result.snoozed,
            },
            "recommendations": await described(res.pool, owner, rows),
        },
        links={"recommendations": f"/api/v1/recommendations?portfolio_id={portfolio_id}"},
    )


# Acting on one ----------------------------------------------------------------------------------


class AcceptBody(BaseModel):
    """Nothing to choose: accepting places the orders the recommendation shows."""

    model_config = ConfigDict(extra="forbid")


class DismissBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="Why you do not want it, in your words (1..500 characters)")


@router.post(
    "/recommendations/{recommendation_id}/accept",
    status_code=201,
    summary="Place the recommendation's orders (needs an Idempotency-Key); 409 unless open and current",
)
async def accept(
    recommendation_id: uuid.UUID,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    body: AcceptBody | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    row = await _recommendation_of(res, principal, recommendation_id, write=True)
    require_key(idempotency_key)
    owner: uuid.UUID = row["user_id"]
    m = mutation(request, principal, owner, idempotency_key, {})
    outcome = await res.shards.outcome(owner, PortfolioShard.accept_recommendation, m, recommendation_id)
    data = outcome.unwrap()
    return success(
        request,
        data,
        status_code=outcome.status,
        links={"recommendation": f"/api/v1/recommendations/{recommendation_id}"},
    )


@router.post(
    "/recommendations/{recommendation_id}/dismiss",
    summary="Dismiss the recommendation, saying why; 409 unless open",
)
async def dismiss_recommendation(
    recommendation_id: uuid.UUID,
    body: DismissBody,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
) -> JSONResponse:
    row = await _recommendation_of(res, principal, recommendation_id, write=True)
    assert res.pool is not None
    data = await dismiss(
        res.pool,
        recommendation_id=recommendation_id,
        owner=row["user_id"],
        actor=principal.user_id,
        reason=body.reason,
    )
    return success(request, data, links={"recommendation": f"/api/v1/recommendations/{recommendation_id}"})
