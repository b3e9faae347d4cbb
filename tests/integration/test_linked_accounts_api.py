"""Linked accounts end to end: the HTTP API on Serve, the AccountConnections actor holding one IB
connection per linked account, the owning shards reconciling the broker's positions with the
books, and the fake IB Gateway managing several accounts on one login. A second API application is
deployed with the account-number keys and actors of its own (its own Ray namespace) beside the
one the other tests use."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.conftest import _wait_for, stop_app
from tests.integration.callers import Person, login, register, set_role
from tests.integration.people import Investor, data, error
from tests.integration.test_ibkr_end_to_end import FakeGatewayThread
from wealthalloc.security.encryption import new_key

pytestmark = pytest.mark.integration


def account_number(prefix: str = "U") -> str:
    """A number no other test uses, so finding it anywhere means this test leaked it."""
    return f"{prefix}{random.randint(10**6, 10**7 - 1)}"


@pytest.fixture(scope="module")
def ib() -> Iterator[FakeGatewayThread]:
    gateway = FakeGatewayThread()
    try:
        yield gateway
    finally:
        gateway.close()


@pytest.fixture(scope="module")
def linked_api(api_url: str, api_settings: dict[str, Any], ib: FakeGatewayThread) -> Iterator[str]:
    """The API with the key ring set, at ``{api_url}/linked``, reading linked IBKR accounts from the fake."""
    from ray import serve

    from serve_apps.api.deployment import compose

    namespace = f"linked-{uuid.uuid4().hex[:6]}"
    overrides = {
        **api_settings,
        "log_level": "INFO",  # logs that say as much as they can: the number must still be in none
        "linked_account_keys": {"2025-01": new_key(), "2026-01": new_key()},
        "linked_account_index_key": new_key(),
        "ib_host": "127.0.0.1",
        "ib_port": ib.fake.port,
        "linked_ib_client_id": 300,
        "ib_heartbeat_seconds": 1,
        "ib_reconnect_initial_seconds": 0.1,
        "ib_reconnect_max_seconds": 0.5,
        "ib_breaker_failures": 100,
        "ib_request_timeout_seconds": 3,
        "ray_namespace": namespace,
        "num_replicas": 1,
        "shard_count": 1,  # one shard worker to start, not four: its actors are this module's alone
    }
    serve.run(compose(overrides, detector=False), name="api-linked", route_prefix="/linked", blocking=False)
    base = f"{api_url}/linked"
    _wait_for(base + "/health")
    try:
        yield base
    finally:
        stop_app("api-linked", namespace)


@pytest.fixture
def client(linked_api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=linked_api, timeout=60) as http:
        yield http


@pytest.fixture
def investor(client: httpx.Client, database_url: str) -> Investor:
    return Investor(client, database_url)


@pytest.fixture
def admin(client: httpx.Client, database_url: str) -> Person:
    person = register(client, prefix="admin")
    set_role(database_url, person, "admin")
    assert login(client, person).status_code == 200
    return person


def at_broker(ib: FakeGatewayThread, number: str, cash: str, **positions: tuple[str, str]) -> None:
    """An account of the gateway's login, holding ``positions`` (symbol=(quantity, average cost))."""

    def setup() -> None:
        ib.fake.add_account(number, cash=cash)
        for symbol, (quantity, cost) in positions.items():
            ib.fake.set_position(symbol, quantity, cost, account=number)

    ib.do(setup)


def link(investor: Investor, number: str, portfolio_id: object, **extra: object) -> dict[str, Any]:
    body = {"provider": "ibkr", "account_number": number, "name": "Brokerage", "portfolio_id": portfolio_id}
    return data(investor.post("/api/v1/linked-accounts", {**body, **extra}), 201)  # type: ignore[no-any-return]


def items(investor: Investor, account_id: str, status: str = "open") -> dict[tuple[str, str | None], Any]:
    rows = data(
        investor.get(f"/api/v1/linked-accounts/{account_id}/reconciliation", params={"status": status})
    )
    return {(row["kind"], row["symbol"]): row for row in rows}


