"""A user's book in PostgreSQL: portfolios, open lots, cash movements and the holdings derived from lots."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection, pq
from psycopg.rows import DictRow

from wealthalloc.domain.lots import Lot
from wealthalloc.storage import held_writes

Conn = AsyncConnection[DictRow]
Row = dict[str, Any]
Query = tuple[str, Sequence[Any] | Mapping[str, Any]]  # a statement and its parameters

PORTFOLIO_COLUMNS = """
id, user_id, name, account_type, base_currency, is_default, lot_method, cash_balance, total_value,
total_gain_loss, risk_score, target_allocation, last_rebalance_date, dividend_reinvestment, version,
created_date, updated_date
"""


async def portfolios_of(conn: Conn, user_id: uuid.UUID) -> list[Row]:
    [rows] = await rows_together(conn, portfolios_query(user_id))
    return rows


def portfolios_query(user_id: uuid.UUID) -> Query:
    return (
        f"""SELECT {PORTFOLIO_COLUMNS} FROM portfolios WHERE user_id = %s AND deleted_at IS NULL
            ORDER BY is_default DESC, created_date, id""",
        (user_id,),
    )


async def rows_together(conn: Conn, *queries: Query) -> list[list[Row]]:
    """The rows of each query, all of them sent before any answer is read: one round trip where each
    query alone takes one (a book loaded cold reads three)."""
    await held_writes.flush(conn)
    if len(queries) == 1:
        cur = await conn.execute(*queries[0])
        return [await cur.fetchall()]
    # In the caller's pipeline (a group commit's transaction) the queries are queued as they are
    # executed, and reading the first answer sends them all: a pipeline block of its own would end
    # with a sync, a second round trip. Outside one, they open a pipeline and end it.
    in_pipeline = conn.pgconn.pipeline_status != pq.PipelineStatus.OFF
    async with nullcontext() if in_pipeline else conn.pipeline():
        cursors = [await conn.execute(sql, params) for sql, params in queries]
        return [await cur.fetchall() for cur in cursors]


async def portfolio_for_update(conn: Conn, user_id: uuid.UUID, portfolio_id: uuid.UUID) -> Row | None:
    [rows] = await rows_together(conn, portfolio_for_update_query(user_id, portfolio_id))
    return rows[0] if rows else None


def portfolio_for_update_query(user_id: uuid.UUID, portfolio_id: uuid.UUID) -> Query:
    return (
        f"""SELECT {PORTFOLIO_COLUMNS} FROM portfolios
            WHERE id = %s AND user_id = %s AND deleted_at IS NULL FOR UPDATE""",
        (portfolio_id, user_id),
    )


def portfolios_for_update_query(user_id: uuid.UUID, portfolio_ids: Sequence[uuid.UUID]) -> Query:
    """Several of the user's portfolios, locked in the order of their ids, as every change locks
    them, so two changes of one user never wait on each other's rows in a cycle."""
    if len(portfolio_ids) == 1:
        return portfolio_for_update_query(user_id, portfolio_ids[0])
    return (
        f"""SELECT {PORTFOLIO_COLUMNS} FROM portfolios
            WHERE id = ANY(%s) AND user_id = %s AND deleted_at IS NULL ORDER BY id FOR UPDATE""",
        (list(portfolio_ids), user_id),
    )


async def owner_of(conn: Conn, portfolio_id: uuid.UUID) -> uuid.UUID | None:
    cur = await conn.execute(
        "SELECT user_id FROM portfolios WHERE id = %s AND deleted_at IS NULL", (portfolio_id,)
    )
    row = await cur.fetchone()
    return None if row is None else uuid.UUID(str(row["user_id"]))


def open_lots_of_user_query(user_id: uuid.UUID) -> Query:
    """The user's open lots in every portfolio. The portfolios are found first, then their lots through
    the open-lots index: joined the plain way, a planner without fresh statistics may walk every open
    lot and probe ``portfolios`` for each."""
    return (
        """SELECT l.* FROM lots l
           WHERE l.portfolio_id = ANY(ARRAY(SELECT id FROM portfolios
                                            WHERE user_id = %s AND deleted_at IS NULL))
             AND l.closed_at IS NULL AND l.shares > 0
           ORDER BY l.acquired_at, l.id""",
        (user_id,),
    )


def open_lots_of_portfolios_query(user_id: uuid.UUID, portfolio_ids: Sequence[uuid.UUID]) -> Query:
    """The open lots of some of the user's portfolios, in the order :func:`open_lots_of_user_query`
    gives them."""
    return (
        """SELECT l.* FROM lots l
           WHERE l.portfolio_id = ANY(ARRAY(SELECT id FROM portfolios
                                            WHERE user_id = %s AND id = ANY(%s) AND deleted_at IS NULL))
             AND l.closed_at IS NULL AND l.shares > 0
           ORDER BY l.acquired_at, l.id""",
        (user_id, list(portfolio_ids)),
    )


