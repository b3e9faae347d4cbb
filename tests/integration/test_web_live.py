"""Live updates in the browser, over the real stream (PostgreSQL, Redis, the outbox relay, Ray Serve).

While a page is open, the same person changes their accounts through a second API client: the open
dashboard shows the new cash, the open orders list shows an order's new status and a fill or cancel
shows a toast, all without a reload. A socket that drops reconnects, resumes after the last event it
saw and misses nothing; a screen that was left gets none of its old portfolio's updates; signing out
closes the socket.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.browser import Session, needs_chromium
from tests.integration.people import data

pytestmark = [pytest.mark.integration, needs_chromium]

# Each socket the page opens, and every frame it sent and received, for the test to read.
RECORD_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.__sent = [];
  window.__received = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__sockets.push(this);
      this.addEventListener("message", (event) => window.__received.push(JSON.parse(event.data)));
    }
    send(text) {
      window.__sent.push(JSON.parse(text));
      super.send(text);
    }
  };
})();
"""
WAIT_MS = 30_000


def live_page(session: Session) -> Any:
    """The signed-in page, its socket recorded, once the header says updates arrive live."""
    session.page.add_init_script(RECORD_SOCKETS)
    page = session.sign_in()
    page.wait_for_selector("#live:has-text('Live')", timeout=WAIT_MS)
    page.evaluate("() => { window.__samePage = true; }")
    return page


def not_reloaded(page: Any) -> bool:
    return bool(page.evaluate("() => window.__samePage === true"))


def cash_events(page: Any, portfolio_id: str) -> list[dict[str, Any]]:
    return [
        m
        for m in page.evaluate("() => window.__received")
        if m.get("event_type") == "portfolio.cash_moved" and m["data"]["portfolio_id"] == portfolio_id
    ]


def test_a_deposit_made_elsewhere_shows_on_the_open_dashboard_and_signing_out_closes_the_socket(
    session: Session,
) -> None:
    investor = session.investor
    portfolio = investor.funded("1000.00", name="Brokerage")
    page = live_page(session)
    assert page.text_content("#total-cash") == "$1,000.00"

    assert investor.deposit(portfolio["id"], "2500.00").status_code == 201
    page.wait_for_selector("#total-cash:has-text('$3,500.00')", timeout=WAIT_MS)
    assert "available $3,500.00" in page.text_content(
        f"#portfolio-list li[data-portfolio='{portfolio['id']}']"
    )
    assert not_reloaded(page)
    sent = page.evaluate("() => window.__sent")
    assert sent[0]["type"] == "auth" and "after" not in sent[0]

    page.click("button:has-text('Sign out')")
    page.wait_for_selector("#login", state="visible")
    page.wait_for_function("() => window.__sockets.every((s) => s.readyState === WebSocket.CLOSED)")
    assert page.is_hidden("#live")
    session.assert_clean()


def test_an_order_cancelled_or_filled_elsewhere_changes_the_open_orders_list_and_shows_a_toast(
    session: Session,
) -> None:
    investor = session.investor
    portfolio = investor.funded("5000.00", name="Trading")
    pid = portfolio["id"]
    limit = data(
        investor.trade(pid, symbol="MSFT", side="buy", quantity="2", order_type="limit", limit_price="1.00"),
        201,
    )
    page = live_page(session)
    session.open(
        f"#/portfolios/{pid}/orders", f"#orders tr[data-order='{limit['id']}'] button:has-text('Cancel')"
    )

    data(investor.delete(f"/api/v1/trades/{limit['id']}"))
    page.wait_for_selector(
        f"#orders tr[data-order='{limit['id']}'][data-status='cancelled']", timeout=WAIT_MS
    )
    page.wait_for_selector("#toasts .toast:has-text('Order cancelled: MSFT')", timeout=WAIT_MS)
    assert page.get_attribute("#toasts", "aria-live") == "polite"

    filled = data(investor.trade(pid, symbol="KO", side="buy", quantity="3"), 201)
    row = page.wait_for_selector(
        f"#orders tr[data-order='{filled['id']}'][data-status='filled']", timeout=WAIT_MS
    )
    assert "KO" in row.text_content()
    page.wait_for_selector("#toasts .toast:has-text('Filled: Buy 3 KO at $')", timeout=WAIT_MS)
    assert page.locator("#orders tbody tr").count() == 2
    assert not_reloaded(page)
    session.assert_clean()


