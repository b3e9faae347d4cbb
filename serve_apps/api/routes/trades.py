"""Orders: placed through the shard that owns the portfolio, read straight from PostgreSQL.

A POST needs an ``Idempotency-Key``: the same key returns the same order
(Serve's proxy may deliver a POST twice), the same key with another body is
409. Someone else's order is 404, as a portfolio is. A market order is placed
against the quote GET /quotes/{symbol} shows: when that quote is stale, the
order is refused with 409 ``QUOTE_STALE`` naming it, and nothing is written.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from actors.portfolio_shard import PortfolioShard
from serve_apps.api.deps import CurrentPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.ownership import (
    IdempotencyKey,
    PortfolioWriter,
    Symbol,
    mutation,
    owner_checked,
    require_key,
)
from serve_apps.api.pagination import decode_cursor, links_after
from serve_apps.api.schemas import OrderQuantity, PositivePrice
from wealthalloc.domain.quote_freshness import QuoteSeen
from wealthalloc.marketdata.quotes import QuoteUnavailable
from wealthalloc.storage import orders as order_store
from wealthalloc.trading.order import Order

router = APIRouter(prefix="/api/v1", tags=["trades"])

OrderStatus = Literal[
    "open", "pending", "submitted", "partially_filled", "filled", "cancelled", "rejected", "expired"
]


class OrderBody(BaseModel):
    """One order of a portfolio: what ``POST /trades`` takes, less the portfolio."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    side: Literal["buy", "sell"]
    quantity: OrderQuantity = Field(description='Shares as a decimal string, e.g. "10" or "2.5"')
    order_type: Literal["market", "limit", "stop", "stop_limit"] = "market"
    limit_price: PositivePrice | None = None
    stop_price: PositivePrice | None = None
    time_in_force: Literal["day", "gtc"] = "day"
    lot_method: Literal["fifo", "hifo", "specific"] | None = Field(
        default=None, description="Sells only: override the portfolio's lot relief method"
    )
    lot_ids: list[uuid.UUID] | None = Field(
        default=None, max_length=200, description="Sells only: the lots to sell (specific identification)"
    )


class TradeBody(OrderBody):
    portfolio_id: uuid.UUID


MAX_BATCH_ORDERS = 500


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orders: list[OrderBody] = Field(min_length=1, max_length=MAX_BATCH_ORDERS)


def shard_spec(res: Any, body: OrderBody, quote: QuoteSeen | None) -> dict[str, Any]:
    """The order as the shard takes it: a market order carries the quote it is judged by."""
    spec = body.model_dump(exclude={"portfolio_id"})
    if body.order_type == "market":
        spec["quote"] = quote
        spec["quote_max_age_s"] = res.settings.market_data_stale_seconds
    return spec


async def _place(
    body: TradeBody, principal: Any, request: Request, res: Any, key: str | None
) -> JSONResponse:
    owner = await owner_checked(res, principal, body.portfolio_id, write=True)
    require_key(key)
    m = mutation(request, principal, owner, key, body.model_dump(mode="json"))
    quote = await quote_seen(res, body.symbol) if body.order_type == "market" else None
    spec = shard_spec(res, body, quote)
    outcome = await res.shards.outcome(owner, PortfolioShard.place_order, m, body.portfolio_id, spec)
    data = outcome.unwrap()
    res.metrics.trades.labels(body.side, body.order_type).inc()
    return success(request, data, status_code=outcome.status, links={"order": f"/api/v1/trades/{data['id']}"})


async def quote_seen(res: Any, symbol: str) -> QuoteSeen | None:
    """The quote GET /quotes/{symbol} shows now, which the shard judges a market order by.

    None when there is no quote at all (an unknown symbol, no provider and nothing cached): the
    shard then refuses or prices the order by its own market, as before.
    """
    if symbol not in res.prices:  # the shard refuses it as unknown; no provider is asked about it
        return None
    try:
        found, _ = await res.quotes.quote(symbol)
    except (QuoteUnavailable, LookupError):
        return None
    return QuoteSeen(symbol=found.symbol, as_of=found.timestamp, source=found.source, stale=found.stale)


@router.post("/trades", status_code=201, summary="Place an order (needs an Idempotency-Key)")
async def place_order(
    body: TradeBody,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await _place(body, principal, request, res, idempotency_key)


@router.post("/trade", status_code=201, summary="Place an order (alias of POST /trades)")
async def place_order_alias(
    body: TradeBody,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await _place(body, principal, request, res, idempotency_key)


@router.post(
    "/portfolios/{portfolio_id}/orders:batch",
    status_code=201,
    summary="Place up to 500 orders in one call (needs an Idempotency-Key; order i is keyed {key}/i)",
)
async def place_orders(
    portfolio_id: uuid.UUID,
    owner: PortfolioWriter,
    body: BatchBody,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Every order is placed or refused on its own: ``placed`` are the orders as ``POST /trades``
    answers them, ``refused`` the others with their index and error. The same key again answers
    the same orders; the same key with other orders is 409."""
    require_key(idempotency_key)
    m = mutation(request, principal, owner, idempotency_key, body.model_dump(mode="json"))
    markets = sorted({o.symbol for o in body.orders if o.order_type == "market"})
    seen = await asyncio.gather(*(quote_seen(res, symbol) for symbol in markets))
    quotes = dict(zip(markets, seen, strict=True))
    specs = [shard_spec(res, order, quotes.get(order.symbol)) for order in body.orders]
    outcome = await res.shards.outcome(owner, PortfolioShard.place_orders, m, portfolio_id, specs)
    data = outcome.unwrap()
    for order in data["placed"]:
        res.metrics.trades.labels(order["side"], order["order_type"]).inc()
    return success(request, data, status_code=outcome.status)


@router.get("/trades", summary="My orders, newest first")
async def list_orders(
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    portfolio_id: uuid.UUID | None = None,
    status: OrderStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    owner = principal.user_id
    if portfolio_id is not None:
        owner = await owner_checked(res, principal, portfolio_id, write=False)
    assert res.pool is not None
    before = decode_cursor(cursor)
    async with res.pool.connection() as conn:
        orders = await order_store.list_orders(
            conn,
            user_id=owner,
            portfolio_id=portfolio_id,
            status=status,
            limit=limit,
            before=before,
        )
    last = (orders[-1].created_date, orders[-1].id) if orders else None
    links = links_after(request, len(orders), limit, last)
    return success(request, [o.described(None) for o in orders], links=links)


async def _order_of(res: Any, principal: Any, order_id: uuid.UUID, *, write: bool) -> Order:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        order = await order_store.order(conn, order_id)
    if order is None:
        raise ApiError(404, "NOT_FOUND", "No such order.")
    await require_access(res, principal, order.user_id, write=write, what="order")
    return order


@router.get("/trades/{order_id}", summary="One order with its fills")
async def read_order(
    order_id: uuid.UUID, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    order = await _order_of(res, principal, order_id, write=False)
    async with res.pool.connection() as conn:  # type: ignore[union-attr]
        fills = await order_store.fills_of(conn, order_id)
    return success(request, order.described(fills))


@router.delete("/trades/{order_id}", summary="Cancel an open order")
async def cancel_order(
    order_id: uuid.UUID, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    owner = (await _order_of(res, principal, order_id, write=True)).user_id
    m = mutation(request, principal, owner, None, None)
    return success(request, await res.shards.call(owner, PortfolioShard.cancel_order, m, order_id))
