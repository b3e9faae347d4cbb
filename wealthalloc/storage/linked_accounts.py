"""Linked accounts, their reconciliation items and pending transfer-in lots in PostgreSQL
(``external_accounts``, ``reconciliation_items``, ``lots.transfer_status``; migration 0018).

The sealed account number and its blind index are read only by the functions that
need them (:func:`sealed_number`, :func:`sealed_batch`): every other read selects
:data:`ACCOUNT_COLUMNS`, which names neither, so no answer can carry them by accident.
Every function takes the caller's connection: the caller decides the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from decimal import Decimal

from wealthalloc.linked_accounts import Difference
from wealthalloc.security.encryption import Sealed
from wealthalloc.storage.books import Conn, Row

ACCOUNT_COLUMNS = """
id, user_id, provider, name, portfolio_id, account_number_masked, status, last_synced_at, last_sync_error,
broker_cash, created_date, updated_date, unlinked_at
"""
ITEM_COLUMNS = """
id, linked_account_id, portfolio_id, kind, symbol, broker_quantity, platform_quantity, broker_cash,
platform_cash, lot_ids, status, first_seen_at, last_seen_at, resolved_at
"""
ONE_LINK = "external_accounts_one_link"
ONE_PER_PORTFOLIO = "external_accounts_one_per_portfolio"


async def insert_account(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    provider: str,
    name: str,
    portfolio_id: uuid.UUID,
    masked: str,
    sealed: Sealed,
    index: bytes,
) -> Row:
    """A new link (``pending`` until its first sync); a second link of the same account by the same
    person, or a second account on the portfolio, is a ``UniqueViolation`` naming its index."""
    cur = await conn.execute(
        f"""INSERT INTO external_accounts (user_id, provider, name, portfolio_id, account_number_masked,
                                           account_number_sealed, account_number_key_id,
                                           account_number_index)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {ACCOUNT_COLUMNS}""",
        (user_id, provider, name, portfolio_id, masked, sealed.blob, sealed.key_id, index),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def accounts_of(conn: Conn, user_id: uuid.UUID, *, include_unlinked: bool = False) -> list[Row]:
    cur = await conn.execute(
        f"""SELECT {ACCOUNT_COLUMNS} FROM external_accounts
            WHERE user_id = %s AND (%s OR unlinked_at IS NULL) AND account_number_sealed IS NOT NULL
            ORDER BY created_date, id""",
        (user_id, include_unlinked),
    )
    return await cur.fetchall()


async def account(conn: Conn, account_id: uuid.UUID, *, lock: bool = False) -> Row | None:
    cur = await conn.execute(
        f"""SELECT {ACCOUNT_COLUMNS} FROM external_accounts
            WHERE id = %s AND account_number_sealed IS NOT NULL {"FOR UPDATE" if lock else ""}""",
        (account_id,),
    )
    return await cur.fetchone()


async def sealed_number(conn: Conn, account_id: uuid.UUID) -> Sealed | None:
    """The sealed number of a linked account, for the connection that must log in with it."""
    cur = await conn.execute(
        """SELECT account_number_key_id, account_number_sealed FROM external_accounts
           WHERE id = %s AND account_number_sealed IS NOT NULL""",
        (account_id,),
    )
    row = await cur.fetchone()
    return None if row is None else Sealed(row["account_number_key_id"], bytes(row["account_number_sealed"]))


async def syncable(conn: Conn, provider: str) -> list[Row]:
    """Every linked account of ``provider`` that syncs (linked, not unlinked), oldest sync first."""
    cur = await conn.execute(
        f"""SELECT {ACCOUNT_COLUMNS} FROM external_accounts
            WHERE provider = %s AND unlinked_at IS NULL AND account_number_sealed IS NOT NULL
            ORDER BY last_synced_at NULLS FIRST, id""",
        (provider,),
    )
    return await cur.fetchall()


async def unlink(conn: Conn, account_id: uuid.UUID) -> Row | None:
    """The account stops syncing; it stays (with its items and the lots it brought) as history."""
    cur = await conn.execute(
        f"""UPDATE external_accounts SET status = 'unlinked', unlinked_at = now(), updated_date = now()
            WHERE id = %s AND unlinked_at IS NULL RETURNING {ACCOUNT_COLUMNS}""",
        (account_id,),
    )
    return await cur.fetchone()


async def record_sync(
    conn: Conn,
    account_id: uuid.UUID,
    *,
    status: str,
    error: str | None = None,
    broker_cash: Decimal | None = None,
) -> Row | None:
    """A sync's outcome: ``active`` with the time and the broker's cash, or ``error`` with the reason
    (the last good sync time is kept). An unlinked account is left as it is."""
    cur = await conn.execute(
        f"""UPDATE external_accounts
            SET status = %(status)s,
                last_sync_error = %(error)s,
                last_synced_at = CASE WHEN %(status)s = 'active' THEN now() ELSE last_synced_at END,
                broker_cash = CASE WHEN %(status)s = 'active' THEN %(cash)s ELSE broker_cash END,
                updated_date = now()
            WHERE id = %(id)s AND unlinked_at IS NULL RETURNING {ACCOUNT_COLUMNS}""",
        {"status": status, "error": error and error[:500], "cash": broker_cash, "id": account_id},
    )
    return await cur.fetchone()


# Reconciliation items --------------------------------------------------------------------------


async def record_differences(
    conn: Conn,
    *,
    account: Row,
    differences: Sequence[Difference],
    lots_by_symbol: dict[str, list[uuid.UUID]],
) -> tuple[int, int]:
    """Open or refresh one item per difference and resolve the open items no longer seen.

    Returns (items open now, items resolved by this sync).
    """
    seen: list[str] = []
    for difference in differences:
        kind, symbol = difference.key
        seen.append(f"{kind}:{symbol}")
        await conn.execute(
            """INSERT INTO reconciliation_items
                   (linked_account_id, portfolio_id, user_id, kind, symbol, broker_quantity,
                    platform_quantity, broker_cash, platform_cash, lot_ids)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (linked_account_id, kind, coalesce(symbol, '')) WHERE status = 'open'
               DO UPDATE SET broker_quantity = EXCLUDED.broker_quantity,
                             platform_quantity = EXCLUDED.platform_quantity,
                             broker_cash = EXCLUDED.broker_cash,
                             platform_cash = EXCLUDED.platform_cash,
                             lot_ids = reconciliation_items.lot_ids || EXCLUDED.lot_ids,
                             last_seen_at = now()""",
            (
                account["id"],
                account["portfolio_id"],
                account["user_id"],
                kind,
                difference.symbol,
                difference.broker_quantity,
                difference.platform_quantity,
                difference.broker_cash,
                difference.platform_cash,
                lots_by_symbol.get(symbol, []),
            ),
        )
    cur = await conn.execute(
        """UPDATE reconciliation_items SET status = 'resolved', resolved_at = now()
           WHERE linked_account_id = %s AND status = 'open'
             AND NOT (kind || ':' || coalesce(symbol, '') = ANY(%s))""",
        (account["id"], seen),
    )
    return len(seen), cur.rowcount


async def items_of(conn: Conn, account_id: uuid.UUID, *, status: str | None = None) -> list[Row]:
    cur = await conn.execute(
        f"""SELECT {ITEM_COLUMNS} FROM reconciliation_items
            WHERE linked_account_id = %s AND (%s::text IS NULL OR status = %s::text)
            ORDER BY status, first_seen_at DESC, kind, symbol""",
        (account_id, status, status),
    )
    return await cur.fetchall()


# Pending transfers-in --------------------------------------------------------------------------


async def pending_lot(conn: Conn, portfolio_id: uuid.UUID, lot_id: uuid.UUID) -> Row | None:
    """A lot of the portfolio, locked, with its transfer status (``None`` when not in the portfolio)."""
    cur = await conn.execute(
        """SELECT id, symbol, shares, source, transfer_status FROM lots
           WHERE id = %s AND portfolio_id = %s FOR UPDATE""",
        (lot_id, portfolio_id),
    )
    return await cur.fetchone()


async def transfer_statuses(conn: Conn, lot_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    cur = await conn.execute("SELECT id, transfer_status FROM lots WHERE id = ANY(%s)", (list(lot_ids),))
    return {row["id"]: row["transfer_status"] for row in await cur.fetchall()}


# Key rotation ----------------------------------------------------------------------------------


async def count_not_under(conn: Conn, key_id: str) -> int:
    cur = await conn.execute(
        """SELECT count(*) AS n FROM external_accounts
           WHERE account_number_sealed IS NOT NULL AND account_number_key_id <> %s""",
        (key_id,),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def sealed_batch(conn: Conn, key_id: str, limit: int, *, after: uuid.UUID | None = None) -> list[Row]:
    """Up to ``limit`` rows sealed under another key than ``key_id``, by id after ``after``, locked
    (skipping rows another re-encryption holds, so two runs share the work)."""
    cur = await conn.execute(
        """SELECT id, user_id, account_number_key_id, account_number_sealed FROM external_accounts
           WHERE account_number_sealed IS NOT NULL AND account_number_key_id <> %s
             AND (%s::uuid IS NULL OR id > %s::uuid)
           ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
        (key_id, after, after, limit),
    )
    return await cur.fetchall()


async def reseal(conn: Conn, account_id: uuid.UUID, sealed: Sealed) -> None:
    await conn.execute(
        """UPDATE external_accounts SET account_number_sealed = %s, account_number_key_id = %s,
                                        updated_date = now()
           WHERE id = %s""",
        (sealed.blob, sealed.key_id, account_id),
    )