def portfolios_by_id_query(user_id: uuid.UUID, portfolio_ids: Sequence[uuid.UUID]) -> Query:
    """Some of the user's portfolios (those not deleted)."""
    return (
        f"""SELECT {PORTFOLIO_COLUMNS} FROM portfolios
            WHERE user_id = %s AND id = ANY(%s) AND deleted_at IS NULL""",
        (user_id, list(portfolio_ids)),
    )


def lot_from_row(row: Mapping[str, Any]) -> Lot:
    return Lot(
        id=row["id"],
        symbol=row["symbol"],
        shares=row["shares"],
        cost_basis=row["cost_basis"],
        adjusted_basis=row["adjusted_basis"],
        acquired_at=row["acquired_at"],
        holding_period_start=row["holding_period_start"],
        wash_sale_disallowed=row["wash_sale_disallowed"],
    )


async def insert_portfolio(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    name: str,
    account_type: str,
    base_currency: str,
    is_default: bool,
    lot_method: str,
    target_allocation: Mapping[str, Any],
) -> Row | None:
    """The new portfolio, or None when the owner already has one with this name."""
    cur = await conn.execute(
        f"""INSERT INTO portfolios (user_id, name, account_type, base_currency, is_default, lot_method,
                                    target_allocation)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (user_id, name) WHERE deleted_at IS NULL DO NOTHING
            RETURNING {PORTFOLIO_COLUMNS}""",
        (user_id, name, account_type, base_currency, is_default, lot_method, json.dumps(target_allocation)),
    )
    return await cur.fetchone()