def lots(investor: Investor, portfolio_id: object) -> list[dict[str, Any]]:
    return data(investor.get(f"/api/v1/portfolios/{portfolio_id}/lots"))  # type: ignore[no-any-return]


def test_two_people_link_two_accounts_each_and_every_difference_becomes_an_item(
    ib: FakeGatewayThread, client: httpx.Client, database_url: str
) -> None:
    people = [Investor(client, database_url), Investor(client, database_url)]
    numbers = {}
    for person in people:
        for n, name in enumerate(("Brokerage", "Retirement")):
            number = account_number()
            at_broker(ib, number, "2500.00", AAPL=("10", "150"), KO=(str(20 + n), "55.5"))
            portfolio = person.portfolio(name)
            linked = link(person, number, portfolio["id"], name=name)
            numbers[linked["id"]] = (person, number, portfolio["id"])
            # Linked and read at once: what the broker holds arrives pending; nothing is sellable yet.
            assert linked["account_number"] == linked["account_number_masked"] == "****" + number[-4:]
            assert linked["status"] == "active" and linked["sync"]["status"] == "active"
            assert D(linked["broker_cash"]) == D("2500.00")
            assert len(linked["sync"]["transfers_in"]) == 2
            held = {lot["symbol"]: lot for lot in lots(person, portfolio["id"])}
            assert {s: (D(lot["shares"]), lot["transfer_status"]) for s, lot in held.items()} == {
                "AAPL": (D(10), "pending"),
                "KO": (D(20 + n), "pending"),
            }
            assert D(held["AAPL"]["cost_basis"]) == D("1500.00")
            open_items = items(person, linked["id"])
            assert set(open_items) == {
                ("missing_here", "AAPL"),
                ("missing_here", "KO"),
                ("cash_mismatch", None),
            }
            assert len(open_items[("missing_here", "AAPL")]["lot_ids"]) == 1
            assert D(open_items[("cash_mismatch", None)]["platform_cash"]) == 0

    for person in people:
        mine = data(person.get("/api/v1/linked-accounts"))
        assert len(mine) == 2 and {a["id"] for a in mine} <= set(numbers)
        assert all(numbers[a["id"]][0] is person for a in mine)

    # The next sync finds the positions again: the broker vouches for them, they become sellable.
    account_id, (person, number, portfolio_id) = next(iter(numbers.items()))
    synced = data(person.post(f"/api/v1/linked-accounts/{account_id}/sync"))
    assert len(synced["sync"]["confirmed"]) == 2 and synced["sync"]["transfers_in"] == []
    assert {lot["transfer_status"] for lot in lots(person, portfolio_id)} == {"confirmed"}
    assert set(items(person, account_id)) == {("cash_mismatch", None)}
    assert {kind for kind, _ in items(person, account_id, "resolved")} == {"missing_here"}

    # A trade at the broker the platform has not booked: reported, never written over the book.
    ib.do(lambda: ib.fake.set_position("AAPL", "12", "150", account=number))
    synced = data(person.post(f"/api/v1/linked-accounts/{account_id}/sync"))
    difference = items(person, account_id)[("quantity_mismatch", "AAPL")]
    assert (D(difference["broker_quantity"]), D(difference["platform_quantity"])) == (D(12), D(10))
    assert sum(D(lot["shares"]) for lot in lots(person, portfolio_id) if lot["symbol"] == "AAPL") == 10
    # The same difference seen again is the same item, not a second one.
    data(person.post(f"/api/v1/linked-accounts/{account_id}/sync"))
    again = items(person, account_id)[("quantity_mismatch", "AAPL")]
    assert again["id"] == difference["id"] and again["last_seen_at"] > difference["last_seen_at"]


