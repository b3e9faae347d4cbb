"""A consumer group that Redis lost (a restart without persistence, a flush) is made again."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from tests.events import cash_moved
from wealthalloc.events.consumers import StreamConsumer
from wealthalloc.events.relay import Event, OutboxRelay

pytestmark = pytest.mark.integration


class Recorder(StreamConsumer):
    group = "recorder"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.seen: list[uuid.UUID] = []

    async def handle(self, events: list[Event]) -> None:
        self.seen.extend(event.id for event in events)


def event(sequence: int) -> Event:
    return cash_moved(uuid.uuid4(), sequence)


def test_a_consumer_whose_group_vanished_makes_it_again_and_keeps_handling(redis_url: str) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url, socket_timeout=10)
        try:
            relay = OutboxRelay(pool=None, redis=client)  # type: ignore[arg-type]  # appends only
            consumer = Recorder(redis=client, name="r1", topics=("portfolio.updates",), block_ms=50)
            first = event(1)
            await relay._append([first])
            assert await consumer.consume_once() == 1
            await client.flushdb()  # Redis came back empty
            second = event(2)
            await relay._append([second])
            handled = 0
            for _ in range(3):
                handled += await consumer.consume_once()
            assert handled == 1
            assert consumer.seen == [first.id, second.id]
        finally:
            await client.aclose()

    asyncio.run(scenario())
