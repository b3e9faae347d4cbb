"""Portfolios, cash and lots through the API on Ray Serve and the PortfolioShard actors.

Real PostgreSQL, Redis and Ray. Every amount goes in and comes out as a decimal string.
"""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import httpx
import psycopg
import pytest

from tests.integration.people import Investor


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


# Portfolios -------------------------------------------------------------------------------------


def test_the_first_portfolio_is_the_default_and_names_are_natural_keys(investor: Investor) -> None:
    first = investor.portfolio("Brokerage")
    assert first["is_default"] is True and first["account_type"] == "taxable"
    assert first["cash_balance"] == "0.0000" and first["total_value"] == "0.0000"
    again = investor.post("/api/v1/portfolios", json={"name": "Brokerage"})
    assert again.status_code == 200 and again.json()["data"]["id"] == first["id"]
    ira = investor.portfolio("Retirement", account_type="roth_ira")
    assert ira["is_default"] is False
    listed = investor.get("/api/v1/portfolios").json()["data"]
    assert [p["name"] for p in listed] == ["Brokerage", "Retirement"]
    assert investor.get("/api/v1/portfolio").json()["data"]["id"] == first["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x", "account_type": "crypto"},
        {"name": "x", "base_currency": "EUR"},
        {"name": "x", "owner": "someone"},
        {"name": 5},
    ],
)
def test_bad_portfolio_bodies_are_refused(investor: Investor, body: dict[str, object]) -> None:
    response = investor.post("/api/v1/portfolios", json=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert investor.get("/api/v1/portfolios").json()["data"] == []


def test_a_portfolio_with_cash_or_holdings_cannot_be_deleted(investor: Investor) -> None:
    p = investor.portfolio()
    empty = investor.portfolio("Spare")
    assert (
        investor.http.delete(f"/api/v1/portfolios/{empty['id']}", headers=investor.headers).status_code == 204
    )
    assert investor.get(f"/api/v1/portfolios/{empty['id']}").status_code == 404
    assert investor.deposit(p["id"], "100.00").status_code == 201
    refused = investor.http.delete(f"/api/v1/portfolios/{p['id']}", headers=investor.headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "PORTFOLIO_NOT_EMPTY"


# Cash -------------------------------------------------------------------------------------------


def test_deposit_and_withdraw_are_decimal_exact_and_read_back_at_once(investor: Investor) -> None:
    p = investor.portfolio()
    assert investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]["cash_balance"] == "0.0000"  # cached
    for amount in ("0.10", "0.20", "1000.05"):
        assert investor.deposit(p["id"], amount).status_code == 201
    withdrawn = investor.deposit(p["id"], "-0.35")
    assert withdrawn.status_code == 201
    assert withdrawn.json()["data"]["cash_balance"] == "1000.0000"
    assert withdrawn.json()["data"]["movement"]["kind"] == "withdrawal"
    # A read after a write never shows the cached old value.
    assert investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]["cash_balance"] == "1000.0000"


def test_the_same_idempotency_key_applies_once_and_a_different_body_is_409(
    investor: Investor, database_url: str
) -> None:
    p = investor.portfolio()
    key = str(uuid.uuid4())
    first = investor.deposit(p["id"], "250.00", key)
    second = investor.deposit(p["id"], "250.00", key)
    assert first.status_code == second.status_code == 201
    assert first.json()["data"] == second.json()["data"]
    conflict = investor.deposit(p["id"], "999.00", key)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]["cash_balance"] == "250.0000"
    no_key = investor.post(f"/api/v1/portfolios/{p['id']}/cash", {"amount": "1.00"})
    assert no_key.status_code == 400 and no_key.json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    with psycopg.connect(database_url) as conn:
        count = conn.execute(
            "SELECT count(*) FROM cash_movements WHERE portfolio_id = %s", (p["id"],)
        ).fetchone()
    assert count == (1,)


def test_a_withdrawal_larger_than_cash_is_refused_and_changes_nothing(investor: Investor) -> None:
    p = investor.portfolio()
    investor.deposit(p["id"], "100.00")
    response = investor.deposit(p["id"], "-100.01")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS"
    assert error["details"] == {
        "cash_balance": "100.0000",
        "reserved_cash": "0.0000",
        "unsettled_cash": "0.0000",
        "available_cash": "100.0000",
        "buying_power": "100.0000",
        "available": "100.0000",
        "requested": "100.01",
    }
    assert "100.0000 available" in error["message"]
    assert investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]["cash_balance"] == "100.0000"