def test_a_dropped_connection_fails_only_its_own_account(ib: FakeGatewayThread, investor: Investor) -> None:
    numbers = [account_number("DU") for _ in range(3)]
    accounts = []
    for number in numbers:
        at_broker(ib, number, "100.00", MSFT=("5", "250"))
        accounts.append(link(investor, number, investor.portfolio(f"Linked {number}")["id"]))
    dropped, *others = accounts

    ib.do(lambda: ib.fake.block_account(numbers[0]))
    failed = data(investor.post(f"/api/v1/linked-accounts/{dropped['id']}/sync"))
    assert failed["status"] == "error" and failed["sync"]["status"] == "error"
    assert failed["last_sync_error"] and numbers[0] not in failed["last_sync_error"]
    assert failed["last_synced_at"] == dropped["last_synced_at"]  # the last good sync is kept
    for account in others:
        synced = data(investor.post(f"/api/v1/linked-accounts/{account['id']}/sync"))
        assert synced["status"] == "active" and len(synced["sync"]["confirmed"]) == 1
    assert numbers[0] not in ib.do(lambda: ib.fake.connected_accounts)

    ib.do(lambda: ib.fake.block_account(numbers[0], blocked=False))
    deadline = time.monotonic() + 30
    while True:
        back = data(investor.post(f"/api/v1/linked-accounts/{dropped['id']}/sync"))
        if back["status"] == "active" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert back["status"] == "active" and back["last_sync_error"] is None


def test_unlinking_keeps_the_history_and_stops_the_syncs(ib: FakeGatewayThread, investor: Investor) -> None:
    number = account_number()
    at_broker(ib, number, "0", PG=("7", "140"))
    portfolio = investor.portfolio("Unlinked soon")
    account = link(investor, number, portfolio["id"])

    unlinked = data(investor.delete(f"/api/v1/linked-accounts/{account['id']}"))
    assert unlinked["status"] == "unlinked" and unlinked["syncing"] is False and unlinked["unlinked_at"]
    error(investor.post(f"/api/v1/linked-accounts/{account['id']}/sync"), 409, "UNLINKED")
    assert account["id"] not in {a["id"] for a in data(investor.get("/api/v1/linked-accounts"))}
    listed = data(investor.get("/api/v1/linked-accounts", params={"include_unlinked": "true"}))
    assert account["id"] in {a["id"] for a in listed}
    assert ("missing_here", "PG") in items(investor, account["id"])
    assert [lot["symbol"] for lot in lots(investor, portfolio["id"])] == ["PG"]
    # Linked again later, it is a new link of the same account.
    assert link(investor, number, portfolio["id"])["id"] != account["id"]


def test_a_statement_from_another_broker_arrives_pending_and_an_advisor_or_admin_confirms_it(
    investor: Investor, admin: Person, client: httpx.Client, database_url: str
) -> None:
    portfolio = investor.portfolio("From the old broker")
    statement = "symbol,quantity,cost_basis,acquired_date\nJNJ,10,1400.00,2019-05-02\nJNJ,5,800,2021-08-16\n"
    number = account_number("AB-")
    linked = link(investor, number, portfolio["id"], provider="csv", statement=statement)
    assert linked["account_number"] == "****" + number[-4:] and linked["status"] == "active"
    pending = lots(investor, portfolio["id"])
    assert [(lot["acquired_at"], lot["transfer_status"]) for lot in pending] == [
        ("2019-05-02", "pending"),
        ("2021-08-16", "pending"),
    ]

    # A statement is only what its uploader says: syncing it again confirms nothing.
    again = data(investor.post(f"/api/v1/linked-accounts/{linked['id']}/sync", {"statement": statement}))
    assert again["sync"]["confirmed"] == [] and again["sync"]["differences"] == 0

    refused = error(
        investor.trade(portfolio["id"], symbol="JNJ", side="sell", quantity="1"), 400, "INSUFFICIENT_SHARES"
    )
    assert refused["details"]["pending"] == "15.000000" and "pending" in refused["message"]

    lot_id = pending[0]["id"]
    path = f"/api/v1/portfolios/{portfolio['id']}/lots/{lot_id}/confirm"
    error(investor.post(path, {"reason": "I promise"}), 403, "FORBIDDEN")
    error(client.post(path, json={"reason": ""}, headers=admin.headers), 400, "VALIDATION_ERROR")
    confirmed = data(client.post(path, json={"reason": "Transfer statement checked"}, headers=admin.headers))
    assert confirmed["transfer_status"] == "confirmed"
    assert data(client.post(path, json={"reason": "twice"}, headers=admin.headers))["id"] == lot_id

    sold = data(investor.trade(portfolio["id"], symbol="JNJ", side="sell", quantity="10"), 201)
    assert sold["status"] in {"filled", "submitted"}
    error(
        investor.trade(portfolio["id"], symbol="JNJ", side="sell", quantity="1"), 400, "INSUFFICIENT_SHARES"
    )
    with psycopg.connect(database_url) as conn:
        who, why = conn.execute(
            "SELECT transfer_confirmed_by, transfer_confirmation FROM lots WHERE id = %s", (lot_id,)
        ).fetchone()  # type: ignore[misc]
        audited = conn.execute(
            """SELECT count(*) FROM events
               WHERE event_type = 'portfolio.lot_confirmed' AND payload->>'by' = %s""",
            (admin.id,),
        ).fetchone()
    assert (str(who), why) == (admin.id, "Transfer statement checked")
    assert audited == (1,)


