"""Webhook subscriptions, their deliveries and incoming receipts in PostgreSQL.

One function per question or change, each taking the connection so the
caller decides the transaction. Two guarantees live here, in SQL:

- one delivery per (webhook, event): enqueueing is ``INSERT ... ON CONFLICT DO
  NOTHING`` on that unique pair, so an event handled twice is queued once;
- one sender per delivery at a time: :func:`claim_due` takes due rows with
  ``FOR UPDATE SKIP LOCKED`` and leases them (``next_attempt_at`` moved past the
  HTTP timeout) in the same statement; the outcome is recorded only by the
  claim that made it (``attempts`` must still be the claimed attempt), so a
  late answer to a lease that expired cannot overwrite a newer one.

The signing secret is read only by :func:`claim_due`; no other read returns it.
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

Conn = AsyncConnection[DictRow]
Row = dict[str, Any]

WEBHOOK_COLUMNS = "id, user_id, url, events, active, created_date, updated_date"
DELIVERY_COLUMNS = """
d.id, d.sequence, d.webhook_id, d.event_id, d.event_type, d.status, d.attempts, d.next_attempt_at,
d.last_status_code, d.last_error, d.created_at, d.updated_at, d.delivered_at
"""
# What a delivery log may say about an error: enough to act on, not a whole response.
MAX_ERROR_LENGTH = 500


async def insert_webhook(
    conn: Conn, *, user_id: uuid.UUID, url: str, events: Sequence[str], secret: str
) -> Row:
    """The new subscription, without its secret."""
    cur = await conn.execute(
        f"""INSERT INTO webhooks (user_id, url, events, secret) VALUES (%s, %s, %s, %s)
            RETURNING {WEBHOOK_COLUMNS}""",
        (user_id, url, list(events), secret),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def count_webhooks(conn: Conn, *, user_id: uuid.UUID) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM webhooks WHERE user_id = %s AND deleted_at IS NULL", (user_id,)
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def webhooks_of(conn: Conn, *, user_id: uuid.UUID) -> list[Row]:
    """A user's subscriptions that are not deleted, oldest first, without their secrets."""
    cur = await conn.execute(
        f"""SELECT {WEBHOOK_COLUMNS} FROM webhooks
            WHERE user_id = %s AND deleted_at IS NULL ORDER BY created_date, id""",
        (user_id,),
    )
    return await cur.fetchall()


async def webhook_of(conn: Conn, *, user_id: uuid.UUID, webhook_id: uuid.UUID) -> Row | None:
    """One of a user's subscriptions; None when it is not theirs or is deleted."""
    cur = await conn.execute(
        f"""SELECT {WEBHOOK_COLUMNS} FROM webhooks
            WHERE id = %s AND user_id = %s AND deleted_at IS NULL""",
        (webhook_id, user_id),
    )
    return await cur.fetchone()


async def delete_webhook(conn: Conn, *, user_id: uuid.UUID, webhook_id: uuid.UUID) -> bool:
    """Soft-delete a user's subscription and give up its pending deliveries; False if there was none."""
    cur = await conn.execute(
        """UPDATE webhooks SET deleted_at = now(), active = false, updated_date = now()
           WHERE id = %s AND user_id = %s AND deleted_at IS NULL RETURNING id""",
        (webhook_id, user_id),
    )
    if await cur.fetchone() is None:
        return False
    await conn.execute(
        """UPDATE webhook_deliveries SET status = 'failed', last_error = 'webhook deleted', updated_at = now()
           WHERE webhook_id = %s AND status = 'pending'""",
        (webhook_id,),
    )
    return True


@dataclass(frozen=True)
class Outgoing:
    """An event as the delivery queue needs it: what it is, whose, when, and the body receivers get."""

    event_id: uuid.UUID
    event_type: str
    topic: str
    user_id: uuid.UUID | None
    occurred_at: datetime
    body: Mapping[str, Any]
    broadcast: bool


