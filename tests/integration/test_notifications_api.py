"""Notifications on the real platform: events of a person's account become notifications they list,
count, mark read and choose channels for; each reaches their live stream as ``notification.created``.

Real PostgreSQL, Redis, Ray and Serve: an order fills through the shard and the paper broker, the
outbox relay publishes its event, and the event bus's ``notifications`` group writes the notification.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import redis

from tests.events import cash_moved
from tests.integration.people import PASSWORD, Investor, data, error, fresh_ip
from tests.integration.stream_client import Stream, streams, token_of  # noqa: F401 - fixture
from wealthalloc.config import Settings
from wealthalloc.events.notifications import NotificationWriter
from wealthalloc.events.relay import Event, stream_key
from wealthalloc.storage.postgres import async_pool

pytestmark = pytest.mark.integration

WAIT_S = 30.0
FIELDS = {"id", "kind", "title", "body", "created_at", "read_at", "link", "data"}


def notifications_of(person: Investor, **params: object) -> list[dict[str, Any]]:
    return data(person.get("/api/v1/notifications", params=params))  # type: ignore[no-any-return]


def unread(person: Investor) -> int:
    return int(data(person.get("/api/v1/notifications/unread-count"))["unread"])


def wait_for(person: Investor, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The person's notifications of ``kind`` once there are ``count`` of them (polled, bounded)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = [n for n in notifications_of(person, limit=200) if n["kind"] == kind]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {count} {kind} notification(s) in {WAIT_S} s; have {found}")
        time.sleep(0.2)


def buy(person: Investor, portfolio_id: object, quantity: str = "2", symbol: str = "AAPL") -> dict[str, Any]:
    order: dict[str, Any] = data(
        person.trade(portfolio_id, symbol=symbol, side="buy", quantity=quantity), status=201
    )
    assert order["status"] == "filled", order
    return order


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


# The list, the count, reading ------------------------------------------------------------------------


def test_a_fill_is_listed_newest_first_counted_unread_and_marked_read_once(investor: Investor) -> None:
    portfolio = investor.funded("10000.00")
    deposit = wait_for(investor, "cash_movement")[0]
    order = buy(investor, portfolio["id"])

    fill = wait_for(investor, "trade_fill")[0]

    assert set(fill) == FIELDS
    assert fill["title"].startswith("Bought 2 AAPL at $")
    assert fill["read_at"] is None
    assert fill["link"] == f"#/portfolios/{portfolio['id']}/orders"
    assert fill["data"]["order_id"] == order["id"]
    assert deposit["title"] == "Deposit of $10,000.00"
    listed = notifications_of(investor)
    assert [n["id"] for n in listed] == [fill["id"], deposit["id"]]
    assert unread(investor) == 2

    first = data(investor.post(f"/api/v1/notifications/{fill['id']}/read"))
    again = data(investor.post(f"/api/v1/notifications/{fill['id']}/read"))

    assert first["id"] == fill["id"] and first["read_at"] is not None
    assert again["read_at"] == first["read_at"]
    assert unread(investor) == 1
    assert [n["id"] for n in notifications_of(investor, unread="true")] == [deposit["id"]]
    assert [n["id"] for n in notifications_of(investor, unread="false")] == [fill["id"]]


def test_read_all_marks_every_unread_one_and_says_how_many(investor: Investor) -> None:
    portfolio = investor.funded("5000.00")
    buy(investor, portfolio["id"], quantity="1")
    wait_for(investor, "trade_fill")

    assert data(investor.post("/api/v1/notifications/read-all")) == {"marked": 2}
    assert unread(investor) == 0
    assert notifications_of(investor, unread="true") == []
    assert data(investor.post("/api/v1/notifications/read-all")) == {"marked": 0}


def test_the_list_pages_with_the_cursor_its_links_give(investor: Investor) -> None:
    portfolio = investor.funded("1000.00")
    for amount in ("1.00", "2.00"):
        assert investor.deposit(portfolio["id"], amount).status_code == 201
    wait_for(investor, "cash_movement", count=3)

    first = investor.get("/api/v1/notifications", params={"limit": 2}).json()
    second = investor.get(first["links"]["next"]).json()

    assert [n["title"] for n in first["data"]] == ["Deposit of $2.00", "Deposit of $1.00"]
    assert [n["title"] for n in second["data"]] == ["Deposit of $1,000.00"]
    assert "next" not in second["links"]
    bad = investor.get("/api/v1/notifications", params={"cursor": "not-a-cursor"})
    error(bad, 400, "VALIDATION_ERROR")


def deposit(user_id: str, amount: str, at: datetime, sequence: int) -> Event:
    """The event of a deposit of ``amount`` that happened ``at``, as the notifications group reads it."""
    ids = {"portfolio_id": str(uuid.uuid4()), "movement_id": str(uuid.uuid4())}
    return cash_moved(uuid.UUID(user_id), sequence, at=at, amount=amount, balance=amount, **ids)


def write(database_url: str, *batches: list[Event]) -> int:
    """Hand ``batches`` to a ``notifications`` group writer in turn; the notifications it made."""

    async def go() -> int:
        async with async_pool(Settings(database_url=database_url), name="test-writer") as pool:
            writer = NotificationWriter(pool=pool, redis=None, name="test")  # type: ignore[arg-type]
            for batch in batches:
                await writer.handle(batch)
            return writer.created

    return asyncio.run(go())


def test_the_list_follows_when_things_happened_not_when_a_consumer_got_to_them(
    investor: Investor, database_url: str
) -> None:
    """Two consumers of the group may finish their batches in either order."""
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    first, second = (
        deposit(investor.id, amount, earlier + timedelta(seconds=n), n)
        for n, amount in enumerate(("7.00", "8.00"))
    )

    made = write(database_url, [second], [first], [second, first])  # the last: read again after a crash

    assert made == 2
    listed = notifications_of(investor)
    assert [n["title"] for n in listed] == ["Deposit of $8.00", "Deposit of $7.00"]
    assert datetime.fromisoformat(listed[1]["created_at"]) == earlier


def test_events_of_one_transaction_are_listed_in_their_stream_order(
    investor: Investor, database_url: str
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    moves = [deposit(investor.id, amount, at, n) for n, amount in enumerate(("3.00", "4.00", "5.00"))]

    assert write(database_url, moves[::-1]) == 3

    titles = [n["title"] for n in notifications_of(investor)]
    assert titles == ["Deposit of $5.00", "Deposit of $4.00", "Deposit of $3.00"]


def test_a_batch_of_several_peoples_events_makes_each_notification_once_and_announces_them_in_order(
    investor: Investor, http: httpx.Client, database_url: str
) -> None:
    """What a consumer reads at once is written at once: a repeat inside the batch is left out, and
    each new notification's ``notification.created`` follows the order its events happened in."""
    spouse = Investor(http, database_url)
    at = datetime.now(UTC) - timedelta(minutes=5)
    mine = [deposit(investor.id, "1.00", at, 0), deposit(investor.id, "2.00", at + timedelta(seconds=2), 2)]
    theirs = deposit(spouse.id, "3.00", at + timedelta(seconds=1), 1)

    assert write(database_url, [mine[0], theirs, mine[1], mine[0]]) == 3

    assert [n["title"] for n in notifications_of(investor)] == ["Deposit of $2.00", "Deposit of $1.00"]
    assert [n["title"] for n in notifications_of(spouse)] == ["Deposit of $3.00"]
    with psycopg.connect(database_url) as conn:
        announced = conn.execute(
            """SELECT user_id::text, payload->>'title' FROM events
               WHERE event_type = 'notification.created' AND user_id IN (%s, %s)
                 AND payload->>'title' IN ('Deposit of $1.00', 'Deposit of $2.00', 'Deposit of $3.00')
               ORDER BY sequence""",
            (investor.id, spouse.id),
        ).fetchall()
    assert announced == [
        (investor.id, "Deposit of $1.00"),
        (spouse.id, "Deposit of $3.00"),
        (investor.id, "Deposit of $2.00"),
    ]


