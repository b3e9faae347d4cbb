"""The stream hub and the resume range on a real Redis, fed the way the outbox relay feeds it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from wealthalloc.events.fanout import StreamHub, replay_after
from wealthalloc.events.relay import Event, OutboxRelay

pytestmark = pytest.mark.integration


def event(user_id: uuid.UUID, sequence: int, topic: str = "portfolio.updates") -> Event:
    return Event(
        id=uuid.uuid4(),
        sequence=sequence,
        topic=topic,
        type="portfolio.cash_moved",
        version=1,
        user_id=user_id,
        aggregate_id=None,
        occurred_at=datetime.now(UTC),
        payload={"n": sequence},
    )


def run(redis_url: str, scenario: Callable[[aioredis.Redis, OutboxRelay], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        client = aioredis.Redis.from_url(redis_url, socket_timeout=10)
        relay = OutboxRelay(pool=None, redis=client, max_user_stream_length=50)  # type: ignore[arg-type]
        try:
            return await scenario(client, relay)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_the_hub_reads_each_new_event_once_and_hands_it_to_that_users_sockets(redis_url: str) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()

    async def scenario(client: aioredis.Redis, relay: OutboxRelay) -> None:
        await relay._append([event(alice, 1)])  # before anyone listened: not the hub's to carry
        hub = StreamHub(redis=aioredis.Redis.from_url(redis_url, socket_timeout=10), block_ms=100)
        try:
            alice_socket = hub.subscribe([alice], queue_size=100)
            bob_socket = hub.subscribe([bob], queue_size=100)
            await asyncio.sleep(0.3)  # the hub has found the streams' tails
            sent = [event(alice, 2), event(bob, 3), event(alice, 4, topic="trades.executed")]
            await relay._append(sent)
            got = [await asyncio.wait_for(alice_socket.queue.get(), 5) for _ in range(2)]
            assert [e.id for e in got] == [sent[0].id, sent[2].id]
            assert (await asyncio.wait_for(bob_socket.queue.get(), 5)).id == sent[1].id
            await asyncio.sleep(0.3)
            assert alice_socket.queue.empty() and bob_socket.queue.empty()
        finally:
            await hub.close()

    run(redis_url, scenario)


def test_a_resume_returns_the_users_events_after_the_one_named_in_order_and_none_when_it_is_gone(
    redis_url: str,
) -> None:
    client_user, advisor = uuid.uuid4(), uuid.uuid4()

    async def scenario(client: aioredis.Redis, relay: OutboxRelay) -> None:
        events = [event(client_user if n % 2 else advisor, n) for n in range(1, 9)]
        for e in events:
            await relay._append([e])
        after_third = await replay_after(client, [client_user], events[2].id)
        assert after_third is not None
        assert [e.sequence for e in after_third] == [5, 7]
        both = await replay_after(client, [advisor, client_user], events[2].id)
        assert both is not None
        assert [e.sequence for e in both] == [4, 5, 6, 7, 8]
        assert await replay_after(client, [client_user], uuid.uuid4()) is None
        assert await replay_after(client, [client_user], events[1].id) is None  # the advisor's, not theirs
        assert await replay_after(client, [client_user], events[-2].id) == []  # the last of theirs

    run(redis_url, scenario)


def test_a_users_stream_keeps_only_the_retained_length(redis_url: str) -> None:
    user = uuid.uuid4()

    async def scenario(client: aioredis.Redis, relay: OutboxRelay) -> None:
        events = [event(user, n) for n in range(1, 401)]
        for start in range(0, 400, 100):
            await relay._append(events[start : start + 100])
        kept = await client.xlen(f"stream:user:{{{user}}}")
        assert 50 <= kept < 400
        assert await replay_after(client, [user], events[0].id) is None
        recent = await replay_after(client, [user], events[-3].id)
        assert recent is not None and [e.sequence for e in recent] == [399, 400]

    run(redis_url, scenario)


def test_moving_a_users_generation_wakes_their_sockets_on_the_next_check(redis_url: str) -> None:
    user = uuid.uuid4()

    async def scenario(client: aioredis.Redis, relay: OutboxRelay) -> None:
        hub = StreamHub(redis=aioredis.Redis.from_url(redis_url, socket_timeout=10), block_ms=100)
        try:
            await client.set(f"gen:{user}", "1")
            socket = hub.subscribe([user], queue_size=10, watch_key=f"gen:{user}", watch_value="1")
            other = hub.subscribe([uuid.uuid4()], queue_size=10, watch_key="gen:other", watch_value="0")
            await hub.check_watched()
            assert not socket.changed.is_set()
            await client.incr(f"gen:{user}")
            await hub.check_watched()
            assert socket.changed.is_set()
            assert not other.changed.is_set()
        finally:
            await hub.close()

    run(redis_url, scenario)
