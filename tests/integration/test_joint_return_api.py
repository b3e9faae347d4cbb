"""A household's joint return through the API: one Form 8949 and one Schedule D for both spouses.

Spouses in a household file ``married_joint``: their return's Form 8949 lists both spouses' taxable
sales, its Schedule D nets them together under one 3,000 limit, and the carryover each entered is
the couple's. A portfolio's own documents stay its owner's. Real PostgreSQL, Redis and Ray; the
joint figures are checked against each spouse's own portfolio report.
"""

from __future__ import annotations

from decimal import Decimal as D

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error
from tests.integration.test_households_api import link
from tests.integration.test_tax_api import close_of, market_today, transfer_in
from tests.integration.test_tax_documents_api import after, csv_rows, pdf_text, sell_all, shown
from tests.integration.test_tax_years_api import put_year

pytestmark = pytest.mark.integration


@pytest.fixture
def alice(http: httpx.Client, database_url: str) -> Investor:
    spouse = Investor(http, database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE users SET full_name = 'Alice Joint' WHERE id = %s", (spouse.id,))
    return spouse


@pytest.fixture
def bob(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)  # no full name: his email goes on the return


def rows_of(investor: Investor, year: int) -> list[str]:
    """The descriptions on the user's return's Form 8949 CSV."""
    lines = csv_rows(investor.get(f"/api/v1/me/tax-documents/{year}/form-8949", params={"format": "csv"}))
    return sorted(line["(a) description"] for line in lines if line["line"] == "row")


def schedule_of(investor: Investor, year: int) -> dict[str, object]:
    return data(investor.get(f"/api/v1/me/tax-documents/{year}/schedule-d"))  # type: ignore[no-any-return]


def lines_of(schedule: dict[str, object]) -> dict[str, D]:
    lines = schedule["lines"]
    assert isinstance(lines, list)
    return {line["line"]: D(line["gain_loss"]) for line in lines}


def own_totals(investor: Investor, portfolio: dict[str, object], year: int) -> dict[str, str]:
    """The portfolio's own totals (its sales alone), as its realized-gains report shows them."""
    path = f"/api/v1/portfolios/{portfolio['id']}/realized-gains"
    return data(investor.get(path, params={"year": year}))["totals"]  # type: ignore[no-any-return]


def test_spouses_file_one_form_8949_and_one_schedule_d_until_they_leave(
    alice: Investor, bob: Investor
) -> None:
    link(alice, bob)
    hers, his = alice.funded("30000.00", "Her brokerage"), bob.funded("30000.00", "His brokerage")
    # Her sales: a long-term loss of about 5,000 on shares transferred in, a short-term round trip.
    transfer_in(alice, hers["id"], "JPM", "20", f"{20 * close_of(alice, 'JPM') + 5000:.2f}", "2021-03-01")
    sell_all(alice, hers["id"], "JPM", "20")
    data(alice.trade(hers["id"], symbol="MSFT", side="buy", quantity="5"), 201)
    sell_all(alice, hers["id"], "MSFT", "5")
    # His: noncovered shares from 2008 (box E) sold at a loss, and a short-term round trip.
    transfer_in(bob, his["id"], "AMD", "10", f"{10 * close_of(bob, 'AMD') + 800:.2f}", "2008-05-01")
    sell_all(bob, his["id"], "AMD", "10")
    data(bob.trade(his["id"], symbol="KO", side="buy", quantity="10"), 201)
    sell_all(bob, his["id"], "KO", "10")
    year = market_today(alice).year
    # Each entered the carryover into this year from their own earlier return.
    data(put_year(alice, year, "1000.00"))
    data(put_year(bob, year, "500.00", "250.00"))

    joint_rows = ["10 AMD", "10 KO", "20 JPM", "5 MSFT"]
    assert rows_of(alice, year) == rows_of(bob, year) == joint_rows

    her_own, his_own = own_totals(alice, hers, year), own_totals(bob, his, year)
    short = D(her_own["short"]) + D(his_own["short"])
    long = D(her_own["long"]) + D(his_own["long"])
    schedule = schedule_of(alice, year)
    assert schedule == schedule_of(bob, year)  # one return, whichever spouse downloads it
    assert schedule["filing_status"] == "married_joint"
    lines = lines_of(schedule)
    assert (lines["6"], lines["14"]) == (D("-1500.00"), D("-250.00"))  # both carryovers, per term
    assert lines["7"] == short - D("1500.00")
    assert lines["15"] == long - D("250.00")
    assert lines["16"] == lines["7"] + lines["15"] < D("-3000")
    assert lines["21"] == D("-3000.00")  # one limit for the couple, not one each
    assert D(schedule["carryforward"]["short"]) + D(schedule["carryforward"]["long"]) == (  # type: ignore[index]
        -lines["16"] - D("3000.00")
    )

    # The realized-gains report's taxpayer figures are the return's, from either spouse's portfolio.
    for investor, portfolio in ((alice, hers), (bob, his)):
        report = data(
            investor.get(f"/api/v1/portfolios/{portfolio['id']}/realized-gains", params={"year": year})
        )
        taxpayer = report["taxpayer_totals"]
        assert D(taxpayer["net_short"]) == lines["7"] and D(taxpayer["net"]) == lines["16"]
        assert taxpayer["prior_carryforward"] == {"short": "1500.00", "long": "250.00"}
        assert report["carryforward_source"]["entered_carryforward"] == {"short": "1500.00", "long": "250.00"}
        assert report["filing_status"] == "married_joint"
    assert own_totals(alice, hers, year) == her_own  # a portfolio's own totals stay its own

    name_line = {f"Alice Joint & {bob.email}", f"{bob.email} & Alice Joint"}
    for investor in (alice, bob):
        text = pdf_text(investor.get(f"/api/v1/me/tax-documents/{year}/form-8949", params={"format": "pdf"}))
        [named] = {line.removeprefix("Name(s) shown on return: ") for line in text.splitlines()} & name_line
        assert after(text, "Combine lines 7 and 15") == [shown(str(lines["16"]))]
    csv_schedule = csv_rows(bob.get(f"/api/v1/me/tax-documents/{year}/schedule-d", params={"format": "csv"}))
    assert {
        line["line"]: D(line["gain_loss"]) for line in csv_schedule if line["line"] != "carryover"
    } == lines

    # A portfolio's documents stay its owner's: the spouse's portfolio is someone else's.
    her_csv = csv_rows(
        alice.get(f"/api/v1/portfolios/{hers['id']}/realized-gains", params={"year": year, "format": "csv"})
    )
    assert sorted(line["(a) description"] for line in her_csv if line["line"] == "row") == [
        "20 JPM",
        "5 MSFT",
    ]
    for fmt in ("json", "csv", "pdf"):
        path = f"/api/v1/portfolios/{his['id']}/realized-gains"
        error(alice.get(path, params={"year": year, "format": fmt}), 404, "NOT_FOUND")
    error(alice.get(f"/api/v1/portfolios/{his['id']}/1099-b", params={"year": year}), 404, "NOT_FOUND")

    # After leaving, each is back to their own books and their own carryover.
    assert bob.delete("/api/v1/me/household").status_code == 204
    assert rows_of(alice, year) == ["20 JPM", "5 MSFT"]
    assert rows_of(bob, year) == ["10 AMD", "10 KO"]
    hers_alone, his_alone = lines_of(schedule_of(alice, year)), lines_of(schedule_of(bob, year))
    assert (hers_alone["6"], hers_alone["7"]) == (D("-1000.00"), D(her_own["short"]) - D("1000.00"))
    assert (his_alone["14"], his_alone["15"]) == (D("-250.00"), D(his_own["long"]) - D("250.00"))
    text = pdf_text(bob.get(f"/api/v1/me/tax-documents/{year}/schedule-d", params={"format": "pdf"}))
    assert f"Name(s) shown on return: {bob.email}" in text.splitlines()
    assert "Alice Joint" not in text
