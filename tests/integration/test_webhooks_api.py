"""Outgoing webhooks end to end: a change in a shard, its outbox event, the relay, the webhooks
consumer group, and a signed POST to a receiver the subscriber runs (here on loopback, which the
test deployment allows; production refuses it)."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.people import Investor
from wealthalloc.events.signing import SIGNATURE_HEADER, verify

pytestmark = pytest.mark.integration


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[dict[str, str], bytes]] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def wait_until(condition: Any, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_subscribed_event_arrives_once_signed_and_shows_in_the_delivery_log(
    investor: Investor, receiver: Receiver
) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    created = investor.post("/api/v1/webhooks", {"url": url, "events": ["portfolio.cash_moved"]})
    assert created.status_code == 201, created.text
    hook = created.json()["data"]
    secret = hook["secret"]
    assert created.headers["Cache-Control"] == "no-store"
    listed = investor.get("/api/v1/webhooks").json()["data"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]

    p = investor.portfolio()
    key = str(uuid.uuid4())
    assert investor.deposit(p["id"], "125.00", key).status_code == 201
    assert investor.deposit(p["id"], "125.00", key).status_code == 201  # the same deposit, replayed
    assert wait_until(lambda: len(receiver.received) >= 1), "no delivery arrived"
    time.sleep(1.0)  # nothing else is on its way
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    verify(secret, headers[SIGNATURE_HEADER], body, now=time.time())
    assert b'"portfolio.cash_moved"' in body and b"125.00" in body

    log = investor.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert [(d["status"], d["event_type"]) for d in log] == [("delivered", "portfolio.cash_moved")]


def test_private_addresses_are_refused_and_someone_elses_webhook_is_404(
    investor: Investor, http: httpx.Client, database_url: str
) -> None:
    for url in ("https://10.1.2.3/hook", "http://169.254.169.254/latest", "https://user:pw@127.0.0.1/x"):
        refused = investor.post("/api/v1/webhooks", {"url": url, "events": ["trades.executed"]})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "UNSAFE_WEBHOOK_URL", url
    unknown = investor.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/x", "events": ["nope.never"]})
    assert unknown.status_code == 400
    mine = investor.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/x", "events": ["trades.executed"]})
    hook_id = mine.json()["data"]["id"]
    stranger = Investor(http, database_url)
    assert stranger.delete(f"/api/v1/webhooks/{hook_id}").status_code == 404
    assert stranger.get(f"/api/v1/webhooks/{hook_id}/deliveries").status_code == 404
    assert investor.delete(f"/api/v1/webhooks/{hook_id}").status_code == 204
    assert investor.get("/api/v1/webhooks").json()["data"] == []