def test_a_dropped_socket_reconnects_after_the_last_event_it_saw_and_misses_nothing(session: Session) -> None:
    investor = session.investor
    portfolio = investor.funded("100.00", name="Savings")
    pid = portfolio["id"]
    held = {"on": False}

    def stream(socket: Any) -> None:
        if held["on"]:
            socket.close(code=4429, reason="held by the test")
        else:
            socket.connect_to_server()

    session.page.route_web_socket("**/api/v1/stream", stream)
    page = live_page(session)
    session.open(f"#/portfolios/{pid}", "#cash-balance")
    assert investor.deposit(pid, "1.00").status_code == 201
    page.wait_for_selector("#cash-balance:has-text('$101.00')", timeout=WAIT_MS)

    held["on"] = True
    last_seen = page.evaluate(
        "() => { const seen = window.__received.filter((m) => m.type === 'event').at(-1);"
        " window.__sockets.at(-1).close(); return seen.event_id; }"
    )
    page.wait_for_selector("#live:has-text('Reconnecting')", timeout=WAIT_MS)
    for amount in ("2.00", "3.00"):
        assert investor.deposit(pid, amount).status_code == 201
    page.wait_for_timeout(1500)  # the relay publishes them while the page has no socket
    assert page.text_content("#cash-balance") == "$101.00"

    held["on"] = False
    page.wait_for_selector("#live:has-text('Live')", timeout=WAIT_MS)
    page.wait_for_selector("#cash-balance:has-text('$106.00')", timeout=WAIT_MS)
    resumed = [m for m in page.evaluate("() => window.__sent") if m["type"] == "auth"][-1]
    assert resumed["after"] == last_seen
    amounts = [str(float(m["data"]["amount"])) for m in cash_events(page, pid)]
    assert amounts == ["1.0", "2.0", "3.0"], amounts  # each once, in order
    assert not_reloaded(page)
    session.assert_clean()


def test_a_screen_that_was_left_gets_none_of_its_portfolio_s_updates(session: Session) -> None:
    investor = session.investor
    first = investor.funded("10.00", name="First")
    second = investor.funded("20.00", name="Second")
    page = live_page(session)
    session.open(f"#/portfolios/{first['id']}", "#portfolio-name:has-text('First')")
    session.open(f"#/portfolios/{second['id']}", "#portfolio-name:has-text('Second')")

    assert investor.deposit(first["id"], "500.00").status_code == 201
    page.wait_for_function(
        "(id) => window.__received.some((m) => m.type === 'value' && m.portfolio_id === id)",
        arg=first["id"],
        timeout=WAIT_MS,
    )
    page.wait_for_timeout(600)  # longer than a screen waits before it redraws
    assert page.text_content("#portfolio-name") == "Second"
    assert page.text_content("#cash-balance") == "$20.00" and page.locator("#cash-balance").count() == 1
    session.assert_clean()


def test_a_socket_refused_for_a_stale_token_refreshes_the_session_and_carries_on(session: Session) -> None:
    page = live_page(session)
    # A request of the page still under way would meet the stale token first, refresh it, and the
    # socket would never be refused: the socket must be the first to present it.
    page.wait_for_load_state("networkidle")
    page.evaluate(
        "() => { sessionStorage.setItem('wa_token', 'no-longer-valid'); window.__sockets.at(-1).close(); }"
    )
    page.wait_for_function(
        "() => window.__sent.some((m) => m.type === 'auth' && m.token === 'no-longer-valid')", timeout=WAIT_MS
    )
    page.wait_for_function(
        "() => { const t = sessionStorage.getItem('wa_token');"
        " return t !== 'no-longer-valid' && window.__sent.some((m) => m.type === 'auth' && m.token === t); }",
        timeout=WAIT_MS,
    )
    page.wait_for_selector("#live:has-text('Live')", timeout=WAIT_MS)
    portfolio = session.investor.funded("42.00", name="After the refresh")
    page.wait_for_function(
        "(id) => window.__received.some((m) => m.type === 'event' && m.data.portfolio_id === id)",
        arg=portfolio["id"],
        timeout=WAIT_MS,
    )
    assert not_reloaded(page) and page.is_visible("#view")
    session.assert_clean()
