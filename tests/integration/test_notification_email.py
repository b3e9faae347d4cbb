"""Notification e-mails, delivered over SMTP to a real server (aiosmtpd) on a loopback port.

The platform makes the notifications (an order fills through the shard and the paper broker, the
event bus's ``notifications`` group writes the notification and queues its e-mail). The API deployed
for the test session has no SMTP server (its port is only known once this module starts one), so
the mailer here is the only one sending: the real :class:`NotificationMailer` on the session's
database, pointed at this module's server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port
from tests.integration.people import PASSWORD, Investor, data, error
from wealthalloc.config import Settings
from wealthalloc.events.notifications import NotificationMailer, SmtpOptions
from wealthalloc.storage.postgres import async_pool

pytestmark = pytest.mark.integration

WAIT_S = 30.0
SENDER = "WealthAlloc <notifications@wealthalloc.test>"


@dataclass
class Mailbox:
    """What the SMTP server accepted, and addresses it answers "451 try later" a number of times."""

    messages: list[tuple[str, Message]] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)
    reject: set[str] = field(default_factory=set)
    refused: int = 0
    port: int = 0

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.reject:
            return "550 5.1.1 No such mailbox"
        if self.refuse.get(address, 0) > 0:
            self.refuse[address] -= 1
            self.refused += 1
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=default_policy)
        for address in envelope.rcpt_tos:
            self.messages.append((address, message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        return [message for rcpt, message in self.messages if rcpt == address]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


class Mailer:
    """The notification mailer on the session's database, run pass by pass from the test."""

    def __init__(self, database_url: str, port: int) -> None:
        self._runner = asyncio.Runner()
        self._pool = async_pool(Settings(database_url=database_url), name="test-mailer")
        self._runner.run(self._pool.open())
        options = SmtpOptions(
            host="127.0.0.1", port=port, sender=SENDER, starttls=False, timeout_s=5, retry_initial_s=0.2
        )
        self.mailer = NotificationMailer(pool=self._pool, options=options)

    def deliver_until(self, done: Any, timeout: float = WAIT_S) -> None:
        """Run the mailer until ``done()`` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not delivered in {timeout} s; mailer {self.mailer.counts}")
            if not self._runner.run(self.mailer.send_due()):
                time.sleep(0.1)

    def settle(self, passes: int = 3) -> None:
        """A few more passes: whatever was still due has had its chance to be sent."""
        for _ in range(passes):
            self._runner.run(self.mailer.send_due())

    def close(self) -> None:
        self._runner.run(self._pool.close())
        self._runner.close()


@pytest.fixture(scope="module")
def mailer(database_url: str, mailbox: Mailbox, api_url: str) -> Iterator[Mailer]:
    running = Mailer(database_url, mailbox.port)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def notification_of(person: Investor, kind: str) -> dict[str, Any]:
    """The person's first notification of ``kind``, once the platform has made it (bounded wait)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = [n for n in data(person.get("/api/v1/notifications")) if n["kind"] == kind]
        if found:
            return found[0]  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {kind} notification in {WAIT_S} s")
        time.sleep(0.2)


def fill(person: Investor) -> dict[str, Any]:
    portfolio = person.funded("5000.00")
    order = data(person.trade(portfolio["id"], symbol="AAPL", side="buy", quantity="3"), status=201)
    assert order["status"] == "filled", order
    return notification_of(person, "trade_fill")


def change_password(person: Investor) -> None:
    changed = person.http.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": f"a new passphrase {uuid.uuid4().hex[:8]}"},
        headers=person.headers,
    )
    assert changed.status_code == 204, changed.text


def email_state(database_url: str, notification_id: str) -> dict[str, Any]:
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute(
            """SELECT email_wanted, emailed_at, email_attempts, email_error, email_next_at
               FROM notifications WHERE id = %s""",
            (notification_id,),
        ).fetchone()
    assert row is not None
    return row


def test_an_order_fill_sends_one_email_to_the_person_with_its_title_as_subject(
    investor: Investor, mailbox: Mailbox, mailer: Mailer, database_url: str
) -> None:
    notification = fill(investor)

    mailer.deliver_until(lambda: mailbox.to(investor.email))
    mailer.settle()

    [message] = mailbox.to(investor.email)  # the deposit's notification is not e-mailed by default
    assert message["Subject"] == notification["title"]
    assert notification["title"].startswith("Bought 3 AAPL at $")
    assert message["From"] == SENDER
    assert message["Message-ID"].strip() == f"<notification-{notification['id']}@wealthalloc.test>"
    assert notification["body"] in message.get_content()
    state = email_state(database_url, notification["id"])
    assert state["emailed_at"] is not None and state["email_attempts"] == 1 and state["email_next_at"] is None


def test_a_kind_turned_off_for_email_sends_none(
    investor: Investor, mailbox: Mailbox, mailer: Mailer, database_url: str
) -> None:
    turned_off = investor.http.put(
        "/api/v1/me/notification-preferences",
        json={"kinds": {"trade_fill": {"email": False}}},
        headers=investor.headers,
    )
    assert turned_off.status_code == 200, turned_off.text

    notification = fill(investor)
    change_password(investor)  # a mail that does go, so the mailer has demonstrably run past the fill
    mailer.deliver_until(lambda: mailbox.to(investor.email))
    mailer.settle()

    assert [m["Subject"] for m in mailbox.to(investor.email)] == ["Your password was changed"]
    assert email_state(database_url, notification["id"])["email_wanted"] is False


def test_a_security_event_always_sends_even_to_someone_who_tried_to_turn_it_off(
    investor: Investor, mailbox: Mailbox, mailer: Mailer
) -> None:
    refused = investor.http.put(
        "/api/v1/me/notification-preferences",
        json={"kinds": {"security": {"email": False}}},
        headers=investor.headers,
    )
    error(refused, 400, "VALIDATION_ERROR")

    change_password(investor)
    mailer.deliver_until(lambda: mailbox.to(investor.email))
    mailer.settle()

    [message] = mailbox.to(investor.email)
    assert message["Subject"] == "Your password was changed"
    assert "they stay on" in message.get_content()


def test_a_server_that_refuses_then_accepts_gets_the_email_exactly_once(
    investor: Investor, mailbox: Mailbox, mailer: Mailer, database_url: str
) -> None:
    mailbox.refuse[investor.email] = 2
    refused_before = mailbox.refused

    notification = fill(investor)
    mailer.deliver_until(lambda: mailbox.to(investor.email))
    mailer.settle()

    assert mailbox.refused - refused_before == 2
    assert len(mailbox.to(investor.email)) == 1
    state = email_state(database_url, notification["id"])
    assert state["emailed_at"] is not None and state["email_attempts"] == 3
    assert state["email_error"] is None


def test_a_mailbox_the_server_says_does_not_exist_is_not_tried_again(
    investor: Investor, mailbox: Mailbox, mailer: Mailer, database_url: str
) -> None:
    mailbox.reject.add(investor.email)
    notification = fill(investor)

    mailer.deliver_until(lambda: email_state(database_url, notification["id"])["email_next_at"] is None)
    mailer.settle()

    state = email_state(database_url, notification["id"])
    assert state["emailed_at"] is None and state["email_attempts"] == 1
    assert "550" in state["email_error"]
    assert mailbox.to(investor.email) == []
