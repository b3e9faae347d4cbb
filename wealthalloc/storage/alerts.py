"""Price alerts and the daily price mark in PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

Conn = AsyncConnection[DictRow]
Row = dict[str, Any]

ALERT_COLUMNS = (
    "id, user_id, symbol, direction, level, reference_price, note, created_at,"
    " triggered_at, triggered_price, triggered_as_of"
)


async def insert_alert(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    symbol: str,
    direction: str,
    level: Decimal,
    reference_price: Decimal,
    note: str | None,
) -> Row:
    cur = await conn.execute(
        f"""INSERT INTO price_alerts (user_id, symbol, direction, level, reference_price, note)
            VALUES (%s, %s, %s, %s, %s, %s) RETURNING {ALERT_COLUMNS}""",
        (user_id, symbol, direction, level, reference_price, note),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def count_armed(conn: Conn, user_id: uuid.UUID) -> int:
    cur = await conn.execute(
        """SELECT count(*) AS n FROM price_alerts
           WHERE user_id = %s AND deleted_at IS NULL AND triggered_at IS NULL""",
        (user_id,),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def alerts_of(
    conn: Conn, user_id: uuid.UUID, *, status: str | None = None, limit: int = 100
) -> list[Row]:
    """The user's alerts, newest first; ``status`` ``armed`` or ``triggered`` narrows them."""
    where = ""
    if status == "armed":
        where = "AND triggered_at IS NULL"
    elif status == "triggered":
        where = "AND triggered_at IS NOT NULL"
    cur = await conn.execute(
        f"""SELECT {ALERT_COLUMNS} FROM price_alerts
            WHERE user_id = %s AND deleted_at IS NULL {where}
            ORDER BY created_at DESC, id LIMIT %s""",
        (user_id, limit),
    )
    return await cur.fetchall()


async def delete_alert(conn: Conn, user_id: uuid.UUID, alert_id: uuid.UUID) -> bool:
    cur = await conn.execute(
        """UPDATE price_alerts SET deleted_at = now()
           WHERE id = %s AND user_id = %s AND deleted_at IS NULL""",
        (alert_id, user_id),
    )
    return cur.rowcount == 1


async def armed_for(conn: Conn, symbols: Iterable[str]) -> list[Row]:
    """Live alerts on any of ``symbols``, locked so two evaluators cannot fire one twice."""
    cur = await conn.execute(
        f"""SELECT {ALERT_COLUMNS} FROM price_alerts
            WHERE symbol = ANY(%s) AND triggered_at IS NULL AND deleted_at IS NULL
            ORDER BY created_at, id FOR UPDATE SKIP LOCKED""",
        (list(symbols),),
    )
    return await cur.fetchall()


async def mark_triggered(conn: Conn, alert_id: uuid.UUID, *, price: Decimal, as_of: str) -> bool:
    cur = await conn.execute(
        """UPDATE price_alerts SET triggered_at = now(), triggered_price = %s, triggered_as_of = %s
           WHERE id = %s AND triggered_at IS NULL AND deleted_at IS NULL""",
        (price, as_of, alert_id),
    )
    return cur.rowcount == 1


async def claim_price_mark(conn: Conn, as_of: date, symbols: int) -> bool:
    """Record that ``as_of``'s closes are being published; False when they were already."""
    cur = await conn.execute(
        "INSERT INTO price_marks (as_of, symbols) VALUES (%s, %s) ON CONFLICT (as_of) DO NOTHING",
        (as_of, symbols),
    )
    return cur.rowcount == 1
