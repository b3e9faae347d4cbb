"""Tax years through the API: the capital-loss carryover entered into a year, and what uses it.

Real PostgreSQL, Redis and Ray. The realized rows of a year before the market clock's are
written by selling today and then dating the rows (and their figures) back, as a history
imported from another broker would look.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error
from tests.integration.test_tax_api import close_of, set_tax_profile, transfer_in
from wealthalloc.domain.money import money

pytestmark = pytest.mark.integration


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def put_year(investor: Investor, year: object, short: str, long: str = "0") -> httpx.Response:
    body = {"short_term_carryforward": short, "long_term_carryforward": long}
    return investor.http.put(f"/api/v1/me/tax-years/{year}", json=body, headers=investor.headers)


def sold_in_2022(investor: Investor, database_url: str) -> dict[str, Any]:
    """A taxable portfolio with, in 2022, a short gain of 1,000 (KO), a long loss of 500 (JPM)."""
    taxable = investor.funded("1000.00", name="Brokerage")
    transfer_in(investor, taxable["id"], "KO", "10", "1000.00", "2022-01-03")
    transfer_in(investor, taxable["id"], "JPM", "10", "1000.00", "2019-01-02")
    for symbol in ("KO", "JPM"):
        sold = data(investor.trade(taxable["id"], symbol=symbol, side="sell", quantity="10"), 201)
        assert sold["status"] == "filled"
    with psycopg.connect(database_url) as conn:
        for symbol, proceeds, gain, term in (("KO", "2000", "1000", "short"), ("JPM", "500", "-500", "long")):
            updated = conn.execute(
                """UPDATE realized_lots SET sold_at = '2022-06-01', proceeds = %s, cost_basis = 1000,
                          gain_loss = %s, term = %s, wash_sale_disallowed = 0
                   WHERE portfolio_id = %s AND symbol = %s""",
                (proceeds, gain, term, taxable["id"], symbol),
            )
            assert updated.rowcount == 1
    return taxable


def realized(investor: Investor, portfolio_id: object, year: int) -> dict[str, Any]:
    return data(investor.get(f"/api/v1/portfolios/{portfolio_id}/realized-gains", params={"year": year}))  # type: ignore[no-any-return]


def test_the_carryover_entered_into_2022_is_netted_as_schedule_d_nets_it(
    investor: Investor, database_url: str
) -> None:
    # The worked example, from the Schedule D instructions (single filer):
    #   carried into 2022 (lines 6 and 14): short 5,000, long 2,000
    #   2022 sales: a short-term gain of 1,000, a long-term loss of 500
    #   line 7  = 1,000 - 5,000 = -4,000 (short against short first)
    #   line 15 = -500 - 2,000 = -2,500
    #   line 16 = -4,000 + -2,500 = -6,500 (then across terms): a net loss
    #   line 21 = 3,000 deducted from income (the limit)
    #   carryover worksheet: the deduction uses the short loss first: 4,000 - 3,000 = 1,000 short;
    #   no gain and no deduction left for the long loss: 2,500 long. Into 2023: short 1,000, long 2,500.
    #   2023, no sales: 3,000 deducted, short first: 0 short and 500 long carried into 2024.
    set_tax_profile(database_url, investor.id, "single", "0.35", "0.15")
    taxable = sold_in_2022(investor, database_url)
    before = realized(investor, taxable["id"], 2022)["taxpayer_totals"]
    assert before["prior_carryforward"] == {"short": "0.00", "long": "0.00"}
    assert before["deductible"] == "0.00"  # 1,000 gain - 500 loss: a net gain of 500

    stored = data(put_year(investor, 2022, "5000.00", "2000"))
    assert stored["year"] == 2022
    assert (stored["short_term_carryforward"], stored["long_term_carryforward"]) == ("5000.00", "2000.00")
    assert [row["year"] for row in data(investor.get("/api/v1/me/tax-years"))] == [2022]

    gains = realized(investor, taxable["id"], 2022)
    totals = gains["taxpayer_totals"]
    assert (totals["short"], totals["long"]) == ("1000.00", "-500.00")
    assert totals["prior_carryforward"] == {"short": "5000.00", "long": "2000.00"}
    assert (totals["net_short"], totals["net_long"], totals["net"]) == ("-4000.00", "-2500.00", "-6500.00")
    assert totals["deductible"] == "3000.00"
    assert totals["carryforward"] == {"short": "1000.00", "long": "2500.00"}
    assert (
        gains["carryforward_source"]["opening_year"] == 2022 and gains["carryforward_source"]["note"] is None
    )
    # The portfolio's own totals are its sales alone: the carryover is the taxpayer's.
    assert gains["totals"]["prior_carryforward"] == {"short": "0.00", "long": "0.00"}

    following = realized(investor, taxable["id"], 2023)["taxpayer_totals"]
    assert following["prior_carryforward"] == {"short": "1000.00", "long": "2500.00"}
    assert following["deductible"] == "3000.00"
    assert following["carryforward"] == {"short": "0.00", "long": "500.00"}

    # Married filing separately: 1,500 deducted, short first: 2,500 short and 2,500 long carried.
    set_tax_profile(database_url, investor.id, "married_separate", "0.35", "0.15")
    separate = realized(investor, taxable["id"], 2022)
    assert separate["deduction_limit"] == "1500.00"
    assert separate["taxpayer_totals"]["deductible"] == "1500.00"
    assert separate["taxpayer_totals"]["carryforward"] == {"short": "2500.00", "long": "2500.00"}


def test_a_carryover_entered_after_the_first_sale_is_shown_but_the_computed_one_is_used(
    investor: Investor, database_url: str
) -> None:
    taxable = sold_in_2022(investor, database_url)
    data(put_year(investor, 2022, "5000", "2000"))
    data(put_year(investor, 2023, "7777.70"))

    gains = realized(investor, taxable["id"], 2023)
    assert gains["taxpayer_totals"]["prior_carryforward"] == {"short": "1000.00", "long": "2500.00"}
    source = gains["carryforward_source"]
    assert source["opening_year"] == 2022
    assert source["entered_carryforward"] == {"short": "7777.70", "long": "0.00"}
    assert "2023" in source["note"]


def test_changes_are_audited_and_a_year_can_be_deleted(investor: Investor, database_url: str) -> None:
    data(put_year(investor, 2021, "100.5"))
    changed = data(put_year(investor, 2021, "200", "3.25"))
    assert (changed["short_term_carryforward"], changed["long_term_carryforward"]) == ("200.00", "3.25")
    assert investor.delete("/api/v1/me/tax-years/2021").status_code == 204
    assert data(investor.get("/api/v1/me/tax-years")) == []
    error(investor.delete("/api/v1/me/tax-years/2021"), 404, "NOT_FOUND")
    with psycopg.connect(database_url) as conn:
        trail = conn.execute(
            """SELECT action, details FROM audit_log WHERE actor_id = %s AND action LIKE 'tax_year.%%'
               ORDER BY sequence""",
            (investor.id,),
        ).fetchall()
    assert [action for action, _ in trail] == ["tax_year.set", "tax_year.set", "tax_year.delete"]
    assert trail[1][1]["was"] == {"short_term_carryforward": "100.50", "long_term_carryforward": "0.00"}
    assert trail[1][1]["short_term_carryforward"] == "200.00"


@pytest.mark.parametrize(
    ("year", "short", "long"),
    [
        (2022, "-1", "0"),
        (2022, "0", "-0.01"),
        (2022, "1.234", "0"),
        (2022, "abc", "0"),
        (2022, "1e3", "0"),
        (1999, "1", "0"),
        (datetime.now(UTC).year + 2, "1", "0"),
        ("twenty", "1", "0"),
    ],
)
def test_bad_amounts_and_years_are_refused(investor: Investor, year: object, short: str, long: str) -> None:
    error(put_year(investor, year, short, long), 400, "VALIDATION_ERROR")
    assert data(investor.get("/api/v1/me/tax-years")) == []


def test_next_year_is_accepted(investor: Investor) -> None:
    assert data(put_year(investor, datetime.now(UTC).year + 1, "1"))["short_term_carryforward"] == "1.00"


def test_an_api_key_cannot_read_or_set_tax_years(investor: Investor) -> None:
    key = data(investor.post("/api/v1/api-keys", {"name": "all", "scopes": ["read", "trade"]}), 201)["key"]
    headers = {"X-API-Key": key, "X-Forwarded-For": investor.ip}
    body = {"short_term_carryforward": "1", "long_term_carryforward": "0"}
    error(investor.http.put("/api/v1/me/tax-years/2022", json=body, headers=headers), 403, "FORBIDDEN")
    error(investor.http.get("/api/v1/me/tax-years", headers=headers), 403, "FORBIDDEN")
    error(investor.http.delete("/api/v1/me/tax-years/2022", headers=headers), 403, "FORBIDDEN")
    assert data(investor.get("/api/v1/me/tax-years")) == []


def test_each_person_sees_and_changes_only_their_own_years(
    http: httpx.Client, investor: Investor, database_url: str
) -> None:
    other = Investor(http, database_url)
    taxable = sold_in_2022(investor, database_url)
    data(put_year(investor, 2022, "5000", "2000"))
    data(put_year(other, 2022, "1", "1"))  # the same year: its own row, not the investor's
    assert other.delete("/api/v1/me/tax-years/2022").status_code == 204

    [mine] = data(investor.get("/api/v1/me/tax-years"))
    assert (mine["short_term_carryforward"], mine["long_term_carryforward"]) == ("5000.00", "2000.00")
    assert data(other.get("/api/v1/me/tax-years")) == []
    totals = realized(investor, taxable["id"], 2022)["taxpayer_totals"]
    assert totals["prior_carryforward"] == {"short": "5000.00", "long": "2000.00"}


def test_a_stored_carryover_lowers_harvesting_s_estimated_savings(
    investor: Investor, database_url: str
) -> None:
    set_tax_profile(database_url, investor.id, "single", "0.35", "0.15")
    taxable = investor.funded("1000.00", name="Brokerage")
    transfer_in(investor, taxable["id"], "AMD", "50", "6000.00", "2021-06-01")
    loss = D("6000.00") - 50 * close_of(investor, "AMD")
    listed = data(investor.get("/api/v1/tax-harvesting"))
    [opportunity] = listed["opportunities"]
    assert D(opportunity["estimated_tax_savings"]) == money(min(loss, D(3000)) * D("0.35"))

    # No sale on the platform before this year: the entered carryover is what comes into it, and
    # 1,000 short + 2,500 long already exceed the 3,000 limit: the harvest saves nothing this year.
    this_year = int(listed["as_of"][:4])
    data(put_year(investor, this_year, "1000", "2500"))
    [again] = data(investor.get("/api/v1/tax-harvesting"))["opportunities"]
    assert again["id"] == opportunity["id"] and D(again["estimated_tax_savings"]) == 0

    # A carryover of 1,000 leaves 2,000 of the limit to the harvested loss.
    data(put_year(investor, this_year, "1000", "0"))
    [partly] = data(investor.get("/api/v1/tax-harvesting"))["opportunities"]
    assert D(partly["estimated_tax_savings"]) == money(min(loss, D(2000)) * D("0.35"))


def test_the_stateless_report_takes_prior_carryforward_and_its_former_name(investor: Investor) -> None:
    transactions = [
        {"date": "2022-01-03", "account_id": "b", "account_type": "taxable", "symbol": "KO",
         "side": "buy", "quantity": "10", "price": "100.00"},
        {"date": "2022-06-01", "account_id": "b", "account_type": "taxable", "symbol": "KO",
         "side": "sell", "quantity": "10", "price": "200.00"},
        {"date": "2019-01-02", "account_id": "b", "account_type": "taxable", "symbol": "JPM",
         "side": "buy", "quantity": "10", "price": "100.00"},
        {"date": "2022-06-01", "account_id": "b", "account_type": "taxable", "symbol": "JPM",
         "side": "sell", "quantity": "10", "price": "50.00"},
    ]  # fmt: skip
    carried = {"short": "5000", "long": "2000"}
    body = {"transactions": transactions, "year": 2022, "sort": True}
    new = data(investor.post("/api/v1/tax/gains-report", {**body, "prior_carryforward": carried}))
    old = data(investor.post("/api/v1/tax/gains-report", {**body, "carryforward": carried}))
    assert new == old
    [totals] = new["totals"]
    assert (totals["net_short"], totals["net_long"], totals["deductible"]) == (
        "-4000.00",
        "-2500.00",
        "3000.00",
    )
    assert totals["carryforward"] == {"short": "1000.00", "long": "2500.00"}
    both = investor.post(
        "/api/v1/tax/gains-report", {**body, "prior_carryforward": carried, "carryforward": carried}
    )
    assert "not both" in error(both, 400, "VALIDATION_ERROR")["message"]
    bad = investor.post("/api/v1/tax/gains-report", {**body, "prior_carryforward": {"short": "-1"}})
    assert "prior_carryforward" in error(bad, 400, "VALIDATION_ERROR")["message"]