async def update_portfolio(conn: Conn, portfolio_id: uuid.UUID, changes: Mapping[str, Any]) -> Row:
    allowed = {
        "name",
        "lot_method",
        "target_allocation",
        "is_default",
        "last_rebalance_date",
        "dividend_reinvestment",
    }
    assert set(changes) <= allowed, set(changes) - allowed
    params = {k: (json.dumps(v) if k == "target_allocation" else v) for k, v in changes.items()}
    sets = ", ".join(f"{k} = %({k})s" for k in params)
    cur = await conn.execute(
        f"""UPDATE portfolios SET {sets}, version = version + 1, updated_date = now()
            WHERE id = %(__id)s RETURNING {PORTFOLIO_COLUMNS}""",
        {**params, "__id": portfolio_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def mark_rebalanced(
    conn: Conn, portfolio_ids: Sequence[uuid.UUID], at: datetime
) -> dict[uuid.UUID, int]:
    """Each portfolio's last rebalance is ``at``, in one statement; their new versions, by id."""
    cur = await conn.execute(
        """UPDATE portfolios SET last_rebalance_date = %s, version = version + 1, updated_date = now()
           WHERE id = ANY(%s) RETURNING id, version""",
        (at, list(portfolio_ids)),
    )
    return {row["id"]: row["version"] for row in await cur.fetchall()}


async def clear_default(conn: Conn, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE portfolios SET is_default = false, updated_date = now() WHERE user_id = %s AND is_default",
        (user_id,),
    )


async def soft_delete_portfolio(conn: Conn, portfolio_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE portfolios SET deleted_at = now(), is_default = false, updated_date = now() WHERE id = %s",
        (portfolio_id,),
    )


async def set_cash(conn: Conn, portfolio_id: uuid.UUID, balance: Decimal) -> None:
    """In a block of held writes (a batch's fills), only the last balance of each portfolio is
    written, when the block ends: nothing in the block reads the row's cash back (the orders are
    checked against the cash their reading of the book keeps current)."""
    await held_writes.write(conn, _SET_CASH, (portfolio_id, balance), replacing=portfolio_id)


_SET_CASH = """UPDATE portfolios p SET cash_balance = v.cash, version = p.version + 1, updated_date = now()
               FROM unnest(%b::uuid[], %b::numeric[]) AS v (id, cash) WHERE p.id = v.id"""


_STORED_PLACES = Decimal("0.0001")  # cash_movements' NUMERIC(20,4): the figures as they read back


async def record_cash_movement(
    conn: Conn,
    *,
    portfolio_id: uuid.UUID,
    amount: Decimal,
    kind: str,
    idempotency_key: str | None,
    description: str | None,
    balance_after: Decimal,
) -> Row:
    """The movement as it is stored, for an answer that shows it (a deposit's).

    Its id and time are made here, not read back: nothing returned means nothing waited for, so in
    a group commit the movement is written with the group's other rows (one statement for all the
    deposits of a group) and alone it travels in the pipeline with the next statement. The time is
    the shard's clock where it was PostgreSQL's ``now()``; only the order of a portfolio's
    movements (``seq``) is read as an order."""
    movement = {
        "id": uuid.uuid4(),
        "portfolio_id": portfolio_id,
        "amount": amount.quantize(_STORED_PLACES),
        "kind": kind,
        "description": description,
        "balance_after": balance_after.quantize(_STORED_PLACES),
        "created_at": datetime.now(UTC),
    }
    row = (
        movement["id"],
        portfolio_id,
        movement["amount"],
        kind,
        idempotency_key,
        description,
        movement["balance_after"],
        movement["created_at"],
    )
    await held_writes.write(conn, _CASH_MOVEMENTS_MADE, row)
    return movement


_CASH_MOVEMENTS_MADE = held_writes.Insert.of(
    "cash_movements",
    """id uuid, portfolio_id uuid, amount numeric, kind text, idempotency_key text, description text,
       balance_after numeric, created_at timestamptz""",
)


async def add_cash_movement(
    conn: Conn,
    *,
    portfolio_id: uuid.UUID,
    amount: Decimal,
    kind: str,
    description: str,
    balance_after: Decimal,
    reference_id: uuid.UUID,
) -> None:
    """A movement nobody reads back (a fill's cash): nothing returned, so it can be pipelined, or
    wait for the others of its block (:func:`~wealthalloc.storage.held_writes.writes_together`)."""
    row = (portfolio_id, amount, kind, None, reference_id, description, balance_after)
    await held_writes.write(conn, _CASH_MOVEMENTS, row)


_CASH_MOVEMENTS = held_writes.Insert.of(
    "cash_movements",
    """portfolio_id uuid, amount numeric, kind text, idempotency_key text, reference_id uuid,
       description text, balance_after numeric""",
)


async def cash_movements(conn: Conn, portfolio_id: uuid.UUID) -> list[Row]:
    cur = await conn.execute(
        """SELECT id, amount, kind, description, balance_after, created_at FROM cash_movements
           WHERE portfolio_id = %s ORDER BY seq""",
        (portfolio_id,),
    )
    return await cur.fetchall()


async def all_lots(conn: Conn, portfolio_id: uuid.UUID, symbol: str | None = None) -> list[Row]:
    """Open and closed lots (closed ones for history and performance)."""
    await held_writes.flush(conn)
    cur = await conn.execute(
        """SELECT * FROM lots WHERE portfolio_id = %s AND (%s::text IS NULL OR symbol = %s::text)
           ORDER BY acquired_at, id""",
        (portfolio_id, symbol, symbol),
    )
    return await cur.fetchall()


async def refresh_holdings(conn: Conn, portfolio_id: uuid.UUID, symbol: str) -> None:
    """Recompute one holdings row from the open lots (the table is a view of the lots, kept for queries):
    written while shares are held, deleted when none are, in one statement. Nothing in a change reads
    the table, so in a block of held writes the rows of all the symbols a batch touched are
    recomputed together when it ends, each once."""
    stage = held_writes.Stage.RECOMPUTE  # after the lots it reads
    await held_writes.write(conn, _REFRESH_HOLDINGS, (portfolio_id, symbol), stage=stage)


_REFRESH_HOLDINGS = """
WITH touched AS (
    SELECT DISTINCT * FROM unnest(%b::uuid[], %b::text[]) AS t (portfolio_id, symbol)
), total AS (
    -- LATERAL: each touched (portfolio, symbol) sums its own open lots through idx_lots_open, where
    -- a join let a planner without statistics yet (a young or fast-growing table) hash every
    -- open lot of every portfolio on each call.
    SELECT t.portfolio_id, t.symbol, s.shares, s.basis
    FROM touched t
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(l.shares), 0) AS shares, coalesce(sum(l.adjusted_basis), 0) AS basis
        FROM lots l
        WHERE l.portfolio_id = t.portfolio_id AND l.symbol = t.symbol AND l.closed_at IS NULL
    ) s
), emptied AS (
    DELETE FROM holdings h USING total
    WHERE h.portfolio_id = total.portfolio_id AND h.symbol = total.symbol AND total.shares <= 0
)
INSERT INTO holdings (portfolio_id, symbol, shares, average_cost)
SELECT portfolio_id, symbol, shares, round(basis / shares, 6) FROM total WHERE shares > 0
ON CONFLICT (portfolio_id, symbol) DO UPDATE
SET shares = EXCLUDED.shares, average_cost = EXCLUDED.average_cost, updated_date = now()"""


async def store_valuation(
    conn: Conn,
    portfolio_id: uuid.UUID,
    *,
    total_value: Decimal,
    total_gain_loss: Decimal,
    risk_score: Decimal | None,
) -> None:
    await conn.execute(
        """UPDATE portfolios SET total_value = %s, total_gain_loss = %s, risk_score = %s WHERE id = %s""",
        (total_value, total_gain_loss, risk_score, portfolio_id),
    )


async def open_recommendations(conn: Conn, user_id: uuid.UUID) -> int:
    cur = await conn.execute(
        """SELECT count(*) AS n FROM ai_recommendations r
           LEFT JOIN portfolios p ON p.id = r.portfolio_id
           WHERE r.user_id = %s AND r.status = 'open' AND (r.portfolio_id IS NULL OR p.deleted_at IS NULL)""",
        (user_id,),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def realized_sales(conn: Conn, portfolio_id: uuid.UUID) -> list[Row]:
    cur = await conn.execute(
        "SELECT symbol, shares, sold_at FROM realized_lots WHERE portfolio_id = %s ORDER BY sold_at, id",
        (portfolio_id,),
    )
    return await cur.fetchall()