def test_someone_elses_notification_is_404_and_stays_unread(http: httpx.Client, database_url: str) -> None:
    owner, other = Investor(http, database_url), Investor(http, database_url)
    owner.funded("100.00")
    mine = wait_for(owner, "cash_movement")[0]

    error(other.post(f"/api/v1/notifications/{mine['id']}/read"), 404, "NOT_FOUND")
    error(other.post(f"/api/v1/notifications/{uuid.uuid4()}/read"), 404, "NOT_FOUND")
    error(other.post("/api/v1/notifications/not-an-id/read"), 400, "VALIDATION_ERROR")
    assert data(other.post("/api/v1/notifications/read-all")) == {"marked": 0}

    assert notifications_of(other) == []
    assert unread(owner) == 1
    assert notifications_of(owner)[0]["read_at"] is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/notifications"),
        ("GET", "/api/v1/notifications/unread-count"),
        ("POST", "/api/v1/notifications/read-all"),
        ("POST", f"/api/v1/notifications/{uuid.uuid4()}/read"),
        ("GET", "/api/v1/me/notification-preferences"),
        ("PUT", "/api/v1/me/notification-preferences"),
    ],
)
def test_without_a_token_everything_is_401(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path, json={"kinds": {}} if method == "PUT" else None)

    error(response, 401, "UNAUTHORIZED")


