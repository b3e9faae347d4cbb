"""Joint-filing households in PostgreSQL (tables ``households``, ``household_members``,
``household_invitations``, migration 0016).

The wash-sale rule reads a household through :func:`wash_sale_circle`: the user ids whose purchases
and losses match each other's. When the user is in a household it locks the household's row first,
so the fills of both members (possibly on two shards) serialize on one row, and a member leaving
waits for a fill that is matching across the household to commit. Every function takes the
caller's connection: the caller decides the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from wealthalloc.storage.books import Conn, Query, Row

INVITATION_COLUMNS = """
i.id, i.inviter_id, i.invitee_email, i.status, i.household_id, i.created_at, i.expires_at, i.responded_at
"""


async def wash_sale_circle(conn: Conn, user_id: uuid.UUID, *, lock: bool = True) -> list[uuid.UUID]:
    """The users whose trades count as the user's own for the wash-sale rule: the user alone, or both
    members of the user's household (sorted by id).

    With ``lock`` (what a fill does) the household's row is locked ``FOR UPDATE`` before the members
    are read: two fills of one household, or a fill and a member leaving, never interleave.
    """
    cur = await conn.execute(*household_query(user_id, lock=lock))
    row = await cur.fetchone()
    if row is None:
        return [user_id]
    cur = await conn.execute(
        "SELECT user_id FROM household_members WHERE household_id = %s ORDER BY user_id", (row["id"],)
    )
    members = [uuid.UUID(str(r["user_id"])) for r in await cur.fetchall()]
    return members if user_id in members else [user_id]  # left between the two reads


def household_query(user_id: uuid.UUID, *, lock: bool) -> Query:
    """The user's standing household (``id``, ``created_at``), its row locked with ``lock``: what
    :func:`household_of` answers, what :func:`wash_sale_circle` reads first, and what a change takes
    before its book's rows, reading the members later (:func:`circle_held_query`)."""
    lock_clause = " FOR UPDATE OF h" if lock else ""
    return (
        f"""SELECT h.id, h.created_at FROM households h JOIN household_members m ON m.household_id = h.id
            WHERE m.user_id = %s AND h.dissolved_at IS NULL{lock_clause}""",
        (user_id,),
    )


def circle_held_query(user_id: uuid.UUID) -> Query:
    """The members of the user's household in one statement, for a transaction that already holds
    the household's row (:func:`wash_sale_circle` with ``lock`` took it): nobody can join or leave
    meanwhile, so the members need no second read. :func:`circle_of` makes the circle of its rows."""
    return (
        """SELECT m2.user_id FROM household_members m
           JOIN households h ON h.id = m.household_id AND h.dissolved_at IS NULL
           JOIN household_members m2 ON m2.household_id = h.id
           WHERE m.user_id = %s ORDER BY m2.user_id""",
        (user_id,),
    )


def circle_of(user_id: uuid.UUID, rows: list[Row]) -> list[uuid.UUID]:
    """The circle :func:`circle_held_query` read: the members, or the user alone."""
    return [uuid.UUID(str(row["user_id"])) for row in rows] or [user_id]


