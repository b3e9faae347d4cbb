"""A rebalance, a harvest and an accepted recommendation refuse stale quotes as a whole, on the real stack.

Their market orders are decided in the shard, which reads their quotes through
the same Redis quote cache as GET /quotes/{symbol}. Here a symbol's quote is a
Polygon price an hour old kept in that cache, as a provider answered it
(older than ``market_data_stale_seconds``, 900 s), as in
test_stale_quote_orders.py. While it is stale the whole request is refused
with 409 ``QUOTE_STALE`` naming each stale symbol, and nothing is written: no
order, no harvest record, the recommendation stays open. Once the quote is
fresh again the same Idempotency-Key goes through, once. Each test uses
symbols no other API test trades, so the cached quotes are its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error
from tests.integration.prices import cache_quote
from wealthalloc.brokers.base import Quote

pytestmark = pytest.mark.integration

PRICED_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
Stale = Callable[..., None]


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


@pytest.fixture
def stale(session_redis_url: str) -> Iterator[Stale]:
    """``stale(*symbols)`` gives each an hour-old Polygon quote; ``stale()`` brings fresh ones back."""
    made: set[str] = set()

    def make(*symbols: str) -> None:
        for symbol in made - set(symbols):
            cache_quote(session_redis_url, symbol, None)
        for symbol in symbols:
            old = Quote(symbol, D("80.00"), D("80.10"), D("80.05"), PRICED_AT, "polygon")
            cache_quote(session_redis_url, symbol, old)
        made.clear()
        made.update(symbols)

    try:
        yield make
    finally:
        make()  # the API asks its provider again


def _refused(response: httpx.Response, symbols: list[str]) -> dict[str, Any]:
    refused = error(response, 409, "QUOTE_STALE")
    details = refused["details"]
    assert details["symbols"] == symbols
    assert details["max_age_seconds"] == 900
    assert [q["symbol"] for q in details["quotes"]] == symbols
    for q in details["quotes"]:
        assert q["source"] == "polygon" and datetime.fromisoformat(q["as_of"]) == PRICED_AT
        assert q["age_seconds"] >= 3600 and q["max_age_seconds"] == 900
    for symbol in symbols:
        assert symbol in refused["message"]
    return refused


def _trades(investor: Investor, portfolio_id: object) -> list[dict[str, Any]]:
    return data(investor.get("/api/v1/trades", params={"portfolio_id": str(portfolio_id)}))  # type: ignore[no-any-return]


def _keys_claimed(database_url: str, key: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM idempotency_keys WHERE key LIKE %s", (f"{key}%",)).fetchone()
    assert row is not None
    return int(row[0])


# Rebalancing --------------------------------------------------------------------------------------

TARGET = {"asset_class": {"equity": "0.90", "cash": "0.10"}, "symbol": {"CVX": "0.45", "GE": "0.45"}}


def test_a_rebalance_is_refused_whole_while_one_of_its_quotes_is_stale_and_goes_through_once_fresh(
    investor: Investor, stale: Stale, database_url: str
) -> None:
    p = investor.portfolio("Pinned", target_allocation=TARGET)
    assert investor.deposit(p["id"], "20000.00").status_code == 201
    path = f"/api/v1/portfolios/{p['id']}/rebalance"
    stale("GE")

    preview = data(investor.post(path, {"dry_run": True}))
    quotes = {o["symbol"]: o["quote"] for o in preview["orders"]}
    assert set(quotes) == {"CVX", "GE"}
    assert quotes["GE"]["stale"] is True and quotes["GE"]["source"] == "polygon"
    assert datetime.fromisoformat(quotes["GE"]["as_of"]) == PRICED_AT and quotes["GE"]["age_seconds"] >= 3600
    assert quotes["CVX"]["stale"] is False

    key = str(uuid.uuid4())
    _refused(investor.post(path, {"dry_run": False}, key), ["GE"])
    # Not even the fresh CVX buy was placed, and the key is not spent.
    assert _trades(investor, p["id"]) == []
    shown = data(investor.get(f"/api/v1/portfolios/{p['id']}"))
    assert D(shown["cash_balance"]) == D("20000.00") and D(shown["reserved_cash"]) == 0
    assert shown.get("last_rebalance_date") is None
    assert _keys_claimed(database_url, key) == 0

    stale()
    assert data(investor.post(path, {"dry_run": True}))["orders"][0]["quote"]["stale"] is False
    done = data(investor.post(path, {"dry_run": False}, key), 201)
    assert done["refused"] == [] and sorted(o["symbol"] for o in done["placed"]) == ["CVX", "GE"]
    assert all(o["status"] == "filled" and o["origin"] == "rebalance" for o in done["placed"])
    stale("GE")  # a key that went through replays its answer, whatever the quotes are now
    again = data(investor.post(path, {"dry_run": False}, key), 201)
    assert sorted(o["id"] for o in again["placed"]) == sorted(o["id"] for o in done["placed"])
    assert len(_trades(investor, p["id"])) == 2


# Harvesting ---------------------------------------------------------------------------------------


def _harvest_opportunity(investor: Investor, symbol: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A portfolio holding ``symbol`` at a loss (moved in and confirmed) with cash, and its opportunity."""
    p = investor.funded("10000.00", name="Harvest")
    lot = {"symbol": symbol, "shares": "50", "cost_basis": "50000.00", "acquired_at": "2021-06-01"}
    data(investor.post(f"/api/v1/portfolios/{p['id']}/lots", lot, str(uuid.uuid4())), 201)
    investor.confirm_transfers(p["id"])
    listed = data(investor.get("/api/v1/tax-harvesting", params={"portfolio_id": p["id"]}))
    [opportunity] = listed["opportunities"]
    assert opportunity["symbol"] == symbol and opportunity["status"] == "identified"
    return p, opportunity


