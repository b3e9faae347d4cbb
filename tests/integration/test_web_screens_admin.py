"""The operator's screens in the browser, against the real platform (PostgreSQL, Redis, Ray Serve).

An admin finds a user, locks them with a reason (their sign-in is refused) and unlocks them,
changes their role, reads what they did in the audit trail, and sees the platform's health; an
investor has no admin screen, and the API's 403 says why when one is opened by its URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.integration.browser import PHONE, Session, needs_chromium
from tests.integration.people import Investor, Person, data, new_person
from tests.integration.test_admin_audit_verify_api import altered

pytestmark = [pytest.mark.integration, needs_chromium]


@pytest.fixture
def admin(http: httpx.Client, database_url: str) -> Person:
    return new_person(http, database_url, role="admin", prefix="ops")


@pytest.fixture
def session(browse: Callable[..., Session], admin: Person) -> Iterator[Session]:
    opened = browse(admin)
    yield opened


def show_user(page: Any, person: Person) -> Any:
    """The users list from just before the person's email (the API pages by email)."""
    page.fill("#users-from", person.email[:-1])
    page.click("button:has-text('Show users')")
    return page.wait_for_selector(f"#users tr[data-email='{person.email}']", timeout=30_000)


def test_an_admin_locks_and_unlocks_a_user_changes_their_role_and_reads_it_in_the_audit_trail(
    session: Session, http: httpx.Client, database_url: str
) -> None:
    target = new_person(http, database_url, prefix="tgt")
    page = session.sign_in()
    assert page.is_visible("#nav-admin") and page.is_hidden("#nav-advisor")
    page.click("#nav-admin")
    page.wait_for_selector("#users tbody tr", timeout=30_000)
    assert page.get_attribute("#admin-tab-users", "aria-current") == "page"
    row = show_user(page, target)
    assert "Active" in row.text_content() and "investor" in page.input_value(
        f"select[aria-label='Role of {target.email}']"
    )

    page.click(f"button[aria-label='Lock {target.email}']")
    page.wait_for_selector("#users-message:has-text('Give the reason for locking')")
    assert target.try_login().status_code == 200
    page.fill("#lock-reason", "Chargeback under review")
    page.click(f"button[aria-label='Lock {target.email}']")
    page.wait_for_selector(
        f"#users tr[data-email='{target.email}'] td:has-text('Locked since')", timeout=30_000
    )
    assert "Chargeback under review" in page.text_content(f"#users tr[data-email='{target.email}']")
    refused = target.try_login()
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ACCOUNT_DISABLED"

    page.click(f"button[aria-label='Unlock {target.email}']")
    page.wait_for_selector(
        f"#users tr[data-email='{target.email}'] td.status:has-text('Active')", timeout=30_000
    )
    assert target.try_login().status_code == 200

    page.select_option(f"select[aria-label='Role of {target.email}']", "advisor")
    page.click(f"button[aria-label='Change role of {target.email}']")
    page.wait_for_selector(f"#status:has-text('{target.email} is now advisor')", timeout=30_000)
    assert data(http.get("/api/v1/me", headers=target.login().headers))["role"] == "advisor"

    page.click("#admin-tab-audit")
    page.wait_for_selector("#audit tbody tr", timeout=30_000)
    page.click("#audit-verify-run")
    verdict = page.wait_for_selector("#audit-verify-result .ok", timeout=30_000).text_content()
    assert verdict.startswith("Intact: ") and "entries checked" in verdict
    page.fill("#audit-action", "admin.user_updated")
    page.click("button:has-text('Filter')")
    only_updates = (
        "() => [...document.querySelectorAll('#audit td.action')]"
        ".every(td => td.textContent === 'admin.user_updated')"
    )
    page.wait_for_function(only_updates, timeout=30_000)
    newest = page.text_content("#audit tbody tr")
    assert f"user:{target.id}" in newest and '"role":"advisor"' in newest
    session.assert_clean()


def test_an_altered_audit_entry_shows_the_chain_broken_at_that_entry(
    session: Session, database_url: str
) -> None:
    page = session.sign_in()
    session.open("#/admin/audit", "#audit tbody tr")
    with altered(database_url) as row:
        page.click("#audit-verify-run")
        verdict = page.wait_for_selector("#audit-verify-result .error", timeout=30_000).text_content()
    assert verdict.startswith("Broken: ") and str(row["id"]) in verdict
    assert "altered" in page.text_content("#audit-verify-result ul")
    session.assert_clean()


def test_system_health_is_the_api_s_report(session: Session, http: httpx.Client, admin: Person) -> None:
    page = session.sign_in()
    session.open("#/admin/health", "#health-checks")
    answer = http.get("/health", headers=admin.login().headers)
    report = answer.json()["data"] if answer.status_code == 200 else answer.json()["error"]["details"]
    assert page.text_content("#health-status") == report["status"].capitalize()
    shown = page.eval_on_selector_all("#health-checks tbody tr", "rows => rows.map(r => r.dataset.check)")
    assert shown == list(report["checks"]) and {"database", "redis"} <= set(shown)
    for name, check in report["checks"].items():
        assert page.text_content(f"#health-checks tr[data-check='{name}'] td:nth-child(2)") == check["status"]
    assert report["version"] in page.text_content("#health-summary")
    session.assert_clean()


def test_an_investor_has_no_admin_screen_and_the_api_s_refusal_is_shown(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    investor = browse(Investor(http, database_url))
    page = investor.sign_in()
    assert page.is_hidden("#nav-admin") and page.is_hidden("#nav-advisor")
    investor.open("#/admin/users", "#alert:not([hidden])")
    assert "FORBIDDEN" in page.text_content("#alert")
    assert page.locator("#users tbody tr").count() == 0
    investor.assert_clean("403 ")


def test_the_admin_screens_fit_a_phone(browse: Callable[..., Session], admin: Person) -> None:
    phone = browse(admin, **PHONE)
    phone.sign_in()
    for route, ready in (
        ("#/admin/users", "#users tbody tr"),
        ("#/admin/audit", "#audit tbody tr"),
        ("#/admin/health", "#health-checks"),
    ):
        phone.open(route, ready)
        phone.settle()
        assert phone.overflow() <= 0, route
    phone.assert_clean()
