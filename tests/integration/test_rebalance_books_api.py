"""Several portfolios rebalanced in one call: ``POST /api/v1/portfolios:rebalance``.

Real PostgreSQL, Redis and Ray, paper broker. Every plan is made before anything is placed, then
all the plans' orders are placed in one transaction, order ``i`` of the ``n``-th portfolio under
the derived key ``{key}/{n}/{i}``; the request as a whole answers once per key.
"""

from __future__ import annotations

import uuid
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error

pytestmark = pytest.mark.integration

PATH = "/api/v1/portfolios:rebalance"
TARGET = {
    "asset_class": {"equity": "0.90", "cash": "0.10"},
    "sector": {"Information Technology": "0.45", "Health Care": "0.45"},
}


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def cash_book(investor: Investor, amount: str = "10000.00") -> dict[str, Any]:
    p = investor.portfolio(f"Target {uuid.uuid4().hex[:6]}", target_allocation=TARGET)
    investor.deposit(p["id"], amount)
    return p


def book_holding_apple(investor: Investor, *, confirmed: bool) -> dict[str, Any]:
    """A portfolio all in AAPL (transferred in): its plan sells some to buy Health Care."""
    p = investor.portfolio(f"Apple {uuid.uuid4().hex[:6]}", target_allocation=TARGET)
    investor.deposit(p["id"], "100.00")
    lot = {"symbol": "AAPL", "shares": "100", "cost_basis": "10000.00", "acquired_at": "2020-01-02"}
    investor.post(f"/api/v1/portfolios/{p['id']}/lots", lot, str(uuid.uuid4()))
    if confirmed:
        investor.confirm_transfers(p["id"])
    return p


def rebalance(investor: Investor, ids: list[Any], key: str | None, **body: Any) -> httpx.Response:
    return investor.post(PATH, {"portfolio_ids": [str(i) for i in ids], "dry_run": False, **body}, key)


def orders_of(investor: Investor) -> list[dict[str, Any]]:
    return data(investor.get("/api/v1/trades", params={"limit": 200}))  # type: ignore[no-any-return]


def portfolio(investor: Investor, portfolio_id: object) -> dict[str, Any]:
    return data(investor.get(f"/api/v1/portfolios/{portfolio_id}"))  # type: ignore[no-any-return]