# Preferences -----------------------------------------------------------------------------------------


def preferences(person: Investor) -> dict[str, Any]:
    return data(person.get("/api/v1/me/notification-preferences"))  # type: ignore[no-any-return]


def put_preferences(person: Investor, body: object) -> httpx.Response:
    return person.http.put("/api/v1/me/notification-preferences", json=body, headers=person.headers)


def test_preferences_start_at_the_defaults_and_change_in_part(investor: Investor) -> None:
    start = preferences(investor)

    assert start["email"] == investor.email
    assert start["kinds"] == {
        "trade_fill": {"in_app": True, "email": True},
        "order_rejected": {"in_app": True, "email": False},
        "price_alert": {"in_app": True, "email": True},
        "harvest_opportunity": {"in_app": True, "email": False},
        "recommendation": {"in_app": True, "email": False},
        "cash_movement": {"in_app": True, "email": False},
        "security": {"in_app": True, "email": True},
    }

    changed = data(put_preferences(investor, {"kinds": {"trade_fill": {"email": False}}}))
    data(put_preferences(investor, {"kinds": {"cash_movement": {"email": True}}}))

    assert changed["kinds"]["trade_fill"] == {"in_app": True, "email": False}
    after = preferences(investor)["kinds"]
    assert after["trade_fill"] == {"in_app": True, "email": False}
    assert after["cash_movement"] == {"in_app": True, "email": True}
    assert after["price_alert"] == start["kinds"]["price_alert"]


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"kinds": {"security": {"email": False}}}, 400, "VALIDATION_ERROR", "cannot be turned off"),
        ({"kinds": {"trade_fills": {"email": False}}}, 400, "VALIDATION_ERROR", "Unknown notification kind"),
        ({"kinds": {"trade_fill": {"sms": True}}}, 400, "VALIDATION_ERROR", "Unknown channel"),
        ({"kinds": {"trade_fill": {"email": "no"}}}, 400, "VALIDATION_ERROR", "true or false"),
        ({"kinds": {"trade_fill": False}}, 400, "VALIDATION_ERROR", "not valid"),
        ({"kinds": {}, "extra": 1}, 400, "VALIDATION_ERROR", "not valid"),
    ],
)
def test_bad_preferences_are_refused_with_the_reason_and_change_nothing(
    investor: Investor, body: object, status: int, code: str, says: str
) -> None:
    before = preferences(investor)

    refused = error(put_preferences(investor, body), status, code)

    assert says in refused["message"]
    assert preferences(investor) == before


