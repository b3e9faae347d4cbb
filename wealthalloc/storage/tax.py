"""Tax records in PostgreSQL: wash sales applied to lots, realized rows, harvests and the daily scan.

Two writers use these functions: the shard's order desk (a fill's wash sales,
in the fill's transaction; a harvest's execution) and whoever refreshes a
user's harvesting opportunities (the API on a read, the daily scan). The
refresh writes only ``tax_harvests`` rows and takes the user's row lock first
(:func:`lock_user`), so two refreshes of one user never interleave; the desk
locks the harvest row it executes, so a refresh and an execution serialize on it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from wealthalloc.domain.wash_sale import IdentityGroups
from wealthalloc.storage import held_writes
from wealthalloc.storage.books import Conn, Query, Row, rows_together
from wealthalloc.trading.status import OPEN_STATUSES

# Substantially identical securities ---------------------------------------------------------------


async def identity_groups(conn: Conn) -> IdentityGroups:
    """The operator's ``wash_sale_groups`` table as the engine reads it."""
    [rows] = await rows_together(conn, IDENTITY_GROUPS)
    return identity_groups_of(rows)


IDENTITY_GROUPS: Query = ("SELECT group_name, symbol FROM wash_sale_groups ORDER BY group_name, symbol", ())


def identity_groups_of(rows: list[Row]) -> IdentityGroups:
    return IdentityGroups.from_rows((row["group_name"], row["symbol"]) for row in rows)


# Lots and losses the wash-sale rule can touch ---------------------------------------------------


async def open_lots(
    conn: Conn,
    user_ids: Collection[uuid.UUID],
    *,
    symbols: Collection[str] | None = None,
    since: date | None = None,
) -> list[Row]:
    """The users' open lots in every portfolio, with the portfolio's account type and whether the lot
    is already a replacement (it absorbed a loss), of ``symbols`` and acquired on or after ``since``.

    ``user_ids`` is one user, or the members of a joint-filing household (whose lots replace each
    other's losses: :func:`wealthalloc.storage.households.wash_sale_circle`)."""
    await held_writes.flush(conn)
    cur = await conn.execute(
        """SELECT l.*, p.account_type,
                  EXISTS (SELECT 1 FROM wash_sales w WHERE w.replacement_lot_id = l.id) AS is_replacement
           FROM lots l JOIN portfolios p ON p.id = l.portfolio_id
           WHERE l.portfolio_id = ANY(ARRAY(SELECT id FROM portfolios
                                            WHERE user_id = ANY(%(users)s::uuid[]) AND deleted_at IS NULL))
             AND l.closed_at IS NULL AND l.shares > 0
             AND (%(symbols)s::text[] IS NULL OR l.symbol = ANY(%(symbols)s::text[]))
             AND (%(since)s::date IS NULL OR l.acquired_at >= %(since)s::date)
           ORDER BY l.acquired_at, l.created_date, l.id""",
        {"users": sorted(user_ids), "symbols": None if symbols is None else sorted(symbols), "since": since},
    )
    return await cur.fetchall()


async def pending_losses(
    conn: Conn, user_ids: Collection[uuid.UUID], *, symbols: Collection[str], since: date, until: date
) -> list[Row]:
    """Losses realized in the users' (one user's, or a household's) taxable portfolios between
    ``since`` and ``until`` whose shares are not all replaced yet: each with ``shares_left`` and
    ``loss_left``, and ``always_long`` when the shares sold were inherited, earliest sale first.

    ``FOR UPDATE`` of the realized rows: the fill that replaces them adds to their adjustment.

    Both this and :func:`open_lots` find the users' portfolios first and then their rows through
    the (portfolio, symbol) indexes. Joined the plain way, the planner may instead walk every
    user's rows of the symbol and probe the portfolios for each (13 ms instead of 0.4 ms a call
    with a few thousand lots whose statistics were not yet gathered).
    """
    [rows] = await rows_together(
        conn, pending_losses_query(user_ids, symbols=symbols, since=since, until=until)
    )
    return rows


