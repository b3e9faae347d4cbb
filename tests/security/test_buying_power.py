"""Cash that is not free cannot leave: open buys' reservations and unsettled sale proceeds.

The hostile review deposited 1000, placed a GTC limit buy away from the market
that reserved 501, and withdrew 1000: the withdrawal went through, leaving the
live order with no cash behind it. These tests are the rule that closed it:
withdrawable cash = cash - what open buys reserve - sale proceeds before they
settle (T+1), refused with 400 INSUFFICIENT_FUNDS naming what is available.

Real PostgreSQL, Redis and Ray with the API on Serve.
"""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error

pytestmark = pytest.mark.integration

LIMIT = D("100.00")  # far below AAPL's price in the bundled data: the order rests
RESERVED = D("501.0000")  # 5 x 100.00 + the 1.00 minimum commission


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def resting_buy(investor: Investor, portfolio_id: object) -> dict[str, Any]:
    """A GTC limit buy of 5 AAPL at 100.00, away from the market: it stays open, reserving 501.00."""
    last = D(data(investor.get("/api/v1/quotes/AAPL"))["last"])
    assert last > LIMIT * D("1.1"), "the limit must be away from the market for the order to rest"
    order = data(
        investor.trade(
            portfolio_id,
            symbol="AAPL",
            side="buy",
            quantity="5",
            order_type="limit",
            limit_price=str(LIMIT),
            time_in_force="gtc",
        ),
        201,
    )
    assert order["status"] in ("pending", "submitted") and D(order["reserved_cash"]) == RESERVED
    return order  # type: ignore[no-any-return]


def portfolio(investor: Investor, portfolio_id: object) -> dict[str, Any]:
    return data(investor.get(f"/api/v1/portfolios/{portfolio_id}"))  # type: ignore[no-any-return]


