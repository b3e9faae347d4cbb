"""The outbox relay: events committed with their change are published, in order, to Redis Streams.

Each pass takes the oldest unpublished outbox rows (``FOR UPDATE SKIP LOCKED``,
so a second relay started by mistake cannot publish the same rows at the same
time), appends each to its topic's stream with the event id in the message,
then marks them published and commits. A relay killed between the append and
the commit publishes those rows again on its next pass: delivery is at least
once, and every consumer deduplicates by event id. The streams are trimmed by
length and age; the outbox table stays the long-term record to replay from.

Each event that names its user is also appended to that user's own stream
(:func:`user_stream_key`), *before* its topic stream: a WebSocket that resumes
reads what it missed there (a short range of one small stream, not a scan of a
topic), and whatever a topic reader saw is already in the user's stream.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from psycopg import AsyncConnection
from psycopg.rows import DictRow

from wealthalloc.config import Settings
from wealthalloc.logging import get_logger
from wealthalloc.storage.postgres import AsyncPool

log = get_logger(__name__)

TOPICS = (
    "portfolio.updates",
    "trades.executed",
    "recommendations.generated",
    "tax_harvests.identified",
    "prices.updated",
    "notification.created",
)


RELAY_MARKER_KEY = "outbox:relay:marker"
"""Present while Redis keeps what the relay gave it; its absence means the streams were lost."""


def stream_key(topic: str) -> str:
    return f"stream:{topic}"


def user_stream_key(user_id: uuid.UUID | str) -> str:
    """The stream of one user's events (the user's hash tag, as their other keys carry)."""
    return f"stream:user:{{{user_id}}}"


@dataclass(frozen=True)
class Event:
    """An outbox row as it travels on a stream (every field a string, as Redis keeps them)."""

    id: uuid.UUID
    sequence: int
    topic: str
    type: str
    version: int
    user_id: uuid.UUID | None
    aggregate_id: uuid.UUID | None
    occurred_at: datetime
    payload: Mapping[str, Any]

    def fields(self) -> dict[Any, Any]:
        return {
            "event_id": str(self.id),
            "sequence": str(self.sequence),
            "topic": self.topic,
            "type": self.type,
            "version": str(self.version),
            "user_id": str(self.user_id or ""),
            "aggregate_id": str(self.aggregate_id or ""),
            "occurred_at": self.occurred_at.isoformat(),
            "payload": json.dumps(self.payload, sort_keys=True, default=str),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> Event:
        text = {_s(k): _s(v) for k, v in fields.items()}
        return cls(
            id=uuid.UUID(text["event_id"]),
            sequence=int(text["sequence"]),
            topic=text["topic"],
            type=text["type"],
            version=int(text["version"]),
            user_id=uuid.UUID(text["user_id"]) if text["user_id"] else None,
            aggregate_id=uuid.UUID(text["aggregate_id"]) if text["aggregate_id"] else None,
            occurred_at=datetime.fromisoformat(text["occurred_at"]),
            payload=json.loads(text["payload"]),
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Event:
        return cls(
            id=row["id"],
            sequence=row["sequence"],
            topic=row["topic"],
            type=row["event_type"],
            version=row["version"],
            user_id=row["user_id"],
            aggregate_id=row["aggregate_id"],
            occurred_at=row["created_at"],
            payload=row["payload"],
        )


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_UNPUBLISHED = """
SELECT id, sequence, topic, event_type, version, user_id, aggregate_id, payload, created_at
FROM events WHERE published_at IS NULL ORDER BY sequence LIMIT %s FOR UPDATE SKIP LOCKED
"""


_FROM_SEQUENCE = """
SELECT id, sequence, topic, event_type, version, user_id, aggregate_id, payload, created_at
FROM events WHERE sequence > %s ORDER BY sequence LIMIT %s
"""


class OutboxRelay:
    def __init__(
        self,
        *,
        pool: AsyncPool,
        redis: aioredis.Redis,
        batch: int = 500,
        max_stream_length: int = 100_000,
        max_stream_age_s: int = 7 * 24 * 3600,
        max_user_stream_length: int = 1000,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._batch = batch
        self._maxlen = max_stream_length
        self._max_age_ms = max_stream_age_s * 1000
        self._user_maxlen = max_user_stream_length

    async def publish_once(self) -> int:
        """Publish one batch; the number of events published (0: nothing was waiting)."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_UNPUBLISHED, (self._batch,))
            rows = await cur.fetchall()
            if not rows:
                return 0
            await self._append([Event.from_row(row) for row in rows])
            await _mark_published(conn, [row["id"] for row in rows])
        return len(rows)

    @classmethod
    def from_settings(cls, settings: Settings, *, pool: AsyncPool, redis: aioredis.Redis) -> OutboxRelay:
        return cls(
            pool=pool,
            redis=redis,
            max_stream_length=settings.event_stream_max_length,
            max_stream_age_s=settings.event_stream_max_age_seconds,
            max_user_stream_length=settings.event_user_stream_max_length,
        )

    async def recover_lost_streams(self) -> int:
        """Put back what a Redis that lost its data (restarted without persistence, flushed) dropped.

        The relay keeps a marker key in Redis. When it is missing, Redis is new or has lost its
        data, and with it any published event a consumer had not read yet; so everything the
        streams could still hold (the newest ``max_stream_length`` events, younger than the
        maximum age) is published again, and the consumers skip what they had handled by event
        id. Returns the number replayed (0 when the marker was there).
        """
        if not await self._redis.set(RELAY_MARKER_KEY, str(int(time.time())), nx=True):
            return 0
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT min(sequence) AS first FROM (
                       SELECT sequence FROM events
                       WHERE published_at IS NOT NULL
                         AND created_at > now() - make_interval(secs => %s)
                       ORDER BY sequence DESC LIMIT %s) AS recent""",
                (self._max_age_ms / 1000, self._maxlen),
            )
            row = await cur.fetchone()
        first = row["first"] if row else None
        if first is None:
            return 0
        replayed = await self.replay(from_sequence=int(first))
        log.warning("streams_rebuilt_after_redis_data_loss", from_sequence=first, events=replayed)
        return replayed

    async def replay(self, *, from_sequence: int, batch: int = 1000) -> int:
        """Publish every event from ``from_sequence`` on again, published or not (consumers deduplicate)."""
        published = 0
        after = from_sequence - 1
        while True:
            async with self._pool.connection() as conn:
                cur = await conn.execute(_FROM_SEQUENCE, (after, batch))
                rows = await cur.fetchall()
            if not rows:
                return published
            await self._append([Event.from_row(row) for row in rows])
            published += len(rows)
            after = rows[-1]["sequence"]

    async def _append(self, events: list[Event]) -> None:
        min_id = f"{max(0, int(time.time() * 1000) - self._max_age_ms)}-0"
        pipe = self._redis.pipeline(transaction=False)
        users: set[str] = set()
        for event in events:
            fields = event.fields()
            if event.user_id is not None:
                # First: a reader that saw the topic entry finds it in the user's stream on resume.
                key = user_stream_key(event.user_id)
                pipe.xadd(key, fields, maxlen=self._user_maxlen, approximate=True)
                users.add(key)
            pipe.xadd(stream_key(event.topic), fields, maxlen=self._maxlen, approximate=True)
        for key in users:  # an idle user's stream goes away with the retention
            pipe.expire(key, self._max_age_ms // 1000)
        for topic in {event.topic for event in events}:
            pipe.xtrim(stream_key(topic), minid=min_id, approximate=True)
        await pipe.execute()


async def _mark_published(conn: AsyncConnection[DictRow], ids: list[uuid.UUID]) -> None:
    await conn.execute("UPDATE events SET published_at = now() WHERE id = ANY(%b)", (ids,))