def pending_losses_query(
    user_ids: Collection[uuid.UUID], *, symbols: Collection[str], since: date, until: date
) -> Query:
    """:func:`pending_losses` as a query, to send with others (:func:`rows_together`)."""
    return (
        """SELECT r.id, r.symbol, r.sold_at, r.acquired_at, r.shares, r.proceeds, r.cost_basis,
                  (SELECT l.always_long FROM lots l WHERE l.id = r.lot_id) AS always_long,
                  r.shares - coalesce(w.shares, 0) AS shares_left,
                  r.cost_basis - r.proceeds - coalesce(w.disallowed, 0) AS loss_left
           FROM realized_lots r
           LEFT JOIN LATERAL (SELECT sum(shares) AS shares, sum(disallowed) AS disallowed
                              FROM wash_sales WHERE realized_lot_id = r.id) w ON true
           WHERE r.portfolio_id = ANY(ARRAY(SELECT id FROM portfolios
                                            WHERE user_id = ANY(%(users)s::uuid[])
                                              AND account_type = 'taxable'))
             AND r.symbol = ANY(%(symbols)s::text[])
             AND r.sold_at BETWEEN %(since)s AND %(until)s
             AND r.cost_basis > r.proceeds
             AND r.shares > coalesce(w.shares, 0)
           ORDER BY r.sold_at, r.created_at, r.id
           FOR UPDATE OF r""",
        {"users": sorted(user_ids), "symbols": sorted(symbols), "since": since, "until": until},
    )


async def lot_sources(conn: Conn, lot_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Row]:
    """Portfolio, source and purchase of stored lots (what a lot split off them inherits), and the
    loss basis and always-long flag a sale of a gift or an inheritance is figured with."""
    await held_writes.flush(conn)
    cur = await conn.execute(
        """SELECT id, portfolio_id, source, purchase_lot_id, loss_basis, always_long, transfer_status
           FROM lots WHERE id = ANY(%s)""",
        (list(lot_ids),),
    )
    return {row["id"]: row for row in await cur.fetchall()}


async def insert_realized(
    conn: Conn,
    *,
    portfolio_id: uuid.UUID,
    lot_id: uuid.UUID,
    fill_row_id: uuid.UUID,
    symbol: str,
    shares: Decimal,
    acquired_at: date,
    sold_at: date,
    proceeds: Decimal,
    cost_basis: Decimal,
    wash_sale_disallowed: Decimal,
    term: str,
) -> uuid.UUID:
    """One Form 8949 row; ``gain_loss`` is column (h): proceeds - basis + the disallowed loss."""
    await held_writes.flush(conn)
    cur = await conn.execute(
        """INSERT INTO realized_lots (portfolio_id, lot_id, fill_id, symbol, shares, acquired_at, sold_at,
                                      proceeds, cost_basis, wash_sale_disallowed, gain_loss, term)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            portfolio_id,
            lot_id,
            fill_row_id,
            symbol,
            shares,
            acquired_at,
            sold_at,
            proceeds,
            cost_basis,
            wash_sale_disallowed,
            proceeds - cost_basis + wash_sale_disallowed,
            term,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row["id"]))


async def disallow_more(conn: Conn, realized_id: uuid.UUID, amount: Decimal) -> None:
    """A later replacement buy disallows more of a realized loss (column g grows, column h with it)."""
    await conn.execute(
        """UPDATE realized_lots SET wash_sale_disallowed = wash_sale_disallowed + %(amount)s,
                                    gain_loss = gain_loss + %(amount)s
           WHERE id = %(id)s""",
        {"amount": amount, "id": realized_id},
    )


async def insert_wash_sale(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    realized_lot_id: uuid.UUID,
    replacement_lot_id: uuid.UUID,
    replacement_portfolio_id: uuid.UUID,
    replacement_account_type: str,
    symbol: str,
    replacement_symbol: str,
    sold_at: date,
    replacement_acquired_at: date,
    shares: Decimal,
    disallowed: Decimal,
    holding_days: int,
    permanent: bool,
    fill_id: uuid.UUID | None,
) -> None:
    await held_writes.flush(conn)
    await conn.execute(
        """INSERT INTO wash_sales (user_id, realized_lot_id, replacement_lot_id, replacement_portfolio_id,
                                   replacement_account_type, symbol, replacement_symbol, sold_at,
                                   replacement_acquired_at, shares, disallowed, holding_days, permanent,
                                   fill_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            user_id,
            realized_lot_id,
            replacement_lot_id,
            replacement_portfolio_id,
            replacement_account_type,
            symbol,
            replacement_symbol,
            sold_at,
            replacement_acquired_at,
            shares,
            disallowed,
            holding_days,
            permanent,
            fill_id,
        ),
    )


# Realized gains ---------------------------------------------------------------------------------


