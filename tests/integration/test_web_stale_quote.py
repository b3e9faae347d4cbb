"""The order ticket when the quote is too old, in Chromium against the real platform.

A market order against an hour-old quote is answered 409 ``QUOTE_STALE``; the ticket says in words
which price is too old, from where, how old and what the limit is, places nothing, and offers to
turn the order into a limit order, which is then placed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import httpx
import pytest

from tests.integration.browser import Session, needs_chromium
from tests.integration.people import Investor, data
from tests.integration.prices import cache_quote
from tests.integration.test_stale_quote_orders import PRICED_AT, SYMBOL
from wealthalloc.brokers.base import Quote

pytestmark = [pytest.mark.integration, needs_chromium]


@pytest.fixture
def hour_old_quote(session_redis_url: str) -> Iterator[None]:
    """The API's cached quote for the symbol an hour old. It is written from a thread of its own: the
    browser's event loop runs on this one."""
    quote = Quote(SYMBOL, D("80.00"), D("80.10"), D("80.05"), PRICED_AT, "polygon")
    with ThreadPoolExecutor(1) as pool:
        pool.submit(cache_quote, session_redis_url, SYMBOL, quote).result()
        try:
            yield
        finally:
            # The API asks its provider again.
            pool.submit(cache_quote, session_redis_url, SYMBOL, None).result()


@pytest.mark.usefixtures("hour_old_quote")
def test_a_market_order_on_a_stale_quote_is_explained_and_can_become_a_limit_order(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    investor = Investor(http, database_url)
    pid = investor.funded("10000.00")["id"]
    session = browse(investor)
    page = session.sign_in()
    session.open(f"#/portfolios/{pid}/trade", "#order-ticket")
    page.fill("#order-symbol", SYMBOL)
    page.fill("#order-quantity", "10")
    page.click("#review-order")
    page.wait_for_selector("#place-order", timeout=30_000)
    assert "(delayed)" in page.text_content("#order-review")
    page.click("#place-order")

    message = page.wait_for_selector("#order-error", timeout=30_000).text_content()
    assert message.startswith(
        f"The latest price for {SYMBOL} is too old to trade at market: {SYMBOL} is from"
    )
    assert "(polygon, 1 h" in message and "Market orders need a price at most 15 min old." in message
    assert "limit order" in message and "QUOTE_STALE" not in message and "{" not in message
    assert data(investor.get("/api/v1/trades", params={"portfolio_id": pid})) == []
    assert session.accessibility() == []

    page.click("#order-as-limit")
    page.wait_for_selector("#order-ticket:not([hidden]) #order-limit", state="visible")
    assert page.input_value("#order-type") == "limit"
    assert page.evaluate("() => document.activeElement.id") == "order-limit"
    page.fill("#order-limit", "79.00")
    page.click("#review-order")
    page.wait_for_selector("#place-order", timeout=30_000)
    page.click("#place-order")
    page.wait_for_selector("#order-outcome .ok", timeout=30_000)
    (order,) = data(investor.get("/api/v1/trades", params={"portfolio_id": pid}))
    assert (order["symbol"], order["order_type"], D(order["limit_price"])) == (SYMBOL, "limit", D("79.00"))
    session.assert_clean("409 ")
