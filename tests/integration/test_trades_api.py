"""Orders through the API, the PortfolioShard actors and the BrokerGateway on the paper broker.

Real PostgreSQL, Redis and Ray. Each test checks the money to the cent: what the fills cost
is what left the cash, and what was sold is what left the lots.
"""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.people import Investor

pytestmark = pytest.mark.integration


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def quote(investor: Investor, symbol: str) -> dict[str, Any]:
    response = investor.get(f"/api/v1/quotes/{symbol}")
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def commission(quantity: D, price: D) -> D:
    return min(max(quantity * D("0.005"), D("1.00")), quantity * price * D("0.01")).quantize(D("0.0001"))


def cash(investor: Investor, portfolio_id: object) -> D:
    return D(investor.get(f"/api/v1/portfolios/{portfolio_id}").json()["data"]["cash_balance"])


def wait_for_status(
    investor: Investor, order_id: str, wanted: set[str], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = investor.get(f"/api/v1/trades/{order_id}")
        if response.status_code == 429:  # polling spends the rate limit like any client
            time.sleep(float(response.headers["Retry-After"]))
            continue
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()["data"]
        if order["status"] in wanted or time.monotonic() > deadline:
            return order
        time.sleep(0.3)


# Placing and filling ----------------------------------------------------------------------------


def test_a_market_buy_fills_at_the_ask_and_its_cost_leaves_the_cash_to_the_cent(investor: Investor) -> None:
    p = investor.funded("10000.00")
    ask = D(quote(investor, "AAPL")["ask"])
    placed = investor.trade(p["id"], symbol="AAPL", side="buy", quantity="10")
    assert placed.status_code == 201, placed.text
    order = placed.json()["data"]
    assert order["status"] == "filled" and order["filled_quantity"] == "10.000000"
    assert len(order["fills"]) == 1 and D(order["fills"][0]["price"]) == ask
    cost = 10 * ask + commission(D(10), ask)
    assert D(order["fills"][0]["commission"]) == commission(D(10), ask)
    assert order["reserved_cash"] == "0.0000"
    assert cash(investor, p["id"]) == D("10000.00") - cost
    holdings = investor.get(f"/api/v1/portfolios/{p['id']}/holdings").json()["data"]
    assert [(h["symbol"], h["shares"]) for h in holdings] == [("AAPL", "10.000000")]
    lots = investor.get(f"/api/v1/portfolios/{p['id']}/lots").json()["data"]
    assert [D(lot["cost_basis"]) for lot in lots] == [cost]


def test_a_sell_relieves_lots_by_the_chosen_method_and_books_the_realized_gain(
    investor: Investor, database_url: str
) -> None:
    p = investor.funded("1000.00")
    for shares, basis, day in (("10", "500.00", "2021-01-04"), ("10", "2000.00", "2021-06-01")):
        lot = {"symbol": "MSFT", "shares": shares, "cost_basis": basis, "acquired_at": day}
        assert investor.post(f"/api/v1/portfolios/{p['id']}/lots", lot, str(uuid.uuid4())).status_code == 201
    investor.confirm_transfers(p["id"])
    bid = D(quote(investor, "MSFT")["bid"])
    sold = investor.trade(p["id"], symbol="MSFT", side="sell", quantity="10", lot_method="hifo")
    assert sold.status_code == 201 and sold.json()["data"]["status"] == "filled", sold.text
    left = investor.get(f"/api/v1/portfolios/{p['id']}/lots").json()["data"]
    assert [(lot["cost_basis"], lot["shares"]) for lot in left] == [("500.0000", "10.000000")]
    proceeds = 10 * bid - commission(D(10), bid)
    assert cash(investor, p["id"]) == D("1000.00") + proceeds
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT proceeds, cost_basis, gain_loss, term FROM realized_lots WHERE portfolio_id = %s",
            (p["id"],),
        ).fetchone()
    assert row == (proceeds, D(2000), proceeds - 2000, "long")


def test_a_large_order_fills_in_parts_and_costs_exactly_its_fills(investor: Investor) -> None:
    p = investor.funded("600000.00")
    ask = D(quote(investor, "AAPL")["ask"])
    quantity = (D(300_000) / ask).to_integral_value() + 100  # above the 250,000 a step fills
    placed = investor.trade(p["id"], symbol="AAPL", side="buy", quantity=str(quantity))
    assert placed.status_code == 201, placed.text
    order = wait_for_status(investor, placed.json()["data"]["id"], {"filled"})
    assert order["status"] == "filled" and len(order["fills"]) == 2
    cost = sum(D(f["quantity"]) * D(f["price"]) + D(f["commission"]) for f in order["fills"])
    assert sum(D(f["quantity"]) for f in order["fills"]) == quantity
    assert cash(investor, p["id"]) == D("600000.00") - cost