def test_preferences_that_are_not_json_are_400(investor: Investor) -> None:
    response = investor.http.put(
        "/api/v1/me/notification-preferences",
        content=b'{"kinds": {"trade_fill": ',
        headers={**investor.headers, "Content-Type": "application/json"},
    )

    error(response, 400, "MALFORMED_JSON")


def test_a_kind_turned_off_in_the_app_is_not_listed(investor: Investor) -> None:
    data(put_preferences(investor, {"kinds": {"cash_movement": {"in_app": False}}}))
    portfolio = investor.funded("5000.00")
    buy(investor, portfolio["id"], quantity="1")

    wait_for(investor, "trade_fill")

    assert [n["kind"] for n in notifications_of(investor)] == ["trade_fill"]
    assert unread(investor) == 1


# One event, one notification ---------------------------------------------------------------------------


def test_an_event_delivered_twice_makes_one_notification(
    investor: Investor, database_url: str, session_redis_url: str
) -> None:
    portfolio = investor.funded("300.00")
    wait_for(investor, "cash_movement")
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute(
            """SELECT id, sequence, topic, event_type, version, user_id, aggregate_id, payload, created_at
               FROM events WHERE user_id = %s AND event_type = 'portfolio.cash_moved'""",
            (investor.id,),
        ).fetchone()
    assert row is not None
    event = Event.from_row(row)
    client = redis.Redis.from_url(session_redis_url)
    try:
        client.xadd(stream_key(event.topic), event.fields())  # what a relay that died mid-publish repeats
    finally:
        client.close()
    # Handled in stream order: once a later deposit is a notification, the repeat was handled too.
    assert investor.deposit(portfolio["id"], "7.00").status_code == 201
    wait_for(investor, "cash_movement", count=2)

    titles = [n["title"] for n in notifications_of(investor)]

    assert titles == ["Deposit of $7.00", "Deposit of $300.00"]
    with psycopg.connect(database_url) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM notifications WHERE user_id = %s AND source_event_id = %s",
            (investor.id, event.id),
        ).fetchone() or (0,)
    assert count == 1


# The live stream ---------------------------------------------------------------------------------------


def test_a_new_notification_reaches_the_persons_stream_as_notification_created(
    investor: Investor,
    streams: Callable[[], Stream],  # noqa: F811 - the fixture imported above
) -> None:
    portfolio = investor.portfolio()
    stream = streams()
    stream.auth(token_of(investor))

    assert investor.deposit(portfolio["id"], "250.00").status_code == 201
    created = stream.event("notification.created")

    assert created["topic"] == "notification.created"
    assert created["user_id"] == investor.id
    assert created["data"]["title"] == "Deposit of $250.00"
    assert set(created["data"]) == FIELDS
    listed = wait_for(investor, "cash_movement")[0]
    assert created["data"]["id"] == listed["id"]
    assert created["data"]["kind"] == "cash_movement"


# Security --------------------------------------------------------------------------------------------


def login_from(person: Investor, ip: str, user_agent: str) -> httpx.Response:
    return person.http.post(
        "/api/v1/auth/login",
        json={"email": person.email, "password": PASSWORD},
        headers={"X-Forwarded-For": ip, "User-Agent": user_agent},
    )


def test_a_sign_in_from_a_new_address_and_device_is_a_security_notification(investor: Investor) -> None:
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    assert login_from(investor, investor.ip, investor.http.headers["User-Agent"]).status_code == 200
    elsewhere = fresh_ip()

    assert login_from(investor, elsewhere, firefox).status_code == 200
    assert login_from(investor, elsewhere, firefox).status_code == 200  # seen now: not news again

    security = wait_for(investor, "security")
    assert len(security) == 1
    assert security[0]["title"] == "New sign-in to your account"
    assert f"from {elsewhere} (Firefox on Linux)" in security[0]["body"]
    assert security[0]["link"] == "#/settings"


def test_a_password_change_is_a_security_notification(investor: Investor) -> None:
    changed = investor.http.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase 4 tests"},
        headers=investor.headers,
    )
    assert changed.status_code == 204, changed.text

    [notice] = wait_for(investor, "security")

    assert notice["title"] == "Your password was changed"
