"""Webhooks end to end on real PostgreSQL and Redis, delivering to a real HTTP receiver on loopback.

outbox -> relay -> stream -> ``webhooks`` consumer group -> delivery queue -> sender -> receiver.
The receiver checks every signature with the snippet published in ``docs/webhooks.md``.

The module has a database and a Redis index of its own: the session's are also those of the API
deployed on Ray, whose event bus relays events from that database to those streams (and can run
a ``webhooks`` group itself), so it would race these tests for their events and deliveries.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from psycopg.rows import dict_row

from serve_apps.api.deps import current_principal, get_client_ip, get_resources
from serve_apps.api.errors import install_error_handlers
from serve_apps.api.resources import Resources
from serve_apps.api.routes import webhooks as webhook_routes
from tests.conftest import TEST_REDIS_URL, create_database, drop_database
from wealthalloc.config import Settings
from wealthalloc.errors import ServiceError
from wealthalloc.events import signing
from wealthalloc.events.relay import Event, OutboxRelay
from wealthalloc.events.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    WebhookDispatcher,
    WebhookOptions,
    WebhookSender,
    WebhookService,
    backoff_delay,
)
from wealthalloc.security.access import Principal, Role
from wealthalloc.storage import webhooks as store
from wealthalloc.storage.migrate import migrate
from wealthalloc.storage.outbox import add_event
from wealthalloc.storage.postgres import AsyncPool, async_pool
from wealthalloc.storage.redis_client import async_redis

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
LOOPBACK = ("127.0.0.1:*",)  # receivers take a free port each; an entry without a port admits 80/443 only
REDIS_DB = 10
T = TypeVar("T")


def documented_verifier() -> Callable[..., bool]:
    """``verify_webhook`` exactly as docs/webhooks.md publishes it for receivers."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    snippet = next(block for block in blocks if "def verify_webhook" in block)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOCS), "exec"), namespace)
    verifier: Callable[..., bool] = namespace["verify_webhook"]
    return verifier


# The receiver ---------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int


@dataclass
class Receiver:
    """A local HTTP endpoint: each request gets the next scripted reply (a status, or seconds to stall)."""

    secret: str = ""
    script: list[int | float] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/wealthalloc"

    def next_reply(self) -> int | float:
        with self.lock:
            return self.script.pop(0) if self.script else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    verify_webhook = documented_verifier()
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            reply = state.next_reply()
            verified = verify_webhook(state.secret, self.headers.get("WealthAlloc-Signature", ""), body)
            status = reply if isinstance(reply, int) else 200
            with state.lock:
                state.requests.append(Received(self.path, dict(self.headers), body, verified, status))
            if isinstance(reply, float):
                time.sleep(reply)  # longer than the sender waits: a timeout
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender gave up and closed the connection

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    url = create_database("wealthalloc_webhooks")
    try:
        migrate(url)
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def redis_url() -> Iterator[str]:
    import redis

    url = f"{TEST_REDIS_URL.rpartition('/')[0]}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


# Helpers --------------------------------------------------------------------------------------------


def new_user(database_url: str) -> uuid.UUID:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "INSERT INTO users (email, password_hash) VALUES (%s, 'x') RETURNING id",
            (f"hooks-{uuid.uuid4().hex[:10]}@example.com",),
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def deliveries(database_url: str, webhook_id: Any) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = %s ORDER BY sequence", (webhook_id,)
        ).fetchall()


