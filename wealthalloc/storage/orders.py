"""Orders, their fills and the trade records in PostgreSQL.

The unique constraints do the deduplication that matters: one order per
(user, Idempotency-Key), one fill per ``fill_id`` and per broker execution id,
one realized row per (fill, lot). Inserts that would break them return
nothing, and the caller treats that as "already done".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, overload

from wealthalloc.storage import held_writes
from wealthalloc.storage.books import Conn, Query, Row, rows_together
from wealthalloc.trading.order import COLUMNS, Order
from wealthalloc.trading.status import OPEN_STATUSES
from wealthalloc.trading.tickets import Execution

ORDER_COLUMNS = ", ".join(COLUMNS)


async def insert_order(conn: Conn, order: Order, *, idempotency_key: str | None, request_hash: str) -> Order:
    """Write a new order, under the Idempotency-Key (and the hash of the request) that placed it, and
    return it as PostgreSQL holds it.

    Nothing is read back: the id and times are the caller's, the numbers are rounded to their
    columns' scales here as PostgreSQL rounds them, so the row needs no ``RETURNING``, and in a
    block (:func:`~wealthalloc.storage.held_writes.writes_together`) the order waits to be written
    with the others of its batch in one statement. The order's key was claimed before (the unique
    (user, key) holds), and the rules checked its values.
    """
    stored = replace(
        order,
        quantity=scaled(order.quantity, SHARES),
        limit_price=scaled(order.limit_price, PRICE),
        stop_price=scaled(order.stop_price, PRICE),
        filled_quantity=scaled(order.filled_quantity, SHARES),
        average_fill_price=scaled(order.average_fill_price, PRICE),
        reserved_cash=scaled(order.reserved_cash, CASH),
        price_cap=scaled(order.price_cap, PRICE),
    )
    values = {name: getattr(stored, name) for name in COLUMNS}
    values |= {
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "status": str(stored.status),  # the text PostgreSQL gives back
        "lot_ids": None if stored.lot_ids is None else json.dumps([str(i) for i in stored.lot_ids]),
    }
    await held_writes.write(
        conn, _ORDERS, tuple(values[c] for c in _ORDERS.names), stage=held_writes.Stage.ORDERS
    )
    return stored


_ORDERS = held_writes.Insert.of(
    "orders",
    """id uuid, portfolio_id uuid, user_id uuid, idempotency_key text, request_hash text, symbol text,
       side text, quantity numeric, order_type text, limit_price numeric, stop_price numeric,
       time_in_force text, status text, filled_quantity numeric, average_fill_price numeric,
       reserved_cash numeric, broker text, broker_order_id text, lot_method text, lot_ids jsonb,
       price_cap numeric, market_date date, origin text, submitted_at timestamptz, created_date timestamptz,
       updated_date timestamptz""",
)
# The scales of the orders' and fills' NUMERIC columns.
SHARES, PRICE, CASH = 6, 6, 4


@overload
def scaled(value: Decimal, places: int) -> Decimal: ...
@overload
def scaled(value: Decimal | None, places: int) -> Decimal | None: ...
def scaled(value: Decimal | None, places: int) -> Decimal | None:
    """``value`` as a ``NUMERIC(p, places)`` column stores it: rounded half away from zero."""
    if value is None:
        return None
    return Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


async def order_by_key(conn: Conn, user_id: uuid.UUID, idempotency_key: str) -> Order | None:
    await held_writes.flush(conn)
    cur = await conn.execute(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = %s AND idempotency_key = %s",
        (user_id, idempotency_key),
    )
    return _order(await cur.fetchone())


async def order(conn: Conn, order_id: uuid.UUID, *, for_update: bool = False) -> Order | None:
    await held_writes.flush(conn)
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = %s{lock}", (order_id,))
    return _order(await cur.fetchone())


def _order(row: Row | None) -> Order | None:
    return None if row is None else Order.from_row(row)


async def open_orders_of_portfolio(conn: Conn, portfolio_id: uuid.UUID) -> list[Order]:
    [rows] = await rows_together(conn, open_orders_query([portfolio_id]))
    return [Order.from_row(r) for r in rows]


def open_orders_query(portfolio_ids: Sequence[uuid.UUID]) -> Query:
    """The open orders of the portfolios, every one of them in one statement (rows for
    :meth:`Order.from_row <wealthalloc.trading.order.Order.from_row>`)."""
    return (
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE portfolio_id = ANY(%s) AND status = ANY(%s)",
        (list(portfolio_ids), list(OPEN_STATUSES)),
    )


async def fills_of(conn: Conn, order_id: uuid.UUID) -> list[Row]:
    await held_writes.flush(conn)
    cur = await conn.execute(
        """SELECT id, fill_id, quantity, price, commission, executed_at, broker_exec_id
           FROM fills WHERE order_id = %s ORDER BY executed_at, id""",
        (order_id,),
    )
    return await cur.fetchall()


async def list_orders(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    portfolio_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Order]:
    """Newest first; ``before`` is the (created_date, id) of the last row of the previous page."""
    clauses = ["user_id = %(user)s"]
    params: dict[str, Any] = {"user": user_id, "limit": limit}
    if portfolio_id is not None:
        clauses.append("portfolio_id = %(portfolio)s")
        params["portfolio"] = portfolio_id
    if status == "open":
        clauses.append("status = ANY(%(open)s)")
        params["open"] = list(OPEN_STATUSES)
    elif status is not None:
        clauses.append("status = %(status)s")
        params["status"] = status
    if before is not None:
        clauses.append("(created_date, id) < (%(before_at)s, %(before_id)s)")
        params["before_at"], params["before_id"] = before
    cur = await conn.execute(
        f"""SELECT {ORDER_COLUMNS} FROM orders WHERE {" AND ".join(clauses)}
            ORDER BY created_date DESC, id DESC LIMIT %(limit)s""",
        params,
    )
    return [Order.from_row(r) for r in await cur.fetchall()]


async def insert_fill(
    conn: Conn, order_id: uuid.UUID, execution: Execution, *, market_date: date
) -> Row | None:
    """The new fill row, or None when this fill (by id or broker execution id) was applied before.

    ``market_date`` is the trading day of the market clock the fill is booked on: a sale's cash
    settles from it.
    """
    await held_writes.flush(conn)
    cur = await conn.execute(
        """INSERT INTO fills (order_id, fill_id, quantity, price, commission, executed_at, broker_exec_id,
                              market_date)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT DO NOTHING
           RETURNING id, fill_id, quantity, price, commission, executed_at, broker_exec_id""",
        (
            order_id,
            execution.fill_id,
            execution.quantity,
            execution.price,
            execution.commission,
            execution.executed_at,
            execution.broker_exec_id,
            market_date,
        ),
    )
    return await cur.fetchone()


async def insert_new_fill(conn: Conn, order_id: uuid.UUID, execution: Execution, *, market_date: date) -> Row:
    """The first fill of an order written in the same transaction (the embedded venue filled it as it
    was placed), as :func:`insert_fill` would return it. Such a fill cannot have been applied before,
    so, like its order, it is written without a read back, with its block's others."""
    row = {
        "id": uuid.uuid4(),
        "fill_id": execution.fill_id,
        "quantity": scaled(execution.quantity, SHARES),
        "price": scaled(execution.price, PRICE),
        "commission": scaled(execution.commission, CASH),
        "executed_at": execution.executed_at,
        "broker_exec_id": execution.broker_exec_id,
    }
    stored = {**row, "order_id": order_id, "market_date": market_date}
    await held_writes.write(
        conn, _FILLS, tuple(stored[c] for c in _FILLS.names), stage=held_writes.Stage.FILLS
    )
    return row