def test_a_resting_limit_order_holds_cash_back_until_it_is_cancelled(investor: Investor) -> None:
    p = investor.funded("1000.00")
    last = D(quote(investor, "KO")["last"])
    limit = (last * D("0.8")).quantize(D("0.01"))
    shares = (D(900) / limit).to_integral_value(rounding="ROUND_DOWN")
    resting = investor.trade(
        p["id"],
        symbol="KO",
        side="buy",
        quantity=str(shares),
        order_type="limit",
        limit_price=str(limit),
        time_in_force="gtc",
    )
    assert resting.status_code == 201, resting.text
    order = resting.json()["data"]
    assert order["status"] == "submitted" and D(order["reserved_cash"]) > D(0)
    short = investor.trade(p["id"], symbol="KO", side="buy", quantity="5")
    assert short.status_code == 400 and short.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    details = short.json()["error"]["details"]
    assert D(details["available"]) == D("1000.00") - D(order["reserved_cash"])
    cancelled = investor.delete(f"/api/v1/trades/{order['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["data"]["status"] == "cancelled"
    assert cancelled.json()["data"]["reserved_cash"] == "0.0000"
    again = investor.delete(f"/api/v1/trades/{order['id']}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "ORDER_NOT_OPEN"
    assert investor.trade(p["id"], symbol="KO", side="buy", quantity="5").status_code == 201
    listed = investor.get("/api/v1/trades", params={"portfolio_id": p["id"]}).json()["data"]
    assert [o["status"] for o in listed] == ["filled", "cancelled"]
    assert investor.get("/api/v1/trades", params={"status": "open"}).json()["data"] == []


# Idempotency ------------------------------------------------------------------------------------


def test_the_same_key_returns_the_same_order_and_a_different_body_is_409(investor: Investor) -> None:
    p = investor.funded("5000.00")
    key = str(uuid.uuid4())
    first = investor.trade(p["id"], key, symbol="PEP", side="buy", quantity="3")
    again = investor.trade(p["id"], key, symbol="PEP", side="buy", quantity="3")
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert again.json()["data"]["status"] == "filled"
    other = investor.trade(p["id"], key, symbol="PEP", side="buy", quantity="4")
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    missing = investor.post(
        "/api/v1/trades", {"portfolio_id": p["id"], "symbol": "PEP", "side": "buy", "quantity": "1"}
    )
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert len(investor.get("/api/v1/trades").json()["data"]) == 1


def test_the_same_post_delivered_twice_at_once_makes_one_order(investor: Investor) -> None:
    p = investor.funded("5000.00")
    key = str(uuid.uuid4())
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(investor.trade(p["id"], key, symbol="JNJ", side="buy", quantity="2"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["data"]["id"] for a in answers}) == 1
    order = wait_for_status(investor, answers[0].json()["data"]["id"], {"filled"})
    assert len(order["fills"]) == 1
    assert len(investor.get(f"/api/v1/portfolios/{p['id']}/lots").json()["data"]) == 1


# Refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "code", "field"),
    [
        ({"quantity": "0"}, "INVALID_TRADE", "quantity"),
        ({"quantity": "-5"}, "INVALID_TRADE", "quantity"),
        ({"quantity": "1.5", "order_type": "limit", "limit_price": "10.00"}, "INVALID_TRADE", "quantity"),
        ({"quantity": "1", "order_type": "limit"}, "INVALID_TRADE", "limit_price"),
        ({"quantity": "1", "order_type": "stop", "stop_price": "1.00"}, "INVALID_TRADE", "stop_price"),
        ({"quantity": "1", "symbol": "ZZZZ"}, "UNKNOWN_SYMBOL", None),
        ({"quantity": "abc"}, "VALIDATION_ERROR", None),
        ({"quantity": 5}, "VALIDATION_ERROR", None),
        ({"quantity": "1", "side": "short"}, "VALIDATION_ERROR", None),
        ({"quantity": "1", "lot_method": "hifo"}, "INVALID_TRADE", "lot_method"),
        ({"quantity": "1", "leverage": "10"}, "VALIDATION_ERROR", None),
    ],
)
def test_bad_orders_are_refused_with_the_field_and_change_nothing(
    investor: Investor, order: dict[str, Any], code: str, field: str | None
) -> None:
    p = investor.funded("1000.00")
    response = investor.trade(p["id"], **{"symbol": "AAPL", "side": "buy", **order})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if field:
        assert error["details"]["field"] == field
    assert investor.get("/api/v1/trades").json()["data"] == []
    assert cash(investor, p["id"]) == D("1000.00")


def test_selling_shares_you_do_not_have_and_buying_beyond_cash_say_what_is_missing(
    investor: Investor,
) -> None:
    p = investor.funded("100.00")
    sell = investor.trade(p["id"], symbol="XOM", side="sell", quantity="1")
    assert sell.status_code == 400 and sell.json()["error"]["code"] == "INSUFFICIENT_SHARES"
    assert sell.json()["error"]["details"] == {"symbol": "XOM", "required": "1", "available": "0"}
    buy = investor.trade(p["id"], symbol="XOM", side="buy", quantity="100")
    assert buy.status_code == 400 and buy.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    details = buy.json()["error"]["details"]
    assert D(details["required"]) > D(details["available"]) == D("100.00")
    assert investor.get("/api/v1/trades").json()["data"] == []


def test_someone_elses_portfolio_and_orders_are_404(http: httpx.Client, database_url: str) -> None:
    owner, stranger = Investor(http, database_url), Investor(http, database_url)
    p = owner.funded("1000.00")
    order = owner.trade(p["id"], symbol="KO", side="buy", quantity="1").json()["data"]
    theirs = stranger.trade(p["id"], symbol="KO", side="buy", quantity="1")
    assert theirs.status_code == 404
    assert stranger.get(f"/api/v1/trades/{order['id']}").status_code == 404
    assert stranger.delete(f"/api/v1/trades/{order['id']}").status_code == 404
    assert stranger.get(f"/api/v1/trades/{uuid.uuid4()}").status_code == 404
    assert stranger.get("/api/v1/trades", params={"portfolio_id": p["id"]}).status_code == 404
    filled = owner.delete(f"/api/v1/trades/{order['id']}")
    assert filled.status_code == 409 and filled.json()["error"]["details"] == {"status": "filled"}


# Faults -----------------------------------------------------------------------------------------


def test_killing_the_broker_gateway_between_placing_and_filling_loses_and_doubles_nothing(
    investor: Investor, api_settings: dict[str, str]
) -> None:
    """Large orders fill their first part as they are placed and the rest in the gateway's paper book,
    tick by tick: the gateway dies with some in its book and others on their way to it."""
    import ray

    from actors.directory import GATEWAY_NAME
    from wealthalloc.config import Settings

    p = investor.funded("2000000.00")
    ask = D(quote(investor, "AAPL")["ask"])
    quantity = str((D(260_000) / ask).to_integral_value())  # above the 250,000 one step fills
    warm = investor.trade(p["id"], symbol="AAPL", side="buy", quantity="1")
    assert warm.status_code == 201, warm.text  # the gateway is up
    namespace = Settings(**api_settings).ray_namespace  # type: ignore[arg-type]
    gateway = ray.get_actor(GATEWAY_NAME, namespace=namespace)
    placed: list[dict[str, Any]] = []

    def place_many() -> None:
        for _ in range(6):
            response = investor.trade(p["id"], symbol="AAPL", side="buy", quantity=quantity)
            assert response.status_code == 201, response.text
            placed.append(response.json()["data"])

    worker = threading.Thread(target=place_many)
    worker.start()
    time.sleep(0.3)
    ray.kill(gateway, no_restart=False)
    worker.join()
    assert {o["status"] for o in placed} == {"partially_filled"}  # each answered with its first part
    orders = [wait_for_status(investor, o["id"], {"filled"}, timeout=60) for o in placed]
    assert [o["status"] for o in orders] == ["filled"] * 6
    assert all(len(o["fills"]) == 2 for o in orders)
    assert all(sum(D(f["quantity"]) for f in o["fills"]) == D(quantity) for o in orders)
    holdings = investor.get(f"/api/v1/portfolios/{p['id']}/holdings").json()["data"]
    assert D(holdings[0]["shares"]) == 6 * D(quantity) + 1
    spent = sum(
        D(f["quantity"]) * D(f["price"]) + D(f["commission"])
        for o in [*orders, warm.json()["data"]]
        for f in o["fills"]
    )
    assert cash(investor, p["id"]) == D("2000000.00") - spent


def test_a_gateway_killed_for_good_is_replaced_and_the_rest_it_never_got_still_fills(
    investor: Investor, api_settings: dict[str, str]
) -> None:
    """The shard's hand-off of an order's remainder fails against a dead gateway; the order is safe in
    PostgreSQL, and the successor (started by the next caller, here /health) takes it and fills it."""
    import ray

    from actors.directory import GATEWAY_NAME
    from wealthalloc.config import Settings

    p = investor.funded("700000.00")
    assert investor.trade(p["id"], symbol="KO", side="buy", quantity="1").status_code == 201
    namespace = Settings(**api_settings).ray_namespace  # type: ignore[arg-type]
    ray.kill(ray.get_actor(GATEWAY_NAME, namespace=namespace), no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get_actor(GATEWAY_NAME, namespace=namespace)
        except ValueError:
            break
        time.sleep(0.2)
    ask = D(quote(investor, "AAPL")["ask"])
    quantity = (D(300_000) / ask).to_integral_value()
    placed = investor.trade(p["id"], symbol="AAPL", side="buy", quantity=str(quantity))
    assert placed.status_code == 201, placed.text
    assert placed.json()["data"]["status"] == "partially_filled"
    investor.get("/health")
    order = wait_for_status(investor, placed.json()["data"]["id"], {"filled"}, timeout=60)
    assert order["status"] == "filled" and len(order["fills"]) == 2
    assert sum(D(f["quantity"]) for f in order["fills"]) == quantity


def test_fills_and_orders_are_published_as_trade_events(investor: Investor, database_url: str) -> None:
    p = investor.funded("1000.00")
    order = investor.trade(p["id"], symbol="KO", side="buy", quantity="1").json()["data"]
    with psycopg.connect(database_url) as conn:
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT event_type FROM events WHERE aggregate_id = %s ORDER BY sequence", (order["id"],)
            ).fetchall()
        ]
    assert kinds == ["trades.order_placed", "trades.executed"]


