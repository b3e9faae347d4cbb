"""Many orders in one call: ``POST /api/v1/portfolios/{id}/orders:batch``.

Real PostgreSQL, Redis and Ray, paper broker. Each order of a batch is placed or refused on its
own under the derived key ``{key}/{i}``; the batch as a whole answers once per key.
"""

from __future__ import annotations

import uuid
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error
from tests.integration.test_tax_api import close_of, transfer_in

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


def test_a_batch_and_its_orders_commit_in_one_transaction(investor: Investor) -> None:
    p = investor.funded("10000.00")
    key = str(uuid.uuid4())

    data(batch(investor, p["id"], [BUYS[0], BUYS[2], BUYS[3]], key), 201)

    with psycopg.connect(investor.database_url) as conn:
        # A row's xmin is the transaction that wrote it: one for the request's key and all its orders,
        # their fills and lots (held and written together at the end, or not).
        writers = conn.execute(
            """SELECT xmin::text FROM idempotency_keys WHERE key = %(key)s OR key LIKE %(like)s
               UNION SELECT o.xmin::text FROM orders o WHERE o.idempotency_key LIKE %(like)s
               UNION SELECT f.xmin::text FROM fills f JOIN orders o ON o.id = f.order_id
                     WHERE o.idempotency_key LIKE %(like)s
               UNION SELECT l.xmin::text FROM lots l JOIN fills f ON f.id = l.opened_by_fill_id
                     JOIN orders o ON o.id = f.order_id WHERE o.idempotency_key LIKE %(like)s""",
            {"key": key, "like": f"{key}/%"},
        ).fetchall()
        lots = conn.execute(
            """SELECT count(*) FROM lots l JOIN fills f ON f.id = l.opened_by_fill_id
               JOIN orders o ON o.id = f.order_id WHERE o.idempotency_key LIKE %s""",
            (f"{key}/%",),
        ).fetchone()
    assert len(writers) == 1
    assert lots == (2,)  # AAPL and KO filled; PEP rests


def test_each_order_is_checked_against_the_cash_the_orders_before_it_spent(investor: Investor) -> None:
    p = investor.funded("1000.00")
    price = D(data(investor.get("/api/v1/quotes/KO"))["ask"])
    shares = str(int(D("600") / price))  # about 60 % of the cash: the second cannot be afforded
    buy = {"symbol": "KO", "side": "buy", "quantity": shares}

    answer = data(batch(investor, p["id"], [buy, buy], str(uuid.uuid4())), 201)

    assert [o["index"] for o in answer["placed"]] == [0]
    assert [(r["index"], r["error"]["code"]) for r in answer["refused"]] == [(1, "INSUFFICIENT_FUNDS")]
    assert cash(investor, p["id"]) == D("1000.00") - sum(
        D(f["price"]) * D(f["quantity"]) + D(f["commission"]) for f in answer["placed"][0]["fills"]
    )


def test_a_repeat_tries_a_refused_order_again_and_finds_the_placed_ones(investor: Investor) -> None:
    p = investor.funded("1000.00")
    key = str(uuid.uuid4())
    orders = [BUYS[3], {"symbol": "AAPL", "side": "buy", "quantity": "1000"}]

    first = data(batch(investor, p["id"], orders, key), 201)
    assert investor.deposit(p["id"], "500000.00").status_code == 201
    again = data(batch(investor, p["id"], orders, key), 201)

    assert [r["index"] for r in first["refused"]] == [1]
    assert [o["index"] for o in again["placed"]] == [0, 1]
    assert again["placed"][0]["id"] == first["placed"][0]["id"]
    assert len(orders_of(investor)) == 2


def test_an_order_whose_key_an_earlier_order_holds_is_refused_and_the_others_are_placed(
    investor: Investor,
) -> None:
    p = investor.funded("10000.00")
    key = str(uuid.uuid4())
    alone = investor.post("/api/v1/trades", {**BUYS[3], "portfolio_id": p["id"]}, f"{key}/1")
    assert alone.status_code == 201

    answer = data(batch(investor, p["id"], [BUYS[0], BUYS[0]], key), 201)

    assert [o["index"] for o in answer["placed"]] == [0]
    assert [(r["index"], r["error"]["code"]) for r in answer["refused"]] == [(1, "IDEMPOTENCY_KEY_REUSED")]
    assert len(orders_of(investor)) == 2


