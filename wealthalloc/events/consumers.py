"""Consumer groups on the event streams: the audit logger and the snapshot-cache invalidator.

Each consumer reads its group's new messages, handles them, and acknowledges
them only after handling, so a consumer that crashes mid-batch gets the
unacknowledged messages again (its pending list is read first on restart).
Handling is idempotent by event id: the audit trail has one row per event id
at most (a unique index), and dropping a cache key twice is dropping it once.

A message Redis delivered whose answer the consumer never acted on stays in
the group's pending list and is not delivered again by a read for new ones. A
failed read says so, and the next batch reads the pending list first; but a
delivery can also go astray without any error reaching the consumer (seen
under load: one message left pending in each of three groups at once, and no
read had raised). So the pending list is also read every ``pending_check_s`` however
sure the consumer is that it holds nothing, and what that finds is logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from wealthalloc.events.audit_chain import AuditEntry
from wealthalloc.events.relay import TOPICS, Event, stream_key
from wealthalloc.logging import get_logger
from wealthalloc.storage.audit import append_audit_many
from wealthalloc.storage.postgres import AsyncPool

log = get_logger(__name__)

PENDING_CHECK_S = 10.0  # one read of the pending list every this often, per consumer, at most


class StreamConsumer:
    group = "base"

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        name: str,
        topics: Sequence[str] = TOPICS,
        block_ms: int = 1000,
        pending_check_s: float = PENDING_CHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._redis = redis
        self._name = name
        self._streams = [stream_key(t) for t in topics]
        self._block_ms = block_ms
        self._ready = False
        # Whether messages this consumer read and did not acknowledge may be waiting: at start (an
        # earlier process by this name may have crashed) and after a batch failed. Otherwise
        # none should, and asking on every batch would cost a round trip each; they are asked
        # for every ``pending_check_s`` all the same, since a delivery can go astray unseen.
        self._may_have_pending = True
        self._pending_check_s = pending_check_s
        self._clock = clock
        self._pending_read_at = clock()

    async def ensure_groups(self) -> None:
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._ready = True

    async def consume_once(self, count: int = 200) -> int:
        """Handle one batch: first anything left pending by an earlier crash, then new messages."""
        if not self._ready:
            await self.ensure_groups()
        unexpected = False  # a read of the pending list only because it was due
        if not self._may_have_pending and self._clock() - self._pending_read_at >= self._pending_check_s:
            self._may_have_pending = unexpected = True
        for start in ("0", ">") if self._may_have_pending else (">",):
            # Redis adds what it delivers to the pending list even when its answer never arrives.
            self._may_have_pending = True
            try:
                response = await self._redis.xreadgroup(
                    self.group,
                    self._name,
                    dict.fromkeys(self._streams, start),
                    count=count,
                    block=None if start == "0" else self._block_ms,
                )
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis lost its data (a restart without persistence, a flush): the relay refills
                # the streams from the outbox, and the groups are made again from the start of each
                # stream; handling is idempotent by event id, so what is read twice changes nothing.
                self._ready = False
                return 0
            if start == "0":
                self._pending_read_at = self._clock()
            batches: Any = response or []
            if isinstance(batches, dict):  # RESP3 answers with a map
                batches = list(batches.items())
            handled = 0
            for stream, messages in batches:
                if not messages:
                    continue
                if start == "0" and unexpected:
                    log.warning(
                        "stream_messages_found_pending",
                        group=self.group,
                        consumer=self._name,
                        stream=_text(stream),
                        messages=len(messages),
                        first=_text(messages[0][0]),
                    )
                await self.handle([Event.from_fields(fields) for _, fields in messages])
                await self._redis.xack(stream, self.group, *[message_id for message_id, _ in messages])
                handled += len(messages)
            # New messages all acknowledged, or no pending ones found: none wait for this consumer.
            self._may_have_pending = start == "0" and handled > 0
            if handled:
                return handled
        return 0

    async def handle(self, events: list[Event]) -> None:
        raise NotImplementedError


async def group_lags(client: aioredis.Redis, topics: Sequence[str] = TOPICS) -> dict[str, int]:
    """Per consumer group, the messages it has not yet handled (undelivered plus pending) on all streams."""
    lags: dict[str, int] = {}
    for topic in topics:
        try:
            groups = await client.xinfo_groups(stream_key(topic))
        except redis.exceptions.ResponseError:
            continue  # no such stream yet
        for group in groups:
            name = _text(group.get("name"))
            lags[name] = lags.get(name, 0) + int(group.get("lag") or 0) + int(group.get("pending") or 0)
    return lags


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AuditLogger(StreamConsumer):
    """Appends one hash-chained audit row per event (the event id makes a redelivery a no-op)."""

    group = "audit"

    def __init__(self, *, pool: AsyncPool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool = pool

    async def handle(self, events: list[Event]) -> None:
        # One transaction per batch (one commit, one fsync); events already in the trail are skipped.
        entries = [_entry(event) for event in sorted(events, key=lambda e: e.sequence)]
        async with self._pool.connection() as conn, conn.transaction():
            await append_audit_many(conn, entries)


def _entry(event: Event) -> AuditEntry:
    return AuditEntry(
        id=_audit_id(event),
        action=event.type,
        created_at=event.occurred_at,
        actor_id=_actor(event),
        subject=f"{event.topic}:{event.aggregate_id or event.user_id or ''}",
        details={"sequence": event.sequence, "version": event.version, "payload": dict(event.payload)},
        event_id=event.id,
    )


def _audit_id(event: Event) -> Any:
    import uuid

    return uuid.uuid5(uuid.NAMESPACE_URL, f"wealthalloc:audit:{event.id}")


def _actor(event: Event) -> Any:
    import uuid

    by = event.payload.get("by") if isinstance(event.payload, dict) else None
    try:
        return uuid.UUID(str(by)) if by else event.user_id
    except ValueError:
        return event.user_id


class CacheInvalidator(StreamConsumer):
    """Drops the Redis snapshot of every portfolio an event says changed."""

    group = "cache"

    async def handle(self, events: list[Event]) -> None:
        keys = list(_snapshot_keys(events))
        if keys:
            await self._redis.delete(*keys)


def _snapshot_keys(events: Iterable[Event]) -> Iterable[str]:
    from wealthalloc.portfolios.service import snapshot_key

    for event in events:
        if event.topic == "portfolio.updates" and event.user_id and event.aggregate_id:
            yield snapshot_key(event.user_id, event.aggregate_id)
