"""Intelligence: anomaly scores from the model deployment, and the risk of a portfolio's holdings.

Scoring goes through the ``AnomalyDetector`` deployment's handle
(``Resources.anomaly``), so requests from every API replica share its batch
queue and its one loaded model. Windows are *raw* features (see
``serve_apps.anomaly.deployment``); ``GET /anomaly/model`` says their length
and features. Model scores (reconstruction errors, thresholds) are JSON
numbers: they are dimensionless measurements, not money or quantities.

Risk is computed here from the portfolio's holdings valued at the market
clock's day and the bundled daily closes up to that day, by
``wealthalloc.domain.risk`` (which documents every convention); its figures
are decimal strings.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from actors.portfolio_shard import PortfolioShard
from serve_apps.anomaly.errors import InvalidWindowsError, ModelUnavailableError
from serve_apps.api.deps import CurrentPrincipal, ResourcesDep
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.ownership import PortfolioReader, Symbol
from serve_apps.api.resources import Resources
from wealthalloc.domain.risk import daily_returns, portfolio_risk
from wealthalloc.logging import get_logger
from wealthalloc.marketdata import INDEX_SYMBOL, MarketDataError, PriceHistory
from wealthalloc.portfolios.market import RISK_LOOKBACK_DAYS

log = get_logger(__name__)

router = APIRouter(prefix="/api/v1", tags=["intelligence"])

RISK_CONFIDENCE = 0.95
RETRY_AFTER = {"Retry-After": "5"}


# Calling the detector ---------------------------------------------------------------------------


async def _detector(res: Resources, method: str, *args: Any) -> Any:
    """Call a method of the AnomalyDetector deployment, its refusals turned into the error envelope."""
    handle = res.anomaly
    if handle is None:
        raise ApiError(503, "MODEL_UNAVAILABLE", "This API runs without the anomaly detector deployment.")
    timeout = res.settings.anomaly_timeout_seconds
    try:
        return await asyncio.wait_for(getattr(handle, method).remote(*args), timeout)
    except InvalidWindowsError as exc:
        raise ApiError(400, "INVALID_WINDOWS", _reason(exc)) from None
    except ModelUnavailableError as exc:
        raise ApiError(503, "MODEL_UNAVAILABLE", _reason(exc), headers=RETRY_AFTER) from None
    except TimeoutError:
        raise ApiError(
            503,
            "MODEL_UNAVAILABLE",
            f"The anomaly detector did not answer in {timeout:.0f} s.",
            headers=RETRY_AFTER,
        ) from None
    except Exception as exc:  # the replica died or is being replaced: Serve's own errors
        log.warning("anomaly.detector_call_failed", method=method, error=repr(exc))
        raise ApiError(
            503, "MODEL_UNAVAILABLE", "The anomaly detector cannot be reached right now.", headers=RETRY_AFTER
        ) from None


def _reason(exc: BaseException) -> str:
    """The detector's own message: Ray wraps a remote exception in a subclass that carries it as ``cause``."""
    cause = getattr(exc, "cause", None) or exc
    return str(cause.args[0]) if cause.args else str(cause)


# Scoring ----------------------------------------------------------------------------------------


class ScoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    windows: list[list[list[float]]] = Field(
        description="Raw (unscaled) daily features, shape (n, window, n_features); see GET /anomaly/model"
    )
    symbols: list[Symbol] | None = Field(
        default=None, description="One symbol per window, for that symbol's scaling statistics"
    )