def test_the_longest_key_a_client_may_send_gives_its_orders_keys_that_fit(investor: Investor) -> None:
    p = investor.funded("10000.00")
    key = "k" * 255

    first = data(batch(investor, p["id"], [BUYS[0], BUYS[3]], key), 201)
    again = data(batch(investor, p["id"], [BUYS[0], BUYS[3]], key), 201)

    assert [o["index"] for o in first["placed"]] == [0, 1]
    assert [o["id"] for o in again["placed"]] == [o["id"] for o in first["placed"]]
    assert len(orders_of(investor)) == 2


def test_a_batch_s_buys_replace_a_waiting_loss_as_the_same_orders_placed_one_by_one_would(
    http: httpx.Client, database_url: str
) -> None:
    """Two investors sell the same 100 shares at the same 1,000 loss, then buy back in the same
    orders: one in a batch, one order at a time. A batch reads the waiting losses once and keeps
    them current itself (a sale inside it, at a loss, makes a new one): the lots, their basis and
    the losses deferred must be the same to the cent."""
    orders = [
        {"symbol": "BBY", "side": "buy", "quantity": "30"},
        {"symbol": "KO", "side": "buy", "quantity": "5"},
        {"symbol": "KO", "side": "sell", "quantity": "5"},  # the spread and commissions: a loss
        {"symbol": "BBY", "side": "buy", "quantity": "50"},
        {"symbol": "KO", "side": "buy", "quantity": "5"},  # replaces the loss just realized
        {"symbol": "BBY", "side": "buy", "quantity": "40"},  # only 20 shares of the loss are left
    ]
    books = []
    for in_one_batch in (True, False):
        investor = Investor(http, database_url)
        p = investor.funded("30000.00")
        basis = 100 * close_of(investor, "BBY") + 1000
        transfer_in(investor, p["id"], "BBY", "100", f"{basis:.2f}", "2021-01-04")
        sold = investor.trade(p["id"], symbol="BBY", side="sell", quantity="100")
        assert data(sold, 201)["status"] == "filled"
        if in_one_batch:
            answer = data(batch(investor, p["id"], orders, str(uuid.uuid4())), 201)
            assert [o["status"] for o in answer["placed"]] == ["filled"] * len(orders)
        else:
            for order in orders:
                assert data(investor.trade(p["id"], **order), 201)["status"] == "filled"
        lots = data(investor.get(f"/api/v1/portfolios/{p['id']}/lots"))
        realized = data(investor.get(f"/api/v1/portfolios/{p['id']}/realized-gains"))["rows"]
        books.append(
            (
                sorted(
                    (lot["symbol"], lot["shares"], lot["adjusted_basis"], lot["wash_sale_disallowed"])
                    for lot in lots
                ),
                sorted(
                    (row["symbol"], row["shares"], row["adjustment"], row["gain_loss"]) for row in realized
                ),
            )
        )

    in_batch, one_by_one = books
    assert in_batch == one_by_one
    deferred = [lot for lot in in_batch[0] if lot[0] == "BBY" and D(lot[3]) > 0]
    assert sum(D(lot[1]) for lot in deferred) == 100  # 30 + 50 + 20 of the 40 replace the sale


def test_an_order_is_answered_exactly_as_it_is_stored(investor: Investor) -> None:
    """An order, its fill and its lot are written without reading them back (in a batch, one
    statement a table for all its orders): the answer is built from the values written, so it must
    be what PostgreSQL holds, to the scale of each column, whether placed alone or in a batch."""
    p = investor.funded("50000.00")
    lot_id = transfer_in(investor, p["id"], "KO", "10", "500.00", "2021-01-04")
    orders = [
        {"symbol": "AAPL", "side": "buy", "quantity": "1.5"},
        {"symbol": "PEP", "side": "buy", "quantity": "3", "order_type": "limit", "limit_price": "1.1"},
        {"symbol": "KO", "side": "sell", "quantity": "2", "lot_method": "specific", "lot_ids": [lot_id]},
        {"symbol": "MSFT", "side": "buy", "quantity": "2", "order_type": "limit", "limit_price": "10000"},
    ]
    answered = [data(investor.trade(p["id"], **order), 201) for order in orders]
    answered += data(batch(investor, p["id"], orders, str(uuid.uuid4())), 201)["placed"]
    assert [o["status"] for o in answered] == ["filled", "submitted", "filled", "filled"] * 2

    for answer in answered:
        stored = data(investor.get(f"/api/v1/trades/{answer['id']}"))
        assert {k: v for k, v in answer.items() if k != "index"} == stored
