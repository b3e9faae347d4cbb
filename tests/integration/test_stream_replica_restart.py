"""A socket outlives the API replica it was on: when the replica dies, the client reconnects to its
successor with the last event id it saw and gets what happened meanwhile, once, then live events.

This kills the session's only API replica, so the module waits until Serve has replaced it and
the API answers again before it ends: the tests after it find the platform as they expect it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
import ray
from websockets.exceptions import ConnectionClosed

from tests.integration.people import Investor
from tests.integration.stream_client import Stream, token_of

pytestmark = pytest.mark.integration

RESTART_DEADLINE_S = 120.0


def api_replicas() -> list[tuple[str, str]]:
    """The (name, namespace) of each live replica of the API deployment."""
    return [
        (actor["name"], actor["namespace"])
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if "ApiIngress" in actor["name"] and "REPLICA" in actor["name"].upper()
    ]


def kill_api_replica() -> str:
    [(name, namespace)] = api_replicas()
    ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    return name


def wait_for_successor(http: httpx.Client, killed: str) -> None:
    """Until Serve runs a new replica and it answers a request that needs the database."""
    deadline = time.monotonic() + RESTART_DEADLINE_S
    while time.monotonic() < deadline:
        replaced = [name for name, _ in api_replicas() if name != killed]
        try:
            ready = replaced and http.get("/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready:
            return
        time.sleep(0.5)
    raise TimeoutError(f"no API replica answered within {RESTART_DEADLINE_S} s of killing {killed}")


def amounts(stream: Stream) -> list[Decimal]:
    return [Decimal(m["data"]["amount"]) for m in stream.events("portfolio.cash_moved")]


def test_a_client_resumes_on_the_successor_of_a_killed_replica_without_loss_or_repeat(
    http: httpx.Client, database_url: str, streams: Callable[[], Stream]
) -> None:
    ivy = Investor(http, database_url)
    portfolio = ivy.portfolio()
    first = streams()
    first.auth(token_of(ivy))
    assert ivy.deposit(portfolio["id"], "100.00").status_code == 201
    last_seen = first.event("portfolio.cash_moved")["event_id"]

    killed = kill_api_replica()
    with pytest.raises(ConnectionClosed):
        first.next_message(lambda m: False, timeout=30)  # the socket goes down with its replica
    wait_for_successor(http, killed)

    for amount in ("1.00", "2.00"):
        assert ivy.deposit(portfolio["id"], amount).status_code == 201  # nobody is listening
    second = streams()
    second.auth(token_of(ivy), after=last_seen)
    assert ivy.deposit(portfolio["id"], "3.00").status_code == 201
    second.next_message(
        lambda m: m["type"] == "event" and Decimal(m["data"].get("amount", "0")) == Decimal("3")
    )
    second.drain(1.0)

    assert amounts(second) == [Decimal("1"), Decimal("2"), Decimal("3")]
    assert last_seen not in {m["event_id"] for m in second.events("portfolio.cash_moved")}