def test_a_lot_transferred_in_by_hand_waits_for_confirmation_before_it_can_be_sold(
    investor: Investor, admin: Person, client: httpx.Client
) -> None:
    portfolio = investor.portfolio("Moved in")
    body = {"symbol": "KO", "shares": "8", "cost_basis": "400.00", "acquired_at": "2020-02-03"}
    lot = data(investor.post(f"/api/v1/portfolios/{portfolio['id']}/lots", body, str(uuid.uuid4())), 201)
    assert lot["transfer_status"] == "pending"

    refused = error(
        investor.trade(portfolio["id"], symbol="KO", side="sell", quantity="8"), 400, "INSUFFICIENT_SHARES"
    )
    assert refused["details"]["available"] == "0" and refused["details"]["pending"] == "8.000000"
    cash = data(investor.get(f"/api/v1/portfolios/{portfolio['id']}"))
    assert D(cash["available_cash"]) == 0

    path = f"/api/v1/portfolios/{portfolio['id']}/lots/{lot['id']}/confirm"
    data(client.post(path, json={"reason": "Broker transfer form received"}, headers=admin.headers))
    data(investor.trade(portfolio["id"], symbol="KO", side="sell", quantity="8"), 201)


def test_bad_requests_get_the_error_envelope_and_change_nothing(
    investor: Investor, client: httpx.Client, database_url: str
) -> None:
    other = Investor(client, database_url)
    portfolio, second = investor.portfolio("Mine"), investor.portfolio("Second")
    theirs = other.portfolio("Theirs")
    number = account_number()
    mine = link(investor, number, portfolio["id"])

    def count() -> int:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM external_accounts").fetchone()
        return int(row[0])  # type: ignore[index]

    before = count()
    base = {
        "provider": "ibkr",
        "account_number": account_number(),
        "name": "x",
        "portfolio_id": portfolio["id"],
    }
    for body, field in (
        ({**base, "account_number": "12345"}, "body"),
        ({**base, "account_number": "U123"}, "body"),
        ({**base, "provider": "schwab"}, "body.provider"),
        ({**base, "portfolio_id": "not-a-uuid"}, "body.portfolio_id"),
        ({**base, "statement": "symbol\n"}, "body"),
        ({**base, "provider": "csv", "account_number": "ZZ-1234"}, "body"),
        ({**base, "extra": 1}, "body.extra"),
    ):
        problem = error(investor.post("/api/v1/linked-accounts", body), 400, "VALIDATION_ERROR")
        assert any(d["field"] == field for d in problem["details"]), problem
        assert body["account_number"] not in str(problem)
    malformed = client.post(
        "/api/v1/linked-accounts",
        content=b'{"provider": "ibkr",',
        headers={**investor.headers, "Content-Type": "application/json"},
    )
    error(malformed, 400, "MALFORMED_JSON")
    bad_statement = error(
        investor.post(
            "/api/v1/linked-accounts",
            {
                **base,
                "provider": "csv",
                "account_number": "ZZ-1234",
                "statement": "symbol,quantity,cost_basis,acquired_date\nAAPL,-1,5,2020-01-01\n",
            },
        ),
        400,
        "INVALID_STATEMENT",
    )
    assert bad_statement["details"] == [
        {"line": 2, "field": "quantity", "message": "must be a positive number"}
    ]
    error(investor.post("/api/v1/linked-accounts", {**base, "portfolio_id": theirs["id"]}), 404, "NOT_FOUND")
    error(
        investor.post(
            "/api/v1/linked-accounts", {**base, "account_number": number, "portfolio_id": second["id"]}
        ),
        409,
        "ALREADY_LINKED",
    )
    assert count() == before

    for method, path in (
        ("GET", f"/api/v1/linked-accounts/{mine['id']}"),
        ("GET", f"/api/v1/linked-accounts/{mine['id']}/reconciliation"),
        ("POST", f"/api/v1/linked-accounts/{mine['id']}/sync"),
        ("DELETE", f"/api/v1/linked-accounts/{mine['id']}"),
        ("GET", f"/api/v1/linked-accounts/{uuid.uuid4()}"),
    ):
        error(client.request(method, path, headers=other.headers), 404, "NOT_FOUND")
    assert data(investor.get(f"/api/v1/linked-accounts/{mine['id']}"))["status"] == "active"