async def household_of(conn: Conn, user_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
    """The user's standing household (``id``, ``created_at``), if any."""
    cur = await conn.execute(*household_query(user_id, lock=for_update))
    return await cur.fetchone()


async def members(conn: Conn, household_id: uuid.UUID) -> list[Row]:
    """The members with the address and name each shows the other, in the order they joined."""
    cur = await conn.execute(
        """SELECT m.user_id, u.email, u.full_name, u.filing_status, m.joined_at
           FROM household_members m JOIN users u ON u.id = m.user_id
           WHERE m.household_id = %s ORDER BY m.joined_at, m.user_id""",
        (household_id,),
    )
    return await cur.fetchall()


async def lock_users(conn: Conn, user_ids: Collection[uuid.UUID]) -> list[Row]:
    """Lock the users' rows in id order (the one order every household change takes them in)."""
    cur = await conn.execute(
        """SELECT id, email, filing_status FROM users WHERE id = ANY(%s) AND deleted_at IS NULL
           ORDER BY id FOR UPDATE""",
        (sorted(user_ids),),
    )
    return await cur.fetchall()


async def create_household(conn: Conn, user_ids: Collection[uuid.UUID]) -> uuid.UUID:
    """A new household of ``user_ids``; a member already in one breaks the primary key (the caller checks
    first, under the users' locks)."""
    cur = await conn.execute("INSERT INTO households DEFAULT VALUES RETURNING id")
    row = await cur.fetchone()
    assert row is not None
    household_id = uuid.UUID(str(row["id"]))
    for user_id in sorted(user_ids):
        await conn.execute(
            "INSERT INTO household_members (user_id, household_id) VALUES (%s, %s)", (user_id, household_id)
        )
    return household_id


async def dissolve(conn: Conn, household_id: uuid.UUID) -> list[uuid.UUID]:
    """End the household: its members are free to join another. Returns who they were."""
    cur = await conn.execute(
        "DELETE FROM household_members WHERE household_id = %s RETURNING user_id", (household_id,)
    )
    gone = sorted(uuid.UUID(str(r["user_id"])) for r in await cur.fetchall())
    await conn.execute("UPDATE households SET dissolved_at = now() WHERE id = %s", (household_id,))
    return gone


async def set_filing_status(conn: Conn, user_ids: Collection[uuid.UUID], filing_status: str) -> None:
    await conn.execute(
        "UPDATE users SET filing_status = %s, updated_date = now() WHERE id = ANY(%s)",
        (filing_status, sorted(user_ids)),
    )


# Invitations ------------------------------------------------------------------------------------


async def pending_invitation(conn: Conn, inviter_id: uuid.UUID, email: str) -> Row | None:
    cur = await conn.execute(
        f"""SELECT {INVITATION_COLUMNS} FROM household_invitations i
            WHERE i.inviter_id = %s AND lower(i.invitee_email) = lower(%s) AND i.status = 'pending'""",
        (inviter_id, email),
    )
    return await cur.fetchone()


async def insert_invitation(conn: Conn, *, inviter_id: uuid.UUID, email: str, expires_at: datetime) -> Row:
    cur = await conn.execute(
        f"""INSERT INTO household_invitations AS i (inviter_id, invitee_email, expires_at)
            VALUES (%s, %s, %s) RETURNING {INVITATION_COLUMNS}""",
        (inviter_id, email, expires_at),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def invitation(conn: Conn, invitation_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"SELECT {INVITATION_COLUMNS} FROM household_invitations i WHERE i.id = %s{lock}", (invitation_id,)
    )
    return await cur.fetchone()


async def invitations_of(conn: Conn, user_id: uuid.UUID, email: str) -> list[Row]:
    """Pending invitations the user sent or received (to the user's address), newest first, with the
    inviter's address."""
    cur = await conn.execute(
        f"""SELECT {INVITATION_COLUMNS}, u.email AS inviter_email FROM household_invitations i
            JOIN users u ON u.id = i.inviter_id
            WHERE i.status = 'pending' AND i.expires_at > now()
              AND (i.inviter_id = %s OR lower(i.invitee_email) = lower(%s))
            ORDER BY i.created_at DESC, i.id""",
        (user_id, email),
    )
    return await cur.fetchall()


async def close_invitation(
    conn: Conn, invitation_id: uuid.UUID, status: str, household_id: uuid.UUID | None = None
) -> Row:
    cur = await conn.execute(
        f"""UPDATE household_invitations AS i SET status = %s, household_id = %s, responded_at = now()
            WHERE i.id = %s RETURNING {INVITATION_COLUMNS}""",
        (status, household_id, invitation_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def owners_of(conn: Conn, portfolio_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """``portfolio id -> user id`` (whose shard caches the portfolio's book)."""
    if not portfolio_ids:
        return {}
    cur = await conn.execute("SELECT id, user_id FROM portfolios WHERE id = ANY(%s)", (list(portfolio_ids),))
    return {uuid.UUID(str(r["id"])): uuid.UUID(str(r["user_id"])) for r in await cur.fetchall()}