_FILLS = held_writes.Insert.of(
    "fills",
    """id uuid, order_id uuid, fill_id text, quantity numeric, price numeric, commission numeric,
       executed_at timestamptz, broker_exec_id text, market_date date""",
)


async def cash_commitments(
    conn: Conn, *, user_id: uuid.UUID, since: date, portfolio_id: uuid.UUID | None = None
) -> list[Row]:
    [rows] = await rows_together(conn, cash_commitments_query(user_id, since, portfolio_id))
    return rows


def cash_commitments_query(user_id: uuid.UUID, since: date, portfolio_id: uuid.UUID | None = None) -> Query:
    """What holds a user's cash back, in one query: open buys (``kind`` 'reserved', with
    ``reserved_cash``) and the sell fills booked on or after ``since`` (``kind`` 'sale', with
    ``market_date``, ``quantity``, ``price``, ``commission``), whose proceeds may not have settled.
    One portfolio's rows only when ``portfolio_id`` is given."""
    return (
        """SELECT 'reserved' AS kind, o.portfolio_id, o.reserved_cash,
                  NULL::date AS market_date, NULL::numeric AS quantity, NULL::numeric AS price,
                  NULL::numeric AS commission
           FROM orders o
           WHERE o.user_id = %(user)s AND o.side = 'buy' AND o.status = ANY(%(open)s)
             AND (%(portfolio)s::uuid IS NULL OR o.portfolio_id = %(portfolio)s::uuid)
           UNION ALL
           SELECT 'sale', o.portfolio_id, 0, f.market_date, f.quantity, f.price, f.commission
           FROM orders o JOIN fills f ON f.order_id = o.id
           WHERE o.user_id = %(user)s AND o.side = 'sell' AND f.market_date >= %(since)s
             AND (%(portfolio)s::uuid IS NULL OR o.portfolio_id = %(portfolio)s::uuid)""",
        {"user": user_id, "open": list(OPEN_STATUSES), "since": since, "portfolio": portfolio_id},
    )