def aged_apart(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A plan's orders less their quotes' age, which moves on with the clock between two requests."""
    return [{**o, "quote": {k: v for k, v in o["quote"].items() if k != "age_seconds"}} for o in orders]


def test_a_dry_run_shows_each_portfolio_s_plan_and_places_nothing(investor: Investor) -> None:
    a, b = cash_book(investor), book_holding_apple(investor, confirmed=True)

    answer = data(investor.post(PATH, {"portfolio_ids": [a["id"], b["id"]]}))

    assert answer["dry_run"] is True
    assert [plan["portfolio_id"] for plan in answer["portfolios"]] == [a["id"], b["id"]]
    one = data(investor.post(f"/api/v1/portfolios/{b['id']}/rebalance", {"dry_run": True}))
    together, alone = answer["portfolios"][1]["orders"], one["orders"]
    assert aged_apart(together) == aged_apart(alone)  # the same plan as asked alone
    for earlier, later in zip(together, alone, strict=True):  # the same quotes, read a moment later
        assert 0 <= later["quote"]["age_seconds"] - earlier["quote"]["age_seconds"] <= 5
    assert {o["side"] for o in answer["portfolios"][0]["orders"]} == {"buy"}
    assert orders_of(investor) == []


def test_every_plan_is_placed_in_one_transaction_each_order_under_its_own_key(investor: Investor) -> None:
    a, b = cash_book(investor), book_holding_apple(investor, confirmed=True)
    key = str(uuid.uuid4())

    answer = data(rebalance(investor, [a["id"], b["id"]], key), 201)

    assert answer["dry_run"] is False
    plans = answer["portfolios"]
    assert [plan["portfolio_id"] for plan in plans] == [a["id"], b["id"]]
    for plan in plans:
        assert plan["refused"] == []
        assert [o["status"] for o in plan["placed"]] == ["filled"] * len(plan["orders"])
        assert {o["portfolio_id"] for o in plan["placed"]} == {plan["portfolio_id"]}
        assert all(o["origin"] == "rebalance" for o in plan["placed"])
        after = data(investor.get(f"/api/v1/portfolios/{plan['portfolio_id']}/allocation"))
        for row in after["by_sector"]:
            if row["target_weight"] is not None:
                assert abs(D(row["drift"])) <= D("0.05"), row
        book = portfolio(investor, plan["portfolio_id"])
        assert book["last_rebalance_date"] is not None and D(book["cash_balance"]) >= 0
    assert plans[1]["placed"][0]["side"] == "sell"  # a portfolio's sells come before its buys
    with psycopg.connect(investor.database_url) as conn:
        keyed = conn.execute(
            "SELECT idempotency_key, portfolio_id::text FROM orders WHERE user_id = %s", (investor.id,)
        ).fetchall()
        writers = conn.execute(
            """SELECT xmin::text FROM idempotency_keys WHERE key = %(key)s OR key LIKE %(like)s
               UNION SELECT o.xmin::text FROM orders o WHERE o.idempotency_key LIKE %(like)s
               UNION SELECT f.xmin::text FROM fills f JOIN orders o ON o.id = f.order_id
                     WHERE o.idempotency_key LIKE %(like)s""",
            {"key": key, "like": f"{key}/%"},
        ).fetchall()
    expected = {
        (f"{key}/{n}/{i}", plan["portfolio_id"])
        for n, plan in enumerate(plans)
        for i in range(len(plan["orders"]))
    }
    assert set(keyed) == expected
    assert len(writers) == 1


def test_the_same_key_places_nothing_twice_and_other_portfolios_under_it_are_409(investor: Investor) -> None:
    a, b = cash_book(investor), cash_book(investor)
    key = str(uuid.uuid4())

    first = data(rebalance(investor, [a["id"], b["id"]], key), 201)
    again = data(rebalance(investor, [a["id"], b["id"]], key), 201)
    other = rebalance(investor, [a["id"]], key)

    placed = [[o["id"] for o in plan["placed"]] for plan in first["portfolios"]]
    assert [[o["id"] for o in plan["placed"]] for plan in again["portfolios"]] == placed
    error(other, 409, "IDEMPOTENCY_KEY_REUSED")
    assert len(orders_of(investor)) == sum(len(ids) for ids in placed) > 0


def test_an_order_refused_in_one_portfolio_refuses_none_of_the_others(investor: Investor) -> None:
    cash = cash_book(investor)
    pending = book_holding_apple(investor, confirmed=False)  # its shares cannot be sold yet

    answer = data(rebalance(investor, [pending["id"], cash["id"]], str(uuid.uuid4())), 201)

    held, funded = answer["portfolios"]
    # The sale is refused, and the buys its cash was to fund find too little cash.
    assert [(r["symbol"], r["side"]) for r in held["refused"]][0] == ("AAPL", "sell")
    assert {r["side"] for r in held["refused"][1:]} <= {"buy"}
    assert funded["refused"] == [] and [o["status"] for o in funded["placed"]] == ["filled"] * len(
        funded["orders"]
    )
    assert {o["portfolio_id"] for o in orders_of(investor)} <= {pending["id"], cash["id"]}


def test_a_request_that_cannot_be_taken_whole_changes_nothing(http: httpx.Client, database_url: str) -> None:
    owner, stranger = Investor(http, database_url), Investor(http, database_url)
    mine, theirs = cash_book(owner), cash_book(stranger)
    untargeted = owner.portfolio("No target")
    owner.deposit(untargeted["id"], "500.00")

    error(rebalance(owner, [mine["id"]], None), 400, "IDEMPOTENCY_KEY_REQUIRED")
    error(rebalance(owner, [], str(uuid.uuid4())), 400, "VALIDATION_ERROR")
    error(rebalance(owner, [mine["id"], mine["id"]], str(uuid.uuid4())), 400, "VALIDATION_ERROR")
    error(rebalance(owner, [uuid.uuid4() for _ in range(101)], str(uuid.uuid4())), 400, "VALIDATION_ERROR")
    error(rebalance(owner, ["not-a-uuid"], str(uuid.uuid4())), 400, "VALIDATION_ERROR")
    error(rebalance(owner, [mine["id"]], str(uuid.uuid4()), drift_band="-1"), 400, "VALIDATION_ERROR")
    bad_json = owner.http.post(
        PATH,
        content=b'{"portfolio_ids": [',
        headers={**owner.headers, "Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    error(bad_json, 400, "MALFORMED_JSON")
    foreign = error(rebalance(owner, [mine["id"], theirs["id"]], str(uuid.uuid4())), 404, "NOT_FOUND")
    assert foreign["details"][0]["field"] == "body.portfolio_ids.1"
    error(rebalance(owner, [mine["id"], uuid.uuid4()], str(uuid.uuid4())), 404, "NOT_FOUND")
    refused = error(
        rebalance(owner, [mine["id"], untargeted["id"]], str(uuid.uuid4())), 409, "NO_TARGET_ALLOCATION"
    )
    assert refused["details"]["portfolio_id"] == untargeted["id"]

    assert orders_of(owner) == [] and orders_of(stranger) == []
    assert portfolio(owner, mine["id"])["last_rebalance_date"] is None
    assert D(portfolio(owner, mine["id"])["cash_balance"]) == D("10000.00")
