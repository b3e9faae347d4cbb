"""Consumer groups on the event streams: the audit logger and the snapshot-cache invalidator.

Each consumer reads its group's new messages, handles them, and acknowledges
them only after handling, so a consumer that crashes mid-batch gets the
unacknowledged messages again (its pending list is read first on restart).
Handling is idempotent by event id: the audit trail has one row per event id
at most (a unique index), and dropping a cache key twice is dropping it once.

A message Redis delivered stays in the group's pending list until it is
acknowledged, and a read for new messages never delivers it again. A failed
read or batch says so, and the next batch reads the pending list first. A
delivery can also leave no trace in the consumer that got it: a second
process with the same consumer name (a second platform on the same Redis
database, an old event-bus process still running beside its replacement)
reads messages it may not handle. So the pending list is also read every
``pending_check_s``, however sure the consumer is that it holds none, and
what that finds is logged.

A pending batch that fails is handled again one message at a time, and new
messages are read all the same: a message that cannot be handled (its user
gone, a payload the code cannot read) holds up no other. Once it has failed
``MAX_DELIVERIES`` times, while newer messages were handled (so the fault is
the message's, not an outage's), it moves to the ``stream:dead-letters``
stream with its group, stream, id and last error, and is acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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
# A message that fails alone this many times, while newer ones are handled, goes to the dead letters.
MAX_DELIVERIES = 5
DEAD_LETTERS = "stream:dead-letters"
DEAD_LETTERS_MAX = 10_000


@dataclass(frozen=True)
class _Stuck:
    """A pending message its group failed to handle even alone."""

    stream: Any
    id: Any
    fields: dict[Any, Any] | None  # None: trimmed from its stream while it was pending


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
        """Handle one batch: what is pending first when some may be, then new messages."""
        if not self._ready:
            await self.ensure_groups()
        due = not self._may_have_pending and self._clock() - self._pending_read_at >= self._pending_check_s
        handled = 0
        stuck: list[_Stuck] = []
        if self._may_have_pending or due:
            pending = await self._read("0", count)
            if pending is None:
                return 0
            self._pending_read_at = self._clock()
            if due and pending:
                log.warning(
                    "stream_messages_found_pending",
                    group=self.group,
                    consumer=self._name,
                    messages={_text(stream): len(messages) for stream, messages in pending},
                )
            for stream, messages in pending:
                done, failed = await self._handle_pending(stream, messages)
                handled += done
                stuck += failed
            if not stuck:
                self._may_have_pending = handled > 0  # a full page of them may have more behind it
                if handled:
                    return handled
            # Otherwise some fail even alone: new messages are read all the same, so one message
            # that cannot be handled holds up no other.
        # Redis adds what it delivers to the pending list even when its answer never arrives.
        self._may_have_pending = True
        fresh = await self._read(">", count)
        if fresh is None:
            return handled
        for stream, messages in fresh:
            await self._handle_and_ack(stream, messages)
            handled += len(messages)
        if stuck and fresh:
            # New messages were handled: what keeps failing fails for what it is, not for an outage.
            await self._dead_letter(stuck)
        elif not stuck:
            self._may_have_pending = False  # the new ones all acknowledged: none wait
        return handled

    async def _read(self, start: str, count: int) -> list[tuple[Any, list[Any]]] | None:
        """The group's messages from ``start`` ("0": this consumer's pending ones, ">": new ones),
        by stream, leaving out streams with none; ``None`` when the groups are gone."""
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
            return None
        batches: Any = response or []
        if isinstance(batches, dict):  # RESP3 answers with a map
            batches = list(batches.items())
        return [(stream, messages) for stream, messages in batches if messages]

    async def _handle_pending(self, stream: Any, messages: list[Any]) -> tuple[int, list[_Stuck]]:
        """Pending messages handled together, or, when that fails, one by one: the number
        handled, and those that failed alone. A lone message is tried once, not as a batch and
        then again alone."""
        if len(messages) > 1:
            try:
                await self._handle_and_ack(stream, messages)
                return len(messages), []
            except Exception as exc:
                log.warning("stream_batch_failed_handling_one_by_one", group=self.group, error=str(exc))
        done, stuck = 0, []
        for message in messages:
            try:
                await self._handle_and_ack(stream, [message])
                done += 1
            except Exception as exc:
                log.warning(
                    "stream_message_failed", group=self.group, message_id=_text(message[0]), error=repr(exc)
                )
                stuck.append(_Stuck(stream, message[0], message[1]))
        return done, stuck

    async def _handle_and_ack(self, stream: Any, messages: list[Any]) -> None:
        await self.handle([Event.from_fields(fields) for _, fields in messages])
        await self._redis.xack(stream, self.group, *[message_id for message_id, _ in messages])

    async def _dead_letter(self, stuck: list[_Stuck]) -> None:
        """Move each message that failed alone ``MAX_DELIVERIES`` times to the dead-letter stream, with
        its group, stream, id and last error, and acknowledge it; fewer times, it stays pending."""
        for message in stuck:
            [entry] = await self._redis.xpending_range(
                message.stream, self.group, min=message.id, max=message.id, count=1
            ) or [{"times_delivered": 0}]
            if int(entry["times_delivered"]) < MAX_DELIVERIES:
                continue
            try:  # once more, now that newer ones were handled: an outage may have just ended
                await self._handle_and_ack(message.stream, [(message.id, message.fields)])
                continue
            except Exception as exc:
                error = repr(exc)
            fields: dict[Any, Any] = {
                b"group": self.group,
                b"stream": message.stream,
                b"message_id": message.id,
                b"error": error[:2000],
                **{b"field:" + _bytes(k): v for k, v in (message.fields or {}).items()},
            }
            await self._redis.xadd(DEAD_LETTERS, fields, maxlen=DEAD_LETTERS_MAX, approximate=True)
            await self._redis.xack(message.stream, self.group, message.id)
            log.error(
                "stream_message_dead_lettered",
                group=self.group,
                stream=_text(message.stream),
                message_id=_text(message.id),
                deliveries=int(entry["times_delivered"]),
                error=error,
            )

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


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


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