# Quotes and history -----------------------------------------------------------------------------


def test_quotes_straddle_the_close_and_unknown_symbols_are_404(investor: Investor) -> None:
    q = quote(investor, "AAPL")
    assert D(q["bid"]) < D(q["last"]) < D(q["ask"]) and q["source"] == "paper" and q["stale"] is False
    assert quote(investor, "AAPL") == q  # the cached quote, same timestamp
    missing = investor.get("/api/v1/quotes/ZZZZ")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "UNKNOWN_SYMBOL"


def test_history_bars_come_from_the_closes(investor: Investor) -> None:
    daily = investor.get("/api/v1/history/AAPL", params={"start": "2022-01-03", "end": "2022-01-31"})
    assert daily.status_code == 200
    bars = daily.json()["data"]["bars"]
    assert len(bars) == 20 and bars[0]["date"] == "2022-01-03" and bars[0]["open"] is None
    monthly = investor.get(
        "/api/v1/history/AAPL", params={"start": "2022-01-01", "end": "2022-03-31", "interval": "1mo"}
    ).json()["data"]["bars"]
    assert len(monthly) == 3
    assert monthly[0]["close"] == bars[-1]["close"]
    assert max(D(b["close"]) for b in bars) == D(monthly[0]["high"])
    backwards = investor.get("/api/v1/history/AAPL", params={"start": "2022-02-01", "end": "2022-01-01"})
    assert backwards.status_code == 400


