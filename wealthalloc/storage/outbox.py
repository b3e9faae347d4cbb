"""Writing events to the outbox, inside the transaction of the change they describe."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from wealthalloc.events.schemas import validate_payload


async def add_event(
    conn: AsyncConnection[DictRow],
    *,
    topic: str,
    event_type: str,
    user_id: uuid.UUID | None,
    aggregate_id: uuid.UUID | None,
    payload: Mapping[str, Any],
    version: int = 1,
) -> uuid.UUID:
    payload = validate_payload(event_type, version, payload)
    cur = await conn.execute(
        """INSERT INTO events (topic, event_type, version, user_id, aggregate_id, payload)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
        (topic, event_type, version, user_id, aggregate_id, json.dumps(payload, default=str)),
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row["id"]))
