"""Dust: what fractional trades leave behind can always be closed out.

Reproduced through the API: buy 0.3333 and 0.6669 AAPL, sell 1, and 0.0002
shares are left. They sell as they are (a sell names up to six places, the
precision lots are kept in), but the trades leave the cash at a sub-cent
figure such as 997.4854: balances are kept to four places (NUMERIC(20,4)),
while a withdrawal took whole cents only, so the last 0.0054 could never be
withdrawn and the portfolio, never empty, could never be deleted. Cash now
moves at the balance's own four places.
"""

from __future__ import annotations

from decimal import Decimal as D

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error

pytestmark = pytest.mark.integration


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def test_fractional_remainders_and_sub_cent_cash_close_out_to_an_empty_portfolio(
    investor: Investor, database_url: str
) -> None:
    p = investor.funded("1000.00")
    for quantity in ("0.3333", "0.6669"):
        assert data(investor.trade(p["id"], symbol="AAPL", side="buy", quantity=quantity), 201)["status"] == (
            "filled"
        )
    data(investor.trade(p["id"], symbol="AAPL", side="sell", quantity="1"), 201)
    holdings = data(investor.get(f"/api/v1/portfolios/{p['id']}/holdings"))
    assert [(h["symbol"], h["shares"]) for h in holdings] == [("AAPL", "0.000200")]

    # One step more than is held is refused, saying what is held.
    more = error(
        investor.trade(p["id"], symbol="AAPL", side="sell", quantity="0.000201"), 400, "INSUFFICIENT_SHARES"
    )
    assert more["details"]["available"] == "0.000200"
    # Finer than the precision of a quantity is refused as such, not rounded.
    finer = investor.trade(p["id"], symbol="AAPL", side="sell", quantity="0.0001999")
    assert finer.status_code == 400 and "6 decimal places" in finer.text

    rest = data(investor.trade(p["id"], symbol="AAPL", side="sell", quantity="0.0002"), 201)
    assert rest["status"] == "filled"
    assert data(investor.get(f"/api/v1/portfolios/{p['id']}/holdings")) == []
    assert data(investor.get(f"/api/v1/portfolios/{p['id']}/lots")) == []

    with psycopg.connect(database_url) as conn:  # a day passes: the sales settle
        conn.execute(
            """UPDATE fills SET market_date = market_date - 7
               WHERE order_id IN (SELECT id FROM orders WHERE portfolio_id = %s AND side = 'sell')""",
            (p["id"],),
        )
    cash = data(investor.get(f"/api/v1/portfolios/{p['id']}"))["cash_balance"]
    assert D(cash) != D(cash).quantize(D("0.01")), "the trades leave a sub-cent balance"
    emptied = data(investor.deposit(p["id"], f"-{cash}"), 201)
    assert emptied["cash_balance"] == "0.0000"
    assert investor.delete(f"/api/v1/portfolios/{p['id']}").status_code == 204
    assert investor.get(f"/api/v1/portfolios/{p['id']}").status_code == 404


def test_a_deletion_refused_for_cash_says_how_much_can_be_withdrawn(investor: Investor) -> None:
    p = investor.funded("10.00")
    refused = error(investor.delete(f"/api/v1/portfolios/{p['id']}"), 409, "PORTFOLIO_NOT_EMPTY")
    assert refused["details"]["available_cash"] == "10.0000"
    assert "10.0000" in refused["message"]


def test_cash_finer_than_the_balance_precision_is_refused(investor: Investor) -> None:
    p = investor.funded("10.00")
    assert data(investor.deposit(p["id"], "-0.0001"), 201)["cash_balance"] == "9.9999"
    error(investor.deposit(p["id"], "-0.00001"), 400, "VALIDATION_ERROR")
