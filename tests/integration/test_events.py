"""The outbox relay and the consumer groups on real PostgreSQL and Redis (and Ray for the last test).

Every event committed with a change reaches its stream in order; delivery is
at least once, and consumers make it exactly-once in effect by event id.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import redis
from psycopg.rows import dict_row

from tests.conftest import OPERATOR
from wealthalloc.config import Settings
from wealthalloc.events.audit_chain import verify_chain
from wealthalloc.events.consumers import AuditLogger
from wealthalloc.events.relay import Event, OutboxRelay, stream_key
from wealthalloc.storage.audit import iter_chain
from wealthalloc.storage.migrate import migrate
from wealthalloc.storage.postgres import async_pool
from wealthalloc.storage.redis_client import async_redis

EVENTS_REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture
def events_db(empty_database_url: str) -> Iterator[str]:
    migrate(empty_database_url)
    client = redis.Redis.from_url(EVENTS_REDIS_URL)
    client.flushdb()
    try:
        yield empty_database_url
    finally:
        client.flushdb()
        client.close()


def _commit_events(url: str, n: int) -> list[uuid.UUID]:
    ids = []
    with psycopg.connect(url) as conn:
        for i in range(n):
            row = conn.execute(
                "INSERT INTO events (topic, event_type, user_id, aggregate_id, payload)"
                " VALUES ('portfolio.updates', 'portfolio.cash_moved', %s, %s, %s) RETURNING id",
                (uuid.uuid4(), uuid.uuid4(), json.dumps({"n": i, "amount": "1.00"})),
            ).fetchone()
            assert row is not None
            ids.append(row[0])
    return ids


def _run(url: str, scenario):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        settings = Settings(database_url=url, redis_url=EVENTS_REDIS_URL)
        pool = async_pool(settings, name="events-test")
        await pool.open()
        client = async_redis(settings, socket_timeout=10)
        try:
            return await scenario(pool, client)
        finally:
            await client.aclose()
            await pool.close()

    return asyncio.run(main())


def test_committed_events_reach_their_stream_once_in_sequence_order(events_db: str) -> None:
    ids = _commit_events(events_db, 25)

    async def scenario(pool, client):  # type: ignore[no-untyped-def]
        relay = OutboxRelay(pool=pool, redis=client, batch=10)
        counts = [await relay.publish_once() for _ in range(4)]
        entries = await client.xrange(stream_key("portfolio.updates"))
        return counts, [Event.from_fields(fields) for _, fields in entries]

    counts, events = _run(events_db, scenario)
    assert counts == [10, 10, 5, 0]
    assert [e.id for e in events] == ids
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)
    assert events[3].payload == {"n": 3, "amount": "1.00"}
    with psycopg.connect(events_db) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE published_at IS NULL").fetchone() == (0,)


def test_a_relay_killed_between_publish_and_mark_republishes_and_the_audit_trail_stays_one_per_event(
    events_db: str,
) -> None:
    ids = _commit_events(events_db, 8)

    async def scenario(pool, client):  # type: ignore[no-untyped-def]
        relay = OutboxRelay(pool=pool, redis=client)
        # The crash: the rows were appended to the stream, the transaction marking them never committed.
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM events ORDER BY sequence")
            await relay._append([Event.from_row(row) for row in await cur.fetchall()])
        assert await relay.publish_once() == 8  # the restarted relay publishes them again
        audit = AuditLogger(pool=pool, redis=client, name="audit-test")
        handled = 0
        while (n := await audit.consume_once()) > 0:
            handled += n
        return handled, await client.xlen(stream_key("portfolio.updates"))

    handled, stream_length = _run(events_db, scenario)
    assert stream_length == 16 and handled == 16
    with psycopg.connect(events_db, row_factory=dict_row) as conn:
        audited = [r["event_id"] for r in conn.execute("SELECT event_id FROM audit_log ORDER BY sequence")]
        report = verify_chain(iter_chain(conn))
    assert audited == ids
    assert report.intact, report.problems


def test_a_consumer_that_crashes_mid_batch_gets_its_unacknowledged_messages_again(events_db: str) -> None:
    _commit_events(events_db, 5)

    class Crashing(AuditLogger):
        crashed = False

        async def handle(self, events: list[Event]) -> None:
            if not Crashing.crashed:
                Crashing.crashed = True
                raise RuntimeError("consumer process died")
            await super().handle(events)

    async def scenario(pool, client):  # type: ignore[no-untyped-def]
        await OutboxRelay(pool=pool, redis=client).publish_once()
        consumer = Crashing(pool=pool, redis=client, name="audit-crashy")
        with pytest.raises(RuntimeError):
            await consumer.consume_once()
        return await consumer.consume_once()  # the pending batch first

    assert _run(events_db, scenario) == 5
    with psycopg.connect(events_db) as conn:
        assert conn.execute("SELECT count(DISTINCT event_id) FROM audit_log").fetchone() == (5,)


class _ReadsSeen:
    """The real Redis client, noting where each XREADGROUP starts; ``lose_next`` drops one answer
    after Redis has delivered it (a connection cut between the server's reply and the client)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.starts: list[str] = []
        self.lose_next = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def xreadgroup(self, group, consumer, streams, **kwargs):  # type: ignore[no-untyped-def]
        self.starts.append(next(iter(streams.values())))
        answer = await self._inner.xreadgroup(group, consumer, streams, **kwargs)  # type: ignore[attr-defined]
        if self.lose_next:
            self.lose_next = False
            raise redis.exceptions.ConnectionError("connection lost while reading the answer")
        return answer


def test_a_consumer_asks_for_its_pending_messages_only_when_some_may_be_waiting(events_db: str) -> None:
    async def scenario(pool, client):  # type: ignore[no-untyped-def]
        reads = _ReadsSeen(client)
        relay = OutboxRelay(pool=pool, redis=client)
        consumer = AuditLogger(pool=pool, redis=reads, name="audit-reads")
        handled = []
        for _ in range(3):
            _commit_events(events_db, 4)
            await relay.publish_once()
            handled.append(await consumer.consume_once())
        return handled, reads.starts

    handled, starts = _run(events_db, scenario)

    assert handled == [4, 4, 4]
    # At start a crashed predecessor may have left some; after that, every batch is one read.
    assert starts == ["0", ">", ">", ">"]


def test_messages_whose_delivery_answer_was_lost_are_read_again_as_pending(events_db: str) -> None:
    async def scenario(pool, client):  # type: ignore[no-untyped-def]
        reads = _ReadsSeen(client)
        relay = OutboxRelay(pool=pool, redis=client)
        consumer = AuditLogger(pool=pool, redis=reads, name="audit-lossy", block_ms=50)
        assert await consumer.consume_once() == 0  # nothing waiting yet: pending known empty
        _commit_events(events_db, 3)
        await relay.publish_once()
        reads.lose_next = True
        with pytest.raises(redis.exceptions.ConnectionError):
            await consumer.consume_once()
        return await consumer.consume_once(), reads.starts

    handled, starts = _run(events_db, scenario)

    assert handled == 3
    # An empty look at the pending list, an empty wait for new ones, the read whose answer was
    # lost, and the pending read that finds its three messages.
    assert starts == ["0", ">", ">", "0"]
    with psycopg.connect(events_db) as conn:
        assert conn.execute("SELECT count(DISTINCT event_id) FROM audit_log").fetchone() == (3,)


def test_a_message_delivered_without_the_consumer_knowing_is_handled_at_the_next_pending_check(
    events_db: str,
) -> None:
    async def scenario(pool, client):  # type: ignore[no-untyped-def]
        now = [0.0]
        reads = _ReadsSeen(client)
        relay = OutboxRelay(pool=pool, redis=client)
        consumer = AuditLogger(
            pool=pool, redis=reads, name="audit-astray", block_ms=50, pending_check_s=10, clock=lambda: now[0]
        )
        assert await consumer.consume_once() == 0  # its pending list read, and found empty
        _commit_events(events_db, 2)
        await relay.publish_once()
        # Redis delivers both to this consumer, and no answer or error ever reaches it.
        await client.xreadgroup("audit", "audit-astray", {stream_key("portfolio.updates"): ">"})
        now[0] = 9.9
        before_due = await consumer.consume_once()
        now[0] = 10.0
        return before_due, await consumer.consume_once(), reads.starts

    before_due, handled, starts = _run(events_db, scenario)

    assert before_due == 0
    assert handled == 2
    # Start: pending, then new; not yet due: new only; due: pending, which holds the two.
    assert starts == ["0", ">", ">", "0"]
    with psycopg.connect(events_db) as conn:
        assert conn.execute("SELECT count(DISTINCT event_id) FROM audit_log").fetchone() == (2,)


class _Refusing(AuditLogger):
    """An audit logger that cannot handle the event whose payload has ``n`` in ``refused``, nor any
    event while ``down`` (its database unreachable)."""

    refused: frozenset[int] = frozenset()
    down = False

    async def handle(self, events: list[Event]) -> None:
        if self.down:
            raise psycopg.OperationalError("the database is unreachable")
        bad = [e for e in events if e.payload.get("n") in self.refused]
        if bad:
            raise ValueError(f"event {bad[0].id} cannot be handled")
        await super().handle(events)


def _dead_letters() -> list[dict[bytes, bytes]]:
    client = redis.Redis.from_url(EVENTS_REDIS_URL)
    try:
        return [fields for _, fields in client.xrange("stream:dead-letters")]
    finally:
        client.close()


def test_a_message_that_cannot_be_handled_holds_up_no_other_and_goes_to_the_dead_letters(
    events_db: str,
) -> None:
    poison = _commit_events(events_db, 5)[2]  # the third of the first five (n = 2)

    async def scenario(pool, client):  # type: ignore[no-untyped-def]
        relay = OutboxRelay(pool=pool, redis=client)
        consumer = _Refusing(pool=pool, redis=client, name="audit-poisoned", block_ms=50)
        consumer.refused = frozenset({2})
        await relay.publish_once()
        with pytest.raises(ValueError):
            await consumer.consume_once()  # the five together: the batch fails
        for _ in range(6):  # one new event each time, handled while the bad one waits
            with psycopg.connect(events_db) as conn:
                conn.execute(
                    "INSERT INTO events (topic, event_type, user_id, aggregate_id, payload)"
                    " VALUES ('portfolio.updates', 'portfolio.cash_moved', %s, %s, '{\"n\": 100}')",
                    (uuid.uuid4(), uuid.uuid4()),
                )
            await relay.publish_once()
            await consumer.consume_once()
        return await client.xpending(stream_key("portfolio.updates"), "audit")

    pending = _run(events_db, scenario)

    assert pending["pending"] == 0
    with psycopg.connect(events_db) as conn:
        audited = {r[0] for r in conn.execute("SELECT event_id FROM audit_log")}
    assert len(audited) == 4 + 6 and poison not in audited
    [letter] = _dead_letters()
    assert letter[b"group"] == b"audit"
    assert letter[b"stream"] == stream_key("portfolio.updates").encode()
    assert letter[b"field:event_id"] == str(poison).encode()
    assert b"cannot be handled" in letter[b"error"]


def test_during_an_outage_nothing_goes_to_the_dead_letters_and_all_is_handled_after_it(
    events_db: str,
) -> None:
    async def scenario(pool, client):  # type: ignore[no-untyped-def]
        relay = OutboxRelay(pool=pool, redis=client)
        consumer = _Refusing(pool=pool, redis=client, name="audit-outage", block_ms=20)
        consumer.down = True
        _commit_events(events_db, 3)
        await relay.publish_once()
        with pytest.raises(psycopg.OperationalError):
            await consumer.consume_once()
        for _ in range(8):  # far more tries than MAX_DELIVERIES, some with new events failing too
            if _ % 2:
                _commit_events(events_db, 1)
                await relay.publish_once()
            try:
                await consumer.consume_once()
            except psycopg.OperationalError:
                pass
        consumer.down = False
        handled = 0
        for _ in range(3):
            handled += await consumer.consume_once()
        return handled

    assert _run(events_db, scenario) == 3 + 4
    assert _dead_letters() == []
    with psycopg.connect(events_db) as conn:
        assert conn.execute("SELECT count(DISTINCT event_id) FROM audit_log").fetchone() == (7,)


def test_a_deposit_through_the_api_reaches_the_audit_trail(http, database_url: str) -> None:  # type: ignore[no-untyped-def]
    ip = "10.9.8.7"
    email = f"events-{uuid.uuid4().hex[:8]}@example.com"
    http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": "a sturdy passphrase"},
        headers={"X-Forwarded-For": ip},
    )
    token = http.post(
        "/api/v1/auth/login",
        json={"email": email, "password": "a sturdy passphrase"},
        headers={"X-Forwarded-For": ip},
    ).json()["data"]["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": ip}
    created = http.post("/api/v1/portfolios", json={"name": "Main"}, headers=headers)
    assert created.status_code == 201, created.text
    portfolio = created.json()["data"]
    deposit = http.post(
        f"/api/v1/portfolios/{portfolio['id']}/cash",
        json={"amount": "42.00"},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert deposit.status_code == 201
    movement_id = deposit.json()["data"]["movement"]["id"]
    deadline = time.monotonic() + 30
    row = None
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        while time.monotonic() < deadline and row is None:
            row = conn.execute(
                "SELECT a.* FROM audit_log a JOIN events e ON e.id = a.event_id"
                " WHERE e.payload->>'movement_id' = %s",
                (movement_id,),
            ).fetchone()
            time.sleep(0.3)
    assert row is not None, "the deposit's event never reached the audit trail"
    assert row["action"] == "portfolio.cash_moved"
    assert row["details"]["payload"]["amount"] == "42.00"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        bus = http.get("/health", headers=OPERATOR).json()["data"]["checks"]["event_bus"]
        if bus["consumer_lag"].get("audit") == 0 and bus["outbox_backlog"] == 0:
            break
        time.sleep(0.3)
    assert bus["consumer_lag"] == {"alerts": 0, "audit": 0, "cache": 0, "notifications": 0, "webhooks": 0}
    assert bus["dead_letters"] == 0
    scrape = http.get("/metrics", headers=OPERATOR).text
    assert 'wealthalloc_event_consumer_lag{group="audit"} 0.0' in scrape
    assert "wealthalloc_event_dead_letters 0.0" in scrape


def test_killing_the_event_bus_mid_stream_loses_no_event_and_audits_each_once_in_sequence(
    http: httpx.Client, database_url: str, api_settings: dict[str, str]
) -> None:
    """Deposits keep coming while the bus actor is killed; Ray restarts it and it resumes by itself
    (no /health call here): every deposit's event reaches the audit trail exactly once, the trail
    holds them in outbox sequence order, and its hash chain still verifies."""
    import threading

    import ray

    from actors.event_bus import EVENT_BUS_NAME
    from tests.integration.people import Investor

    investor = Investor(http, database_url)
    p = investor.portfolio("Kill test")
    assert investor.deposit(p["id"], "1.00").status_code == 201
    bus = ray.get_actor(EVENT_BUS_NAME, namespace=Settings(**api_settings).ray_namespace)  # type: ignore[arg-type]
    answered: list[str] = []

    def deposit_many() -> None:
        for n in range(30):
            answer = investor.deposit(p["id"], f"{n + 2}.00")
            assert answer.status_code == 201, answer.text
            answered.append(answer.json()["data"]["movement"]["id"])

    worker = threading.Thread(target=deposit_many)
    worker.start()
    time.sleep(0.5)
    ray.kill(bus, no_restart=False)
    worker.join()
    assert len(answered) == 30

    query = """SELECT e.sequence AS outbox_sequence, (a.details->>'sequence')::bigint AS audited_sequence,
                      a.sequence AS audit_position
               FROM events e LEFT JOIN audit_log a ON a.event_id = e.id
               WHERE e.event_type = 'portfolio.cash_moved' AND e.aggregate_id = %s
               ORDER BY e.sequence"""
    deadline = time.monotonic() + 60
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        while True:
            rows = conn.execute(query, (p["id"],)).fetchall()
            if all(r["audit_position"] is not None for r in rows) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        report = verify_chain(iter_chain(conn))
    assert len(rows) == 31, "every acknowledged deposit committed its event"
    missing = [r["outbox_sequence"] for r in rows if r["audit_position"] is None]
    assert not missing, f"events {missing} never reached the audit trail; bus: {ray.get(bus.stats.remote())}"
    assert [r["audited_sequence"] for r in rows] == [r["outbox_sequence"] for r in rows]  # once each
    positions = [r["audit_position"] for r in rows]
    assert positions == sorted(positions), "the trail holds one user's events in sequence order"
    assert report.intact, report.problems


def test_streams_are_trimmed_by_length_and_by_age_while_the_outbox_keeps_every_event(events_db: str) -> None:
    _commit_events(events_db, 300)

    async def scenario(pool, client):  # type: ignore[no-untyped-def]
        by_length = OutboxRelay(pool=pool, redis=client, batch=100, max_stream_length=10)
        while await by_length.publish_once():
            pass
        trimmed_by_length = await client.xlen(stream_key("portfolio.updates"))
        await client.delete(stream_key("portfolio.updates"))
        by_age = OutboxRelay(pool=pool, redis=client, max_stream_age_s=0)
        replayed = await by_age.replay(from_sequence=1)
        await asyncio.sleep(0.05)  # the first 300 entries are now older than the (zero) age
        replayed += await by_age.replay(from_sequence=1)
        return trimmed_by_length, replayed, await client.xlen(stream_key("portfolio.updates"))

    trimmed_by_length, replayed, trimmed_by_age = _run(events_db, scenario)
    assert trimmed_by_length < 300  # approximate trimming: whole macro-nodes, so about 10 plus a node
    assert replayed == 600 and trimmed_by_age < 600  # entries older than the age are dropped
    with psycopg.connect(events_db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (300,)
