"""Carrying the event streams to connected people: one reader per process, one bounded queue per socket.

A WebSocket must not cost a blocking Redis read of its own: a thousand sockets
would hold a thousand connections and wake Redis a thousand times per event.
So each API replica runs ONE :class:`StreamHub`, an asyncio task that reads
every topic stream with a single ``XREAD`` and hands each event to the
subscriptions of the user it names (an advisor's subscription names the
linked clients too). Of the events that name no user, only market moves
(:data:`MARKET_EVENT_TYPES`, the published closes) reach every subscription:
not to be shown, but as the cue for each socket to re-value the portfolios it
shows that hold a symbol that moved. The rest are for webhooks and caches.

A subscription's queue is bounded: a socket that cannot keep up is told so
and closed (:data:`SLOW_CONSUMER`) instead of buffering without end in the
replica. It loses nothing: it reconnects with the last event id it saw and
:func:`replay_after` gives it the rest from the user's own stream (written by
the relay before the topic stream, so what the hub dispatched is always there).

The hub also watches one Redis key per subscription (the user's generation,
moved by every sign-out and revocation) with a single ``MGET`` per interval,
and wakes the subscription whose key moved, so a revoked session loses its
sockets within that interval on every replica.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from wealthalloc.events.relay import TOPICS, Event, stream_key, user_stream_key
from wealthalloc.logging import get_logger

log = get_logger(__name__)

STREAMED_TOPICS: tuple[str, ...] = TOPICS
"""What a person's socket carries; ``accounts.notices`` (sign-in hints, invitations) is for the mailer."""

MARKET_EVENT_TYPES = frozenset({"prices.updated"})
"""Events of no user that every subscription hears: prices moved, so held portfolios' values did."""

# Close codes of the stream (4000-4999 are the application's own).
PROTOCOL_ERROR = 4400
UNAUTHORIZED = 4401
HEARTBEAT_TIMEOUT = 4408
SLOW_CONSUMER = 4429

READ_ERROR_BACKOFF_S = 1.0
MGET_CHUNK = 500
SEEN_REMEMBERED = 4096
CLOSE_WAIT_S = 2.0


