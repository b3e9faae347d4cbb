"""Writing events to the outbox, inside the transaction of the change they describe."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from wealthalloc.events.schemas import validate_payload
from wealthalloc.storage import held_writes


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
    statement can ride in a pipeline with the change's other writes, or wait for the others of
    its block (:func:`~wealthalloc.storage.held_writes.writes_together`)."""
    payload = validate_payload(event_type, version, payload)
    event_id = uuid.uuid4()
    row = (event_id, topic, event_type, version, user_id, aggregate_id, json.dumps(payload, default=str))
    await held_writes.write(conn, _EVENTS, row)
    return event_id


_EVENTS = held_writes.Insert.of(
    "events",
    """id uuid, topic text, event_type text, version int, user_id uuid, aggregate_id uuid, payload jsonb""",
)