async def realized_rows(
    conn: Conn, user_id: uuid.UUID, *, portfolio_id: uuid.UUID | None = None, through: date | None = None
) -> list[Row]:
    """Realized rows of the user (or of one portfolio), with the account type, the lot's acquisition date
    and the part of the adjustment whose replacement sits in an IRA (lost for good), in sale order.
    The user's portfolios first, as in :func:`open_lots`."""
    await held_writes.flush(conn)
    cur = await conn.execute(
        """SELECT r.*, p.account_type, l.acquired_at AS lot_acquired_at,
                  coalesce((SELECT sum(w.disallowed) FROM wash_sales w
                            WHERE w.realized_lot_id = r.id AND w.permanent), 0) AS permanently_disallowed
           FROM realized_lots r
           JOIN portfolios p ON p.id = r.portfolio_id
           JOIN lots l ON l.id = r.lot_id
           WHERE r.portfolio_id = ANY(ARRAY(SELECT id FROM portfolios WHERE user_id = %(user)s))
             AND (%(portfolio)s::uuid IS NULL OR r.portfolio_id = %(portfolio)s::uuid)
             AND (%(through)s::date IS NULL OR r.sold_at <= %(through)s::date)
           ORDER BY r.sold_at, r.created_at, r.id""",
        {"user": user_id, "portfolio": portfolio_id, "through": through},
    )
    return await cur.fetchall()


async def tax_profile(conn: Conn, user_id: uuid.UUID) -> Row | None:
    cur = await conn.execute(
        """SELECT filing_status, short_term_rate, long_term_rate FROM users
           WHERE id = %s AND deleted_at IS NULL""",
        (user_id,),
    )
    return await cur.fetchone()


async def open_buy_orders(conn: Conn, user_ids: Collection[uuid.UUID]) -> list[Row]:
    """The users' (one user's, or a household's) buy orders still open: purchases on their way."""
    await held_writes.flush(conn)
    cur = await conn.execute(
        """SELECT id, portfolio_id, symbol, quantity - filled_quantity AS remaining FROM orders
           WHERE user_id = ANY(%s::uuid[]) AND side = 'buy' AND status = ANY(%s) ORDER BY created_date""",
        (sorted(user_ids), list(OPEN_STATUSES)),
    )
    return await cur.fetchall()


async def portfolios(conn: Conn, user_id: uuid.UUID) -> list[Row]:
    cur = await conn.execute(
        """SELECT id, name, account_type, dividend_reinvestment FROM portfolios
           WHERE user_id = %s AND deleted_at IS NULL
           ORDER BY created_date, id""",
        (user_id,),
    )
    return await cur.fetchall()


# Harvests ---------------------------------------------------------------------------------------

HARVEST_COLUMNS = """
id, user_id, portfolio_id, symbol, lot_ids, loss_amount, term, estimated_tax_savings, replacement_symbol,
status, wash_sale_window_end, sell_order_id, buy_order_id, created_date, executed_at, identified_on,
details, execution_key, updated_date
"""


async def lock_user(conn: Conn, user_id: uuid.UUID) -> bool:
    """Serialize refreshes of one user's opportunities (CockroachDB has no advisory locks)."""
    cur = await conn.execute(
        "SELECT id FROM users WHERE id = %s AND deleted_at IS NULL FOR UPDATE", (user_id,)
    )
    return await cur.fetchone() is not None


async def harvest(conn: Conn, harvest_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(f"SELECT {HARVEST_COLUMNS} FROM tax_harvests WHERE id = %s{lock}", (harvest_id,))
    return await cur.fetchone()


async def harvests_of(
    conn: Conn,
    user_id: uuid.UUID,
    *,
    statuses: Collection[str],
    portfolio_id: uuid.UUID | None = None,
    for_update: bool = False,
) -> list[Row]:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"""SELECT {HARVEST_COLUMNS} FROM tax_harvests
            WHERE user_id = %(user)s AND status = ANY(%(statuses)s)
              AND (%(portfolio)s::uuid IS NULL OR portfolio_id = %(portfolio)s::uuid)
            ORDER BY estimated_tax_savings DESC, loss_amount DESC, symbol, id{lock}""",
        {"user": user_id, "statuses": list(statuses), "portfolio": portfolio_id},
    )
    return await cur.fetchall()


