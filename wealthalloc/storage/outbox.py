"""Writing events to the outbox, inside the transaction of the change they describe."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
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
    row = (event_id, topic, event_type, version, user_id, aggregate_id, json.dumps(payload, default=str))
    held = _HELD.get()
    if held is not None and held.conn is conn:
        held.rows.append(row)
        return event_id
    await conn.execute(
        """INSERT INTO events (id, topic, event_type, version, user_id, aggregate_id, payload)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        row,
    )
    return event_id


@dataclass
class _Held:
    conn: AsyncConnection[DictRow]
    rows: list[tuple[Any, ...]] = field(default_factory=list)


_HELD: ContextVar[_Held | None] = ContextVar("wealthalloc_events_held", default=None)


@asynccontextmanager
async def events_together(conn: AsyncConnection[DictRow]) -> AsyncIterator[None]:
    """The events ``conn`` gets inside the block are written when it ends, all in one statement.

    A batch of fifty orders makes a hundred events; one INSERT of a hundred rows costs PostgreSQL
    far less than a hundred INSERTs. A block that raises writes none of its events (what it
    described is rolled back with its savepoint), and a block inside another hands its events to
    the outer one when it ends, so the orders of a batch each keep or lose their own events and
    the batch writes them all at once, in the order they were added (their ``sequence``).
    """
    outer = _HELD.get()
    held = _Held(conn)
    token = _HELD.set(held)
    try:
        yield
    finally:
        _HELD.reset(token)
    if outer is not None and outer.conn is conn:
        outer.rows.extend(held.rows)
    elif held.rows:
        await _insert_many(conn, held.rows)


async def _insert_many(conn: AsyncConnection[DictRow], rows: list[tuple[Any, ...]]) -> None:
    columns = list(zip(*rows, strict=True))
    await conn.execute(
        """INSERT INTO events (id, topic, event_type, version, user_id, aggregate_id, payload)
           SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::int[], %s::uuid[], %s::uuid[],
                                %s::jsonb[])""",
        [list(column) for column in columns],
    )