async def record_fill_on_order(
    conn: Conn,
    order_id: uuid.UUID,
    *,
    filled_quantity: Decimal,
    average_fill_price: Decimal,
    reserved_cash: Decimal,
    status: str,
) -> Order:
    """The order as it stands after the fill."""
    await held_writes.flush(conn)
    cur = await conn.execute(
        f"""UPDATE orders SET filled_quantity = %s, average_fill_price = %s, reserved_cash = %s, status = %s,
                              updated_date = now()
            WHERE id = %s RETURNING {ORDER_COLUMNS}""",
        (filled_quantity, average_fill_price, reserved_cash, status, order_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return Order.from_row(row)


async def set_status(
    conn: Conn,
    order_id: uuid.UUID,
    status: str,
    *,
    broker_order_id: str | None = None,
    reason: str | None = None,
    release_reserve: bool = False,
) -> None:
    await held_writes.flush(conn)
    await conn.execute(
        """UPDATE orders SET status = %s,
                             broker_order_id = coalesce(%s, broker_order_id),
                             reject_reason = coalesce(%s, reject_reason),
                             reserved_cash = CASE WHEN %s THEN 0 ELSE reserved_cash END,
                             submitted_at = CASE WHEN %s = 'submitted' THEN now() ELSE submitted_at END,
                             updated_date = now()
           WHERE id = %s""",
        (status, broker_order_id, reason, release_reserve, status, order_id),
    )


async def insert_trade(
    conn: Conn,
    *,
    portfolio_id: uuid.UUID,
    order_id: uuid.UUID,
    symbol: str,
    side: str,
    shares: Decimal,
    price: Decimal,
    total_amount: Decimal,
    commission: Decimal,
    broker_order_id: str | None,
) -> uuid.UUID:
    """The trade's id; made here so that nothing is read back and the INSERT can be pipelined, or
    wait for the others of its block (:func:`~wealthalloc.storage.held_writes.writes_together`)."""
    trade_id = uuid.uuid4()
    row = (
        trade_id,
        portfolio_id,
        order_id,
        symbol,
        side,
        shares,
        price,
        total_amount,
        commission,
        "executed",
        broker_order_id,
    )
    await held_writes.write(conn, _TRADES, row)
    return trade_id


_TRADES = held_writes.Insert.of(
    "trades",
    """id uuid, portfolio_id uuid, order_id uuid, symbol text, side text, shares numeric, price numeric,
       total_amount numeric, commission numeric, status text, ibkr_order_id text""",
)


async def pending_orders(conn: Conn, *, broker: str, older_than_s: float, limit: int = 500) -> list[Order]:
    """Orders for ``broker`` recorded but never handed to it (the gateway was away), oldest first.

    By broker, so that a gateway never sends another broker's order (two deployments on one
    database, or a switch of broker with orders still waiting).
    """
    cur = await conn.execute(
        f"""SELECT {ORDER_COLUMNS} FROM orders
            WHERE status = 'pending' AND broker = %s AND created_date < now() - make_interval(secs => %s)
            ORDER BY created_date LIMIT %s""",
        (broker, older_than_s, limit),
    )
    return [Order.from_row(r) for r in await cur.fetchall()]


async def working_orders(conn: Conn, broker: str, *, older_than_s: float = 0) -> list[Order]:
    """Orders a broker holds (submitted, partly filled): the venue's book after a restart.
    ``older_than_s`` leaves out the orders changed in the last seconds (a hand-off may be under way)."""
    cur = await conn.execute(
        f"""SELECT {ORDER_COLUMNS} FROM orders
            WHERE broker = %s AND status IN ('submitted', 'partially_filled')
              AND (%s = 0 OR updated_date <= now() - make_interval(secs => %s))
            ORDER BY created_date""",
        (broker, older_than_s, older_than_s),
    )
    return [Order.from_row(r) for r in await cur.fetchall()]