@router.post("/anomaly/score", summary="Reconstruction errors of feature windows, batched on the model")
async def score_windows(
    body: ScoreBody, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    count, limit = len(body.windows), res.settings.anomaly_max_windows
    if count == 0:
        raise ApiError(400, "INVALID_WINDOWS", "Empty batch: send at least one window.")
    if count > limit:
        raise ApiError(
            413,
            "BATCH_TOO_LARGE",
            f"{count} windows in one request; the limit is {limit}. Split the batch.",
            {"windows": count, "limit": limit},
        )
    if body.symbols is not None and len(body.symbols) != count:
        raise ApiError(
            400, "INVALID_WINDOWS", f"{len(body.symbols)} symbols for {count} windows; give one per window."
        )
    try:
        windows = np.asarray(body.windows, dtype=np.float64)
    except ValueError:
        raise ApiError(
            400, "INVALID_WINDOWS", "Windows must all have the same number of days and features per day."
        ) from None
    scores = await _detector(res, "score", windows, body.symbols)
    return success(request, scores.to_dict())


@router.get(
    "/anomaly/model", summary="The model version served: window length, features, threshold; batching so far"
)
async def anomaly_model(principal: CurrentPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    status: dict[str, Any] = await _detector(res, "status")
    if status["model"] is None:
        failure = status["load_failure"]
        reason = (
            f"version {failure['version']} failed to load: {failure['error']}"
            if failure
            else "none is promoted"
        )
        raise ApiError(
            503, "MODEL_UNAVAILABLE", f"No anomaly model is loaded ({reason}).", headers=RETRY_AFTER
        )
    return success(
        request,
        {
            **status["model"],
            "promoted_version": status["promoted_version"],
            "load_failure": status["load_failure"],
            "batching": status["batching"],
        },
    )


# A portfolio's anomalies and risk ------------------------------------------------------------------


@router.get(
    "/portfolios/{portfolio_id}/anomalies",
    summary="Each holding's newest window, scored: reconstruction error, threshold, is_anomaly",
)
async def portfolio_anomalies(
    portfolio_id: uuid.UUID, owner: PortfolioReader, request: Request, res: ResourcesDep
) -> JSONResponse:
    snapshot: dict[str, Any] = await res.shards.call(owner, PortfolioShard.snapshot, owner, portfolio_id)
    as_of = date.fromisoformat(str(snapshot["as_of"]))
    symbols = [str(holding["symbol"]) for holding in snapshot["holdings"]]
    scored = await _detector(res, "latest", symbols, as_of)
    holdings = [row.to_dict() for row in scored.symbols]
    return success(
        request,
        {
            "portfolio_id": portfolio_id,
            "as_of": as_of,
            "model_version": scored.model_version,
            "threshold": scored.threshold,
            "anomalies": sum(1 for row in holdings if row["is_anomaly"]),
            "holdings": holdings,
        },
    )


@router.get(
    "/portfolios/{portfolio_id}/risk",
    summary="Volatility, VaR and CVaR at 95 %, beta, concentration, sector exposure and a 0..100 risk score",
)
async def portfolio_risk_report(
    portfolio_id: uuid.UUID,
    owner: PortfolioReader,
    request: Request,
    res: ResourcesDep,
    lookback_days: Annotated[int, Query(ge=30, le=2520, description="Trading days of returns used")] = (
        RISK_LOOKBACK_DAYS
    ),
    horizon_days: Annotated[int, Query(ge=1, le=20, description="Horizon of VaR and CVaR")] = 1,
) -> JSONResponse:
    snapshot: dict[str, Any] = await res.shards.call(owner, PortfolioShard.snapshot, owner, portfolio_id)
    try:
        report = await asyncio.to_thread(_risk, res.prices, snapshot, lookback_days, horizon_days)
    except (ValueError, MarketDataError) as exc:
        raise ApiError(422, "INSUFFICIENT_HISTORY", f"Cannot measure this portfolio's risk: {exc}") from None
    return success(request, {"portfolio_id": portfolio_id, **report})


def _risk(
    prices: PriceHistory, snapshot: dict[str, Any], lookback_days: int, horizon_days: int
) -> dict[str, Any]:
    """The holdings' weights (market value over total value, cash included) against their past returns.

    Returns are the last ``lookback_days`` simple daily returns up to the
    valuation day, the index's among them for beta.
    """
    total = Decimal(str(snapshot["total_value"]))
    holdings = snapshot["holdings"]
    weights = {
        str(h["symbol"]): Decimal(str(h["market_value"])) / total
        for h in holdings
        if total > 0 and Decimal(str(h["market_value"])) > 0
    }
    sectors = {str(h["symbol"]): str(h["sector"]) for h in holdings if h.get("sector")}
    as_of = date.fromisoformat(str(snapshot["as_of"]))
    symbols = list(dict.fromkeys([*weights, INDEX_SYMBOL]))  # the index may be held as well
    closes = prices.frame(symbols, end=as_of).tail(lookback_days + 1)
    returns = daily_returns(closes)
    report = portfolio_risk(
        weights,
        sectors,
        returns,
        returns[INDEX_SYMBOL],
        confidence=RISK_CONFIDENCE,
        horizon_days=horizon_days,
        portfolio_value=total,
    )
    return {
        "as_of": as_of.isoformat(),
        "benchmark": INDEX_SYMBOL,
        "lookback_days": lookback_days,
        **report.as_dict(),
    }