async def insert_harvest(conn: Conn, *, user_id: uuid.UUID, values: Mapping[str, Any]) -> Row:
    """A new opportunity (status ``identified``)."""
    cur = await conn.execute(
        f"""INSERT INTO tax_harvests (user_id, portfolio_id, symbol, lot_ids, loss_amount, term,
                                      estimated_tax_savings, replacement_symbol, identified_on, details)
            VALUES (%(user)s, %(portfolio_id)s, %(symbol)s, %(lot_ids)s, %(loss_amount)s, %(term)s,
                    %(estimated_tax_savings)s, %(replacement_symbol)s, %(identified_on)s, %(details)s)
            RETURNING {HARVEST_COLUMNS}""",
        {**_json_fields(values), "user": user_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def refresh_harvest(conn: Conn, harvest_id: uuid.UUID, values: Mapping[str, Any]) -> Row:
    """An open opportunity's figures as of today's scan; its id stays."""
    cur = await conn.execute(
        f"""UPDATE tax_harvests SET lot_ids = %(lot_ids)s, loss_amount = %(loss_amount)s, term = %(term)s,
                   estimated_tax_savings = %(estimated_tax_savings)s,
                   replacement_symbol = %(replacement_symbol)s,
                   identified_on = %(identified_on)s, details = %(details)s, updated_date = now()
            WHERE id = %(id)s RETURNING {HARVEST_COLUMNS}""",
        {**_json_fields(values), "id": harvest_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def expire_harvests(conn: Conn, harvest_ids: Collection[uuid.UUID]) -> None:
    """Opportunities that no longer are (the loss shrank, the lots were sold)."""
    if harvest_ids:
        await conn.execute(
            "UPDATE tax_harvests SET status = 'expired', updated_date = now() WHERE id = ANY(%s)",
            (list(harvest_ids),),
        )


async def mark_executed(
    conn: Conn,
    harvest_id: uuid.UUID,
    *,
    execution_key: str,
    replacement_symbol: str,
    wash_sale_window_end: date,
    values: Mapping[str, Any],
) -> Row:
    """The harvest is carried out: from now on its window blocks buying the symbol back."""
    cur = await conn.execute(
        f"""UPDATE tax_harvests SET status = 'executed', executed_at = now(), execution_key = %(key)s,
                   replacement_symbol = %(replacement)s, wash_sale_window_end = %(window_end)s,
                   lot_ids = %(lot_ids)s, loss_amount = %(loss_amount)s, term = %(term)s,
                   estimated_tax_savings = %(estimated_tax_savings)s, details = %(details)s,
                   updated_date = now()
            WHERE id = %(id)s RETURNING {HARVEST_COLUMNS}""",
        {
            **_json_fields(values),
            "id": harvest_id,
            "key": execution_key,
            "replacement": replacement_symbol,
            "window_end": wash_sale_window_end,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def attach_orders(
    conn: Conn, harvest_id: uuid.UUID, *, sell_order_id: uuid.UUID | None, buy_order_id: uuid.UUID | None
) -> None:
    await conn.execute(
        """UPDATE tax_harvests SET sell_order_id = coalesce(%s, sell_order_id),
                                   buy_order_id = coalesce(%s, buy_order_id), updated_date = now()
           WHERE id = %s""",
        (sell_order_id, buy_order_id, harvest_id),
    )


def blocking_harvests_query(
    user_ids: Collection[uuid.UUID], *, symbols: Collection[str], today: date
) -> Query:
    """The executed harvests (of one user, or of either member of a household) whose wash-sale windows
    still forbid buying one of ``symbols``, the window ending last first: a query to send with
    others (:func:`rows_together`)."""
    return (
        f"""SELECT {HARVEST_COLUMNS} FROM tax_harvests
            WHERE user_id = ANY(%s::uuid[]) AND status = 'executed' AND symbol = ANY(%s)
              AND wash_sale_window_end >= %s
            ORDER BY wash_sale_window_end DESC, id""",
        (sorted(user_ids), sorted(symbols), today),
    )


def _json_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    out["lot_ids"] = json.dumps([str(i) for i in values["lot_ids"]])
    out["details"] = json.dumps(values["details"], default=str)
    return out


# The daily scan ---------------------------------------------------------------------------------


async def claim_scan(conn: Conn, user_id: uuid.UUID, day: date) -> bool:
    """True when this user has not been scanned for ``day`` yet (and now is, in this transaction)."""
    cur = await conn.execute(
        """INSERT INTO harvest_scans (user_id, scan_date) VALUES (%s, %s)
           ON CONFLICT (user_id, scan_date) DO NOTHING RETURNING user_id""",
        (user_id, day),
    )
    return await cur.fetchone() is not None


async def finish_scan(conn: Conn, user_id: uuid.UUID, day: date, *, opportunities: int, events: int) -> None:
    await conn.execute(
        """UPDATE harvest_scans SET opportunities = %s, events = %s WHERE user_id = %s AND scan_date = %s""",
        (opportunities, events, user_id, day),
    )


async def user_ids_after(conn: Conn, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
    """The next page of active users, by id (keyset pagination: stable while users sign up)."""
    cur = await conn.execute(
        """SELECT id FROM users WHERE deleted_at IS NULL AND (%(after)s::uuid IS NULL OR id > %(after)s::uuid)
           ORDER BY id LIMIT %(limit)s""",
        {"after": after, "limit": limit},
    )
    return [uuid.UUID(str(row["id"])) for row in await cur.fetchall()]
