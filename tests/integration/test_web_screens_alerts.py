"""Price alerts in the browser, against the real platform (PostgreSQL, Redis, Ray Serve).

An investor sets an alert on a symbol crossing a level, sees it armed in the list with the price when
it was set, and deletes it; a level the price has already reached is refused with the server's
reason and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest

from tests.integration.browser import PHONE, Session, needs_chromium
from tests.integration.people import Investor, data

pytestmark = [pytest.mark.integration, needs_chromium]


def last_price(investor: Investor, symbol: str) -> Decimal:
    return Decimal(data(investor.get(f"/api/v1/quotes/{symbol}"))["last"])


def test_an_alert_is_set_listed_as_armed_and_deleted(session: Session) -> None:
    investor = session.investor
    level = (last_price(investor, "AAPL") * Decimal("1.10")).quantize(Decimal("0.01"))
    page = session.sign_in()
    page.click("#nav-alerts")
    page.wait_for_selector("#no-alerts", timeout=30_000)

    page.fill("#alert-symbol", "aapl")
    page.select_option("#alert-direction", "above")
    page.fill("#alert-level", str(level))
    page.fill("#alert-note", "Trim above this")
    page.click("button:has-text('Set alert')")
    row = page.wait_for_selector("#alerts tr[data-symbol='AAPL']", timeout=30_000)
    assert f"Alert set: AAPL rising to ${level:,.2f}" in page.text_content("#status")
    [stored] = data(investor.get("/api/v1/alerts"))
    assert (stored["symbol"], stored["direction"], Decimal(stored["level"]), stored["note"]) == (
        "AAPL",
        "above",
        level,
        "Trim above this",
    )
    text = row.text_content()
    assert "Rises to" in text and f"${level:,.2f}" in text and "Armed" in text and "Trim above this" in text
    assert f"${Decimal(stored['reference_price']):,.2f}" in text

    page.click("#alerts button:has-text('Delete')")
    page.wait_for_selector("#no-alerts", timeout=30_000)
    assert "Alert deleted." in page.text_content("#status")
    assert data(investor.get("/api/v1/alerts")) == []
    session.assert_clean()


def test_a_level_already_reached_is_refused_with_the_reason_and_nothing_is_stored(session: Session) -> None:
    below_the_price = (last_price(session.investor, "KO") * Decimal("0.5")).quantize(Decimal("0.01"))
    page = session.sign_in()
    session.open("#/alerts", "#alert-form")
    page.fill("#alert-symbol", "KO")
    page.select_option("#alert-direction", "above")
    page.fill("#alert-level", str(below_the_price))
    page.click("button:has-text('Set alert')")
    message = page.wait_for_selector("#alert-message:has-text('ALERT_ALREADY_REACHED')", timeout=30_000)
    assert message.get_attribute("role") == "alert"
    assert data(session.investor.get("/api/v1/alerts")) == []

    page.fill("#alert-level", "")
    page.click("button:has-text('Set alert')")
    page.wait_for_selector("#alert-message:has-text('Enter a price above zero.')")
    session.assert_clean("400 ")


def test_the_alerts_screen_fits_a_phone(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    investor = Investor(http, database_url)
    level = (last_price(investor, "MSFT") * Decimal("0.8")).quantize(Decimal("0.01"))
    note = "A note long enough to wrap on a narrow screen rather than push the page sideways"
    body = {"symbol": "MSFT", "direction": "below", "level": str(level), "note": note}
    data(investor.post("/api/v1/alerts", body), 201)
    phone = browse(investor, **PHONE)
    page = phone.sign_in()
    phone.open("#/alerts", "#alerts tr[data-symbol='MSFT']")
    assert "Falls to" in page.text_content("#alerts tr[data-symbol='MSFT']")
    assert phone.overflow() <= 0
    phone.assert_clean()