@dataclass
class Stack:
    pool: AsyncPool
    redis: aioredis.Redis
    relay: OutboxRelay

    def service(self, **options: Any) -> WebhookService:
        resolve = options.pop("resolve", None)
        opts = WebhookOptions(**{"allowed_hosts": LOOPBACK, **options})
        return WebhookService(pool=self.pool, options=opts, **({"resolve": resolve} if resolve else {}))

    def dispatcher(self, name: str = "webhooks-1", cls: type[WebhookDispatcher] = WebhookDispatcher) -> Any:
        return cls(pool=self.pool, redis=self.redis, name=name, block_ms=50)

    def sender(self, **kwargs: Any) -> WebhookSender:
        settings: dict[str, Any] = {
            "allowed_hosts": LOOPBACK,
            "timeout_s": 2.0,
            "max_attempts": 3,
            "retry_initial_s": 0.05,
            "retry_max_s": 0.2,
            "jitter": 0.0,
        }
        return WebhookSender(pool=self.pool, **{**settings, **kwargs})

    async def commit_events(
        self, user_id: uuid.UUID, *specs: tuple[str, str, dict[str, Any]]
    ) -> list[uuid.UUID]:
        ids = []
        async with self.pool.connection() as conn, conn.transaction():
            for topic, event_type, payload in specs:
                ids.append(
                    await add_event(
                        conn,
                        topic=topic,
                        event_type=event_type,
                        user_id=user_id,
                        aggregate_id=payload.get("portfolio_id"),
                        payload=payload,
                    )
                )
        return ids

    async def dispatch_all(self, dispatcher: WebhookDispatcher) -> None:
        while await self.relay.publish_once():
            pass
        while await dispatcher.consume_once():
            pass


async def drain(sender: WebhookSender, *, timeout_s: float = 20) -> int:
    """Send until nothing is pending any more; the number of attempts made."""
    attempts = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        attempts += await sender.send_due()
        async with sender._pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'")
            row = await cur.fetchone()
        if row is not None and row["n"] == 0:
            return attempts
        await asyncio.sleep(0.05)
    raise TimeoutError("deliveries still pending")


def run(database_url: str, redis_url: str, scenario: Callable[[Stack], Awaitable[T]]) -> T:
    async def main() -> T:
        settings = Settings(database_url=database_url, redis_url=redis_url)
        pool = async_pool(settings, name="webhooks-test")
        await pool.open()
        client = async_redis(settings, socket_timeout=10)
        try:
            return await scenario(Stack(pool=pool, redis=client, relay=OutboxRelay(pool=pool, redis=client)))
        finally:
            await client.aclose()
            await pool.close()

    return asyncio.run(main())


def cash_moved(amount: str = "42.00") -> tuple[str, str, dict[str, Any]]:
    return (
        "portfolio.updates",
        "portfolio.cash_moved",
        {"portfolio_id": uuid.uuid4(), "movement_id": uuid.uuid4(), "amount": amount, "balance": "100.00"},
    )


# Outgoing -------------------------------------------------------------------------------------------


def test_an_event_is_delivered_once_signed_to_the_matching_webhook_only(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    alice, bob = new_user(database_url), new_user(database_url)

    async def scenario(stack: Stack) -> dict[str, Any]:
        service = stack.service()
        hook = await service.create(user_id=alice, url=receiver.url, events=["portfolio.cash_moved"])
        await service.create(user_id=alice, url=receiver.url + "/trades", events=["trades.executed"])
        await service.create(user_id=bob, url=receiver.url + "/bob", events=["portfolio.updates"])
        receiver.secret = hook.secret
        created = ("portfolio.updates", "portfolio.created", {"portfolio_id": uuid.uuid4(), "name": "Main"})
        event_id, _ = await stack.commit_events(alice, cash_moved(), created)
        await stack.dispatch_all(stack.dispatcher())
        sender = stack.sender()
        first = await drain(sender)
        again = await sender.send_due()
        await sender.aclose()
        listed = await service.webhooks_of(user_id=alice)
        log = await service.deliveries(
            user_id=alice, webhook_id=hook.record["id"], before_sequence=None, limit=10
        )
        with pytest.raises(ServiceError) as not_hers:
            await service.deliveries(
                user_id=bob, webhook_id=hook.record["id"], before_sequence=None, limit=10
            )
        return {
            "hook": hook,
            "event_id": event_id,
            "attempts": (first, again),
            "listed": listed,
            "log": log,
            "not_hers": not_hers.value.status,
        }

    out = run(database_url, redis_url, scenario)

    assert out["attempts"] == (1, 0)
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.verified, "the documented verification snippet refused our own signature"
    assert request.path == "/hooks/wealthalloc"
    assert request.headers[EVENT_HEADER] == "portfolio.cash_moved"
    assert request.headers["Content-Type"] == "application/json"
    document = json.loads(request.body)
    assert document["id"] == str(out["event_id"]) and document["type"] == "portfolio.cash_moved"
    assert document["topic"] == "portfolio.updates" and document["version"] == 1
    assert document["data"]["amount"] == "42.00"
    signing.verify(
        out["hook"].secret, request.headers[signing.SIGNATURE_HEADER], request.body, now=time.time()
    )
    [row] = deliveries(database_url, out["hook"].record["id"])
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 1, 200)
    assert row["delivered_at"] is not None and str(row["id"]) == request.headers[DELIVERY_HEADER]
    assert [entry["status"] for entry in out["log"]] == ["delivered"]
    assert "secret" not in out["log"][0] and all("secret" not in hook for hook in out["listed"])
    assert len(out["listed"]) == 2 and out["not_hers"] == 404


