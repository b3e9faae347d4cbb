"""Writes held together on the real PostgreSQL, shown with events and orders: the rows of a block
are written in one statement a table when it ends, in the order they were added and after the rows
they refer to; a read of a held table inside the block sees what it holds; a block that fails writes
none of its own. (A batch's trades and cash movements: tests/integration/test_ledger_check.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.orders import working
from tests.rows import investor_with_portfolio
from wealthalloc.storage import orders
from wealthalloc.storage.group_commit import savepoint
from wealthalloc.storage.held_writes import writes_together
from wealthalloc.storage.outbox import add_event
from wealthalloc.trading.order import Order

pytestmark = pytest.mark.integration

Conn = psycopg.AsyncConnection[Any]


def in_transaction(database_url: str, body: Callable[[Conn], Awaitable[None]]) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
            async with conn.transaction():
                await body(conn)

    asyncio.run(scenario())


async def placed(conn: Conn, aggregate: uuid.UUID, symbol: str) -> uuid.UUID:
    return await add_event(
        conn,
        topic="trades.executed",
        event_type="trades.order_placed",
        user_id=None,
        aggregate_id=aggregate,
        payload={
            "order_id": str(aggregate),
            "portfolio_id": str(uuid.uuid4()),
            "symbol": symbol,
            "side": "buy",
            "quantity": "1",
            "order_type": "market",
            "reserved_cash": "10.00",
        },
    )


def events_of(database_url: str, aggregate: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    """The aggregate's events as stored, in their sequence: (id, symbol)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, payload->>'symbol' FROM events WHERE aggregate_id = %s ORDER BY sequence",
            (aggregate,),
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def test_the_events_of_a_block_are_written_in_one_statement_in_the_order_they_were_added(
    database_url: str,
) -> None:
    aggregate = uuid.uuid4()
    ids: list[uuid.UUID] = []
    seen_inside: list[int] = []

    async def body(conn: Conn) -> None:
        async with writes_together(conn):
            for symbol in ("AAPL", "MSFT", "KO"):
                ids.append(await placed(conn, aggregate, symbol))
            cur = await conn.execute("SELECT count(*) FROM events WHERE aggregate_id = %s", (aggregate,))
            row = await cur.fetchone()
            seen_inside.append(row["count"] if row else -1)

    in_transaction(database_url, body)

    assert seen_inside == [0], "held until the block ends"
    assert events_of(database_url, aggregate) == list(zip(ids, ("AAPL", "MSFT", "KO"), strict=True))


def test_an_inner_block_that_fails_loses_its_own_events_and_the_outer_block_keeps_the_rest(
    database_url: str,
) -> None:
    """A batch's orders: each in its savepoint and its own block, the batch's block around them."""
    aggregate = uuid.uuid4()
    kept: list[uuid.UUID] = []

    async def body(conn: Conn) -> None:
        async with writes_together(conn):
            for symbol in ("AAPL", "REFUSED", "KO"):
                try:
                    async with savepoint(conn), writes_together(conn):
                        event_id = await placed(conn, aggregate, symbol)
                        if symbol == "REFUSED":
                            raise ValueError("refused after its event was added")
                        kept.append(event_id)
                except ValueError:
                    continue

    in_transaction(database_url, body)

    assert events_of(database_url, aggregate) == list(zip(kept, ("AAPL", "KO"), strict=True))


def test_a_failing_block_writes_no_event(database_url: str) -> None:
    aggregate = uuid.uuid4()

    async def body(conn: Conn) -> None:
        with pytest.raises(RuntimeError):
            async with writes_together(conn):
                await placed(conn, aggregate, "AAPL")
                raise RuntimeError("the change failed")
        await placed(conn, aggregate, "KO")  # after the block: written at once

    in_transaction(database_url, body)

    assert [symbol for _, symbol in events_of(database_url, aggregate)] == ["KO"]


def test_events_on_another_connection_are_not_held_by_the_block(database_url: str) -> None:
    """Held events are written on the block's connection: another transaction's event is its own."""
    aggregate = uuid.uuid4()
    seen: list[list[str]] = []

    async def body(conn: Conn) -> None:
        async with writes_together(conn):
            await placed(conn, aggregate, "AAPL")
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as other:
                await placed(other, aggregate, "MSFT")
            seen.append([symbol for _, symbol in events_of(database_url, aggregate)])

    in_transaction(database_url, body)

    assert seen == [["MSFT"]]
    assert sorted(symbol for _, symbol in events_of(database_url, aggregate)) == ["AAPL", "MSFT"]


def an_order(user_id: uuid.UUID, portfolio_id: uuid.UUID, symbol: str = "KO") -> Order:
    """A new market buy as the desk decides it, still pending, its numbers finer than their columns."""
    return working(
        user_id=user_id,
        portfolio_id=portfolio_id,
        symbol=symbol,
        status="pending",
        quantity=D("2.5"),
        reserved_cash=D("150.12345"),
        price_cap=D("60.0000005"),
    )


async def insert(conn: Conn, order: Order) -> Order:
    return await orders.insert_order(conn, order, idempotency_key=str(uuid.uuid4()), request_hash="h")


def someone(database_url: str) -> tuple[uuid.UUID, uuid.UUID]:
    with psycopg.connect(database_url) as conn:
        return investor_with_portfolio(conn, "held")


def test_a_read_of_orders_inside_the_block_sees_the_orders_it_holds_as_they_were_answered(
    database_url: str,
) -> None:
    user_id, portfolio_id = someone(database_url)
    answered: list[Order] = []
    read: list[Order | None] = []

    async def body(conn: Conn) -> None:
        async with writes_together(conn):
            answered.append(await insert(conn, an_order(user_id, portfolio_id)))
            read.append(await orders.order(conn, answered[0].id))

    in_transaction(database_url, body)

    assert read == answered  # the numbers rounded to their columns' scales as PostgreSQL rounds them
    assert (answered[0].reserved_cash, answered[0].price_cap) == (D("150.1235"), D("60.000001"))


def test_a_row_held_before_the_row_it_refers_to_is_written_after_it(database_url: str) -> None:
    """Rows are written stage by stage, not as added: a trade (which refers to its order) held
    first, then its order, makes no foreign-key error when the block ends."""
    user_id, portfolio_id = someone(database_url)
    order = an_order(user_id, portfolio_id)

    async def body(conn: Conn) -> None:
        async with writes_together(conn):
            await orders.insert_trade(
                conn,
                portfolio_id=portfolio_id,
                order_id=order.id,
                symbol="KO",
                side="buy",
                shares=D(1),
                price=D(60),
                total_amount=D(60),
                commission=D(0),
                broker_order_id=None,
            )
            await insert(conn, order)

    in_transaction(database_url, body)

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM trades WHERE order_id = %s", (order.id,)).fetchone() == (1,)


def test_rows_held_before_a_savepoint_outlive_its_rollback(database_url: str) -> None:
    """A savepoint writes what its block holds first: rolled back, it undoes only what came after."""
    user_id, portfolio_id = someone(database_url)
    kept, undone = an_order(user_id, portfolio_id), an_order(user_id, portfolio_id, "PEP")

    async def body(conn: Conn) -> None:
        async with writes_together(conn):
            await insert(conn, kept)
            with pytest.raises(RuntimeError):
                async with savepoint(conn):
                    await insert(conn, undone)
                    await orders.order(conn, undone.id)  # flushed inside the savepoint
                    raise RuntimeError("refused")

    in_transaction(database_url, body)

    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT symbol FROM orders WHERE id = ANY(%s)", ([kept.id, undone.id],)
        ).fetchall()
    assert stored == [("KO",)]