@pytest.mark.parametrize(
    "amount",
    [
        "0",
        "0.00",
        "-0",
        "1.00001",
        "abc",
        "",
        "1e3",
        "NaN",
        "Infinity",
        "１００",
        12.5,
        100,
        None,
        "10000000000000",
    ],
)
def test_bad_amounts_are_refused(investor: Investor, amount: object) -> None:
    p = investor.portfolio()
    response = investor.post(f"/api/v1/portfolios/{p['id']}/cash", {"amount": amount}, str(uuid.uuid4()))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]["cash_balance"] == "0.0000"


def test_someone_elses_portfolio_and_unknown_ids_are_404(
    investor: Investor, http: httpx.Client, database_url: str
) -> None:
    p = investor.portfolio()
    other = Investor(http, database_url)
    for response in (
        other.get(f"/api/v1/portfolios/{p['id']}"),
        other.get(f"/api/v1/portfolios/{p['id']}/lots"),
        other.deposit(p["id"], "10.00"),
        investor.get(f"/api/v1/portfolios/{uuid.uuid4()}"),
        investor.deposit(uuid.uuid4(), "10.00"),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    assert investor.get("/api/v1/portfolios/not-a-uuid").status_code == 400


# Lots -------------------------------------------------------------------------------------------


def test_a_transferred_in_lot_becomes_a_holding_valued_at_the_clock(
    investor: Investor, http: httpx.Client
) -> None:
    p = investor.portfolio()
    lot = investor.post(
        f"/api/v1/portfolios/{p['id']}/lots",
        {"symbol": "aapl", "shares": "10.5", "cost_basis": "1234.56", "acquired_at": "2020-03-16"},
        str(uuid.uuid4()),
    )
    assert lot.status_code == 201, lot.text
    assert lot.json()["data"]["symbol"] == "AAPL" and lot.json()["data"]["term"] == "long"

    clock = http.get("/api/v1/market/clock").json()["data"]["market_date"]
    close = Decimal(
        http.post("/api/v1/market/prices", json={"symbols": ["AAPL"]}).json()["data"]["closes"]["AAPL"]
    )
    portfolio = investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]
    assert portfolio["as_of"] == clock
    [holding] = portfolio["holdings"]
    assert holding["shares"] == "10.500000"
    assert Decimal(holding["market_value"]) == (Decimal("10.5") * close).quantize(Decimal("0.0001"))
    assert Decimal(holding["unrealized_gain_loss"]) == Decimal(holding["market_value"]) - Decimal("1234.56")
    assert holding["sector"] == "Information Technology" and holding["weight"] == "1.000000"
    assert Decimal(portfolio["total_value"]) == Decimal(holding["market_value"])
    lots = investor.get(f"/api/v1/portfolios/{p['id']}/lots?symbol=AAPL").json()["data"]
    assert [row["cost_basis"] for row in lots] == ["1234.5600"]
    assert investor.get(f"/api/v1/portfolios/{p['id']}/holdings").json()["data"][0]["symbol"] == "AAPL"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"symbol": "ZZZZ", "shares": "1", "cost_basis": "1", "acquired_at": "2020-01-02"},
            404,
            "UNKNOWN_SYMBOL",
        ),
        (
            {"symbol": "AAPL", "shares": "-1", "cost_basis": "1", "acquired_at": "2020-01-02"},
            400,
            "VALIDATION_ERROR",
        ),
        (
            {"symbol": "AAPL", "shares": "0", "cost_basis": "1", "acquired_at": "2020-01-02"},
            400,
            "VALIDATION_ERROR",
        ),
        (
            {"symbol": "AAPL", "shares": "1", "cost_basis": "-5", "acquired_at": "2020-01-02"},
            400,
            "VALIDATION_ERROR",
        ),
        (
            {"symbol": "AAPL", "shares": "1.0000001", "cost_basis": "1", "acquired_at": "2020-01-02"},
            400,
            "VALIDATION_ERROR",
        ),
        (
            {"symbol": "AAPL", "shares": "1", "cost_basis": "1", "acquired_at": "2099-01-02"},
            400,
            "VALIDATION_ERROR",
        ),
        (
            {"symbol": "AAPL'--", "shares": "1", "cost_basis": "1", "acquired_at": "2020-01-02"},
            400,
            "VALIDATION_ERROR",
        ),
    ],
)
def test_bad_lots_are_refused_and_add_nothing(
    investor: Investor, body: dict[str, str], status: int, code: str
) -> None:
    p = investor.portfolio()
    response = investor.post(f"/api/v1/portfolios/{p['id']}/lots", body, str(uuid.uuid4()))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert investor.get(f"/api/v1/portfolios/{p['id']}/lots").json()["data"] == []