def settle_sales(database_url: str, portfolio_id: object) -> None:
    """A week passes for the portfolio's sales: their proceeds have settled."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            """UPDATE fills SET market_date = market_date - 7
               WHERE order_id IN (SELECT id FROM orders WHERE portfolio_id = %s AND side = 'sell')""",
            (portfolio_id,),
        )


# Reservations -----------------------------------------------------------------------------------


def test_a_withdrawal_cannot_take_the_cash_an_open_buy_reserved(investor: Investor) -> None:
    p = investor.funded("1000.00")
    order = resting_buy(investor, p["id"])

    refused = error(investor.deposit(p["id"], "-1000.00"), 400, "INSUFFICIENT_FUNDS")
    assert "499.0000 available" in refused["message"]
    assert refused["details"]["available"] == "499.0000"
    assert refused["details"]["reserved_cash"] == "501.0000"
    assert refused["details"]["requested"] == "1000.00"

    shown = portfolio(investor, p["id"])
    assert (shown["cash_balance"], shown["reserved_cash"], shown["available_cash"]) == (
        "1000.0000",
        "501.0000",
        "499.0000",
    )
    assert shown["unsettled_cash"] == "0.0000"
    listed = {row["id"]: row for row in data(investor.get("/api/v1/portfolios"))}
    assert listed[p["id"]]["available_cash"] == "499.0000"
    dashboard = data(investor.get("/api/v1/dashboard"))
    assert (dashboard["reserved_cash"], dashboard["available_cash"]) == ("501.0000", "499.0000")

    taken = data(investor.deposit(p["id"], "-499.00"), 201)
    assert (taken["cash_balance"], taken["available_cash"]) == ("501.0000", "0.0000")
    still = data(investor.get(f"/api/v1/trades/{order['id']}"))
    assert still["status"] in ("pending", "submitted") and D(still["reserved_cash"]) == RESERVED
    error(investor.deposit(p["id"], "-0.01"), 400, "INSUFFICIENT_FUNDS")

    # Cancelled, the order gives its reservation back, and the cash can leave.
    assert investor.delete(f"/api/v1/trades/{order['id']}").status_code == 200
    assert data(investor.deposit(p["id"], "-501.00"), 201)["cash_balance"] == "0.0000"


def test_a_portfolio_with_an_open_order_cannot_be_deleted(investor: Investor) -> None:
    p = investor.funded("1000.00")
    order = resting_buy(investor, p["id"])
    refused = error(investor.delete(f"/api/v1/portfolios/{p['id']}"), 409, "PORTFOLIO_NOT_EMPTY")
    assert refused["details"] == {"open_orders": [order["id"]]}
    assert "Cancel the open orders" in refused["message"]


def test_rebalancing_spends_only_cash_no_open_buy_reserved(investor: Investor) -> None:
    target = {
        "asset_class": {"equity": "0.90", "cash": "0.10"},
        "sector": {"Information Technology": "0.45", "Health Care": "0.45"},
    }
    p = investor.portfolio("Growth", target_allocation=target)
    investor.deposit(p["id"], "1000.00")
    lot = {"symbol": "AAPL", "shares": "100", "cost_basis": "10000.00", "acquired_at": "2020-01-02"}
    data(investor.post(f"/api/v1/portfolios/{p['id']}/lots", lot, str(uuid.uuid4())), 201)
    investor.confirm_transfers(p["id"])
    order = resting_buy(investor, p["id"])
    done = data(
        investor.post(f"/api/v1/portfolios/{p['id']}/rebalance", {"dry_run": False}, str(uuid.uuid4())), 201
    )
    assert done["refused"] == [] and done["placed"]
    still = data(investor.get(f"/api/v1/trades/{order['id']}"))
    assert still["status"] in ("pending", "submitted") and D(still["reserved_cash"]) == RESERVED
    shown = portfolio(investor, p["id"])
    assert D(shown["cash_balance"]) >= D(shown["reserved_cash"]) == RESERVED


def test_a_harvest_buys_its_replacement_without_the_cash_an_open_buy_reserved(investor: Investor) -> None:
    p = investor.funded("1000.00")
    lot = {"symbol": "AMD", "shares": "100", "cost_basis": "11000.00", "acquired_at": "2021-06-01"}
    data(investor.post(f"/api/v1/portfolios/{p['id']}/lots", lot, str(uuid.uuid4())), 201)
    investor.confirm_transfers(p["id"])
    order = resting_buy(investor, p["id"])
    [opportunity] = data(investor.get("/api/v1/tax-harvesting", params={"portfolio_id": p["id"]}))[
        "opportunities"
    ]
    replacement = opportunity["replacement_candidates"][0]["symbol"]
    done = data(
        investor.post(
            f"/api/v1/tax-harvesting/{opportunity['id']}/execute",
            {"replacement_symbol": replacement},
            str(uuid.uuid4()),
        ),
        201,
    )
    assert done["refused"] == [] and done["orders"]["buy"]["status"] == "filled"
    still = data(investor.get(f"/api/v1/trades/{order['id']}"))
    assert still["status"] in ("pending", "submitted") and D(still["reserved_cash"]) == RESERVED
    shown = portfolio(investor, p["id"])
    assert D(shown["cash_balance"]) >= RESERVED
    assert D(shown["available_cash"]) == max(
        D(shown["cash_balance"]) - RESERVED - D(shown["unsettled_cash"]), D(0)
    )
    error(investor.deposit(p["id"], f"-{D(shown['available_cash']) + D('0.01')}"), 400, "INSUFFICIENT_FUNDS")


def test_an_accepted_recommendation_is_sized_on_cash_no_open_buy_reserved(investor: Investor) -> None:
    p = investor.portfolio("Concentrated")
    investor.deposit(p["id"], "20000.00")
    for symbol, shares, basis in (
        ("AAPL", "400", "20000.00"),
        ("KO", "50", "2000.00"),
        ("JNJ", "20", "2000.00"),
    ):
        lot = {"symbol": symbol, "shares": shares, "cost_basis": basis, "acquired_at": "2015-01-02"}
        data(investor.post(f"/api/v1/portfolios/{p['id']}/lots", lot, str(uuid.uuid4())), 201)
    investor.confirm_transfers(p["id"])
    big = data(
        investor.trade(
            p["id"],
            symbol="AAPL",
            side="buy",
            quantity="190",
            order_type="limit",
            limit_price=str(LIMIT),
            time_in_force="gtc",
        ),
        201,
    )
    assert D(big["reserved_cash"]) == D("19001.0000")
    recs = data(investor.get(f"/api/v1/recommendations?portfolio_id={p['id']}&status=open"))
    [rebalance] = [r for r in recs if r["kind"] == "rebalance"]
    accepted = data(
        investor.post(f"/api/v1/recommendations/{rebalance['id']}/accept", None, str(uuid.uuid4())), 201
    )
    assert accepted["refused"] == [] and accepted["placed"]
    still = data(investor.get(f"/api/v1/trades/{big['id']}"))
    assert still["status"] in ("pending", "submitted") and D(still["reserved_cash"]) == D("19001.0000")
    shown = portfolio(investor, p["id"])
    assert D(shown["cash_balance"]) >= D(shown["reserved_cash"]) == D("19001.0000")


# Settlement -------------------------------------------------------------------------------------


def test_sale_proceeds_may_buy_at_once_but_leave_only_once_settled(
    investor: Investor, database_url: str
) -> None:
    p = investor.funded("100.00")
    lot = {"symbol": "KO", "shares": "10", "cost_basis": "500.00", "acquired_at": "2020-01-02"}
    data(investor.post(f"/api/v1/portfolios/{p['id']}/lots", lot, str(uuid.uuid4())), 201)
    investor.confirm_transfers(p["id"])
    sale = data(investor.trade(p["id"], symbol="KO", side="sell", quantity="10"), 201)
    assert sale["status"] == "filled"
    fill = sale["fills"][0]
    proceeds = (D(fill["quantity"]) * D(fill["price"])).quantize(D("0.0001")) - D(fill["commission"])

    shown = portfolio(investor, p["id"])
    assert D(shown["cash_balance"]) == D("100.00") + proceeds
    assert D(shown["unsettled_cash"]) == proceeds
    assert D(shown["available_cash"]) == D("100.00")
    refused = error(investor.deposit(p["id"], "-100.01"), 400, "INSUFFICIENT_FUNDS")
    assert refused["details"]["available"] == "100.0000"
    assert D(refused["details"]["unsettled_cash"]) == proceeds

    # Unsettled proceeds buy, as a cash account's may: 2 KO cost more than the settled 100.00.
    rebuy = data(investor.trade(p["id"], symbol="KO", side="buy", quantity="2"), 201)
    assert rebuy["status"] == "filled"
    after_buy = portfolio(investor, p["id"])
    cash = D(after_buy["cash_balance"])
    assert cash < proceeds and D(after_buy["available_cash"]) == 0
    error(investor.deposit(p["id"], "-1.00"), 400, "INSUFFICIENT_FUNDS")

    settle_sales(database_url, p["id"])
    emptied = data(investor.deposit(p["id"], f"-{cash}"), 201)
    assert emptied["cash_balance"] == "0.0000" and emptied["unsettled_cash"] == "0.0000"


# The API key cell of the matrix ------------------------------------------------------------------


@pytest.mark.parametrize("scopes", [["trade"], ["read", "trade"]])
def test_an_api_key_can_neither_withdraw_nor_deposit(
    investor: Investor, http: httpx.Client, scopes: list[str]
) -> None:
    p = investor.funded("100.00")
    key = data(investor.post("/api/v1/api-keys", {"name": "bot", "scopes": scopes}), 201)["key"]
    for amount in ("-50.00", "50.00"):
        response = http.post(
            f"/api/v1/portfolios/{p['id']}/cash",
            json={"amount": amount},
            headers={"X-API-Key": key, "Idempotency-Key": str(uuid.uuid4()), "X-Forwarded-For": investor.ip},
        )
        refused = error(response, 403, "FORBIDDEN")
        assert "signed-in person" in refused["message"]
    assert portfolio(investor, p["id"])["cash_balance"] == "100.0000"


# Racing -----------------------------------------------------------------------------------------


def test_concurrent_withdrawals_and_buys_never_spend_reserved_or_missing_cash(
    investor: Investor, api_url: str, database_url: str
) -> None:
    """20 withdrawals and buys at once, against one reservation and one balance: the shard serializes
    the user's changes, so PostgreSQL ends consistent and every 201 is in it exactly once."""
    p = investor.funded("1000.00")
    order = resting_buy(investor, p["id"])
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(20):
        key = str(uuid.uuid4())
        if i % 2:
            requests.append((key, f"/api/v1/portfolios/{p['id']}/cash", {"amount": "-60.00"}))
        else:
            body = {"portfolio_id": p["id"], "symbol": "KO", "side": "buy", "quantity": "1"}
            requests.append((key, "/api/v1/trades", {**body, "order_type": "market"}))
    answers: dict[str, httpx.Response] = {}
    start = threading.Barrier(len(requests))

    def send(key: str, path: str, body: dict[str, Any]) -> None:
        with httpx.Client(base_url=api_url, timeout=60) as client:
            start.wait()
            answers[key] = client.post(path, json=body, headers={**investor.headers, "Idempotency-Key": key})

    threads = [threading.Thread(target=send, args=r) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    for key, _path, _ in requests:
        assert answers[key].status_code in (201, 400), answers[key].text
        if answers[key].status_code == 400:
            assert answers[key].json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    withdrawn = {k for k, path, _ in requests if path.endswith("/cash") and answers[k].status_code == 201}
    bought = {k for k, path, _ in requests if path == "/api/v1/trades" and answers[k].status_code == 201}
    assert withdrawn and len(withdrawn) < 10  # some went through, not all of them could

    with psycopg.connect(database_url) as conn:
        cash, version = conn.execute(
            "SELECT cash_balance, version FROM portfolios WHERE id = %s", (p["id"],)
        ).fetchone()  # type: ignore[misc]
        reserved = conn.execute(
            """SELECT coalesce(sum(reserved_cash), 0) FROM orders
               WHERE portfolio_id = %s AND side = 'buy'
                 AND status IN ('pending', 'submitted', 'partially_filled')""",
            (p["id"],),
        ).fetchone()[0]  # type: ignore[index]
        movements = conn.execute(
            "SELECT idempotency_key, amount, kind FROM cash_movements WHERE portfolio_id = %s", (p["id"],)
        ).fetchall()
        orders = conn.execute(
            "SELECT idempotency_key, status FROM orders WHERE portfolio_id = %s AND id <> %s",
            (p["id"], order["id"]),
        ).fetchall()

    assert cash >= 0
    assert cash >= reserved == RESERVED
    withdrawals = [(k, amount) for k, amount, kind in movements if kind == "withdrawal"]
    assert sorted(k for k, _ in withdrawals) == sorted(withdrawn)  # each 201 once, no refused one
    assert sorted(k for k, _ in orders) == sorted(bought)
    assert all(status == "filled" for _, status in orders)
    fills = -sum((amount for _, amount, kind in movements if kind == "trade"), D(0))
    taken = -sum((amount for _, amount in withdrawals), D(0))
    assert taken + fills + reserved <= D("1000.00")
    assert cash == D("1000.00") - taken - fills
    assert version > 0
