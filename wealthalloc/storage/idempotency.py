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
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class Replay:
    """The stored answer of an earlier request with the same key, or a conflict."""

    same_request: bool
    status: int | None
    body: Any


async def claim(
    conn: AsyncConnection[DictRow],
    *,
    user_id: uuid.UUID,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
) -> uuid.UUID | Replay:
    """The id of the new claim, or the replay of the request that already holds ``key``."""
    cur = await conn.execute(
        """INSERT INTO idempotency_keys (user_id, key, method, path, request_hash)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, key) DO NOTHING RETURNING id""",
        (user_id, key, method.upper(), path, fingerprint),
    )
    row = await cur.fetchone()
    if row is not None:
        return uuid.UUID(str(row["id"]))
    cur = await conn.execute(
        """SELECT request_hash, response_status, response_body FROM idempotency_keys
           WHERE user_id = %s AND key = %s""",
        (user_id, key),
    )
    existing = await cur.fetchone()
    assert existing is not None, "the conflicting key must exist once its writer committed"
    return Replay(
        same_request=existing["request_hash"] == fingerprint,
        status=existing["response_status"],
        body=existing["response_body"],
    )


async def complete(conn: AsyncConnection[DictRow], claim_id: uuid.UUID, *, status: int, body: Any) -> None:
    await conn.execute(
        """UPDATE idempotency_keys SET response_status = %s, response_body = %s, completed_at = now()
           WHERE id = %s""",
        (status, json.dumps(body, default=str), claim_id),
    )
