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
    """The event's id is made here, not returned by the INSERT: with nothing to read back, the
    statement can ride in a pipeline with the change's other writes."""
    payload = validate_payload(event_type, version, payload)
    event_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO events (id, topic, event_type, version, user_id, aggregate_id, payload)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (event_id, topic, event_type, version, user_id, aggregate_id, json.dumps(payload, default=str)),
    )
    return event_id
