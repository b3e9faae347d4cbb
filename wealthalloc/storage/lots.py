"""The one module that writes the ``lots`` table: a lot opened, relieved by a sale, rewritten by the
wash-sale engine, and a transfer-in held pending or confirmed.

Lots are the tax record: their shares and bases decide every realized gain. Whoever wants to know
how a lot can change reads this file; the reads of lots stay with the books and the tax queries.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from wealthalloc.domain.lots import Lot
from wealthalloc.storage import held_writes

Conn = AsyncConnection[DictRow]
Row = dict[str, Any]


async def insert_lot(
    conn: Conn,
    *,
    portfolio_id: uuid.UUID,
    lot: Lot,
    original_shares: Decimal,
    source: str,
    opened_by_fill_id: uuid.UUID | None,
    purchase_lot_id: uuid.UUID | None,
    loss_basis: Decimal | None = None,
    always_long: bool = False,
) -> None:
    """A lot with the id, bases and holding period the engine gave it (a buy's lot, or shares split off),
    or that a gift or an inheritance gave it (``loss_basis``, ``always_long``). In a block
    (:func:`~wealthalloc.storage.held_writes.writes_together`) it is written with the block's other
    lots, after the fills they refer to."""
    await held_writes.write(
        conn,
        _LOTS,
        (
            lot.id,
            portfolio_id,
            lot.symbol,
            lot.shares,
            original_shares,
            lot.cost_basis,
            lot.adjusted_basis,
            lot.acquired_at,
            lot.holding_period_start,
            lot.adjusted_basis - lot.cost_basis,
            source,
            opened_by_fill_id,
            purchase_lot_id,
            loss_basis,
            always_long,
        ),
        stage=held_writes.Stage.LOTS,
    )


_LOTS = held_writes.Insert.of(
    "lots",
    """id uuid, portfolio_id uuid, symbol text, shares numeric, original_shares numeric, cost_basis numeric,
       adjusted_basis numeric, acquired_at date, holding_period_start date, wash_sale_disallowed numeric,
       source text, opened_by_fill_id uuid, purchase_lot_id uuid, loss_basis numeric, always_long bool""",
)


async def rewrite_lot(conn: Conn, lot: Lot, *, original_shares: Decimal) -> None:
    """A lot's shares, bases and holding period as the wash-sale engine left them."""
    await held_writes.flush(conn)
    await conn.execute(
        """UPDATE lots SET shares = %(shares)s, original_shares = %(original)s, cost_basis = %(cost)s,
                          adjusted_basis = %(adjusted)s, wash_sale_disallowed = %(disallowed)s,
                          holding_period_start = %(hps)s, updated_date = now()
           WHERE id = %(id)s""",
        {
            "id": lot.id,
            "shares": lot.shares,
            "original": original_shares,
            "cost": lot.cost_basis,
            "adjusted": lot.adjusted_basis,
            "disallowed": lot.adjusted_basis - lot.cost_basis,
            "hps": lot.holding_period_start,
        },
    )


async def relieve_lot(
    conn: Conn, lot_id: uuid.UUID, *, shares: Decimal, cost_basis: Decimal, adjusted_basis: Decimal
) -> None:
    """Take sold shares (and their basis) out of an open lot; a lot with none left is closed.

    ``wash_sale_disallowed`` stays what it means: the wash-sale losses carried in by the shares left.
    """
    await held_writes.flush(conn)
    await conn.execute(
        """UPDATE lots SET shares = shares - %(shares)s, cost_basis = cost_basis - %(cost)s,
                          adjusted_basis = adjusted_basis - %(adjusted)s,
                          wash_sale_disallowed = GREATEST(
                              (adjusted_basis - %(adjusted)s) - (cost_basis - %(cost)s), 0),
                          closed_at = CASE WHEN shares - %(shares)s = 0 THEN now() ELSE closed_at END,
                          updated_date = now()
           WHERE id = %(id)s""",
        {"shares": shares, "cost": cost_basis, "adjusted": adjusted_basis, "id": lot_id},
    )


async def relieve_loss_basis(conn: Conn, lot_id: uuid.UUID, amount: Decimal) -> None:
    """A sale took ``amount`` of a gift lot's loss basis with its shares (the rest stays with the rest)."""
    await held_writes.flush(conn)
    await conn.execute(
        "UPDATE lots SET loss_basis = loss_basis - %s, updated_date = now() WHERE id = %s", (amount, lot_id)
    )


async def mark_pending(
    conn: Conn, lot_id: uuid.UUID, *, linked_account_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """The transfer-in lot ``lot_id`` and the shares a wash sale split off it wait for confirmation."""
    await held_writes.flush(conn)
    cur = await conn.execute(
        """UPDATE lots SET transfer_status = 'pending', linked_account_id = %s, updated_date = now()
           WHERE (id = %s OR purchase_lot_id = %s) AND source = 'transfer_in' RETURNING id""",
        (linked_account_id, lot_id, lot_id),
    )
    return [row["id"] for row in await cur.fetchall()]


async def confirm_lots(
    conn: Conn, lot_ids: Collection[uuid.UUID], *, by: uuid.UUID | None, reason: str
) -> list[Row]:
    """Pending lots become sellable; who confirmed them (``None``: a broker sync) and why stay on them."""
    await held_writes.flush(conn)
    if not lot_ids:
        return []
    cur = await conn.execute(
        """UPDATE lots SET transfer_status = 'confirmed', transfer_confirmed_at = now(),
                           transfer_confirmed_by = %s, transfer_confirmation = %s, updated_date = now()
           WHERE id = ANY(%s) AND transfer_status = 'pending'
           RETURNING id, portfolio_id, symbol, shares""",
        (by, reason[:500], list(lot_ids)),
    )
    return await cur.fetchall()
