"""Webhooks: events delivered to users' URLs, signed, retried, logged; incoming ones verified.

Outgoing, in two independent loops so a slow receiver never holds up the streams:

1. :class:`WebhookDispatcher` is the ``webhooks`` consumer group on the event
   streams. For each event it queues one delivery per matching subscription in
   PostgreSQL (idempotent by (webhook, event)), then the stream messages are
   acknowledged. A dispatcher that dies mid-batch reads the same messages again
   and queues nothing twice.
2. :class:`WebhookSender` claims due deliveries, checks the URL again (DNS may
   have changed since the subscription was made), signs the body
   (:mod:`wealthalloc.events.signing`), POSTs it to the checked addresses
   without following redirects, and records the outcome: delivered on a 2xx,
   retried with exponential backoff otherwise, failed after the last attempt.
   A delivery acknowledged with a 2xx is never sent again.

A subscription matches an event when its ``events`` list names the event's
topic or type, and it belongs to the event's user. An event that has no user
(prices) reaches every subscriber only when its topic is a broadcast topic.

Incoming (:class:`WebhookService.receive`): a partner signs with the same
scheme; the signature must match a secret of that source and be at most five
minutes old, and a message id seen before is refused as a replay.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import random
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from wealthalloc.brokers import incoming
from wealthalloc.config import VERSION, Settings
from wealthalloc.errors import ServiceError
from wealthalloc.events import signing
from wealthalloc.events.consumers import StreamConsumer
from wealthalloc.events.relay import TOPICS, Event
from wealthalloc.events.schemas import event_types
from wealthalloc.events.url_guard import Allowance, Resolver, SafeUrl, UnresolvableHost, UnsafeUrl, check_url
from wealthalloc.logging import get_logger
from wealthalloc.storage import webhooks as store
from wealthalloc.storage.audit import append_audit, new_entry
from wealthalloc.storage.postgres import AsyncPool

log = get_logger(__name__)

GROUP = "webhooks"
# Events without a user that every subscriber of the topic may receive: market data is public.
BROADCAST_TOPICS = frozenset({"prices.updated"})
EVENT_HEADER = "WealthAlloc-Event"
DELIVERY_HEADER = "WealthAlloc-Delivery"
USER_AGENT = f"WealthAlloc-Webhooks/{VERSION}"
SECRET_PREFIX = "whsec_"
# A claimed delivery stays leased this long past its worst-case sending time before another sender
# may take it over.
LEASE_MARGIN_S = 30.0
MAX_INCOMING_ID_LENGTH = 200


def new_secret() -> str:
    """A signing secret: 256 random bits, prefixed so it is recognisable in a leak scan."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def delivery_body(event: Event) -> dict[str, Any]:
    """The JSON document a receiver gets for ``event``; its ``id`` is the event id (deduplicate on it)."""
    return {
        "id": str(event.id),
        "type": event.type,
        "version": event.version,
        "topic": event.topic,
        "created_at": event.occurred_at.isoformat(),
        "aggregate_id": str(event.aggregate_id) if event.aggregate_id else None,
        "data": dict(event.payload),
    }


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The bytes sent and signed: compact, keys sorted, so every attempt sends the same bytes."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def backoff_delay(attempt: int, *, initial_s: float, max_s: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
    return float(min(max_s, initial_s * (2 ** max(0, attempt - 1))))


@dataclass(frozen=True)
class WebhookOptions:
    """Everything webhooks can be tuned by, in one place; built from ``Settings`` by :meth:`from_settings`."""

    allowed_hosts: tuple[str, ...] = ()
    timeout_s: float = 10.0
    max_attempts: int = 6
    retry_initial_s: float = 30.0
    retry_max_s: float = 3600.0
    max_per_user: int = 20
    incoming_secrets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    incoming_tolerance_s: int = signing.DEFAULT_TOLERANCE_S

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookOptions:
        return cls(
            allowed_hosts=tuple(settings.webhook_allowed_hosts),
            timeout_s=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            retry_initial_s=settings.webhook_retry_initial_seconds,
            retry_max_s=settings.webhook_retry_max_seconds,
            max_per_user=settings.webhook_max_per_user,
            incoming_secrets=_secrets_by_source(settings.webhook_incoming_secrets),
            incoming_tolerance_s=settings.webhook_incoming_tolerance_seconds,
        )