def test_a_harvest_is_refused_naming_each_stale_quote_writes_nothing_and_goes_through_once_fresh(
    investor: Investor, stale: Stale, database_url: str
) -> None:
    p, opportunity = _harvest_opportunity(investor, "PFE")
    path = f"/api/v1/tax-harvesting/{opportunity['id']}/execute"
    body = {"replacement_symbol": "MRK"}
    stale("PFE", "MRK")

    key = str(uuid.uuid4())
    _refused(investor.post(path, body, key), ["PFE", "MRK"])
    assert _trades(investor, p["id"]) == []
    [still] = data(investor.get("/api/v1/tax-harvesting", params={"portfolio_id": p["id"]}))["opportunities"]
    assert still["id"] == opportunity["id"] and still["status"] == "identified"
    assert data(investor.get(f"/api/v1/tax-harvesting/{opportunity['id']}"))["status"] == "identified"
    with psycopg.connect(database_url) as conn:
        record = conn.execute(
            "SELECT status, execution_key, sell_order_id FROM tax_harvests WHERE id = %s",
            (opportunity["id"],),
        ).fetchone()
    assert record == ("identified", None, None)  # no record of a harvest, no wash-sale window
    stale("MRK")  # the sale's quote fresh, the replacement's still stale: still refused, naming it
    _refused(investor.post(path, body, key), ["MRK"])
    assert _trades(investor, p["id"]) == []

    stale()
    done = data(investor.post(path, body, key), 201)
    assert done["refused"] == [] and done["harvest"]["status"] == "executed"
    assert done["orders"]["sell"]["status"] == "filled" and done["orders"]["buy"]["symbol"] == "MRK"
    again = data(investor.post(path, body, key), 201)
    assert again["orders"]["sell"]["id"] == done["orders"]["sell"]["id"]
    assert again["orders"]["buy"]["id"] == done["orders"]["buy"]["id"]
    assert len(_trades(investor, p["id"])) == 2


# Accepting a recommendation -----------------------------------------------------------------------


def test_accepting_a_recommendation_is_refused_on_a_stale_quote_it_stays_open_and_goes_through_once_fresh(
    investor: Investor, stale: Stale
) -> None:
    p = investor.portfolio("Concentrated")
    assert investor.deposit(p["id"], "20000.00").status_code == 201
    for symbol, shares, basis in (("HD", "400", "20000.00"), ("UNH", "5", "1000.00")):
        lot = {"symbol": symbol, "shares": shares, "cost_basis": basis, "acquired_at": "2015-01-02"}
        data(investor.post(f"/api/v1/portfolios/{p['id']}/lots", lot, str(uuid.uuid4())), 201)
    investor.confirm_transfers(p["id"])
    recs = data(investor.get(f"/api/v1/recommendations?portfolio_id={p['id']}&status=open"))
    [trim] = [r for r in recs if r["kind"] == "reduce_risk" and r["symbol"] == "HD"]
    assert [o["symbol"] for o in trim["orders"]] == ["HD"]
    path = f"/api/v1/recommendations/{trim['id']}/accept"
    stale("HD")

    key = str(uuid.uuid4())
    _refused(investor.post(path, None, key), ["HD"])
    assert _trades(investor, p["id"]) == []
    shown = data(investor.get(f"/api/v1/recommendations/{trim['id']}"))
    assert shown["status"] == "open" and "accept" in shown["links"]

    stale()
    accepted = data(investor.post(path, None, key), 201)
    assert accepted["status"] == "accepted" and accepted["refused"] == []
    (order,) = accepted["placed"]
    assert order["symbol"] == "HD" and order["status"] == "filled" and order["origin"] == "recommendation"
    stale("HD")  # a key that went through replays its answer, whatever the quotes are now
    again = data(investor.post(path, None, key), 201)
    assert [o["id"] for o in again["placed"]] == [order["id"]]
    assert len(_trades(investor, p["id"])) == 1