def test_a_batch_of_events_is_queued_in_one_statement_in_stream_order_and_only_once(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    alice, bob = new_user(database_url), new_user(database_url)

    async def scenario(stack: Stack) -> dict[str, Any]:
        service = stack.service()
        everything = await service.create(user_id=alice, url=receiver.url, events=["portfolio.updates"])
        moves = await service.create(user_id=alice, url=receiver.url + "/m", events=["portfolio.cash_moved"])
        bobs = await service.create(user_id=bob, url=receiver.url + "/bob", events=["portfolio.updates"])
        ids = await stack.commit_events(alice, *(cash_moved(f"{n}.00") for n in range(1, 6)))
        created = ("portfolio.updates", "portfolio.created", {"portfolio_id": uuid.uuid4(), "name": "Main"})
        ids += await stack.commit_events(alice, created)
        await stack.dispatch_all(stack.dispatcher())
        return {"ids": ids, "hooks": (everything.record["id"], moves.record["id"], bobs.record["id"])}

    out = run(database_url, redis_url, scenario)
    everything, moves, bobs = out["hooks"]
    assert [r["event_id"] for r in deliveries(database_url, everything)] == out["ids"]
    assert [r["event_id"] for r in deliveries(database_url, moves)] == out["ids"][:5]
    assert deliveries(database_url, bobs) == []  # none of alice's events

    async def again(stack: Stack) -> int:  # the same events queued again change nothing
        events = [
            store.Outgoing(
                event_id=r["event_id"],
                event_type=r["event_type"],
                topic="portfolio.updates",
                user_id=alice,
                occurred_at=r["created_at"],
                body=r["body"],
                broadcast=False,
            )
            for r in deliveries(database_url, everything)
        ]
        async with stack.pool.connection() as conn:
            queued = await store.enqueue_deliveries(conn, events)
        for hook in (everything, moves):  # nothing of this test is left due for the next one's sender
            await stack.service().delete(user_id=alice, webhook_id=hook)
        return queued

    assert run(database_url, redis_url, again) == 0


def test_only_events_a_live_webhook_could_match_are_sent_to_the_database_to_be_matched(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    """A user without a webhook costs the dispatcher one small query, not a body to encode and
    match; a broadcast still reaches the subscribers of its topic."""
    alice, carol = new_user(database_url), new_user(database_url)

    def event(user: uuid.UUID | None, topic: str = "portfolio.updates") -> store.Outgoing:
        return store.Outgoing(
            event_id=uuid.uuid4(),
            event_type=topic,
            topic=topic,
            user_id=user,
            occurred_at=datetime.now(UTC),
            body={"amount": "1.00"},
            broadcast=topic == "prices.updated",
        )

    async def scenario(stack: Stack) -> dict[str, Any]:
        topics = ["portfolio.updates", "prices.updated"]
        hook = await stack.service().create(user_id=alice, url=receiver.url, events=topics)
        hers, carols, everyones = event(alice), event(carol), event(None, "prices.updated")
        async with stack.pool.connection() as conn:
            kept = await store._with_a_subscriber(conn, [hers, carols, everyones])
            queued = await store.enqueue_deliveries(conn, [hers, carols, everyones])
        await stack.service().delete(user_id=alice, webhook_id=hook.record["id"])
        return {"kept": kept, "queued": queued, "expected": [hers, everyones], "hook": hook.record["id"]}

    out = run(database_url, redis_url, scenario)
    assert out["kept"] == out["expected"]  # carol's event never left the dispatcher
    assert out["queued"] == 2
    assert [r["event_id"] for r in deliveries(database_url, out["hook"])] == [
        e.event_id for e in out["expected"]
    ]


def test_an_endpoint_answering_500_is_retried_and_then_delivered(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    user = new_user(database_url)
    receiver.script = [500, 200]

    async def scenario(stack: Stack) -> tuple[Any, list[dict[str, Any]]]:
        hook = await stack.service().create(user_id=user, url=receiver.url, events=["portfolio.updates"])
        receiver.secret = hook.secret
        await stack.commit_events(user, cash_moved())
        await stack.dispatch_all(stack.dispatcher())
        sender = stack.sender()
        assert await sender.send_due() == 1
        after_first = deliveries(database_url, hook.record["id"])
        await drain(sender)
        await sender.aclose()
        return hook, after_first

    hook, after_first = run(database_url, redis_url, scenario)

    [pending] = after_first
    assert (pending["status"], pending["attempts"], pending["last_status_code"]) == ("pending", 1, 500)
    assert pending["last_error"] == "HTTP 500"
    assert [r.status for r in receiver.requests] == [500, 200]
    assert all(r.verified for r in receiver.requests)
    assert receiver.requests[0].body == receiver.requests[1].body  # the same bytes on every attempt
    assert len({r.headers[DELIVERY_HEADER] for r in receiver.requests}) == 1
    [row] = deliveries(database_url, hook.record["id"])
    assert (row["status"], row["attempts"], row["last_status_code"], row["last_error"]) == (
        "delivered",
        2,
        200,
        None,
    )


def test_an_endpoint_that_times_out_is_retried_then_marked_failed_after_the_last_attempt(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    user = new_user(database_url)
    receiver.script = [1.5, 1.5, 1.5, 1.5]

    async def scenario(stack: Stack) -> tuple[Any, float]:
        hook = await stack.service().create(user_id=user, url=receiver.url, events=["portfolio.cash_moved"])
        receiver.secret = hook.secret
        await stack.commit_events(user, cash_moved())
        await stack.dispatch_all(stack.dispatcher())
        sender = stack.sender(timeout_s=0.3, max_attempts=3)
        started = time.monotonic()
        await drain(sender)
        elapsed = time.monotonic() - started
        assert await sender.send_due() == 0  # failed is final
        await sender.aclose()
        return hook, elapsed

    hook, elapsed = run(database_url, redis_url, scenario)

    [row] = deliveries(database_url, hook.record["id"])
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 3, None)
    assert "timed out" in row["last_error"]
    assert len(receiver.requests) == 3 and all(r.verified for r in receiver.requests)
    assert elapsed < 1.5 * 3  # the sender gave up on each attempt at its own timeout


def test_retries_back_off_exponentially_up_to_the_cap() -> None:
    delays = [backoff_delay(n, initial_s=30, max_s=3600) for n in range(1, 9)]

    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600]


def test_a_dispatcher_reading_the_same_entries_again_still_delivers_once_per_webhook_and_event(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    user = new_user(database_url)

    class CrashAfterCommit(WebhookDispatcher):
        """Queues the deliveries, then dies before the stream messages are acknowledged."""

        async def handle(self, events: list[Event]) -> None:
            await super().handle(events)
            raise RuntimeError("consumer process died before XACK")

    async def scenario(stack: Stack) -> dict[str, Any]:
        hook = await stack.service().create(
            user_id=user, url=receiver.url, events=["portfolio.cash_moved", "portfolio.updates"]
        )
        receiver.secret = hook.secret
        ids = await stack.commit_events(user, cash_moved("1.00"), cash_moved("2.00"), cash_moved("3.00"))
        assert await stack.relay.publish_once() == 3
        crashing = stack.dispatcher(cls=CrashAfterCommit)
        with pytest.raises(RuntimeError):
            await crashing.consume_once()
        restarted = stack.dispatcher()  # the same consumer name: it reads its pending entries first
        assert await restarted.consume_once() == 3
        async with stack.pool.connection() as conn:
            cur = await conn.execute("SELECT min(sequence) AS s FROM events WHERE id = ANY(%s)", (ids,))
            first = await cur.fetchone()
        assert first is not None
        assert await stack.relay.replay(from_sequence=first["s"]) >= 3  # the stream gets them a second time
        while await restarted.consume_once():
            pass
        # Two senders at once: SKIP LOCKED and the lease give each delivery to one of them.
        senders = [stack.sender(), stack.sender()]
        attempts = sum(await asyncio.gather(*(s.send_due() for s in senders)))
        attempts += await drain(senders[0])
        for sender in senders:
            await sender.aclose()
        return {
            "hook": hook,
            "ids": ids,
            "queued": (crashing.enqueued, restarted.enqueued),
            "attempts": attempts,
        }

    out = run(database_url, redis_url, scenario)

    assert out["queued"] == (3, 0)
    rows = deliveries(database_url, out["hook"].record["id"])
    assert sorted(r["event_id"] for r in rows) == sorted(out["ids"])
    assert all((r["status"], r["attempts"]) == ("delivered", 1) for r in rows)
    assert out["attempts"] == 3
    received = [json.loads(r.body)["id"] for r in receiver.requests]
    assert sorted(received) == sorted(str(i) for i in out["ids"])  # each event once, none twice
    assert all(r.verified for r in receiver.requests)


def test_a_private_url_is_refused_at_creation_and_again_at_delivery_after_dns_changes(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    user = new_user(database_url)
    answers = {"hooks.partner.example": "93.184.216.34"}

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        import socket

        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers.get(host, host), port))]

    async def scenario(stack: Stack) -> dict[str, Any]:
        strict = stack.service(allowed_hosts=(), resolve=resolve)
        refused = []
        for url in (
            "https://10.0.0.5/hook",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::ffff:127.0.0.1]/hook",
            receiver.url,  # loopback, not allowed by this operator
        ):
            with pytest.raises(ServiceError) as error:
                await strict.create(user_id=user, url=url, events=["portfolio.updates"])
            refused.append((error.value.status, error.value.code))
        url = f"https://hooks.partner.example:{receiver.port}/hook"
        hook = await strict.create(user_id=user, url=url, events=["portfolio.updates"])
        answers["hooks.partner.example"] = "127.0.0.1"  # DNS rebinding: the name now points inside
        await stack.commit_events(user, cash_moved())
        await stack.dispatch_all(stack.dispatcher())
        sender = stack.sender(allowed_hosts=(), resolve=resolve)
        await drain(sender)
        await sender.aclose()
        return {"refused": refused, "hook": hook, "count": len(await strict.webhooks_of(user_id=user))}

    out = run(database_url, redis_url, scenario)

    assert out["refused"] == [(400, "UNSAFE_WEBHOOK_URL")] * 4
    assert out["count"] == 1  # only the public one was created
    [row] = deliveries(database_url, out["hook"].record["id"])
    assert (row["status"], row["attempts"]) == ("failed", 1)  # refused, not retried
    assert "non-public address (127.0.0.1)" in row["last_error"]
    assert receiver.requests == []