def _secrets_by_source(raw: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """``{source: secret}`` or ``{source: [new, old]}``, plain or ``SecretStr``, as plain tuples."""

    def plain(value: Any) -> str:
        reveal = getattr(value, "get_secret_value", None)
        return str(reveal() if callable(reveal) else value)

    found: dict[str, tuple[str, ...]] = {}
    for source, value in raw.items():
        values = value if isinstance(value, list | tuple) else [value]
        kept = tuple(s for s in (plain(v) for v in values) if s)
        if kept:
            found[str(source)] = kept
    return found


# Outgoing: from the streams to the delivery queue ---------------------------------------------------


class WebhookDispatcher(StreamConsumer):
    """The ``webhooks`` consumer group: queues a delivery per matching subscription, in one transaction."""

    group = GROUP

    def __init__(
        self, *, pool: AsyncPool, broadcast_topics: frozenset[str] = BROADCAST_TOPICS, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._pool = pool
        self._broadcast = broadcast_topics
        self.enqueued = 0

    async def handle(self, events: list[Event]) -> None:
        outgoing = [
            store.Outgoing(
                event_id=event.id,
                event_type=event.type,
                topic=event.topic,
                user_id=event.user_id,
                occurred_at=event.occurred_at,
                body=delivery_body(event),
                broadcast=event.topic in self._broadcast,
            )
            for event in sorted(events, key=lambda e: e.sequence)
        ]
        async with self._pool.connection() as conn, conn.transaction():
            self.enqueued += await store.enqueue_deliveries(conn, outgoing)


# Outgoing: from the delivery queue to the receivers -------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: delivered, or an error and whether trying again can help."""

    delivered: bool
    status_code: int | None = None
    error: str = ""
    retryable: bool = True


class WebhookSender:
    """Sends due deliveries: claim, re-check the URL, sign, POST, record; retried with backoff."""

    def __init__(
        self,
        *,
        pool: AsyncPool,
        allowed_hosts: Sequence[str] = (),
        timeout_s: float = 10.0,
        max_attempts: int = 6,
        retry_initial_s: float = 30.0,
        retry_max_s: float = 3600.0,
        jitter: float = 0.1,
        batch: int = 50,
        concurrency: int = 16,
        client: httpx.AsyncClient | None = None,
        resolve: Resolver = socket.getaddrinfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._pool = pool
        self._allowance = Allowance.parse(allowed_hosts)
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._jitter = jitter
        self._batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        # A claimed delivery may wait for a slot, then resolve and send, each bounded by the timeout;
        # the lease covers that worst case so no other sender takes it over while it is in flight.
        self._lease_s = 2 * timeout_s * math.ceil(batch / concurrency) + LEASE_MARGIN_S
        self._client = client
        self._owns_client = client is None
        self._resolve = resolve
        self._clock = clock
        self.counts = {"delivered": 0, "retried": 0, "failed": 0}

    @classmethod
    def from_options(cls, *, pool: AsyncPool, options: WebhookOptions, **kwargs: Any) -> WebhookSender:
        return cls(
            pool=pool,
            allowed_hosts=options.allowed_hosts,
            timeout_s=options.timeout_s,
            max_attempts=options.max_attempts,
            retry_initial_s=options.retry_initial_s,
            retry_max_s=options.retry_max_s,
            **kwargs,
        )

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: no proxy from the environment may carry requests somewhere unchecked.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s),
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def send_due(self) -> int:
        """Attempt every delivery due now (up to the batch size); the number attempted."""
        async with self._pool.connection() as conn, conn.transaction():
            claimed = await store.claim_due(conn, limit=self._batch, lease_s=self._lease_s)
        results = await asyncio.gather(*(self._deliver(row) for row in claimed), return_exceptions=True)
        for row, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                # Most likely the outcome could not be recorded: the lease runs out and the delivery is
                # tried again, which receivers absorb by deduplicating on the event id.
                log.warning("webhook_delivery_unrecorded", delivery_id=str(row["id"]), error=repr(result))
        return len(claimed)

    async def _deliver(self, row: Mapping[str, Any]) -> None:
        async with self._slots:
            outcome = await self._attempt(row)
        attempt = int(row["attempts"])
        async with self._pool.connection() as conn, conn.transaction():
            if outcome.delivered:
                assert outcome.status_code is not None
                await store.mark_delivered(
                    conn, delivery_id=row["id"], attempt=attempt, status_code=outcome.status_code
                )
                self.counts["delivered"] += 1
            elif outcome.retryable and attempt < self._max_attempts:
                await store.mark_retry(
                    conn,
                    delivery_id=row["id"],
                    attempt=attempt,
                    delay_s=self._delay(attempt),
                    status_code=outcome.status_code,
                    error=outcome.error,
                )
                self.counts["retried"] += 1
            else:
                await store.mark_failed(
                    conn,
                    delivery_id=row["id"],
                    attempt=attempt,
                    status_code=outcome.status_code,
                    error=outcome.error,
                )
                self.counts["failed"] += 1
                log.warning(
                    "webhook_delivery_failed",
                    delivery_id=str(row["id"]),
                    webhook_id=str(row["webhook_id"]),
                    attempts=attempt,
                    error=outcome.error,
                )

    def _delay(self, attempt: int) -> float:
        delay = backoff_delay(attempt, initial_s=self._retry_initial_s, max_s=self._retry_max_s)
        # Spread retries out so that receivers coming back up are not hit by all of them at once.
        return delay * (1 + random.uniform(0, self._jitter)) if self._jitter > 0 else delay

    async def _attempt(self, row: Mapping[str, Any]) -> Outcome:
        if not row["active"] or row["deleted_at"] is not None:
            return Outcome(False, error="webhook deleted", retryable=False)
        if row["owner_disabled_at"] is not None:
            return Outcome(False, error="owner disabled", retryable=False)
        try:
            async with asyncio.timeout(self._timeout_s):
                target = await asyncio.to_thread(
                    check_url, row["url"], allowed=self._allowance, resolve=self._resolve
                )
        except TimeoutError:
            return Outcome(False, error=f"resolving the host took more than {self._timeout_s:g} s")
        except UnresolvableHost as exc:
            return Outcome(False, error=exc.reason)
        except UnsafeUrl as exc:
            return Outcome(False, error=f"refused: {exc.reason}", retryable=False)
        body = encode_body(row["body"])
        headers = {
            "Content-Type": "application/json",
            signing.SIGNATURE_HEADER: signing.sign(row["secret"], body, int(self._clock())),
            EVENT_HEADER: str(row["event_type"]),
            DELIVERY_HEADER: str(row["id"]),
        }
        try:
            async with asyncio.timeout(self._timeout_s):
                status = await self._post(target, body, headers)
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(False, error=f"timed out after {self._timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[: store.MAX_ERROR_LENGTH])
        if 200 <= status < 300:
            return Outcome(True, status_code=status)
        if 300 <= status < 400:
            return Outcome(False, status_code=status, error=f"HTTP {status}: redirects are not followed")
        return Outcome(False, status_code=status, error=f"HTTP {status}")

    async def _post(self, target: SafeUrl, body: bytes, headers: dict[str, str]) -> int:
        """POST to the addresses the guard checked, never to a fresh DNS answer; the status code.

        The URL's host is replaced by a checked address; the Host header and (for https) the TLS
        server name keep the original host name, so virtual hosting and certificates still work.
        Only a failure to connect moves on to the next address.
        """
        parts = urlsplit(target.url)
        default_port = 443 if target.scheme == "https" else 80
        host_header = _bracketed(target.host)
        if target.port != default_port:
            host_header += f":{target.port}"
        extensions: dict[str, Any] = {}
        if target.scheme == "https" and not _is_ip(target.host):
            extensions["sni_hostname"] = target.host
        last_error: httpx.HTTPError | None = None
        for address in target.addresses:
            netloc = f"{_bracketed(str(address))}:{target.port}"
            url = urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, ""))
            try:
                async with self.client.stream(
                    "POST",
                    url,
                    content=body,
                    headers={**headers, "Host": host_header},
                    extensions=extensions,
                ) as response:
                    return response.status_code  # the body is not read: only the status matters
            except httpx.ConnectError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _without_query(url: str) -> str:
    """The URL as the audit trail keeps it: a token in the query string stays out of the trail."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# The service behind the routes ------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedWebhook:
    """A new subscription and its secret: the only time the secret leaves the service."""

    record: dict[str, Any]
    secret: str


def subscribable() -> frozenset[str]:
    """What a subscription's ``events`` may name: a topic, or an event type with a payload model."""
    return frozenset(TOPICS) | event_types()


class WebhookService:
    """Subscriptions, their delivery log and incoming webhooks, for the API routes."""

    def __init__(
        self,
        *,
        pool: AsyncPool,
        options: WebhookOptions,
        resolve: Resolver = socket.getaddrinfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._options = options
        self._allowance = Allowance.parse(options.allowed_hosts)
        self._resolve = resolve
        self._clock = clock

    async def create(
        self, *, user_id: uuid.UUID, url: str, events: Sequence[str], ip: str | None = None
    ) -> CreatedWebhook:
        """Subscribe ``url`` to ``events``; refused (400) for an unsafe URL or an unknown event name."""
        wanted = sorted({e.strip() for e in events if e.strip()})
        unknown = sorted(set(wanted) - subscribable())
        if not wanted or unknown:
            raise ServiceError(
                400,
                "VALIDATION_ERROR",
                "Name at least one known topic or event type." if not unknown else "Unknown events.",
                {"unknown": unknown, "known": sorted(subscribable())},
            )
        try:
            await asyncio.to_thread(check_url, url, allowed=self._allowance, resolve=self._resolve)
        except UnsafeUrl as exc:
            raise ServiceError(400, "UNSAFE_WEBHOOK_URL", f"This URL cannot be used: {exc.reason}.") from exc
        secret = new_secret()
        async with self._pool.connection() as conn, conn.transaction():
            # Serialise one user's creations so two concurrent requests cannot pass the limit together.
            await conn.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))
            if await store.count_webhooks(conn, user_id=user_id) >= self._options.max_per_user:
                raise ServiceError(
                    409,
                    "TOO_MANY_WEBHOOKS",
                    f"You have {self._options.max_per_user} webhooks already; delete one first.",
                )
            record = await store.insert_webhook(conn, user_id=user_id, url=url, events=wanted, secret=secret)
            await append_audit(
                conn,
                new_entry(
                    "webhook.created",
                    actor_id=user_id,
                    subject=f"webhook:{record['id']}",
                    details={"url": _without_query(url), "events": wanted},
                    ip=ip,
                ),
            )
        return CreatedWebhook(record=record, secret=secret)

    async def webhooks_of(self, *, user_id: uuid.UUID) -> list[dict[str, Any]]:
        """The user's live subscriptions, never with their secrets."""
        async with self._pool.connection() as conn:
            return await store.webhooks_of(conn, user_id=user_id)

    async def delete(self, *, user_id: uuid.UUID, webhook_id: uuid.UUID, ip: str | None = None) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            if not await store.delete_webhook(conn, user_id=user_id, webhook_id=webhook_id):
                raise ServiceError(404, "NOT_FOUND", "No such webhook.")
            await append_audit(
                conn,
                new_entry("webhook.deleted", actor_id=user_id, subject=f"webhook:{webhook_id}", ip=ip),
            )

    async def deliveries(
        self,
        *,
        user_id: uuid.UUID,
        webhook_id: uuid.UUID,
        before_sequence: int | None,
        limit: int,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """The delivery log of one of the user's webhooks (deleted ones included), newest first."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM webhooks WHERE id = %s AND user_id = %s", (webhook_id, user_id)
            )
            if await cur.fetchone() is None:
                raise ServiceError(404, "NOT_FOUND", "No such webhook.")
            return await store.delivery_log(
                conn,
                user_id=user_id,
                webhook_id=webhook_id,
                before_sequence=before_sequence,
                limit=limit,
                status=status,
            )

    async def receive(self, *, source: str, signature: str | None, body: bytes) -> dict[str, Any]:
        """Accept one incoming webhook from ``source`` once; refuse bad signatures (401) and replays (409).

        The message id is the ``id`` of the JSON body, which the signature covers, so a replay
        cannot pass as new by changing a header.
        """
        keys = self._options.incoming_secrets.get(source)
        if not keys:
            raise ServiceError(404, "NOT_FOUND", f"No incoming webhook source {source!r}.")
        try:
            signed_at = signing.verify(
                keys, signature, body, now=self._clock(), tolerance_s=self._options.incoming_tolerance_s
            )
        except signing.SignatureTooOld as exc:
            raise ServiceError(401, "WEBHOOK_REPLAYED", f"Refused as a replay: {exc}.") from exc
        except signing.SignatureError as exc:
            raise ServiceError(
                401, "INVALID_SIGNATURE", f"The webhook signature is not valid: {exc}."
            ) from exc
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise ServiceError(400, "MALFORMED_JSON", "The webhook body is not valid JSON.") from exc
        message_id = document.get("id") if isinstance(document, dict) else None
        if not isinstance(message_id, str | int) or not 0 < len(str(message_id)) <= MAX_INCOMING_ID_LENGTH:
            raise ServiceError(
                400, "VALIDATION_ERROR", "The webhook body must be a JSON object with an id.", {"field": "id"}
            )
        if source == incoming.SOURCE:
            try:
                incoming.parse(document)
            except incoming.MalformedMessage as exc:
                raise ServiceError(
                    400,
                    "VALIDATION_ERROR",
                    f"The broker message is not valid: {exc}.",
                    {"fields": exc.fields},
                ) from exc
        async with self._pool.connection() as conn, conn.transaction():
            fresh = await store.record_incoming_receipt(
                conn,
                source=source,
                delivery_id=str(message_id),
                signed_at=datetime.fromtimestamp(signed_at, UTC),
                payload=document,
            )
        if not fresh:
            raise ServiceError(
                409, "WEBHOOK_REPLAYED", f"Message {message_id} from {source} was already received."
            )
        return {"source": source, "id": str(message_id), "received": True}