def test_the_account_number_is_nowhere_in_clear_not_in_postgresql_logs_or_events(
    ib: FakeGatewayThread, investor: Investor, client: httpx.Client, database_url: str, session_redis_url: str
) -> None:
    import ray
    import redis

    numbers = [account_number(), account_number("DU")]
    for number in numbers:
        at_broker(ib, number, "10.00", XOM=("4", "60"))
        account = link(investor, number, investor.portfolio(f"Scanned {number[-4:]}")["id"])
        data(investor.post(f"/api/v1/linked-accounts/{account['id']}/sync"))
    ib.do(lambda: ib.fake.block_account(numbers[1]))
    data(investor.post(f"/api/v1/linked-accounts/{account['id']}/sync"))  # a failure is logged and an event
    ib.do(lambda: ib.fake.block_account(numbers[1], blocked=False))
    data(investor.delete(f"/api/v1/linked-accounts/{account['id']}"))
    needles = [n.encode() for n in numbers]

    found: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        columns = conn.execute(
            """SELECT table_name, column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'bytea', 'jsonb',
                                                               'json', 'ARRAY')"""
        ).fetchall()
        for table, column, kind in columns:
            text = sql.SQL("encode({}, 'escape')" if kind == "bytea" else "{}::text").format(
                sql.Identifier(column)
            )
            for number in numbers:
                query = sql.SQL("SELECT count(*) FROM {} WHERE {} ILIKE %s").format(
                    sql.Identifier(table), text
                )
                if conn.execute(query, (f"%{number}%",)).fetchone()[0]:  # type: ignore[index]
                    found.append(f"postgresql {table}.{column}")
    streams = redis.Redis.from_url(session_redis_url)
    try:
        for key in streams.scan_iter(_type="stream"):
            for _, entry in streams.xrange(key):
                if any(n in b"".join(k + v for k, v in entry.items()) for n in needles):
                    found.append(f"redis {key!r}")
    finally:
        streams.close()
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    for path in logs.rglob("*"):
        if path.is_file() and any(n in path.read_bytes() for n in needles):
            found.append(f"log {path.name}")
    assert found == []
    assert logs.exists() and any(
        b"linked_account_synced" in p.read_bytes() for p in logs.rglob("*.*") if p.is_file()
    )
