"""Settings in the browser, against the real platform (PostgreSQL, Redis, Ray Serve).

A person changes their profile (risk and tax profile, rates typed as percentages), turns two-factor
sign-in on from the QR code's secret and off again, makes an API key and a webhook whose secrets are
shown once, revokes and deletes them, and links an advisor and ends the link. What the page says
is checked against what the API then answers.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.integration.browser import PHONE, Session, needs_chromium
from tests.integration.people import PASSWORD, Authenticator, Investor, data, new_person

pytestmark = [pytest.mark.integration, needs_chromium]


def open_settings(session: Session) -> Any:
    page = session.sign_in()
    page.click("#nav-settings")
    page.wait_for_selector("#profile-form", timeout=30_000)
    session.settle()
    return page


def test_the_profile_is_changed_with_rates_typed_as_percentages(session: Session) -> None:
    page = open_settings(session)
    assert page.text_content("#profile-email") == session.investor.email
    for section in ("#profile", "#mfa", "#api-keys", "#webhooks", "#advisor-links"):
        shown = page.text_content(section)
        assert "null" not in shown and "undefined" not in shown, section

    page.click("#profile-form button:has-text('Save profile')")
    page.wait_for_selector("#profile [role=alert]:has-text('Nothing changed.')")
    page.fill("#profile-federal-rate", "150")
    page.click("#profile-form button:has-text('Save profile')")
    page.wait_for_selector("#profile [role=alert]:has-text('enter a percentage from 0 to 100')")

    page.fill("#profile-name", "Ada Investor")
    page.select_option("#profile-risk", "aggressive")
    page.select_option("#profile-experience", "advanced")
    page.select_option("#profile-filing", "head_of_household")
    page.fill("#profile-federal-rate", "24")
    page.fill("#profile-state-rate", "9.3")
    page.click("#profile-form button:has-text('Save profile')")
    page.wait_for_selector("#status:has-text('Profile saved.')", timeout=30_000)

    me = data(session.investor.get("/api/v1/me"))
    assert me["full_name"] == "Ada Investor"
    assert me["risk_profile"] == {"risk_tolerance": "aggressive", "investment_experience": "advanced"}
    assert me["tax_profile"]["filing_status"] == "head_of_household"
    assert Decimal(me["tax_profile"]["federal_rate"]) == Decimal("0.24")
    assert Decimal(me["tax_profile"]["state_rate"]) == Decimal("0.093")
    assert (
        page.input_value("#profile-federal-rate") == "24" and page.input_value("#profile-state-rate") == "9.3"
    )
    session.assert_clean()


def set_up_two_factor(page: Any) -> Authenticator:
    """The authenticator app a person sets up from the secret (and QR code) the page shows."""
    page.click("button:has-text('Set up two-factor')")
    secret = page.wait_for_selector("#mfa-secret", timeout=30_000).text_content()
    uri = page.text_content("#mfa-uri")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert page.get_attribute("#mfa-qr", "role") == "img" and page.locator("#mfa-qr path").count() == 1
    return Authenticator(secret)


def turn_on_two_factor(page: Any, app: Authenticator) -> None:
    page.fill("#mfa-code", app.code())
    page.click("button:has-text('Turn on two-factor')")
    page.wait_for_selector("#status:has-text('Two-factor sign-in is on.')", timeout=30_000)


# Each test below uses at most three codes: the server takes the codes of the previous, the current
# and the next 30-second step, each once, so a fourth would wait for the clock.


def test_two_factor_is_turned_on_from_the_shown_secret_and_off_with_a_code(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    person = new_person(http, database_url, prefix="web")
    session = browse(person)
    page = open_settings(session)
    assert "off" in page.text_content("#mfa-state")
    app = set_up_two_factor(page)
    page.fill("#mfa-code", "123456")  # not the app's code (one chance in a million that it is)
    page.click("button:has-text('Turn on two-factor')")
    page.wait_for_selector("#mfa [role=alert]:not(:empty)", timeout=30_000)
    assert data(http.get("/api/v1/me", headers=person.login().headers))["mfa_enabled"] is False

    turn_on_two_factor(page, app)
    assert "on" in page.text_content("#mfa-state")
    signed_in = person.try_login()
    assert signed_in.status_code == 401 and signed_in.json()["error"]["code"] == "MFA_REQUIRED"

    page.fill("#mfa-password", PASSWORD)
    page.fill("#mfa-disable-code", app.code())
    page.click("button:has-text('Turn off two-factor')")
    page.wait_for_selector("#status:has-text('Two-factor sign-in is off.')", timeout=30_000)
    assert person.try_login().status_code == 200
    session.assert_clean("401 ", "400 ")


def test_with_two_factor_on_making_and_revoking_a_key_each_need_a_code(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    person = new_person(http, database_url, prefix="web")
    session = browse(person)
    page = open_settings(session)
    app = set_up_two_factor(page)
    turn_on_two_factor(page, app)

    page.fill("#api-key-name", "Spreadsheet")
    page.check("#api-key-scope-trade")
    page.fill("#api-key-totp", app.code())
    page.click("button:has-text('Create key')")
    shown = page.wait_for_selector("#new-api-key .secret", timeout=30_000).text_content()
    assert "not shown again" in page.text_content("#new-api-key")
    assert http.get("/api/v1/me", headers={"X-API-Key": shown}).status_code == 200
    row = page.text_content("#api-key-list tbody tr")
    assert "Spreadsheet" in row and "read, trade" in row and "Active" in row and shown not in row

    page.fill("#api-key-totp", app.code())
    page.click("#api-key-list button:has-text('Revoke')")
    page.wait_for_selector("#api-key-list td:has-text('Revoked')", timeout=30_000)
    assert http.get("/api/v1/me", headers={"X-API-Key": shown}).status_code == 401
    session.assert_clean()


def test_a_webhook_s_secret_is_shown_once_an_unsafe_url_is_refused_and_it_is_deleted(
    session: Session,
) -> None:
    page = open_settings(session)
    assert page.is_visible("#no-webhooks")
    page.fill("#webhook-url", "https://10.1.2.3/hook")
    page.click("button:has-text('Add webhook')")
    page.wait_for_selector("#webhooks [role=alert]:has-text('UNSAFE_WEBHOOK_URL')", timeout=30_000)

    page.fill("#webhook-url", "http://127.0.0.1:9/x")
    page.fill("#webhook-events", "trades.executed, portfolio.cash_moved")
    page.click("button:has-text('Add webhook')")
    secret = page.wait_for_selector("#new-webhook .secret", timeout=30_000).text_content()
    [hook] = data(session.investor.get("/api/v1/webhooks"))
    assert hook["url"] == "http://127.0.0.1:9/x" and sorted(hook["events"]) == [
        "portfolio.cash_moved",
        "trades.executed",
    ]
    assert secret and secret not in str(hook)
    session.open("#/alerts", "#alert-form")
    session.open("#/settings", "#webhook-list")
    assert page.locator("#new-webhook").count() == 0  # shown once: not after leaving the screen

    page.click("#webhook-list button:has-text('Delete')")
    page.wait_for_selector("#no-webhooks", timeout=30_000)
    assert data(session.investor.get("/api/v1/webhooks")) == []
    session.assert_clean("400 ")


def test_an_investor_links_an_advisor_and_ends_the_link(
    session: Session, http: httpx.Client, database_url: str
) -> None:
    advisor = new_person(http, database_url, role="advisor", prefix="adv")
    page = open_settings(session)
    assert page.is_visible("#no-advisors")
    page.fill("#advisor-email", advisor.email)
    page.click("button:has-text('Let this advisor read my accounts')")
    page.wait_for_selector(f"#advisor-list li:has-text('{advisor.email}')", timeout=30_000)
    [link] = data(session.investor.get("/api/v1/advisor/clients"))
    assert (link["advisor_id"], link["client_id"]) == (advisor.id, session.investor.id)

    page.click(f"button[aria-label='End link with {advisor.email}']")
    page.wait_for_selector("#no-advisors", timeout=30_000)
    assert data(session.investor.get("/api/v1/advisor/clients")) == []
    session.assert_clean()


def test_the_settings_screen_fits_a_phone(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    investor = Investor(http, database_url)
    phone = browse(investor, **PHONE)
    page = open_settings(phone)
    page.click("button:has-text('Set up two-factor')")
    page.wait_for_selector("#mfa-qr", timeout=30_000)
    assert phone.overflow() <= 0
    phone.assert_clean()
