"""The advisor's screens in the browser, against the real platform (PostgreSQL, Redis, Ray Serve).

An advisor picks a linked client and reads each of the client's portfolios (figures, holdings,
lots, orders, risk, recommendations, harvestable losses) with nothing on screen that could change
them; someone who is not their client stays hidden behind the API's 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.integration.browser import PHONE, Session, needs_chromium
from tests.integration.people import Investor, Person, data, new_person

pytestmark = [pytest.mark.integration, needs_chromium]


@pytest.fixture
def advisor(http: httpx.Client, database_url: str) -> Person:
    return new_person(http, database_url, role="advisor", prefix="adv")


@pytest.fixture
def client(http: httpx.Client, database_url: str, advisor: Person) -> Investor:
    """An investor with a brokerage account holding Coca-Cola, and a savings account, who consents."""
    investor = Investor(http, database_url)
    brokerage = investor.funded("5000.00", name="Brokerage")
    data(investor.trade(brokerage["id"], symbol="KO", side="buy", quantity="10"), 201)
    investor.funded("750.00", name="Savings")
    data(investor.post("/api/v1/advisor/clients", {"advisor_email": advisor.email}), 201)
    return investor


@pytest.fixture
def session(browse: Callable[..., Session], advisor: Person) -> Iterator[Session]:
    opened = browse(advisor)
    yield opened


def test_an_advisor_picks_a_client_and_reads_their_portfolios_without_any_control_that_writes(
    session: Session, client: Investor
) -> None:
    portfolios = {p["name"]: p for p in data(client.get("/api/v1/portfolios"))}
    page = session.sign_in()
    assert page.is_visible("#nav-advisor") and page.is_hidden("#nav-admin")
    page.click("#nav-advisor")
    page.wait_for_selector("#client-select", timeout=30_000)
    assert page.eval_on_selector_all("#client-select option", "os => os.map(o => o.value)") == [client.id]
    page.click("button:has-text('Open client')")
    page.wait_for_selector("#read-only", timeout=30_000)
    session.settle()
    assert client.email in page.text_content("#client-name")
    assert "Read-only" in page.text_content("#read-only")
    assert page.get_attribute("#nav-advisor", "aria-current") == "page"

    assert page.input_value("#client-portfolio") == portfolios["Brokerage"]["id"]
    assert page.locator("#client-holdings td:has-text('KO')").count() == 1
    assert page.locator("#client-lots td:has-text('KO')").count() == 1
    assert "Buy" in page.text_content("#client-orders tbody tr") and "filled" in page.text_content(
        "#client-orders"
    )
    assert page.locator("#client-risk [role=alert]").count() == 0
    for part in ("#client-recommendations", "#client-harvest"):
        assert page.locator(f"{part} [role=alert]").count() == 0, part
    # Nothing to press but the sort buttons of the tables: no deposit, order, cancel, accept or harvest.
    assert page.locator("#view button:not(.sort)").count() == 0
    assert page.locator("#view input").count() == 0

    page.select_option("#client-portfolio", portfolios["Savings"]["id"])
    page.wait_for_function(
        "(id) => location.hash.endsWith(id) && document.querySelector('#client-figures')",
        arg=portfolios["Savings"]["id"],
        timeout=30_000,
    )
    page.wait_for_selector("#client-figures:has-text('$750.00')", timeout=30_000)
    assert page.locator("#client-holdings").count() == 0
    assert data(client.get("/api/v1/trades", params={"portfolio_id": portfolios["Savings"]["id"]})) == []
    session.assert_clean()


def test_someone_who_is_not_their_client_answers_not_found(
    session: Session, http: httpx.Client, database_url: str
) -> None:
    stranger = Investor(http, database_url)
    stranger.funded("100.00")
    page = session.sign_in()
    page.click("#nav-advisor")
    page.wait_for_selector("#no-clients", timeout=30_000)
    session.open(f"#/advisor/{stranger.id}", "#alert:not([hidden])")
    assert "NOT_FOUND" in page.text_content("#alert")
    session.open(f"#/advisor/{uuid.uuid4()}", "#alert:has-text('NOT_FOUND')")
    session.assert_clean("404 ")


def test_the_client_screen_fits_a_phone(
    browse: Callable[..., Session], advisor: Person, client: Investor
) -> None:
    phone = browse(advisor, **PHONE)
    phone.sign_in()
    phone.open(f"#/advisor/{client.id}", "#client-holdings")
    phone.settle()
    assert phone.overflow() <= 0
    phone.open("#/advisor", "#client-select")
    assert phone.overflow() <= 0
    phone.assert_clean()