async def enqueue_deliveries(conn: Conn, events: Sequence[Outgoing]) -> int:
    """Queue each event's body for every live subscription it matches, in the events' order, in one
    statement; the number newly queued.

    A subscription matches when its events name the topic or the event type, it belongs to the
    event's user (an event without a user reaches every subscriber only when ``broadcast``),
    it existed when the event occurred, and its owner is not disabled (a suspended account's
    data goes to no outside endpoint, and what happens while it is suspended is never sent).
    Idempotent: a second call for the same event queues nothing more.

    Most events belong to users with no webhook: a first, small statement finds the users that
    have one, so only their events' bodies (and broadcasts, when any webhook is live) are encoded
    and sent, where every event's body went to the database to match nothing.
    """
    events = await _with_a_subscriber(conn, events)
    if not events:
        return 0
    cur = await conn.execute(
        """INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, body)
           SELECT w.id, e.event_id, e.event_type, e.body
           FROM unnest(%(ids)b::uuid[], %(types)b::text[], %(topics)b::text[], %(users)b::uuid[],
                       %(occurred)b::timestamptz[], %(bodies)b::jsonb[], %(broadcast)b::bool[])
                WITH ORDINALITY AS e(event_id, event_type, topic, user_id, occurred_at, body, broadcast, n)
           JOIN webhooks w
             ON w.active AND w.deleted_at IS NULL
            AND w.events && ARRAY[e.topic, e.event_type]
            AND w.created_date <= e.occurred_at
            AND (w.user_id = e.user_id OR (e.user_id IS NULL AND e.broadcast))
           JOIN users u ON u.id = w.user_id AND u.disabled_at IS NULL
           ORDER BY e.n, w.id
           ON CONFLICT (webhook_id, event_id) DO NOTHING""",
        {
            "ids": [e.event_id for e in events],
            "types": [e.event_type for e in events],
            "topics": [e.topic for e in events],
            "users": [e.user_id for e in events],
            "occurred": [e.occurred_at for e in events],
            "bodies": [json.dumps(e.body, sort_keys=True, default=str) for e in events],
            "broadcast": [e.broadcast for e in events],
        },
    )
    return cur.rowcount


async def _with_a_subscriber(conn: Conn, events: Sequence[Outgoing]) -> list[Outgoing]:
    """The events some live webhook could match: their user has one, or they are broadcast and
    anyone has one. The full match (topics, creation time, a disabled owner) is the insert's."""
    if not events:
        return []
    users = {e.user_id for e in events if e.user_id is not None}
    cur = await conn.execute(
        """SELECT DISTINCT user_id FROM webhooks
           WHERE active AND deleted_at IS NULL AND (user_id = ANY(%(users)b::uuid[]) OR %(broadcast)b)""",
        {"users": list(users), "broadcast": any(e.broadcast and e.user_id is None for e in events)},
    )
    owners = {row["user_id"] for row in await cur.fetchall()}
    subscribed = owners & users
    anyone = bool(owners)
    return [e for e in events if e.user_id in subscribed or (e.user_id is None and e.broadcast and anyone)]


async def claim_due(conn: Conn, *, limit: int, lease_s: float) -> list[Row]:
    """Take up to ``limit`` due deliveries for this sender and count the attempt it is about to make.

    Each row comes with what sending needs: the body, the webhook's URL and its secret, and
    whether the webhook's owner is disabled now (then nothing is sent).
    The lease keeps other senders off the rows until ``lease_s`` seconds from now.
    """
    cur = await conn.execute(
        """WITH due AS (
               SELECT d.id FROM webhook_deliveries d
               WHERE d.status = 'pending' AND d.next_attempt_at <= now()
               ORDER BY d.next_attempt_at LIMIT %(limit)s
               FOR UPDATE SKIP LOCKED
           )
           UPDATE webhook_deliveries d
           SET attempts = d.attempts + 1,
               next_attempt_at = now() + %(lease_s)s * INTERVAL '1 second',
               updated_at = now()
           FROM due, webhooks w, users u
           WHERE d.id = due.id AND w.id = d.webhook_id AND u.id = w.user_id
           RETURNING d.id, d.webhook_id, d.event_id, d.event_type, d.body, d.attempts,
                     w.url, w.secret, w.active, w.deleted_at, u.disabled_at AS owner_disabled_at""",
        {"limit": limit, "lease_s": float(lease_s)},
    )
    return await cur.fetchall()


async def mark_delivered(conn: Conn, *, delivery_id: uuid.UUID, attempt: int, status_code: int) -> bool:
    """Record the 2xx that acknowledged the delivery; False when this claim no longer holds the row."""
    cur = await conn.execute(
        """UPDATE webhook_deliveries
           SET status = 'delivered', delivered_at = now(), last_status_code = %s, last_error = NULL,
               updated_at = now()
           WHERE id = %s AND attempts = %s AND status = 'pending'""",
        (status_code, delivery_id, attempt),
    )
    return cur.rowcount == 1


