"""Reading portfolios and their holdings, and the owner check every portfolio route starts with."""

from __future__ import annotations

import json
import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

Conn = AsyncConnection[DictRow]

PORTFOLIO_COLUMNS = """
id, user_id, name, account_type, base_currency, is_default, lot_method, cash_balance, total_value,
total_gain_loss, risk_score, target_allocation, last_rebalance_date, version, created_date, updated_date
"""


async def owner_of(conn: Conn, portfolio_id: uuid.UUID) -> uuid.UUID | None:
    cur = await conn.execute(
        "SELECT user_id FROM portfolios WHERE id = %s AND deleted_at IS NULL", (portfolio_id,)
    )
    row = await cur.fetchone()
    return None if row is None else uuid.UUID(str(row["user_id"]))


async def portfolio(conn: Conn, portfolio_id: uuid.UUID) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {PORTFOLIO_COLUMNS} FROM portfolios WHERE id = %s AND deleted_at IS NULL", (portfolio_id,)
    )
    return await cur.fetchone()


async def portfolios_of(conn: Conn, user_id: uuid.UUID) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {PORTFOLIO_COLUMNS} FROM portfolios WHERE user_id = %s AND deleted_at IS NULL
            ORDER BY is_default DESC, created_date""",
        (user_id,),
    )
    return await cur.fetchall()


async def holdings(conn: Conn, portfolio_id: uuid.UUID) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT symbol, shares, average_cost, current_price, market_value, unrealized_gain_loss
           FROM holdings WHERE portfolio_id = %s AND shares > 0 ORDER BY symbol""",
        (portfolio_id,),
    )
    return await cur.fetchall()


async def rename(
    conn: Conn, portfolio_id: uuid.UUID, *, name: str | None, lot_method: str | None, actor_id: uuid.UUID
) -> dict[str, Any] | None:
    """Change the name or the lot method; the change and its outbox event commit together."""
    cur = await conn.execute(
        f"""UPDATE portfolios
            SET name = coalesce(%s, name), lot_method = coalesce(%s, lot_method),
                version = version + 1, updated_date = now()
            WHERE id = %s AND deleted_at IS NULL RETURNING {PORTFOLIO_COLUMNS}""",
        (name, lot_method, portfolio_id),
    )
    row = await cur.fetchone()
    if row is not None:
        changed = {k: v for k, v in {"name": name, "lot_method": lot_method}.items() if v is not None}
        await conn.execute(
            """INSERT INTO events (topic, event_type, user_id, aggregate_id, payload)
               VALUES ('portfolio.updates', 'portfolio.updated', %s, %s, %s)""",
            (
                row["user_id"],
                portfolio_id,
                json.dumps({"changed": changed, "by": str(actor_id), "version": row["version"]}),
            ),
        )
    return row