# Faults -----------------------------------------------------------------------------------------


def test_killing_the_shard_mid_traffic_loses_nothing_acknowledged_and_applies_nothing_twice(
    investor: Investor, api_settings: dict[str, str], database_url: str
) -> None:
    import ray

    from wealthalloc.config import Settings
    from wealthalloc.domain.sharding import shard_name, shard_of

    p = investor.portfolio()
    settings = Settings(**api_settings)
    index = shard_of(uuid.UUID(investor.id), slot_count=settings.slot_count, shard_count=settings.shard_count)
    shard = ray.get_actor(shard_name(index), namespace=settings.ray_namespace)
    pid_before = ray.get(shard.pid.remote())

    acknowledged: list[str] = []
    keys = [str(uuid.uuid4()) for _ in range(40)]
    errors: list[str] = []

    def client(my_keys: list[str]) -> None:
        with httpx.Client(base_url=str(investor.http.base_url), timeout=60) as http:
            for key in my_keys:
                answer = investor.deposit_until_answered(p["id"], "1.00", key, http=http, attempts=20)
                if answer is not None and answer.status_code == 201:
                    acknowledged.append(key)
                elif answer is not None:
                    errors.append(answer.text)

    threads = [threading.Thread(target=client, args=(keys[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    ray.kill(shard, no_restart=False)
    for t in threads:
        t.join(timeout=120)

    assert not errors, errors
    assert sorted(acknowledged) == sorted(keys)
    with psycopg.connect(database_url) as conn:
        movements = conn.execute(
            "SELECT count(*), sum(amount) FROM cash_movements WHERE portfolio_id = %s", (p["id"],)
        ).fetchone()
        balance = conn.execute("SELECT cash_balance FROM portfolios WHERE id = %s", (p["id"],)).fetchone()
    assert movements == (40, Decimal("40.0000"))
    assert balance == (Decimal("40.0000"),)
    assert investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]["cash_balance"] == "40.0000"
    assert ray.get(shard.pid.remote()) != pid_before  # it came back as a new process and answers


# Performance ------------------------------------------------------------------------------------


def test_performance_of_a_transferred_in_position_matches_the_price_ratio(
    investor: Investor, http: httpx.Client
) -> None:
    p = investor.portfolio()
    investor.post(
        f"/api/v1/portfolios/{p['id']}/lots",
        {"symbol": "MSFT", "shares": "10", "cost_basis": "2000.00", "acquired_at": "2020-01-02"},
        str(uuid.uuid4()),
    )
    response = investor.get(
        f"/api/v1/portfolios/{p['id']}/performance", params={"start": "2021-06-01", "end": "2022-06-01"}
    )
    assert response.status_code == 200, response.text
    report = response.json()["data"]
    closes = http.post("/api/v1/market/prices", json={"symbols": ["MSFT"], "on": "2021-06-01"}).json()["data"]
    start_close = Decimal(closes["closes"]["MSFT"])
    end_close = Decimal(
        http.post("/api/v1/market/prices", json={"symbols": ["MSFT"], "on": "2022-06-01"}).json()["data"][
            "closes"
        ]["MSFT"]
    )
    assert abs(Decimal(report["time_weighted_return"]) - (end_close / start_close - 1)) < Decimal("0.000002")
    assert report["benchmark"] == "SPX"
    for field in ("volatility", "sharpe", "sortino", "max_drawdown", "beta", "money_weighted_return"):
        assert isinstance(report[field], str), field
    assert len(report["value_series"]) > 200


def test_performance_refuses_backwards_periods_and_unknown_benchmarks(investor: Investor) -> None:
    p = investor.portfolio()
    backwards = investor.get(
        f"/api/v1/portfolios/{p['id']}/performance", params={"start": "2022-06-01", "end": "2022-01-01"}
    )
    assert backwards.status_code == 400
    unknown = investor.get(f"/api/v1/portfolios/{p['id']}/performance", params={"benchmark": "ZZZZ"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "UNKNOWN_SYMBOL"


def test_the_dashboard_adds_up_every_portfolio_and_counts_harvestable_losses(investor: Investor) -> None:
    taxable = investor.portfolio("Taxable")
    ira = investor.portfolio("IRA", account_type="ira")
    investor.deposit(taxable["id"], "1000.00")
    investor.deposit(ira["id"], "500.00")
    # Bought near the top: a loss in the taxable account (harvestable) and the same in the IRA (not).
    for portfolio in (taxable, ira):
        investor.post(
            f"/api/v1/portfolios/{portfolio['id']}/lots",
            {"symbol": "AMD", "shares": "10", "cost_basis": "1500.00", "acquired_at": "2021-11-29"},
            str(uuid.uuid4()),
        )
    board = investor.get("/api/v1/dashboard").json()["data"]
    values = [
        Decimal(investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]["total_value"])
        for p in (taxable, ira)
    ]
    assert Decimal(board["total_value"]) == sum(values)
    assert Decimal(board["cash_balance"]) == Decimal("1500.00")
    loss = Decimal("1500.00") - Decimal(
        investor.get(f"/api/v1/portfolios/{taxable['id']}").json()["data"]["invested_value"]
    )
    assert loss > 0
    assert Decimal(board["harvestable_loss_total"]) == loss
    classes = {row["key"]: Decimal(row["weight"]) for row in board["allocation"]["asset_class"]}
    assert set(classes) == {"cash", "equity"} and abs(sum(classes.values()) - 1) < Decimal("0.00001")
    assert board["top_holdings"][0]["key"] == "AMD"
    assert board["open_recommendations"] == 0


# Allocation and rebalancing ---------------------------------------------------------------------

TARGET = {
    "asset_class": {"equity": "0.90", "cash": "0.10"},
    "sector": {"Information Technology": "0.45", "Health Care": "0.45"},
}


def test_allocation_shows_drift_and_rebalance_proposes_orders_back_into_the_bands(investor: Investor) -> None:
    p = investor.portfolio("Growth", target_allocation=TARGET)
    investor.deposit(p["id"], "1000.00")
    investor.post(
        f"/api/v1/portfolios/{p['id']}/lots",
        {"symbol": "AAPL", "shares": "100", "cost_basis": "10000.00", "acquired_at": "2020-01-02"},
        str(uuid.uuid4()),
    )
    report = investor.get(f"/api/v1/portfolios/{p['id']}/allocation").json()["data"]
    sectors = {row["key"]: row for row in report["by_sector"]}
    it = sectors["Information Technology"]
    assert Decimal(it["target_weight"]) == Decimal("0.45")
    assert Decimal(it["drift"]) == Decimal(it["current_weight"]) - Decimal("0.45") > Decimal("0.4")
    assert Decimal(sectors["Health Care"]["current_weight"]) == 0

    plan = investor.post(f"/api/v1/portfolios/{p['id']}/rebalance", json={"dry_run": True}).json()["data"]
    orders = {o["symbol"]: o for o in plan["orders"]}
    assert orders["AAPL"]["side"] == "sell"
    buys = [o for o in plan["orders"] if o["side"] == "buy"]
    assert buys and all(o["symbol"] != "AAPL" for o in buys)
    assert Decimal(plan["cash_after"]) >= 0
    for row in plan["after"]["by_sector"]:
        if row["target_weight"] is not None:
            assert abs(Decimal(row["drift"])) <= Decimal("0.05")
    # Nothing was traded: the portfolio is as it was.
    assert (
        investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]["holdings"][0]["shares"] == "100.000000"
    )


def test_invalid_targets_are_refused_and_rebalancing_without_one_is_409(investor: Investor) -> None:
    p = investor.portfolio()
    for target in (
        {"asset_class": {"equity": "0.8"}},
        {"sector": {"Energy": "1.5"}},
        {"asset_class": {"equity": "abc", "cash": "0.1"}},
        {"colour": {"red": "1"}},
    ):
        response = investor.http.patch(
            f"/api/v1/portfolios/{p['id']}", json={"target_allocation": target}, headers=investor.headers
        )
        assert response.status_code == 400, (target, response.text)
    missing = investor.post(f"/api/v1/portfolios/{p['id']}/rebalance", json={"dry_run": True})
    assert missing.status_code == 409 and missing.json()["error"]["code"] == "NO_TARGET_ALLOCATION"
    bad_band = investor.post(f"/api/v1/portfolios/{p['id']}/rebalance", json={"drift_band": "-1"})
    assert bad_band.status_code == 400
