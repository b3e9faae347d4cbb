"""Every screen checked by axe-core in Chromium, against the real platform (PostgreSQL, Redis, Ray Serve).

axe-core runs from the copy the axe-playwright-python dev dependency installs, injected by the test
(nothing is fetched). The rules are WCAG 2.x A and AA and Deque's best practices; no rule is turned
off. Each test visits one person's screens and fails naming every violation on every screen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.integration.browser import PHONE, Session, needs_chromium
from tests.integration.people import PASSWORD, Investor, Person, data, new_person
from tests.integration.test_tax_api import transfer_in

pytestmark = [pytest.mark.integration, needs_chromium]


def check(session: Session, screens: list[tuple[str, str]], found: dict[str, list[str]]) -> None:
    for route, ready in screens:
        session.open(route, ready)
        session.settle()
        found[route] = session.accessibility()


def report(found: dict[str, list[str]]) -> str:
    return "\n".join(f"{route}: {line}" for route, lines in found.items() for line in lines)


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    """A brokerage account with holdings, a lot at a loss, a finished article and an open limit order."""
    person = Investor(http, database_url)
    portfolio = person.funded("60000.00", name="Brokerage")
    pid = portfolio["id"]
    for symbol, quantity in (("AAPL", "10"), ("KO", "20")):
        data(person.trade(pid, symbol=symbol, side="buy", quantity=quantity), 201)
    transfer_in(person, pid, "AMD", "50", "6000.00", "2021-06-01")
    data(person.post("/api/v1/learn/articles/diversification/complete"))
    limit = {"portfolio_id": pid, "symbol": "KO", "side": "buy", "quantity": "5", "order_type": "limit"}
    data(person.post("/api/v1/trades", {**limit, "limit_price": "1.00"}, str(uuid.uuid4())), 201)
    person.portfolio_id = pid  # type: ignore[attr-defined]
    return person


def investor_screens(pid: str) -> list[tuple[str, str]]:
    return [
        ("#/dashboard", "#net-worth-chart svg, #net-worth-chart p"),
        (f"#/portfolios/{pid}", "#holdings"),
        (f"#/portfolios/{pid}/trade", "#order-ticket"),
        (f"#/portfolios/{pid}/orders", "#orders"),
        (f"#/portfolios/{pid}/insights", "#risk-score"),
        ("#/harvest", "article[data-symbol='AMD']"),
        ("#/tax", "#tax-documents"),
        ("#/alerts", "#alert-symbol"),
        ("#/notifications", "#notifications li, #no-notifications"),
        ("#/learn", "#articles li"),
        ("#/learn/risk-measures", "#article h3"),
        ("#/settings", "#profile-form"),
    ]


def test_the_sign_in_screen_and_every_investor_screen_pass_axe(
    browse: Callable[..., Session], investor: Investor
) -> None:
    session = browse(investor)
    page = session.page
    page.goto(session.api_url)
    page.wait_for_selector("#login", state="visible")
    found = {"#/signin": session.accessibility()}
    page.fill("#email", investor.email)
    page.fill("#password", PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#net-worth-chart", state="visible", timeout=30_000)
    check(session, investor_screens(investor.portfolio_id), found)  # type: ignore[attr-defined]
    assert not report(found), "\n" + report(found)
    session.assert_clean()


def test_every_investor_screen_passes_axe_on_a_phone(
    browse: Callable[..., Session], investor: Investor
) -> None:
    phone = browse(investor, **PHONE)
    phone.sign_in()
    found: dict[str, list[str]] = {}
    check(phone, investor_screens(investor.portfolio_id), found)  # type: ignore[attr-defined]
    assert not report(found), "\n" + report(found)
    phone.assert_clean()


def test_the_advisor_s_screens_pass_axe(
    browse: Callable[..., Session], http: httpx.Client, database_url: str, investor: Investor
) -> None:
    advisor = new_person(http, database_url, role="advisor", prefix="adv")
    data(investor.post("/api/v1/advisor/clients", {"advisor_email": advisor.email}), 201)
    session = browse(advisor)
    session.sign_in()
    found: dict[str, list[str]] = {}
    check(session, [("#/advisor", "#client-select"), (f"#/advisor/{investor.id}", "#client-holdings")], found)
    assert not report(found), "\n" + report(found)
    session.assert_clean()


def test_the_admin_s_screens_pass_axe(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    admin: Person = new_person(http, database_url, role="admin", prefix="ops")
    session = browse(admin)
    session.sign_in()
    found: dict[str, list[str]] = {}
    screens = [
        ("#/admin/users", "#users tbody tr"),
        ("#/admin/audit", "#audit tbody tr"),
        ("#/admin/health", "#health-checks"),
    ]
    check(session, screens, found)
    session.open("#/admin/audit", "#audit tbody tr")
    session.page.click("#audit-verify-run")
    session.page.wait_for_selector("#audit-verify-result .ok, #audit-verify-result .error", timeout=30_000)
    found["#/admin/audit (verified)"] = session.accessibility()
    assert not report(found), "\n" + report(found)
    session.assert_clean()