# Rebalancing through the trading path -----------------------------------------------------------

TARGET = {
    "asset_class": {"equity": "0.90", "cash": "0.10"},
    "sector": {"Information Technology": "0.45", "Health Care": "0.45"},
}


def test_rebalancing_for_real_places_the_plan_once_per_key_and_lands_inside_the_bands(
    investor: Investor,
) -> None:
    p = investor.portfolio("Growth", target_allocation=TARGET)
    investor.deposit(p["id"], "1000.00")
    lot = {"symbol": "AAPL", "shares": "100", "cost_basis": "10000.00", "acquired_at": "2020-01-02"}
    investor.post(f"/api/v1/portfolios/{p['id']}/lots", lot, str(uuid.uuid4()))
    investor.confirm_transfers(p["id"])
    path = f"/api/v1/portfolios/{p['id']}/rebalance"
    assert investor.post(path, {"dry_run": False}).json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    key = str(uuid.uuid4())
    done = investor.post(path, {"dry_run": False}, key)
    assert done.status_code == 201, done.text
    result = done.json()["data"]
    assert result["dry_run"] is False and result["refused"] == []
    assert [o["status"] for o in result["placed"]] == ["filled"] * len(result["orders"])
    assert result["placed"][0]["side"] == "sell" and result["placed"][0]["origin"] == "rebalance"
    again = investor.post(path, {"dry_run": False}, key).json()["data"]
    assert [o["id"] for o in again["placed"]] == [o["id"] for o in result["placed"]]
    assert len(investor.get("/api/v1/trades").json()["data"]) == len(result["placed"])
    after = investor.get(f"/api/v1/portfolios/{p['id']}/allocation").json()["data"]
    for row in after["by_sector"]:
        if row["target_weight"] is not None:
            assert abs(D(row["drift"])) <= D("0.05"), row
    portfolio = investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]
    assert portfolio["last_rebalance_date"] is not None and D(portfolio["cash_balance"]) >= 0