def test_deleting_a_webhook_drops_its_pending_deliveries(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    user = new_user(database_url)

    async def scenario(stack: Stack) -> Any:
        service = stack.service()
        hook = await service.create(user_id=user, url=receiver.url, events=["portfolio.updates"])
        await stack.commit_events(user, cash_moved())
        await stack.dispatch_all(stack.dispatcher())
        await service.delete(user_id=user, webhook_id=hook.record["id"])
        with pytest.raises(ServiceError):
            await service.delete(user_id=user, webhook_id=hook.record["id"])
        sender = stack.sender()
        assert await sender.send_due() == 0
        await sender.aclose()
        return hook

    hook = run(database_url, redis_url, scenario)

    [row] = deliveries(database_url, hook.record["id"])
    assert (row["status"], row["last_error"]) == ("failed", "webhook deleted")
    assert receiver.requests == []


def test_a_disabled_owners_webhooks_send_nothing_queued_before_or_after(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    """Suspending an account stops its data leaving: what was queued fails without being sent,
    and what happens while it is suspended is not queued at all."""
    user = new_user(database_url)

    async def scenario(stack: Stack) -> Any:
        hook = await stack.service().create(user_id=user, url=receiver.url, events=["portfolio.updates"])
        await stack.commit_events(user, cash_moved())
        await stack.dispatch_all(stack.dispatcher())
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "UPDATE users SET disabled_at = now(), disabled_reason = 'compliance hold' WHERE id = %s",
                (user,),
            )
        await stack.commit_events(user, cash_moved())
        await stack.dispatch_all(stack.dispatcher())
        sender = stack.sender()
        assert await sender.send_due() == 1  # the one queued before the suspension, taken and failed
        assert await sender.send_due() == 0
        await sender.aclose()
        return hook

    hook = run(database_url, redis_url, scenario)

    [row] = deliveries(database_url, hook.record["id"])  # nothing queued for the second event
    assert (row["status"], row["last_error"]) == ("failed", "owner disabled")
    assert receiver.requests == []


# The routes -----------------------------------------------------------------------------------------

INCOMING_SECRET = "whsec_custodian_0123456789abcdefghijklmnopqrstuvwxyz"


def _app(stack: Stack, settings: Settings, user_id: uuid.UUID) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(webhook_routes.router)
    resources = Resources(settings)
    resources.pool = stack.pool
    options = WebhookOptions(allowed_hosts=LOOPBACK, incoming_secrets={"custodian": (INCOMING_SECRET,)})

    async def principal() -> Principal:
        return Principal(user_id=user_id, email="hooks@example.com", role=Role.INVESTOR, tier="standard")

    async def resources_dep() -> Resources:
        return resources

    async def service_dep() -> WebhookService:
        return WebhookService(pool=stack.pool, options=options)

    async def ip() -> str:
        return "127.0.0.1"

    app.dependency_overrides[current_principal] = principal
    app.dependency_overrides[get_resources] = resources_dep
    app.dependency_overrides[get_client_ip] = ip
    app.dependency_overrides[webhook_routes.get_webhook_service] = service_dep
    return app


def test_the_routes_show_the_secret_once_list_log_delete_and_receive_signed_webhooks_once(
    database_url: str, redis_url: str, receiver: Receiver
) -> None:
    user = new_user(database_url)

    async def scenario(stack: Stack) -> dict[str, httpx.Response]:
        settings = Settings(database_url=database_url, redis_url=redis_url)
        transport = httpx.ASGITransport(app=_app(stack, settings, user))
        answers: dict[str, httpx.Response] = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            answers["create"] = await api.post(
                "/api/v1/webhooks", json={"url": receiver.url, "events": ["trades.executed"]}
            )
            hook_id = answers["create"].json()["data"]["id"]
            answers["unsafe"] = await api.post(
                "/api/v1/webhooks", json={"url": "https://10.1.1.1/x", "events": ["trades.executed"]}
            )
            answers["unknown"] = await api.post(
                "/api/v1/webhooks", json={"url": receiver.url, "events": ["trades.everything"]}
            )
            answers["list"] = await api.get("/api/v1/webhooks")
            answers["log"] = await api.get(f"/api/v1/webhooks/{hook_id}/deliveries")
            answers["delete"] = await api.delete(f"/api/v1/webhooks/{hook_id}")
            answers["after"] = await api.get("/api/v1/webhooks")

            now = int(time.time())
            body = json.dumps({"id": "exec-1", "order": "A1", "status": "filled"}).encode()
            signed = {signing.SIGNATURE_HEADER: signing.sign(INCOMING_SECRET, body, now)}
            incoming = "/api/v1/webhooks/incoming/custodian"
            answers["in"] = await api.post(incoming, content=body, headers=signed)
            answers["in_again"] = await api.post(incoming, content=body, headers=signed)
            old = {signing.SIGNATURE_HEADER: signing.sign(INCOMING_SECRET, body, now - 301)}
            answers["in_old"] = await api.post(incoming, content=body, headers=old)
            forged = {
                signing.SIGNATURE_HEADER: signing.sign("whsec_wrong_0123456789abcdefghijklmnop", body, now)
            }
            answers["in_forged"] = await api.post(incoming, content=body, headers=forged)
            answers["in_unsigned"] = await api.post(incoming, content=body)
            answers["in_unknown"] = await api.post(
                "/api/v1/webhooks/incoming/nobody", content=body, headers=signed
            )
            no_id = json.dumps({"order": "A1"}).encode()
            answers["in_no_id"] = await api.post(
                incoming,
                content=no_id,
                headers={signing.SIGNATURE_HEADER: signing.sign(INCOMING_SECRET, no_id, now)},
            )
        return answers

    answers = run(database_url, redis_url, scenario)

    created = answers["create"]
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    data = created.json()["data"]
    assert data["secret"].startswith("whsec_") and data["events"] == ["trades.executed"]
    assert answers["unsafe"].status_code == 400
    assert answers["unsafe"].json()["error"]["code"] == "UNSAFE_WEBHOOK_URL"
    assert answers["unknown"].status_code == 400
    assert answers["unknown"].json()["error"]["details"]["unknown"] == ["trades.everything"]
    listed = answers["list"].json()["data"]
    assert [h["id"] for h in listed] == [data["id"]] and "secret" not in listed[0]
    assert data["secret"] not in answers["list"].text
    assert answers["log"].status_code == 200 and answers["log"].json()["data"] == []
    assert answers["delete"].status_code == 204
    assert answers["after"].json()["data"] == []

    assert answers["in"].status_code == 202, answers["in"].text
    assert answers["in"].json()["data"] == {"source": "custodian", "id": "exec-1", "received": True}
    codes = {
        name: (answers[name].status_code, answers[name].json()["error"]["code"])
        for name in ("in_again", "in_old", "in_forged", "in_unsigned", "in_unknown", "in_no_id")
    }
    assert codes == {
        "in_again": (409, "WEBHOOK_REPLAYED"),
        "in_old": (401, "WEBHOOK_REPLAYED"),
        "in_forged": (401, "INVALID_SIGNATURE"),
        "in_unsigned": (401, "INVALID_SIGNATURE"),
        "in_unknown": (404, "NOT_FOUND"),
        "in_no_id": (400, "VALIDATION_ERROR"),
    }
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            """SELECT payload FROM incoming_webhook_receipts
               WHERE source = 'custodian' AND delivery_id = 'exec-1'"""
        ).fetchone()
    assert stored == ({"id": "exec-1", "order": "A1", "status": "filled"},)