@dataclass(eq=False)
class Subscription:
    """One socket's view of the hub: whose events it wants, what is waiting, why it must close."""

    user_ids: frozenset[uuid.UUID]
    queue: asyncio.Queue[Event]
    watch_key: str | None = None
    watch_value: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closing: asyncio.Future[tuple[int, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def offer(self, event: Event) -> None:
        """Queue ``event``, or close the subscription when the socket is too far behind."""
        if self.closing.done():
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.close(
                SLOW_CONSUMER,
                f"slow consumer: {self.queue.maxsize} events behind; reconnect with after",
            )

    def close(self, code: int, reason: str) -> None:
        if not self.closing.done():
            self.closing.set_result((code, reason))


class Seen:
    """The ids of the events a socket was sent lately: the relay delivers at least once, a socket once."""

    def __init__(self, size: int = SEEN_REMEMBERED) -> None:
        self._order: deque[uuid.UUID] = deque()
        self._ids: set[uuid.UUID] = set()
        self._size = size

    def add(self, event_id: uuid.UUID) -> bool:
        """Remember ``event_id``; False when it was already there (a repeat to drop)."""
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


class Throttle:
    """At most one action a key per ``min_interval_s``: the first goes at once, later ones wait.

    A socket pushes a portfolio's value after each change to it; a burst of fills must not become a
    burst of valuations. A key asked for again while it waits is still one action, taken when its
    interval has passed, so the last state is always the one shown.
    """

    def __init__(self, *, min_interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = min_interval_s
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._waiting: dict[Hashable, float] = {}

    def request(self, key: Hashable) -> bool:
        """True: act on ``key`` now. False: it is held and :meth:`due` will hand it out."""
        now = self._clock()
        if key in self._waiting:
            return False
        last = self._last.get(key)
        if last is None or now - last >= self._interval:
            self._last[key] = now
            return True
        self._waiting[key] = last + self._interval
        return False

    def due(self) -> list[Hashable]:
        """The held keys whose interval has passed (each now counts as acted on)."""
        now = self._clock()
        ready = [key for key, at in self._waiting.items() if at <= now]
        for key in ready:
            del self._waiting[key]
            self._last[key] = now
        return ready

    def next_due_in(self) -> float | None:
        """Seconds until the next held key is due; None while nothing is held."""
        if not self._waiting:
            return None
        return max(0.0, min(self._waiting.values()) - self._clock())


class StreamHub:
    """The one stream reader of a process and the index of its subscriptions by user id."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        topics: Sequence[str] = STREAMED_TOPICS,
        block_ms: int = 1000,
        count: int = 1000,
        check_interval_s: float = 2.0,
    ) -> None:
        self._redis = redis
        self._streams = [stream_key(topic) for topic in topics]
        self._block_ms = block_ms
        self._count = count
        self._check_interval_s = check_interval_s
        self._by_user: dict[uuid.UUID, set[Subscription]] = {}
        self._subscriptions: set[Subscription] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.dispatched = 0
        self._closed = False

    @property
    def sockets(self) -> int:
        return len(self._subscriptions)

    def subscribe(
        self,
        user_ids: Iterable[uuid.UUID],
        *,
        queue_size: int,
        watch_key: str | None = None,
        watch_value: str | None = None,
    ) -> Subscription:
        self._start()
        sub = Subscription(
            user_ids=frozenset(user_ids),
            queue=asyncio.Queue(maxsize=queue_size),
            watch_key=watch_key,
            watch_value=watch_value,
        )
        self._subscriptions.add(sub)
        self._index(sub)
        return sub

    def retarget(self, sub: Subscription, user_ids: Iterable[uuid.UUID]) -> None:
        """Change whose events ``sub`` receives (an advisor's clients were linked or unlinked)."""
        self._unindex(sub)
        sub.user_ids = frozenset(user_ids)
        self._index(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
        self._unindex(sub)

    async def close(self) -> None:
        """Stop reading and close the hub's Redis client (the hub is given one of its own)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # A Redis read interrupted by the cancel may surface as a connection error instead; the
            # loops then see ``_closed`` and end on their own.
            await asyncio.wait(self._tasks, timeout=CLOSE_WAIT_S)
        self._tasks = []
        await self._redis.aclose()

    def _index(self, sub: Subscription) -> None:
        for user_id in sub.user_ids:
            self._by_user.setdefault(user_id, set()).add(sub)

    def _unindex(self, sub: Subscription) -> None:
        for user_id in sub.user_ids:
            subs = self._by_user.get(user_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_user[user_id]

    def _start(self) -> None:
        if not self._tasks or any(task.done() for task in self._tasks):
            for task in self._tasks:
                task.cancel()
            self._tasks = [
                asyncio.create_task(self._read_forever(), name="stream-hub-read"),
                asyncio.create_task(self._watch_forever(), name="stream-hub-watch"),
            ]

    def dispatch(self, events: Iterable[Event]) -> None:
        """Hand each event to the subscriptions of the user it names (in outbox order within a read)."""
        for event in sorted(events, key=lambda e: e.sequence):
            if event.user_id is None:
                if event.type in MARKET_EVENT_TYPES:
                    for sub in tuple(self._subscriptions):
                        sub.offer(event)
                        self.dispatched += 1
                continue
            for sub in tuple(self._by_user.get(event.user_id, ())):
                sub.offer(event)
                self.dispatched += 1

    async def _read_forever(self) -> None:
        cursors: dict[str, str] | None = None
        while not self._closed:
            try:
                if cursors is None:
                    # From the tail of each stream as it is now: a socket that wants older events
                    # resumes from its user's stream; the hub only carries what is new.
                    cursors = await self._tails()
                response = await self._redis.xread(cursors, count=self._count, block=self._block_ms)  # type: ignore[arg-type]
                events: list[Event] = []
                for stream, messages in _batches(response):
                    for message_id, fields in messages:
                        cursors[_text(stream)] = _text(message_id)
                        try:
                            events.append(Event.from_fields(fields))
                        except (KeyError, ValueError) as exc:  # not an outbox event: skip it
                            log.warning("stream_entry_unreadable", stream=_text(stream), error=str(exc))
                if events:
                    self.dispatch(events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: keep the cursors, try again
                log.warning("stream_hub_read_failed", error=str(exc))
                await asyncio.sleep(READ_ERROR_BACKOFF_S)

    async def _tails(self) -> dict[str, str]:
        cursors: dict[str, str] = {}
        for stream in self._streams:
            last = await self._redis.xrevrange(stream, "+", "-", count=1)
            cursors[stream] = _text(last[0][0]) if last else "0-0"
        return cursors

    async def _watch_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._check_interval_s)
            try:
                await self.check_watched()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the sockets' own periodic re-check still runs
                log.warning("stream_hub_watch_failed", error=str(exc))

    async def check_watched(self) -> None:
        """One ``MGET`` per chunk of subscriptions; wake those whose watched key moved."""
        watched = [sub for sub in self._subscriptions if sub.watch_key is not None]
        for start in range(0, len(watched), MGET_CHUNK):
            chunk = watched[start : start + MGET_CHUNK]
            values = await self._redis.mget([str(sub.watch_key) for sub in chunk])
            for sub, value in zip(chunk, values, strict=True):
                now = _text(value) if value is not None else "0"
                if now != sub.watch_value:
                    sub.watch_value = now
                    sub.changed.set()


async def replay_after(
    redis: aioredis.Redis,
    user_ids: Iterable[uuid.UUID],
    after: uuid.UUID,
    *,
    topics: Sequence[str] = STREAMED_TOPICS,
    page: int = 200,
) -> list[Event] | None:
    """The events of ``user_ids`` published after event ``after``, oldest first, from the users' streams.

    None when ``after`` is in none of these streams (older than their retention, or not one of
    these users' events): the caller cannot be brought up to date from the streams and should
    reload what it shows.
    """
    users = sorted(set(user_ids))
    found_at: tuple[str, int] | None = None
    for user_id in users:
        found_at = await _position_of(redis, user_stream_key(user_id), str(after), page=page)
        if found_at is not None:
            break
    if found_at is None:
        return None
    # Every one of the users' streams (an advisor's clients too) from that instant on.
    newer: list[tuple[str, Any]] = []  # (stream id, fields)
    for user_id in users:
        # Stream ids are per stream (two streams can both hold "<ms>-0"): read every stream from that
        # millisecond and keep what the outbox numbered after the event the client saw.
        start = found_at[0].partition("-")[0] + "-0"
        entries: Any = await redis.xrange(user_stream_key(user_id), start, "+")
        for message_id, fields in entries:
            newer.append((_text(message_id), fields))
    wanted_topics = set(topics)
    seen: set[uuid.UUID] = {after}
    events: list[Event] = []
    # Outbox order: stream ids are per stream and cannot order two users' streams against each other.
    for event in sorted((Event.from_fields(fields) for _, fields in newer), key=lambda e: e.sequence):
        if event.sequence > found_at[1] and event.topic in wanted_topics and event.id not in seen:
            seen.add(event.id)
            events.append(event)
    return events


async def _position_of(
    redis: aioredis.Redis, key: str, event_id: str, *, page: int
) -> tuple[str, int] | None:
    """The stream id and outbox sequence of the entry of ``key`` that carries ``event_id``,
    searched from the newest back."""
    upper = "+"
    while True:
        entries: Any = await redis.xrevrange(key, upper, "-", count=page)
        for message_id, fields in entries:
            if _text(fields.get(b"event_id", fields.get("event_id", b""))) == event_id:
                return _text(message_id), int(_text(fields.get(b"sequence", fields.get("sequence", b"0"))))
        if len(entries) < page:
            return None
        upper = "(" + _text(entries[-1][0])


def _batches(response: Any) -> list[tuple[Any, list[tuple[Any, Any]]]]:
    if not response:
        return []
    if isinstance(response, dict):  # RESP3 answers with a map
        return list(response.items())
    return list(response)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = [
    "HEARTBEAT_TIMEOUT",
    "PROTOCOL_ERROR",
    "SLOW_CONSUMER",
    "MARKET_EVENT_TYPES",
    "STREAMED_TOPICS",
    "UNAUTHORIZED",
    "Seen",
    "StreamHub",
    "Subscription",
    "Throttle",
    "replay_after",
]