async def mark_retry(
    conn: Conn,
    *,
    delivery_id: uuid.UUID,
    attempt: int,
    delay_s: float,
    status_code: int | None,
    error: str,
) -> bool:
    """Record a failed attempt and when to try again; False when this claim no longer holds the row."""
    cur = await conn.execute(
        """UPDATE webhook_deliveries
           SET next_attempt_at = now() + %s * INTERVAL '1 second', last_status_code = %s, last_error = %s,
               updated_at = now()
           WHERE id = %s AND attempts = %s AND status = 'pending'""",
        (float(delay_s), status_code, error[:MAX_ERROR_LENGTH], delivery_id, attempt),
    )
    return cur.rowcount == 1


async def mark_failed(
    conn: Conn, *, delivery_id: uuid.UUID, attempt: int, status_code: int | None, error: str
) -> bool:
    """Give up on a delivery (last attempt spent, or the URL became unsafe)."""
    cur = await conn.execute(
        """UPDATE webhook_deliveries
           SET status = 'failed', last_status_code = %s, last_error = %s, updated_at = now()
           WHERE id = %s AND attempts = %s AND status = 'pending'""",
        (status_code, error[:MAX_ERROR_LENGTH], delivery_id, attempt),
    )
    return cur.rowcount == 1


async def delivery_log(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    webhook_id: uuid.UUID,
    before_sequence: int | None = None,
    limit: int = 100,
    status: str | None = None,
) -> list[Row]:
    """A user's webhook's deliveries, newest first, ``limit`` of them, older than ``before_sequence``."""
    cur = await conn.execute(
        f"""SELECT {DELIVERY_COLUMNS}
            FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
            WHERE d.webhook_id = %(webhook_id)s AND w.user_id = %(user_id)s
              AND (%(before)s::bigint IS NULL OR d.sequence < %(before)s::bigint)
              AND (%(status)s::text IS NULL OR d.status = %(status)s::text)
            ORDER BY d.sequence DESC LIMIT %(limit)s""",
        {
            "webhook_id": webhook_id,
            "user_id": user_id,
            "before": before_sequence,
            "status": status,
            "limit": limit,
        },
    )
    return await cur.fetchall()


async def deliveries_for_event(conn: Conn, *, event_id: uuid.UUID) -> list[Row]:
    """Every delivery of one event, to whichever webhooks (operators' and tests' question)."""
    cur = await conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.event_id = %s ORDER BY d.sequence",
        (event_id,),
    )
    return await cur.fetchall()


async def record_incoming_receipt(
    conn: Conn,
    *,
    source: str,
    delivery_id: str,
    signed_at: datetime,
    payload: Mapping[str, Any],
) -> bool:
    """Remember an incoming webhook; False when the same source sent this id before (a replay)."""
    cur = await conn.execute(
        """INSERT INTO incoming_webhook_receipts (source, delivery_id, signed_at, payload)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (source, delivery_id) DO NOTHING""",
        (source, delivery_id, signed_at, json.dumps(payload, default=str)),
    )
    return cur.rowcount == 1


async def prune_incoming_receipts(conn: Conn, *, older_than: datetime) -> int:
    """Forget handled receipts received before ``older_than`` (their replays are refused by timestamp)."""
    cur = await conn.execute(
        "DELETE FROM incoming_webhook_receipts WHERE received_at < %s AND processed_at IS NOT NULL",
        (older_than,),
    )
    return cur.rowcount


async def unprocessed_receipts(conn: Conn, source: str, *, limit: int = 100) -> list[Row]:
    """Incoming webhooks of ``source`` not handled yet, oldest first, locked for the handler."""
    cur = await conn.execute(
        """SELECT source, delivery_id, payload, received_at FROM incoming_webhook_receipts
           WHERE source = %s AND processed_at IS NULL
           ORDER BY received_at, delivery_id LIMIT %s FOR UPDATE SKIP LOCKED""",
        (source, limit),
    )
    return await cur.fetchall()


async def mark_processed(conn: Conn, source: str, delivery_id: str, outcome: str) -> None:
    await conn.execute(
        """UPDATE incoming_webhook_receipts SET processed_at = now(), outcome = %s
           WHERE source = %s AND delivery_id = %s""",
        (outcome[:500], source, delivery_id),
    )
