"""The live stream at /api/v1/stream over Ray Serve, PostgreSQL, Redis and the outbox relay.

A person opens a WebSocket, authenticates with their access token in the first message, and then
sees their own events as they commit (and a portfolio's value after each change), nobody else's.
A socket that reconnects with the last event id gets what it missed exactly once. Bad tokens and
ended sessions close the socket with 4401.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.integration.people import Investor, new_person
from tests.integration.prices import publish, some_future_day
from tests.integration.stream_client import Stream, token_of

pytestmark = pytest.mark.integration


def test_a_person_sees_their_own_deposit_and_its_value_and_nobody_else_sees_it(
    http: httpx.Client, database_url: str, streams: Callable[[], Stream]
) -> None:
    alice, bob = Investor(http, database_url), Investor(http, database_url)
    portfolio = alice.portfolio()
    alice_stream, bob_stream = streams(), streams()
    assert alice_stream.auth(token_of(alice))["user_id"] == alice.id
    assert bob_stream.auth(token_of(bob))["type"] == "ready"

    assert alice.deposit(portfolio["id"], "2500.00").status_code == 201

    moved = alice_stream.event("portfolio.cash_moved")
    assert moved["topic"] == "portfolio.updates"
    assert moved["user_id"] == alice.id
    assert moved["data"]["portfolio_id"] == portfolio["id"]
    uuid.UUID(moved["event_id"])
    value = alice_stream.next_message(lambda m: m["type"] == "value")
    assert value["portfolio_id"] == portfolio["id"]
    assert value["data"]["cash_balance"] == "2500.0000"

    bob_portfolio = bob.portfolio()
    assert bob.deposit(bob_portfolio["id"], "10.00").status_code == 201
    bobs_first = bob_stream.event("portfolio.cash_moved")
    assert bobs_first["data"]["portfolio_id"] == bob_portfolio["id"]
    assert all(m.get("user_id") in (None, bob.id) for m in bob_stream.received), bob_stream.received
    assert not [m for m in bob_stream.received if m.get("data", {}).get("portfolio_id") == portfolio["id"]]


def test_a_socket_that_reconnects_after_an_event_gets_what_it_missed_exactly_once(
    http: httpx.Client, database_url: str, streams: Callable[[], Stream]
) -> None:
    carol = Investor(http, database_url)
    portfolio = carol.portfolio()
    first = streams()
    first.auth(token_of(carol))
    assert carol.deposit(portfolio["id"], "100.00").status_code == 201
    last_seen = first.event("portfolio.cash_moved")["event_id"]
    first.close()

    for amount in ("1.00", "2.00", "3.00"):
        assert carol.deposit(portfolio["id"], amount).status_code == 201
    time.sleep(1.5)  # the relay has published them while nobody listened

    second = streams()
    second.auth(token_of(carol), after=last_seen)
    assert carol.deposit(portfolio["id"], "4.00").status_code == 201
    second.next_message(lambda m: m["type"] == "event" and m["data"].get("amount") in ("4.00", "4.0000", "4"))
    second.drain(1.0)
    amounts = [m["data"]["amount"] for m in second.events("portfolio.cash_moved")]
    assert [str(float(a)) for a in amounts] == ["1.0", "2.0", "3.0", "4.0"], amounts
    assert last_seen not in {m["event_id"] for m in second.events("portfolio.cash_moved")}


def test_resuming_after_an_event_the_streams_no_longer_hold_asks_the_client_to_reload(
    http: httpx.Client, database_url: str, streams: Callable[[], Stream]
) -> None:
    dave = Investor(http, database_url)
    stream = streams()
    assert stream.auth(token_of(dave), after=str(uuid.uuid4())) == {"type": "ready", **_ready_of(stream)}
    reset = stream.next_message(lambda m: m["type"] == "reset")
    assert reset["reason"] == "after_not_retained"


def _ready_of(stream: Stream) -> dict[str, Any]:
    ready = next(m for m in stream.received if m["type"] == "ready")
    return {k: v for k, v in ready.items() if k != "type"}


@pytest.mark.parametrize(
    "first_message",
    [
        {"type": "auth", "token": "not-a-token"},
        {"type": "auth"},
        {"type": "auth", "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"},
        {"type": "ping"},
    ],
    ids=["garbage", "missing", "forged", "no-auth-first"],
)
def test_a_socket_without_a_valid_token_is_closed_with_4401(
    streams: Callable[[], Stream], first_message: dict[str, Any]
) -> None:
    stream = streams()
    stream.ws.send(json.dumps(first_message))
    assert stream.close_code() == 4401
    assert not [m for m in stream.received if m["type"] == "ready"]


def test_a_message_that_is_not_json_closes_with_4400(
    http: httpx.Client, database_url: str, streams: Callable[[], Stream]
) -> None:
    erin = Investor(http, database_url)
    stream = streams()
    stream.auth(token_of(erin))
    stream.ws.send("{not json")
    assert stream.close_code() == 4400


def test_signing_out_closes_that_sessions_socket_with_4401(
    http: httpx.Client, database_url: str, streams: Callable[[], Stream]
) -> None:
    frank = new_person(http, database_url, prefix="stream")
    login = frank.login()
    stream = streams()
    assert stream.auth(login.access_token)["type"] == "ready"

    logout = http.post(
        "/api/v1/auth/logout",
        json={"refresh_token": login.refresh_token},
        headers={"X-Forwarded-For": frank.ip},
    )
    assert logout.status_code == 204

    assert stream.close_code(timeout=15) == 4401
    again = streams()
    again.ws.send(json.dumps({"type": "auth", "token": login.access_token}))
    assert again.close_code() == 4401


def test_an_advisor_sees_a_linked_clients_events_and_the_client_not_the_advisors(
    http: httpx.Client, database_url: str, streams: Callable[[], Stream]
) -> None:
    advisor = new_person(http, database_url, role="advisor", prefix="adv")
    client = Investor(http, database_url)
    linked = http.post(
        "/api/v1/advisor/clients", json={"advisor_email": advisor.email}, headers=client.headers
    )
    assert linked.status_code == 201, linked.text
    advisor_login = advisor.login()
    advisor_stream = streams()
    ready = advisor_stream.auth(advisor_login.access_token)
    assert set(ready["users"]) == {advisor.id, client.id}

    portfolio = client.portfolio()
    assert client.deposit(portfolio["id"], "50.00").status_code == 201
    seen = advisor_stream.event("portfolio.cash_moved")
    assert seen["user_id"] == client.id


def test_a_socket_may_renew_its_token_but_not_become_someone_else(
    http: httpx.Client, database_url: str, streams: Callable[[], Stream]
) -> None:
    gina, hal = new_person(http, database_url, prefix="gina"), Investor(http, database_url)
    first = gina.login()
    stream = streams()
    stream.auth(first.access_token)
    renewed = gina.refresh(first)
    stream.ws.send(json.dumps({"type": "auth", "token": renewed.access_token}))
    assert stream.next_message(lambda m: m.get("renewed") is True)["user_id"] == gina.id
    stream.ws.send(json.dumps({"type": "ping"}))
    stream.next_message(lambda m: m["type"] == "pong")

    stream.ws.send(json.dumps({"type": "auth", "token": token_of(hal)}))
    assert stream.close_code() == 4401


def test_published_prices_push_a_fresh_value_for_a_portfolio_holding_a_moved_symbol_only(
    http: httpx.Client, database_url: str, streams: Callable[[], Stream]
) -> None:
    holder, saver = Investor(http, database_url), Investor(http, database_url)
    held, cash_only = holder.funded("5000.00"), saver.funded("5000.00")
    bought = holder.trade(held["id"], symbol="KO", side="buy", quantity="10")
    assert bought.status_code == 201, bought.text
    assert bought.json()["data"]["status"] == "filled"  # the paper broker fills at once: nothing is pending
    holder_stream, saver_stream = streams(), streams()
    holder_stream.auth(token_of(holder))
    saver_stream.auth(token_of(saver))
    holder_stream.drain(1.0)
    before = len([m for m in holder_stream.received if m["type"] == "value"])

    assert publish(database_url, {"KO": Decimal("61.25"), "AAPL": Decimal("190")}, some_future_day()) == 1

    value = holder_stream.next_message(lambda m: m["type"] == "value", timeout=15)
    assert value["portfolio_id"] == held["id"]
    assert value["data"]["total_value"] is not None
    assert len([m for m in holder_stream.received if m["type"] == "value"]) == before + 1
    saver_stream.drain(2.0)
    assert not [m for m in saver_stream.received if m["type"] == "value"], cash_only
    assert not [m for m in holder_stream.received if m.get("event_type") == "prices.updated"]
