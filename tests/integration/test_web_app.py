"""The browser app in Chromium against the real platform (PostgreSQL, Redis, Ray Serve).

A person signs in, moves cash, trades and reads their orders through the page; failures show a
message; an answer that arrives late for one portfolio never shows under another; a phone's width
needs no sideways scrolling; the page raises no script error and breaks no Content-Security-Policy.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.integration.browser import PHONE, Session, needs_chromium
from tests.integration.people import Investor, data, new_person, turn_on_mfa
from tests.integration.test_tax_api import market_today

pytestmark = [pytest.mark.integration, needs_chromium]


def test_an_investor_deposits_buys_sees_the_holding_and_the_order_then_signs_out(session: Session) -> None:
    portfolio = session.investor.portfolio("Brokerage")
    pid = portfolio["id"]
    page = session.sign_in()
    assert page.input_value("#email") == "" and page.input_value("#password") == ""

    page.select_option("#portfolio-select", pid)
    page.click("#nav-portfolio")
    page.wait_for_selector("#deposit-form")
    page.fill("#deposit-amount", "10000")
    page.click("#deposit-form button:has-text('Deposit')")
    page.wait_for_selector("#available-cash:has-text('$10,000.00')", timeout=30_000)
    assert "Deposited $10,000.00" in page.text_content("#status")

    page.click("#nav-trade")
    page.wait_for_selector("#order-ticket")
    page.select_option("#order-side", "buy")
    page.fill("#order-symbol", "msft")
    page.fill("#order-quantity", "3")
    page.click("button:has-text('Review order')")
    page.wait_for_selector("#estimated-cost", timeout=30_000)
    assert page.text_content("#estimated-cost").startswith("$")
    page.click("button:has-text('Place order')")
    page.wait_for_selector("#order-outcome:has-text('filled')", timeout=30_000)

    page.click("#nav-portfolio")
    page.wait_for_selector("#holdings td:has-text('MSFT')", timeout=30_000)
    assert page.get_by_role("table", name="Open tax lots").is_visible()
    page.click("#holdings button:has-text('Value')")
    assert page.get_attribute("#holdings th:has(button:has-text('Value'))", "aria-sort") == "ascending"

    page.click("#nav-orders")
    row = page.wait_for_selector("#orders tbody tr:has-text('MSFT')", timeout=30_000)
    assert "filled" in row.text_content() and "Buy" in row.text_content()
    orders = data(session.investor.get("/api/v1/trades", params={"portfolio_id": pid}))
    assert [(o["symbol"], o["status"]) for o in orders] == [("MSFT", "filled")]

    page.click("button:has-text('Sign out')")
    page.wait_for_selector("#login", state="visible")
    assert page.is_hidden("#view") and page.input_value("#password") == ""
    assert page.evaluate("() => sessionStorage.length") == 0
    session.assert_clean()


def test_a_withdrawal_above_the_available_cash_shows_why_and_moves_nothing(session: Session) -> None:
    portfolio = session.investor.funded("1000.00", name="Savings")
    page = session.sign_in()
    session.open(f"#/portfolios/{portfolio['id']}", "#withdraw-form")
    page.fill("#withdraw-amount", "5000")
    page.click("#withdraw-form button:has-text('Withdraw')")
    message = page.wait_for_selector("#withdraw-message.error", timeout=30_000)
    assert "INSUFFICIENT_FUNDS" in message.text_content()
    after = data(session.investor.get(f"/api/v1/portfolios/{portfolio['id']}"))
    assert after["cash_balance"].startswith("1000.00") and after["available_cash"].startswith("1000.00")
    assert "$1,000.00" in page.text_content("#available-cash")
    session.assert_clean("/cash")


def test_a_slow_answer_for_one_portfolio_never_shows_under_another(session: Session) -> None:
    alpha = session.investor.funded("5000.00", name="Alpha")
    data(session.investor.trade(alpha["id"], symbol="KO", side="buy", quantity="2"), 201)
    bravo = session.investor.portfolio("Bravo")
    page = session.sign_in()

    held: list[Any] = []
    page.route(f"**/api/v1/portfolios/{alpha['id']}", lambda route: held.append(route))
    page.evaluate("(route) => { location.hash = route; }", f"#/portfolios/{alpha['id']}")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('Loading')")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never asked for Alpha"

    session.open(f"#/portfolios/{bravo['id']}", "#portfolio-name:has-text('Bravo')")
    with contextlib.suppress(Exception):  # the page may have given up on Alpha's request already
        held[0].continue_()
    page.wait_for_timeout(1500)
    session.settle()
    assert page.text_content("#portfolio-name") == "Bravo"
    assert page.locator("#view :text('KO')").count() == 0 and page.is_visible("#no-holdings")
    assert page.input_value("#portfolio-select") == bravo["id"]
    session.assert_clean()


def test_a_server_failure_shows_a_message_and_an_expired_token_is_refreshed(session: Session) -> None:
    session.investor.funded("100.00")
    page = session.sign_in()
    failure = {"error": {"code": "INTERNAL_ERROR", "message": "Something failed on our side.", "details": {}}}
    page.route(
        "**/api/v1/dashboard",
        lambda route: route.fulfill(status=500, content_type="application/json", body=json.dumps(failure)),
    )
    page.click("#nav-tax")
    page.wait_for_selector("#tax-documents")
    page.click("#nav-dashboard")
    alert = page.wait_for_selector("#alert:has-text('Something failed on our side.')", timeout=30_000)
    assert alert.get_attribute("role") == "alert" and "INTERNAL_ERROR" in alert.text_content()
    page.unroute("**/api/v1/dashboard")

    # An access token the server no longer takes: the client refreshes once and carries on.
    page.evaluate("() => sessionStorage.setItem('wa_token', 'no-longer-valid')")
    page.click("#nav-orders")
    page.wait_for_selector("#no-orders", timeout=30_000)
    assert page.evaluate("() => sessionStorage.getItem('wa_token')") != "no-longer-valid"
    assert page.is_hidden("#alert")
    session.assert_clean("500 ", "401 ")


def test_a_phone_s_width_needs_no_sideways_scrolling(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    investor = Investor(http, database_url)
    portfolio = investor.funded("50000.00", name="A portfolio with a long name for a narrow screen")
    for symbol in ("AAPL", "KO", "MSFT"):
        data(investor.trade(portfolio["id"], symbol=symbol, side="buy", quantity="5"), 201)
    moved_in = {"symbol": "JNJ", "shares": "10", "cost_basis": "1500.00"}
    moved_in["acquired_at"] = str(market_today(investor) - timedelta(days=200))
    data(investor.post(f"/api/v1/portfolios/{portfolio['id']}/lots", moved_in, str(uuid.uuid4())), 201)
    phone = browse(investor, **PHONE)
    page = phone.sign_in()
    phone.open("#/dashboard", "#net-worth-chart svg path.line")
    phone.settle()
    assert "Net worth, 1Y" in page.get_attribute("#net-worth-chart svg", "aria-label")
    page.click("button:has-text('3M')")
    page.wait_for_selector("#net-worth-chart svg[aria-label^='Net worth, 3M']", timeout=30_000)
    assert phone.overflow() <= 0
    for route, ready in (
        (f"#/portfolios/{portfolio['id']}", "#holdings"),
        (f"#/portfolios/{portfolio['id']}/trade", "#order-ticket"),
        (f"#/portfolios/{portfolio['id']}/orders", "#orders"),
        ("#/tax", "#tax-documents"),
    ):
        phone.open(route, ready)
        phone.settle()
        assert phone.overflow() <= 0, route
    phone.assert_clean()


def test_a_buy_beyond_the_cash_says_why_and_an_open_limit_order_is_cancelled(session: Session) -> None:
    portfolio = session.investor.funded("1000.00", name="Small")
    page = session.sign_in()
    session.open(f"#/portfolios/{portfolio['id']}/trade", "#order-ticket")
    page.fill("#order-symbol", "MSFT")
    page.fill("#order-quantity", "1000")
    page.click("button:has-text('Review order')")
    page.click("button:has-text('Place order')")
    refused = page.wait_for_selector("#order-outcome .error", timeout=30_000)
    assert "INSUFFICIENT_FUNDS" in refused.text_content()

    page.click("button:has-text('Edit order')")
    page.fill("#order-quantity", "2")
    page.select_option("#order-type", "limit")
    page.fill("#order-limit", "1.00")
    page.click("button:has-text('Review order')")
    assert page.wait_for_selector("#estimated-cost", timeout=30_000).text_content() == "$2.00"
    page.click("button:has-text('Place order')")
    page.wait_for_selector("#order-outcome:has-text('0 of 2 MSFT filled')", timeout=30_000)

    session.open(f"#/portfolios/{portfolio['id']}/orders", "#orders")
    page.click("#orders button:has-text('Cancel')")
    page.wait_for_selector("#orders tr:has-text('cancelled')", timeout=30_000)
    assert page.locator("#orders button:has-text('Cancel')").count() == 0
    orders = data(session.investor.get("/api/v1/trades", params={"portfolio_id": portfolio["id"]}))
    assert [(o["order_type"], o["status"]) for o in orders] == [("limit", "cancelled")]
    session.assert_clean("400 " + session.api_url + "/api/v1/trades")


def test_a_person_with_two_factor_signs_in_with_the_code(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    person = new_person(http, database_url, prefix="web")
    authenticator = turn_on_mfa(person, person.login())
    signing_in = browse(person)
    page = signing_in.submit_sign_in()
    page.wait_for_selector("#totp", state="visible", timeout=30_000)
    assert "six-digit code" in page.text_content("#login-error")
    page.fill("#totp", authenticator.code())
    page.click("#login button[type=submit]")
    page.wait_for_selector("#view h2:has-text('Dashboard')", timeout=30_000)
    assert [page.input_value(f) for f in ("#email", "#password", "#totp")] == ["", "", ""]
    signing_in.assert_clean("401 ")
