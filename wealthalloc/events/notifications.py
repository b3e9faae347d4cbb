"""Notifications from the event streams, and their e-mails.

Two independent loops, as for webhooks, so a slow mail server never holds up the streams:

1. :class:`NotificationWriter` is the ``notifications`` consumer group on the topics that carry
   news for people (fills, rejections, price alerts, harvests, recommendations, cash movements,
   account security). For each event it drafts the notification
   (:func:`wealthalloc.notifications.draft_for`), looks up where the person wants that kind, and
   inserts it with its ``notification.created`` event in one transaction per batch. The insert
   does nothing for a (user, source) pair already there, so a batch read again after a crash
   makes no second notification.
2. :class:`NotificationMailer` sends the e-mails that are due through SMTP (``smtplib`` in a
   worker thread). It claims each notification for a lease, sends, and records ``emailed_at``;
   a temporary failure (a 4xx answer, a dropped connection) is tried again with a doubling delay
   up to ``max_attempts``, a permanent one (5xx) is not. The mail is sent once unless the mailer
   dies between the server's acceptance and its record of it; then the copy carries the same
   Message-ID. It runs only when ``smtp_host`` is set; notifications still queue their e-mails
   meanwhile, and those older than ``max_age_s`` when it starts are given up, not sent late.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from wealthalloc.config import Settings
from wealthalloc.events.consumers import StreamConsumer
from wealthalloc.events.relay import Event
from wealthalloc.logging import get_logger
from wealthalloc.notifications import channels_for, compose, draft_for
from wealthalloc.storage import notifications as store
from wealthalloc.storage.postgres import AsyncPool

log = get_logger(__name__)

GROUP = "notifications"
NOTIFIED_TOPICS: tuple[str, ...] = (
    "trades.executed",
    "portfolio.updates",
    "prices.updated",
    "tax_harvests.identified",
    "recommendations.generated",
    "accounts.notices",
)
LEASE_MARGIN_S = 30.0


class NotificationWriter(StreamConsumer):
    """The ``notifications`` group: one notification per event that is news to its person."""

    group = GROUP

    def __init__(self, *, pool: AsyncPool, **kwargs: Any) -> None:
        kwargs.setdefault("topics", NOTIFIED_TOPICS)
        super().__init__(**kwargs)
        self._pool = pool
        self.created = 0

    async def handle(self, events: list[Event]) -> None:
        drafts = []
        stamped: dict[uuid.UUID, datetime] = {}
        for event in sorted(events, key=lambda e: e.sequence):
            if event.user_id is None:
                continue  # prices and other broadcasts are nobody's news
            try:
                draft = draft_for(event.type, event.payload, event_id=event.id, occurred_at=event.occurred_at)
            except (KeyError, ValueError) as exc:
                # A payload the wording cannot read must not stop every later event behind it.
                log.warning(
                    "notification_not_drafted", event_id=str(event.id), type=event.type, error=str(exc)
                )
                continue
            if draft is not None:
                # Events of one transaction share its time: a microsecond apart, in stream order,
                # so the newest-first list never shows them in random order.
                at = event.occurred_at
                last = stamped.get(event.user_id)
                if last is not None and at <= last:
                    at = last + timedelta(microseconds=1)
                stamped[event.user_id] = at
                drafts.append((event.user_id, draft, at))
        if not drafts:
            return
        async with self._pool.connection() as conn, conn.transaction():
            preferences = await store.preferences_of_many(conn, sorted({user for user, _, _ in drafts}))
            wanted = []
            for user_id, draft, occurred_at in drafts:
                channels = channels_for(draft.kind, preferences.get(user_id, {}))
                if channels.in_app or channels.email:
                    wanted.append(store.Wanted(user_id, draft, channels.in_app, channels.email, occurred_at))
            self.created += len(await store.insert_notifications(conn, wanted))


@dataclass(frozen=True)
class SmtpOptions:
    """Where and how e-mail is sent; built from ``Settings`` by :meth:`from_settings`."""

    host: str
    port: int = 587
    username: str = ""
    password: str = ""
    sender: str = "WealthAlloc <notifications@localhost>"
    starttls: bool = True
    timeout_s: float = 10.0
    max_attempts: int = 5
    retry_initial_s: float = 30.0
    retry_max_s: float = 3600.0
    max_age_s: float = 86_400.0
    base_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpOptions:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            sender=settings.smtp_from,
            starttls=settings.smtp_starttls,
            timeout_s=settings.smtp_timeout_seconds,
            max_attempts=settings.smtp_max_attempts,
            retry_initial_s=settings.smtp_retry_initial_seconds,
            retry_max_s=settings.smtp_retry_max_seconds,
            max_age_s=settings.smtp_max_age_seconds,
            base_url=settings.public_base_url,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class MailOutcome:
    sent: bool
    error: str = ""
    retryable: bool = True


def retry_delay(attempt: int, *, initial_s: float, max_s: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
    return float(min(max_s, initial_s * (2 ** max(0, attempt - 1))))


class NotificationMailer:
    """Sends due notification e-mails: claim, compose, send over one SMTP session per batch, record."""

    def __init__(self, *, pool: AsyncPool, options: SmtpOptions, batch: int = 20) -> None:
        if options.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._pool = pool
        self._options = options
        self._batch = batch
        # Every message of a batch may take the timeout to send; the lease outlasts that.
        self._lease_s = options.timeout_s * (batch + 2) + LEASE_MARGIN_S
        self.counts = {"sent": 0, "retried": 0, "failed": 0}

    async def send_due(self) -> int:
        """Send one batch of due e-mails; the number that were sent (0: none was due or all failed)."""
        if not self._options.enabled:
            return 0
        async with self._pool.connection() as conn, conn.transaction():
            rows = await store.claim_due_mail(
                conn, limit=self._batch, lease_s=self._lease_s, max_age_s=self._options.max_age_s
            )
        if not rows:
            return 0
        messages = [
            compose(row, to=row["address"], sender=self._options.sender, base_url=self._options.base_url)
            for row in rows
        ]
        outcomes = await asyncio.to_thread(self._send_all, messages)
        sent = 0
        async with self._pool.connection() as conn, conn.transaction():
            for row, outcome in zip(rows, outcomes, strict=True):
                sent += await self._record(conn, row, outcome)
        return sent

    async def _record(self, conn: Any, row: dict[str, Any], outcome: MailOutcome) -> int:
        notification_id: uuid.UUID = row["id"]
        if outcome.sent:
            await store.mark_emailed(conn, notification_id)
            self.counts["sent"] += 1
            return 1
        attempt = int(row["email_attempts"])
        if outcome.retryable and attempt < self._options.max_attempts:
            delay = retry_delay(
                attempt, initial_s=self._options.retry_initial_s, max_s=self._options.retry_max_s
            )
            await store.mark_email_failed(conn, notification_id, error=outcome.error, retry_in_s=delay)
            self.counts["retried"] += 1
            log.info("notification_mail_retry", notification_id=str(notification_id), attempt=attempt)
        else:
            await store.mark_email_failed(conn, notification_id, error=outcome.error, retry_in_s=None)
            self.counts["failed"] += 1
            log.warning("notification_mail_failed", notification_id=str(notification_id), error=outcome.error)
        return 0

    def _send_all(self, messages: Sequence[EmailMessage]) -> list[MailOutcome]:
        """Each message's outcome; one SMTP session for the batch (runs in a worker thread)."""
        try:
            smtp = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            # No session (server down, TLS or login refused): a setting or an outage, never the
            # message's fault, so every message is tried again later.
            error = f"{type(exc).__name__}: {exc}"[: store.MAX_ERROR]
            return [MailOutcome(sent=False, error=error)] * len(messages)
        outcomes: list[MailOutcome] = []
        try:
            for message in messages:
                try:
                    smtp.send_message(message)
                    outcomes.append(MailOutcome(sent=True))
                except smtplib.SMTPServerDisconnected as exc:
                    # The session is gone: this one and the rest are tried again later.
                    outcomes += [outcome_of(exc)] * (len(messages) - len(outcomes))
                    break
                except (smtplib.SMTPException, OSError) as exc:
                    outcomes.append(outcome_of(exc))
                    try:
                        smtp.rset()  # a refused message must not leave the session mid-transaction
                    except (smtplib.SMTPException, OSError):
                        outcomes += [outcome_of(exc)] * (len(messages) - len(outcomes))
                        break
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
        return outcomes

    def _connect(self) -> smtplib.SMTP:
        options = self._options
        smtp = smtplib.SMTP(options.host, options.port, timeout=options.timeout_s)
        try:
            smtp.ehlo()
            if options.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if options.username:
                smtp.login(options.username, options.password)
        except BaseException:
            smtp.close()
            raise
        return smtp


def outcome_of(exc: BaseException) -> MailOutcome:
    """What a failure means for the next attempt: a 5xx answer is final, anything else may pass later."""
    code: int | None = None
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [answer[0] for answer in exc.recipients.values()]
        code = max(codes) if codes else None
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
    text = f"{type(exc).__name__}: {exc}"[: store.MAX_ERROR]
    return MailOutcome(sent=False, error=text, retryable=code is None or code < 500)
