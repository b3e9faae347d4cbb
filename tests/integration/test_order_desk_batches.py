"""The orders of one request on the order desk, without Ray: the real database and the paper venue.

A batch's orders have no savepoint each: every refusal is decided before an order writes anything.
Were one to come after (a fault, here injected into the fill's bookkeeping), the request must fail
whole rather than keep half an order.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.rows import investor_with_portfolio
from wealthalloc.brokers.paper import commission_model, paper_venue
from wealthalloc.config import Settings
from wealthalloc.errors import ServiceError
from wealthalloc.marketdata import MarketClock, PriceHistory, SecurityReference
from wealthalloc.portfolios.market import Market
from wealthalloc.portfolios.service import BookService, Mutation
from wealthalloc.storage.postgres import async_pool
from wealthalloc.trading.desk import OrderDesk, OrderHalfWritten
from wealthalloc.trading.order import Order

pytestmark = pytest.mark.integration

BUYS = [{"symbol": s, "side": "buy", "quantity": Decimal(2)} for s in ("KO", "PEP", "AAPL")]


def on_a_desk(database_url: str, data_dir: Path, scenario: Any) -> Any:
    """Run ``scenario(desk)`` on an order desk over the session's database, with the paper venue."""
    settings = Settings(database_url=database_url, data_dir=data_dir)
    prices = PriceHistory(settings.prices_dir)
    market = Market(prices, MarketClock(prices.trading_days()), SecurityReference())

    async def run() -> Any:
        pool = async_pool(settings, name="test-desk")
        await pool.open()
        try:
            desk = OrderDesk(
                BookService(pool=pool, redis=None, market=market),
                broker="paper",
                commission=commission_model(settings),
                collar=settings.order_price_collar,
                fractional_shares=True,
                venue=paper_venue(settings, prices, market.today),
            )
            return await scenario(desk)
        finally:
            await pool.close()

    return asyncio.run(run())


@pytest.fixture
def book(database_url: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A new investor's portfolio holding 10,000 in cash, and a key for a request: (user, portfolio, key)."""
    with psycopg.connect(database_url) as conn:
        user, portfolio = investor_with_portfolio(conn, "desk", cash=10_000)
    return user, portfolio, str(uuid.uuid4())


def batch_of(book: tuple[uuid.UUID, uuid.UUID, str], orders: list[dict[str, Any]]) -> Mutation:
    user, portfolio, key = book
    return Mutation(
        user, user, key, "POST", f"/api/v1/portfolios/{portfolio}/orders:batch", {"orders": orders}
    )


def test_a_refusal_after_an_order_began_to_be_written_fails_the_whole_request(
    database_url: str, data_dir: Path, book: tuple[uuid.UUID, uuid.UUID, str]
) -> None:
    user, portfolio, key = book

    async def scenario(desk: OrderDesk) -> None:
        booked = desk._book_fill

        async def second_fill_refused(conn: Any, order: Order, *args: Any, **kwargs: Any) -> Any:
            if order.symbol == "PEP":
                raise ServiceError(409, "INJECTED", "refused after the order's row was written")
            return await booked(conn, order, *args, **kwargs)

        desk._book_fill = second_fill_refused  # type: ignore[method-assign]
        with pytest.raises(OrderHalfWritten, match=rf"order {key}/1 was refused after it began"):
            await desk.place_batch(batch_of(book, BUYS), portfolio, BUYS)

    on_a_desk(database_url, data_dir, scenario)

    with psycopg.connect(database_url) as conn:
        left = conn.execute(
            """SELECT (SELECT count(*) FROM orders WHERE user_id = %(u)s),
                      (SELECT count(*) FROM lots WHERE portfolio_id = %(p)s),
                      (SELECT count(*) FROM idempotency_keys WHERE user_id = %(u)s),
                      (SELECT cash_balance FROM portfolios WHERE id = %(p)s)""",
            {"u": user, "p": portfolio},
        ).fetchone()
    assert left == (0, 0, 0, Decimal("10000.0000"))


def test_refused_orders_give_their_keys_back_and_placed_ones_keep_theirs(
    database_url: str, data_dir: Path, book: tuple[uuid.UUID, uuid.UUID, str]
) -> None:
    user, portfolio, key = book
    orders = [
        BUYS[0],
        {"symbol": "NOPE", "side": "buy", "quantity": Decimal(1)},
        {**BUYS[1], "quantity": Decimal(10**6)},
    ]

    async def scenario(desk: OrderDesk) -> Any:
        return await desk.place_batch(batch_of(book, orders), portfolio, orders)

    status, answer = on_a_desk(database_url, data_dir, scenario)

    assert status == 201
    assert [o["index"] for o in answer["placed"]] == [0]
    assert [(r["index"], r["error"]["code"]) for r in answer["refused"]] == [
        (1, "UNKNOWN_SYMBOL"),
        (2, "INSUFFICIENT_FUNDS"),
    ]
    with psycopg.connect(database_url) as conn:
        keys = conn.execute(
            """SELECT key, response_status, response_body FROM idempotency_keys
               WHERE user_id = %s ORDER BY key""",
            (user,),
        ).fetchall()
    assert keys[0][0] == key and keys[0][1] == 201
    assert keys[1:] == [(f"{key}/0", 201, {"id": answer["placed"][0]["id"]})]
