"""Tax-loss harvesting in the browser, against the real platform (PostgreSQL, Redis, Ray Serve).

An investor holding a lot at a loss sees the opportunity the API found (the loss, the saving, the
replacements and the wash-sale window), harvests it only after confirming, and then sees the
harvest made; a harvest that can no longer be made says why.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.integration.browser import PHONE, Session, needs_chromium
from tests.integration.people import Investor, data
from tests.integration.test_tax_api import transfer_in

pytestmark = [pytest.mark.integration, needs_chromium]


def usd(amount: str) -> str:
    return f"${Decimal(amount):,.2f}"


def amd_at_a_loss(investor: Investor) -> tuple[dict[str, Any], dict[str, Any]]:
    """A brokerage account holding 50 AMD bought far above today's price, and the API's opportunity."""
    portfolio = investor.funded("10000.00", name="Brokerage")
    transfer_in(investor, portfolio["id"], "AMD", "50", "6000.00", "2021-06-01")
    [opportunity] = data(investor.get("/api/v1/tax-harvesting"))["opportunities"]
    return portfolio, opportunity


def test_an_opportunity_shows_the_loss_the_replacements_and_the_window_and_is_harvested_after_confirming(
    session: Session,
) -> None:
    portfolio, opportunity = amd_at_a_loss(session.investor)
    page = session.sign_in()
    page.click("#nav-harvest")
    card = page.wait_for_selector("article[data-symbol='AMD']", timeout=30_000)

    text = card.text_content()
    assert f"Loss {usd(opportunity['loss_amount'])}" in text and "Brokerage" in text
    assert usd(opportunity["estimated_tax_savings"]) in card.query_selector(".saving").text_content()
    window = opportunity["wash_sale_window_end"]
    assert f"Do not buy AMD in any account until after {window}" in text
    candidates = [c["symbol"] for c in opportunity["replacement_candidates"]]
    offered = page.eval_on_selector_all(
        f"#replacement-{opportunity['id']} option", "os => os.map(o => o.value)"
    )
    assert offered == candidates and page.input_value(f"#replacement-{opportunity['id']}") == candidates[0]
    assert page.locator("article[data-symbol='AMD'] table.harvest-lots tbody tr").count() == 1

    # Harvest asks first; going back places nothing.
    page.click("button[aria-label='Harvest AMD']")
    page.wait_for_selector("button:has-text('Confirm harvest')")
    assert f"on or before {window}" in card.text_content()
    page.click("article[data-symbol='AMD'] button:has-text('Back')")
    assert page.is_hidden("button:has-text('Confirm harvest')")
    assert data(session.investor.get("/api/v1/trades")) == []

    replacement = candidates[-1]
    page.select_option(f"#replacement-{opportunity['id']}", replacement)
    page.click("button[aria-label='Harvest AMD']")
    page.click("button:has-text('Confirm harvest')")
    page.wait_for_selector(f"#status:has-text('Wash-sale window ends {window}')", timeout=60_000)
    assert "Harvested AMD" in page.text_content("#status")
    page.wait_for_selector("#no-opportunities")
    made = page.text_content("#harvests-made")
    assert f"AMD → {replacement}" in made and f"Wash-sale window ends {window}" in made

    orders = data(session.investor.get("/api/v1/trades", params={"portfolio_id": portfolio["id"]}))
    assert sorted((o["symbol"], o["side"], o["status"]) for o in orders) == sorted(
        [("AMD", "sell", "filled"), (replacement, "buy", "filled")]
    )
    session.assert_clean()


def test_a_harvest_that_is_no_longer_open_says_why_and_places_nothing_more(session: Session) -> None:
    _, opportunity = amd_at_a_loss(session.investor)
    page = session.sign_in()
    session.open("#/harvest", "article[data-symbol='AMD']")
    # Meanwhile the same opportunity is harvested elsewhere (another tab, a script).
    replacement = opportunity["replacement_candidates"][0]["symbol"]
    path = f"/api/v1/tax-harvesting/{opportunity['id']}/execute"
    data(session.investor.post(path, {"replacement_symbol": replacement}, str(uuid.uuid4())), 201)

    page.click("button[aria-label='Harvest AMD']")
    page.click("button:has-text('Confirm harvest')")
    message = page.wait_for_selector(
        "article[data-symbol='AMD'] [role=alert]:has-text('HARVEST_NOT_OPEN')", timeout=30_000
    )
    assert message.is_visible()
    assert page.is_enabled("button:has-text('Confirm harvest')")  # free to go back or retry
    assert len(data(session.investor.get("/api/v1/trades"))) == 2
    session.assert_clean("409 ")


def test_the_harvest_screen_fits_a_phone(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    investor = Investor(http, database_url)
    amd_at_a_loss(investor)
    phone = browse(investor, **PHONE)
    page = phone.sign_in()
    phone.open("#/harvest", "article[data-symbol='AMD']")
    page.click("button[aria-label='Harvest AMD']")
    page.wait_for_selector("button:has-text('Confirm harvest')")
    assert phone.overflow() <= 0
    phone.assert_clean()
