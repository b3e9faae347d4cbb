"""How one replica's stream hub shares events among sockets: by user, bounded, once, throttled."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest

from tests.events import cash_moved as event
from wealthalloc.events.fanout import SLOW_CONSUMER, Seen, StreamHub, Throttle


def hub() -> StreamHub:
    return StreamHub(redis=None)  # type: ignore[arg-type]  # dispatch alone needs no Redis


def test_an_event_reaches_the_sockets_of_its_user_and_an_advisor_following_them_only() -> None:
    async def scenario() -> None:
        alice, bob = uuid.uuid4(), uuid.uuid4()
        h = hub()
        h._start = lambda: None  # type: ignore[method-assign]  # no reader: events are handed in
        alice_socket = h.subscribe([alice], queue_size=10)
        bob_socket = h.subscribe([bob], queue_size=10)
        advisor_socket = h.subscribe([uuid.uuid4(), alice], queue_size=10)

        h.dispatch([event(alice), event(None)])

        assert alice_socket.queue.qsize() == 1
        assert advisor_socket.queue.qsize() == 1
        assert bob_socket.queue.empty()

        h.retarget(advisor_socket, [bob])
        h.unsubscribe(alice_socket)
        h.dispatch([event(alice), event(bob)])
        assert alice_socket.queue.qsize() == 1
        assert advisor_socket.queue.qsize() == 2
        assert h.sockets == 2

    asyncio.run(scenario())


def test_published_prices_reach_every_socket_as_a_cue_but_other_userless_events_reach_none() -> None:
    async def scenario() -> None:
        h = hub()
        h._start = lambda: None  # type: ignore[method-assign]
        sockets = [h.subscribe([uuid.uuid4()], queue_size=10) for _ in range(3)]
        closes = replace(event(None, symbols=["AAPL"]), topic="prices.updated", type="prices.updated")
        bookkeeping = event(None)

        h.dispatch([closes, bookkeeping])

        assert [s.queue.qsize() for s in sockets] == [1, 1, 1]
        assert all(s.queue.get_nowait().type == "prices.updated" for s in sockets)

    asyncio.run(scenario())


def test_a_socket_that_falls_behind_is_closed_as_slow_instead_of_buffering_more() -> None:
    async def scenario() -> None:
        user = uuid.uuid4()
        h = hub()
        h._start = lambda: None  # type: ignore[method-assign]
        slow = h.subscribe([user], queue_size=3)
        h.dispatch([event(user, n) for n in range(5)])
        assert slow.queue.qsize() == 3
        code, reason = slow.closing.result()
        assert code == SLOW_CONSUMER == 4429
        assert "reconnect with after" in reason

    asyncio.run(scenario())


def test_events_of_one_read_go_out_in_outbox_order() -> None:
    async def scenario() -> None:
        user = uuid.uuid4()
        h = hub()
        h._start = lambda: None  # type: ignore[method-assign]
        socket = h.subscribe([user], queue_size=10)
        h.dispatch([event(user, 7), event(user, 3), event(user, 5)])
        assert [socket.queue.get_nowait().sequence for _ in range(3)] == [3, 5, 7]

    asyncio.run(scenario())


def test_seen_drops_a_repeat_and_forgets_the_oldest_beyond_its_size() -> None:
    seen = Seen(size=2)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert seen.add(first) and not seen.add(first)
    assert seen.add(second) and seen.add(third)
    assert seen.add(first)  # forgotten: only the last two are remembered


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_for_one_key_is_one_action_now_and_one_when_the_second_has_passed() -> None:
    clock = Clock()
    throttle = Throttle(min_interval_s=1.0, clock=clock)
    assert throttle.request("p1") is True
    assert throttle.next_due_in() is None
    clock.now += 0.2
    assert throttle.request("p1") is False
    assert throttle.request("p1") is False  # still one held action
    assert throttle.request("p2") is True  # another portfolio is not held back
    assert throttle.next_due_in() == pytest.approx(0.8)
    assert throttle.due() == []
    clock.now += 0.8
    assert throttle.due() == ["p1"]
    assert throttle.next_due_in() is None
    clock.now += 0.5
    assert throttle.request("p1") is False  # 0.5 s after the held one went out
    clock.now += 0.5
    assert throttle.due() == ["p1"]
