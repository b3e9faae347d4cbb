"""Notifications in the browser, against the real platform (PostgreSQL, Redis, the event bus, Ray Serve).

The bell in the header counts the unread notifications and goes up live when a fill makes a new
one; the notifications screen lists them newest first, marks one read and then all of them; in
Settings a person chooses where each kind reaches them, and security e-mail cannot be turned off.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.browser import Session, needs_chromium
from tests.integration.people import Investor, data

pytestmark = [pytest.mark.integration, needs_chromium]

WAIT_MS = 30_000


def unread(investor: Investor) -> int:
    return int(data(investor.get("/api/v1/notifications/unread-count"))["unread"])


def unread_reaches(investor: Investor, more_than: int) -> int:
    """The unread count once the event bus has made a notification beyond ``more_than``."""
    deadline = time.monotonic() + 30
    while (count := unread(investor)) <= more_than:
        assert time.monotonic() < deadline, "no notification was made"
        time.sleep(0.2)
    return count


def bell_label(count: int) -> str:
    return f"Notifications, {count} unread" if count else "Notifications, none unread"


def bell_says(page: Any, count: int) -> None:
    page.wait_for_selector(f"#bell[aria-label='{bell_label(count)}']", timeout=WAIT_MS)


def bell_agrees(page: Any, investor: Investor) -> int:
    """The count the bell shows once it is the API's (a sign-in may itself make a security notice)."""
    deadline = time.monotonic() + 30
    while True:
        count = unread(investor)
        if page.get_attribute("#bell", "aria-label") == bell_label(count) and page.is_visible("#bell"):
            return count
        assert time.monotonic() < deadline, (page.get_attribute("#bell", "aria-label"), count)
        page.wait_for_timeout(200)


def test_the_bell_counts_live_and_notifications_are_marked_read_one_then_all(session: Session) -> None:
    investor = session.investor
    portfolio = investor.funded("5000.00", name="Brokerage")
    unread_reaches(investor, 0)  # the deposit's notification
    page = session.sign_in()
    page.wait_for_selector("#live:has-text('Live')", timeout=WAIT_MS)
    page.evaluate("() => { window.__samePage = true; }")
    before = bell_agrees(page, investor)
    assert before >= 1 and page.text_content("#bell-count") == str(before)

    data(investor.trade(portfolio["id"], symbol="KO", side="buy", quantity="4"), 201)
    unread_reaches(investor, before)
    after = bell_agrees(page, investor)  # without a reload
    assert after > before and page.evaluate("() => window.__samePage === true")

    page.click("#bell")
    page.wait_for_selector("#notifications li[data-notification]", timeout=WAIT_MS)
    listed = data(investor.get("/api/v1/notifications"))
    shown = page.eval_on_selector_all("#notifications li", "rows => rows.map(r => r.dataset.notification)")
    assert shown == [n["id"] for n in listed]  # newest first
    assert page.get_attribute("#bell", "aria-current") == "page"
    newest = listed[0]
    assert newest["kind"] == "trade_fill" and newest["title"] in page.text_content("#notifications li")

    page.click(f"#notifications li[data-notification='{newest['id']}'] button:has-text('Mark read')")
    page.wait_for_selector(f"#notifications li[data-notification='{newest['id']}'][data-read='true']")
    bell_says(page, after - 1)
    assert data(investor.get("/api/v1/notifications", params={"limit": 1}))[0]["read_at"] is not None

    page.click("#mark-all-read")
    page.wait_for_selector("#status:has-text('marked read')", timeout=WAIT_MS)
    bell_says(page, 0)
    assert page.is_hidden("#bell-count") and unread(investor) == 0
    assert page.locator("#notifications li[data-read='false']").count() == 0
    session.assert_clean()


def test_notification_choices_are_saved_and_security_e_mail_stays_on(session: Session) -> None:
    page = session.sign_in()
    page.click("#nav-settings")
    page.wait_for_selector("#notification-kinds tbody tr", timeout=WAIT_MS)
    kinds = page.eval_on_selector_all("#notification-kinds tbody tr", "rows => rows.map(r => r.dataset.kind)")
    assert set(kinds) == set(data(session.investor.get("/api/v1/me/notification-preferences"))["kinds"])
    assert page.is_checked("#pref-security-email") and page.is_disabled("#pref-security-email")
    assert session.investor.email in page.text_content("#notification-preferences")

    page.click("#notification-form button:has-text('Save notification choices')")
    page.wait_for_selector("#notification-preferences [role=alert]:has-text('Nothing changed.')")
    assert page.is_checked("#pref-trade_fill-email")
    page.uncheck("#pref-trade_fill-email")
    page.uncheck("#pref-cash_movement-in_app")
    page.click("#notification-form button:has-text('Save notification choices')")
    page.wait_for_selector("#status:has-text('Notification choices saved.')", timeout=WAIT_MS)
    stored = data(session.investor.get("/api/v1/me/notification-preferences"))["kinds"]
    assert stored["trade_fill"] == {"in_app": True, "email": False}
    assert stored["cash_movement"]["in_app"] is False and stored["security"]["email"] is True
    assert not page.is_checked("#pref-trade_fill-email")
    session.assert_clean()
