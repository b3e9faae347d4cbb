"""A taxpayer's tax years: the capital-loss carryover entered into each (table ``tax_years``, migration 0014).

Every query is keyed by the caller's ``user_id``, so one person can neither
read nor change another's years. Writes take the caller's connection, so the
change and its audit entry commit together.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal

from wealthalloc.domain.gains_report import CapitalLossCarryforward
from wealthalloc.storage.books import Conn, Row

_COLUMNS = "year, short_term_carryforward, long_term_carryforward, updated_at"


async def tax_years(conn: Conn, user_id: uuid.UUID) -> list[Row]:
    """The user's entered years, oldest first."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM tax_years WHERE user_id = %s ORDER BY year",
        (user_id,),
    )
    return await cur.fetchall()


async def tax_year(conn: Conn, user_id: uuid.UUID, year: int) -> Row | None:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM tax_years WHERE user_id = %s AND year = %s",
        (user_id, year),
    )
    return await cur.fetchone()


async def put_tax_year(conn: Conn, user_id: uuid.UUID, year: int, *, short: Decimal, long: Decimal) -> Row:
    """Set the carryover into ``year`` (insert or replace); returns the stored row."""
    cur = await conn.execute(
        f"""INSERT INTO tax_years (user_id, year, short_term_carryforward, long_term_carryforward)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (user_id, year) DO UPDATE
            SET short_term_carryforward = EXCLUDED.short_term_carryforward,
                long_term_carryforward = EXCLUDED.long_term_carryforward,
                updated_at = now()
            RETURNING {_COLUMNS}""",
        (user_id, year, short, long),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def delete_tax_year(conn: Conn, user_id: uuid.UUID, year: int) -> Row | None:
    """Forget the year; the deleted row, or ``None`` when there was none."""
    cur = await conn.execute(
        f"DELETE FROM tax_years WHERE user_id = %s AND year = %s RETURNING {_COLUMNS}",
        (user_id, year),
    )
    return await cur.fetchone()


def entered_carryforwards(rows: Iterable[Mapping[str, object]]) -> dict[int, CapitalLossCarryforward]:
    """The rows as the domain's ``{year: CapitalLossCarryforward}``."""
    out: dict[int, CapitalLossCarryforward] = {}
    for row in rows:
        short, long = row["short_term_carryforward"], row["long_term_carryforward"]
        assert isinstance(short, Decimal) and isinstance(long, Decimal)
        out[int(str(row["year"]))] = CapitalLossCarryforward(short=short, long=long)
    return out


async def carryforwards(conn: Conn, user_id: uuid.UUID) -> dict[int, CapitalLossCarryforward]:
    """The user's entered carryovers by year."""
    return entered_carryforwards(await tax_years(conn, user_id))
