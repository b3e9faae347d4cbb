"""Notifications, their preferences and their e-mail queue in PostgreSQL; where logins came from.

A notification is inserted with its ``notification.created`` event in the caller's
transaction (the outbox carries it to the person's live stream), and only when
its (user, source) pair is new: reading an event twice makes one notification.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from wealthalloc.notifications import Draft
from wealthalloc.storage import held_writes
from wealthalloc.storage.outbox import add_event

Conn = AsyncConnection[DictRow]
Row = dict[str, Any]

TOPIC = "notification.created"
CREATED = "notification.created"
COLUMNS = "id, user_id, kind, title, body, link, data, created_at, read_at"
MAX_ERROR = 500


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """A notification as the API and the live stream show it."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "title": row["title"],
        "body": row["body"],
        "created_at": row["created_at"],
        "read_at": row["read_at"],
        "link": row["link"],
        "data": dict(row["data"] or {}),
    }


@dataclass(frozen=True, slots=True)
class Wanted:
    """A notification to store: for whom, what it says, on which channels, and when it happened."""

    user_id: uuid.UUID
    draft: Draft
    in_app: bool
    email: bool
    occurred_at: datetime | None = None


async def insert_notifications(conn: Conn, wanted: Sequence[Wanted]) -> list[Row]:
    """The notifications that are new, in the order asked; one already made from the same (user,
    source) pair, in the table or earlier in ``wanted``, is left out.

    One statement for all of them and one for their ``notification.created`` events, in the
    caller's transaction: a batch of fills was one statement a notification, each waited for, and
    its event another. Each is stamped with when its event happened (``occurred_at``), not when a
    consumer got to it: consumers of one group may finish batches out of order, and the list, newest
    first, must follow what the person did. Without an event, the clock stamps it. An e-mail wanted
    is due at once.
    """
    if not wanted:
        return []
    ids = [uuid.uuid4() for _ in wanted]
    cur = await conn.execute(
        f"""INSERT INTO notifications
               (id, user_id, kind, title, body, link, data, source_event_id, in_app, email_wanted,
                email_next_at, created_at)
            SELECT id, user_id, kind, title, body, link, data::jsonb, source_event_id, in_app, email,
                   CASE WHEN email THEN now() END, COALESCE(occurred_at, clock_timestamp())
            FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[],
                        %b::text[], %b::uuid[], %b::bool[], %b::bool[], %b::timestamptz[])
                 AS asked(id, user_id, kind, title, body, link, data, source_event_id, in_app, email,
                          occurred_at)
            ON CONFLICT (user_id, source_event_id) DO NOTHING
            RETURNING {COLUMNS}, in_app AS shown""",
        [
            ids,
            [w.user_id for w in wanted],
            [w.draft.kind for w in wanted],
            [w.draft.title for w in wanted],
            [w.draft.body for w in wanted],
            [w.draft.link for w in wanted],
            [json.dumps(dict(w.draft.data), default=str) for w in wanted],
            [w.draft.source_id for w in wanted],
            [w.in_app for w in wanted],
            [w.email for w in wanted],
            [w.occurred_at for w in wanted],
        ],
    )
    made = {row["id"]: row for row in await cur.fetchall()}
    rows = [made[i] for i in ids if i in made]
    async with held_writes.writes_together(conn):  # the events: one statement
        for row in rows:
            if row.pop("shown"):
                await add_event(
                    conn,
                    topic=TOPIC,
                    event_type=CREATED,
                    user_id=row["user_id"],
                    aggregate_id=row["id"],
                    payload=public(row),
                )
    return rows


async def list_notifications(
    conn: Conn,
    user_id: uuid.UUID,
    *,
    unread: bool | None = None,
    limit: int = 50,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[Row]:
    """The user's notifications, newest first; ``before`` is the (created_at, id) a page ended at."""
    where = ["user_id = %s", "in_app"]
    params: list[Any] = [user_id]
    if unread is True:
        where.append("read_at IS NULL")
    elif unread is False:
        where.append("read_at IS NOT NULL")
    if before is not None:
        where.append("(created_at, id) < (%s, %s)")
        params += [before[0], before[1]]
    cur = await conn.execute(
        f"""SELECT {COLUMNS} FROM notifications WHERE {" AND ".join(where)}
            ORDER BY created_at DESC, id DESC LIMIT %s""",
        (*params, limit),
    )
    return list(await cur.fetchall())


async def unread_count(conn: Conn, user_id: uuid.UUID) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM notifications WHERE user_id = %s AND in_app AND read_at IS NULL",
        (user_id,),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def mark_read(conn: Conn, user_id: uuid.UUID, notification_id: uuid.UUID) -> Row | None:
    """The notification, read (when it was read before, it keeps its first read time); None: not theirs."""
    cur = await conn.execute(
        f"""UPDATE notifications SET read_at = coalesce(read_at, now())
            WHERE id = %s AND user_id = %s AND in_app RETURNING {COLUMNS}""",
        (notification_id, user_id),
    )
    return await cur.fetchone()


async def mark_all_read(conn: Conn, user_id: uuid.UUID) -> int:
    cur = await conn.execute(
        "UPDATE notifications SET read_at = now() WHERE user_id = %s AND in_app AND read_at IS NULL",
        (user_id,),
    )
    return cur.rowcount


# Preferences ----------------------------------------------------------------------------------------


async def preferences_of(conn: Conn, user_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any]:
    """What the user changed from the defaults (``{}`` when nothing)."""
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"SELECT kinds FROM notification_preferences WHERE user_id = %s{lock}", (user_id,)
    )
    row = await cur.fetchone()
    return dict(row["kinds"]) if row else {}


