"""A market order refuses a stale quote, through the API on Ray Serve with real PostgreSQL and Redis.

The quote a market order is placed against is the one GET /quotes/{symbol}
shows. Here it is a Polygon price an hour old, kept in the API's Redis quote
cache as a provider answered it: older than ``market_data_stale_seconds``
(900 s), so the quote reads ``stale`` and a market order is refused with 409
``QUOTE_STALE`` naming it. Nothing is written, and the same Idempotency-Key
places the order once a fresh quote is back. A limit order is not refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import httpx
import pytest

from tests.integration.people import Investor, data, error
from tests.integration.prices import cache_quote
from wealthalloc.brokers.base import Quote

pytestmark = pytest.mark.integration

SYMBOL = "BBY"  # a symbol no other API test trades, so its cached quote is this test's alone
PRICED_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


@pytest.fixture
def hour_old_quote(session_redis_url: str) -> Iterator[Quote]:
    quote = Quote(SYMBOL, D("80.00"), D("80.10"), D("80.05"), PRICED_AT, "polygon")
    cache_quote(session_redis_url, SYMBOL, quote)
    try:
        yield quote
    finally:
        cache_quote(session_redis_url, SYMBOL, None)  # the API asks its provider again


def test_a_market_order_against_an_hour_old_quote_is_refused_naming_it_and_nothing_is_written(
    investor: Investor, hour_old_quote: Quote, session_redis_url: str
) -> None:
    p = investor.funded("10000.00")
    shown = data(investor.get(f"/api/v1/quotes/{SYMBOL}"))
    assert (shown["source"], shown["stale"]) == ("polygon", True)
    assert datetime.fromisoformat(shown["timestamp"]) == PRICED_AT

    key = str(uuid.uuid4())
    placing = investor.trade(p["id"], key, symbol=SYMBOL, side="buy", quantity="10")
    refused = error(placing, 409, "QUOTE_STALE")
    assert refused["details"]["symbol"] == SYMBOL
    assert refused["details"]["source"] == "polygon"
    assert datetime.fromisoformat(refused["details"]["as_of"]) == PRICED_AT
    assert refused["details"]["max_age_seconds"] == 900
    assert refused["details"]["age_seconds"] >= 3600
    assert SYMBOL in refused["message"] and "polygon" in refused["message"]

    assert data(investor.get("/api/v1/trades", params={"portfolio_id": str(p["id"])})) == []
    portfolio = data(investor.get(f"/api/v1/portfolios/{p['id']}"))
    assert D(portfolio["cash_balance"]) == D("10000.00") and D(portfolio["reserved_cash"]) == 0
    assert data(investor.get(f"/api/v1/portfolios/{p['id']}/holdings")) == []

    # A fresh quote back (the provider is asked again): the same key places the order, once.
    cache_quote(session_redis_url, SYMBOL, None)
    assert data(investor.get(f"/api/v1/quotes/{SYMBOL}"))["stale"] is False
    placed = data(investor.trade(p["id"], key, symbol=SYMBOL, side="buy", quantity="10"), 201)
    assert placed["status"] == "filled"
    again = data(investor.trade(p["id"], key, symbol=SYMBOL, side="buy", quantity="10"), 201)
    assert again["id"] == placed["id"]


def test_a_limit_order_is_placed_whatever_the_age_of_the_quote(
    investor: Investor, hour_old_quote: Quote
) -> None:
    p = investor.funded("10000.00")
    assert data(investor.get(f"/api/v1/quotes/{SYMBOL}"))["stale"] is True
    placing = investor.trade(
        p["id"], symbol=SYMBOL, side="buy", quantity="1", order_type="limit", limit_price="1.00"
    )
    order = data(placing, 201)
    assert order["order_type"] == "limit" and order["status"] in {"open", "submitted"}
