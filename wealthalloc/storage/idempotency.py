"""Idempotency-Key records: the first request with a key does the work, every repeat gets its answer.

The key is claimed with ``INSERT ... ON CONFLICT DO NOTHING`` in the same
transaction as the work and completed with the response before commit, so
there is no window where the work is done but the key is not (or the reverse):
a crash rolls back both, and a retry does the work once. A second request with
the key while the first is in flight waits on the row lock of the uncommitted
insert, then reads the committed answer.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from wealthalloc.storage import held_writes


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class Replay:
    """The stored answer of an earlier request with the same key, or a conflict."""

    same_request: bool
    status: int | None
    body: Any


def claim_query(
    *, user_id: uuid.UUID, key: str, method: str, path: str, fingerprint: str
) -> tuple[str, Sequence[Any]]:
    """Claim a key in this transaction: sent with the statements that lock the change's rows, and
    its rows read by :func:`claim_of`."""
    return (
        """INSERT INTO idempotency_keys (user_id, key, method, path, request_hash)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, key) DO NOTHING RETURNING id""",
        (user_id, key, method.upper(), path, fingerprint),
    )


async def claim_of(
    conn: AsyncConnection[DictRow],
    rows: Sequence[Mapping[str, Any]],
    *,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
) -> uuid.UUID | Replay:
    """What :func:`claim_query`'s ``rows`` say: the new claim's id, or the replay of the request
    that already held the key (read now: it is committed once the insert returned nothing)."""
    if rows:
        return uuid.UUID(str(rows[0]["id"]))
    cur = await conn.execute(
        """SELECT request_hash, response_status, response_body FROM idempotency_keys
           WHERE user_id = %s AND key = %s""",
        (user_id, key),
    )
    existing = await cur.fetchone()
    assert existing is not None, "the conflicting key must exist once its writer committed"
    return _replay(existing, fingerprint)


def _replay(row: Mapping[str, Any], fingerprint: str) -> Replay:
    return Replay(
        same_request=row["request_hash"] == fingerprint,
        status=row["response_status"],
        body=row["response_body"],
    )


@dataclass(frozen=True)
class Answered:
    """A key to claim with its answer already decided: the work it stands for is done in the same
    transaction, or the claim is released (:func:`release`) before it commits."""

    key: str
    method: str
    path: str
    fingerprint: str
    status: int
    body: Any


async def claim_answered(
    conn: AsyncConnection[DictRow], user_id: uuid.UUID, claims: Sequence[Answered]
) -> dict[str, uuid.UUID | Replay]:
    """Claim many keys at once, each stored with its answer; by key, the new claim's id or the
    replay of the request that already holds it.

    The orders of one request (a batch, a rebalance) each have a key: claimed one by one, each
    would cost a statement for the claim and one for its answer. Here a request's keys cost one
    statement, and a second only when some were claimed before (a repeat of the request).
    """
    if not claims:
        return {}
    cur = await conn.execute(
        """INSERT INTO idempotency_keys
               (user_id, key, method, path, request_hash, response_status, response_body, completed_at)
           SELECT %s, c.key, c.method, c.path, c.hash, c.status, c.body::jsonb, now()
           FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::int[], %b::text[])
                AS c(key, method, path, hash, status, body)
           ON CONFLICT (user_id, key) DO NOTHING RETURNING key, id""",
        (
            user_id,
            [c.key for c in claims],
            [c.method.upper() for c in claims],
            [c.path for c in claims],
            [c.fingerprint for c in claims],
            [c.status for c in claims],
            [json.dumps(c.body, default=str) for c in claims],
        ),
    )
    taken: dict[str, uuid.UUID | Replay] = {
        row["key"]: uuid.UUID(str(row["id"])) for row in await cur.fetchall()
    }
    held = {c.key: c.fingerprint for c in claims if c.key not in taken}
    if held:
        cur = await conn.execute(
            """SELECT key, request_hash, response_status, response_body FROM idempotency_keys
               WHERE user_id = %s AND key = ANY(%s)""",
            (user_id, list(held)),
        )
        taken.update({row["key"]: _replay(row, held[row["key"]]) for row in await cur.fetchall()})
    return taken


async def release(conn: AsyncConnection[DictRow], claim_ids: Iterable[uuid.UUID]) -> None:
    """Give back claims whose work did not happen, so a repeat of the request tries it again."""
    ids = list(claim_ids)
    if ids:
        await conn.execute("DELETE FROM idempotency_keys WHERE id = ANY(%s)", (ids,))


async def complete(conn: AsyncConnection[DictRow], claim_id: uuid.UUID, *, status: int, body: Any) -> None:
    """Store the claim's answer. In a block of held writes it waits for the block's end, or for its
    group's (:mod:`wealthalloc.storage.held_writes`): nothing in a transaction reads an answer
    back, only a later request with the same key."""
    row = (claim_id, status, json.dumps(body, default=str))
    await held_writes.write(conn, _COMPLETE, row, replacing=claim_id)


_COMPLETE = """UPDATE idempotency_keys k
               SET response_status = v.status, response_body = v.body, completed_at = now()
               FROM unnest(%b::uuid[], %b::int[], %b::jsonb[]) AS v (id, status, body) WHERE k.id = v.id"""
