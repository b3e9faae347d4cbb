"""Many orders in one call: ``POST /api/v1/portfolios/{id}/orders:batch``.

Real PostgreSQL, Redis and Ray, paper broker. Each order of a batch is placed or refused on its
own under the derived key ``{key}/{i}``; the batch as a whole answers once per key.
"""

from __future__ import annotations

import uuid
from decimal import Decimal as D
from typing import Any

import httpx
import pytest

from tests.integration.people import Investor, data, error

pytestmark = pytest.mark.integration


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def batch(
    investor: Investor, portfolio_id: object, orders: list[dict[str, Any]], key: str | None
) -> httpx.Response:
    return investor.post(f"/api/v1/portfolios/{portfolio_id}/orders:batch", {"orders": orders}, key)


def cash(investor: Investor, portfolio_id: object) -> D:
    return D(data(investor.get(f"/api/v1/portfolios/{portfolio_id}"))["cash_balance"])


def orders_of(investor: Investor) -> list[dict[str, Any]]:
    return data(investor.get("/api/v1/trades", params={"limit": 200}))  # type: ignore[no-any-return]


BUYS = [
    {"symbol": "AAPL", "side": "buy", "quantity": "2"},
    {"symbol": "ZZZZ", "side": "buy", "quantity": "1"},
    {"symbol": "PEP", "side": "buy", "quantity": "3", "order_type": "limit", "limit_price": "1.00"},
    {"symbol": "KO", "side": "buy", "quantity": "4"},
    {"symbol": "KO", "side": "buy", "quantity": "-1"},
]


def test_each_order_is_placed_or_refused_on_its_own_and_costs_exactly_its_fills(investor: Investor) -> None:
    p = investor.funded("10000.00")

    answer = data(batch(investor, p["id"], BUYS, str(uuid.uuid4())), 201)

    placed, refused = answer["placed"], answer["refused"]
    assert [(o["index"], o["symbol"], o["status"]) for o in placed] == [
        (0, "AAPL", "filled"),
        (2, "PEP", "submitted"),
        (3, "KO", "filled"),
    ]
    assert [(r["index"], r["symbol"], r["error"]["code"]) for r in refused] == [
        (1, "ZZZZ", "UNKNOWN_SYMBOL"),
        (4, "KO", "INVALID_TRADE"),
    ]
    assert refused[1]["error"]["details"]["field"] == "quantity"
    spent = sum(
        (D(f["price"]) * D(f["quantity"]) + D(f["commission"]) for o in placed for f in o["fills"]), D(0)
    )
    held = D(placed[1]["reserved_cash"])
    assert (
        held > 0 and cash(investor, p["id"]) == D("10000.00") - spent
    )  # the resting limit holds, not spends
    assert sorted(o["id"] for o in orders_of(investor)) == sorted(o["id"] for o in placed)


def test_the_same_key_answers_the_same_orders_and_other_orders_under_it_are_409(investor: Investor) -> None:
    p = investor.funded("10000.00")
    key = str(uuid.uuid4())
    orders = [BUYS[0], BUYS[3]]

    first = data(batch(investor, p["id"], orders, key), 201)
    again = data(batch(investor, p["id"], orders, key), 201)
    other = batch(investor, p["id"], [BUYS[0]], key)

    assert [o["id"] for o in again["placed"]] == [o["id"] for o in first["placed"]]
    error(other, 409, "IDEMPOTENCY_KEY_REUSED")
    assert len(orders_of(investor)) == 2


def test_a_batch_without_a_key_or_not_well_formed_changes_nothing(investor: Investor) -> None:
    p = investor.funded("1000.00")

    error(batch(investor, p["id"], [BUYS[0]], None), 400, "IDEMPOTENCY_KEY_REQUIRED")
    error(batch(investor, p["id"], [], str(uuid.uuid4())), 400, "VALIDATION_ERROR")
    error(batch(investor, p["id"], [BUYS[0]] * 501, str(uuid.uuid4())), 400, "VALIDATION_ERROR")
    wrong = {"symbol": "AAPL", "side": "hold", "quantity": "1"}
    error(batch(investor, p["id"], [wrong], str(uuid.uuid4())), 400, "VALIDATION_ERROR")

    assert orders_of(investor) == []
    assert cash(investor, p["id"]) == D("1000.00")


def test_someone_elses_portfolio_is_404_and_nothing_is_placed(http: httpx.Client, database_url: str) -> None:
    owner, stranger = Investor(http, database_url), Investor(http, database_url)
    p = owner.funded("1000.00")

    error(batch(stranger, p["id"], [BUYS[0]], str(uuid.uuid4())), 404, "NOT_FOUND")
    error(batch(stranger, uuid.uuid4(), [BUYS[0]], str(uuid.uuid4())), 404, "NOT_FOUND")

    assert orders_of(owner) == [] and orders_of(stranger) == []