async def preferences_of_many(conn: Conn, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    cur = await conn.execute(
        "SELECT user_id, kinds FROM notification_preferences WHERE user_id = ANY(%s)", (user_ids,)
    )
    return {row["user_id"]: dict(row["kinds"]) for row in await cur.fetchall()}


async def save_preferences(conn: Conn, user_id: uuid.UUID, kinds: Mapping[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO notification_preferences (user_id, kinds) VALUES (%s, %s)
           ON CONFLICT (user_id) DO UPDATE SET kinds = EXCLUDED.kinds, updated_at = now()""",
        (user_id, json.dumps(dict(kinds))),
    )


async def lock_user(conn: Conn, user_id: uuid.UUID) -> str | None:
    """The user's address, with their row locked so two preference changes apply one after the other."""
    cur = await conn.execute(
        "SELECT email FROM users WHERE id = %s AND deleted_at IS NULL FOR UPDATE", (user_id,)
    )
    row = await cur.fetchone()
    return str(row["email"]) if row else None


# The e-mail queue -----------------------------------------------------------------------------------


async def claim_due_mail(conn: Conn, *, limit: int, lease_s: float, max_age_s: float) -> list[Row]:
    """Due e-mails, each claimed for ``lease_s`` (another mailer skips it) with its attempt counted.

    A notification older than ``max_age_s`` is given up instead (SMTP was off, or failing, for that
    long): a fill from last week is no longer worth an e-mail. So is one whose person is gone.
    """
    await conn.execute(
        """UPDATE notifications n SET email_next_at = NULL, email_error = 'not sent: too old or no address'
           WHERE n.email_next_at <= now()
             AND (n.created_at < now() - make_interval(secs => %s)
                  OR NOT EXISTS (
                      SELECT 1 FROM users u
                      WHERE u.id = n.user_id AND u.deleted_at IS NULL AND u.disabled_at IS NULL))""",
        (max_age_s,),
    )
    cur = await conn.execute(
        """WITH due AS (
               SELECT id FROM notifications WHERE email_next_at <= now()
               ORDER BY email_next_at LIMIT %s FOR UPDATE SKIP LOCKED)
           UPDATE notifications n
              SET email_next_at = now() + make_interval(secs => %s), email_attempts = n.email_attempts + 1
             FROM due, users u
            WHERE n.id = due.id AND u.id = n.user_id
        RETURNING n.id, n.user_id, n.kind, n.title, n.body, n.link, n.created_at, n.email_attempts,
                  u.email AS address""",
        (limit, lease_s),
    )
    return list(await cur.fetchall())


async def mark_emailed(conn: Conn, notification_id: uuid.UUID) -> None:
    await conn.execute(
        """UPDATE notifications SET emailed_at = now(), email_next_at = NULL, email_error = NULL
           WHERE id = %s""",
        (notification_id,),
    )


async def mark_email_failed(
    conn: Conn, notification_id: uuid.UUID, *, error: str, retry_in_s: float | None
) -> None:
    """Record a failed attempt: tried again in ``retry_in_s``, or never again when None."""
    await conn.execute(
        """UPDATE notifications
              SET email_error = %s,
                  email_next_at = CASE WHEN %s::float8 IS NULL THEN NULL
                                       ELSE now() + make_interval(secs => %s::float8) END
            WHERE id = %s AND emailed_at IS NULL""",
        (error[:MAX_ERROR], retry_in_s, retry_in_s, notification_id),
    )


# Where logins came from -----------------------------------------------------------------------------


async def record_sign_in(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    ip: str,
    device: str | None,
    recent_days: int,
) -> bool:
    """Note where login ``session_id`` came from; True when that is new for the user.

    New: the user signed in before (in the last ``recent_days``, from a login that recorded where
    it came from) but never from this address with this device. A first sign-in is not news, and
    nor is the first one after this was first recorded (nothing to compare it with).
    """
    ip, device = ip[:100], (device or "")[:300] or None
    await conn.execute("UPDATE sessions SET ip = %s, device = %s WHERE id = %s", (ip, device, session_id))
    cur = await conn.execute(
        """SELECT count(*) AS earlier,
                  count(*) FILTER (WHERE ip = %s AND device IS NOT DISTINCT FROM %s) AS same
             FROM sessions
            WHERE user_id = %s AND id <> %s AND ip IS NOT NULL
              AND created_at > now() - make_interval(days => %s)""",
        (ip, device, user_id, session_id, recent_days),
    )
    row = await cur.fetchone()
    return bool(row and row["earlier"] and not row["same"])
