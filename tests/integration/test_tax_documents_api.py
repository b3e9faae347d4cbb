"""Tax documents through the API: Form 8949 (CSV, PDF), Schedule D and the 1099-B of real sales.

Real PostgreSQL, Redis and Ray. Every figure a document shows must be the
realized-gains report's figure for the same sales, and each sale must sit in
the box its lot's origin decides.
"""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal as D

import httpx
import pytest
from pypdf import PdfReader

from tests.integration.people import Investor, data, error
from tests.integration.test_tax_api import market_today, transfer_in

pytestmark = pytest.mark.integration


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def shown(amount: str) -> str:
    """An amount as the PDF prints it: thousands separated, a loss in parentheses."""
    value = D(amount)
    if value == 0:
        return "0.00"
    return f"({-value:,.2f})" if value < 0 else f"{value:,.2f}"


def read_amount(cell: str) -> D:
    """The PDF's amount back as a number."""
    plain = D(cell.strip("()").replace(",", ""))
    return -plain if cell.startswith("(") else plain


def pdf_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)


def after(text: str, label: str, count: int = 1) -> list[str]:
    """The ``count`` cells the PDF prints after ``label`` (its table cells come one per line)."""
    lines = text.splitlines()
    at = lines.index(label)
    return lines[at + 1 : at + 1 + count]


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def sell_all(investor: Investor, portfolio_id: object, symbol: str, quantity: str) -> None:
    sold = data(investor.trade(portfolio_id, symbol=symbol, side="sell", quantity=quantity), 201)
    assert sold["status"] == "filled"


@pytest.fixture
def sales(investor: Investor) -> dict[str, object]:
    """A brokerage with a sale in boxes A (bought here), D (transferred, 2021) and E (transferred, 2008),
    one of them a wash sale; an IRA with a sale of its own."""
    taxable = investor.funded("50000.00", name="Brokerage")
    other = investor.funded("20000.00", name="Second brokerage")
    ira = investor.portfolio("IRA", account_type="ira")
    investor.deposit(ira["id"], "20000.00")
    data(investor.trade(taxable["id"], symbol="MSFT", side="buy", quantity="5"), 201)
    sell_all(investor, taxable["id"], "MSFT", "5")
    transfer_in(investor, taxable["id"], "JPM", "20", "200.00", "2021-03-01")
    transfer_in(investor, taxable["id"], "AMD", "30", "9000.00", "2008-05-01")
    transfer_in(investor, taxable["id"], "BBY", "10", "5000.00", "2021-01-04")
    for symbol, quantity in (("JPM", "20"), ("AMD", "30"), ("BBY", "10")):
        sell_all(investor, taxable["id"], symbol, quantity)
    data(investor.trade(other["id"], symbol="BBY", side="buy", quantity="10"), 201)  # BBY's loss: code W
    data(investor.trade(ira["id"], symbol="JPM", side="buy", quantity="3"), 201)
    sell_all(investor, ira["id"], "JPM", "3")
    year = market_today(investor).year
    report = data(investor.get(f"/api/v1/portfolios/{taxable['id']}/realized-gains", params={"year": year}))
    return {"taxable": taxable, "ira": ira, "year": year, "report": report}


def test_the_portfolio_form_8949_csv_puts_each_sale_in_its_box_with_the_report_s_figures(
    investor: Investor, sales: dict[str, object]
) -> None:
    taxable, year, report = sales["taxable"], sales["year"], sales["report"]
    assert isinstance(taxable, dict) and isinstance(report, dict)
    path = f"/api/v1/portfolios/{taxable['id']}/realized-gains"
    response = investor.get(path, params={"year": year, "format": "csv"})
    lines = csv_rows(response)
    short = str(taxable["id"]).split("-")[0]
    assert response.headers["content-disposition"] == f'attachment; filename="form-8949-{year}-{short}.csv"'

    sales_by_symbol = {line["(a) description"].split()[1]: line for line in lines if line["line"] == "row"}
    assert {s: (line["part"], line["box"]) for s, line in sales_by_symbol.items()} == {
        "MSFT": ("I", "A"),  # bought and sold on the platform
        "JPM": ("II", "D"),  # transferred in, acquired 2021: covered
        "BBY": ("II", "D"),
        "AMD": ("II", "E"),  # transferred in, acquired 2008: noncovered
    }
    assert sales_by_symbol["AMD"]["(a) description"] == "30 AMD"
    assert sales_by_symbol["AMD"]["(b) date acquired"] == "2008-05-01"
    by_json = {row["symbol"]: row for row in report["rows"]}
    for symbol, line in sales_by_symbol.items():
        row = by_json[symbol]
        assert (line["(d) proceeds"], line["(e) cost basis"], line["(h) gain or loss"]) == (
            row["proceeds"],
            row["cost_basis"],
            row["gain_loss"],
        )
        assert line["(f) code"] == (row["adjustment_code"] or "")
    assert sales_by_symbol["BBY"]["(f) code"] == "W"
    assert sales_by_symbol["BBY"]["(g) adjustment"] == by_json["BBY"]["adjustment"]

    totals = {line["box"]: line for line in lines if line["line"] == "total"}
    assert list(totals) == ["A", "D", "E"]
    assert D(totals["A"]["(h) gain or loss"]) == D(report["totals"]["short"])
    assert D(totals["D"]["(h) gain or loss"]) + D(totals["E"]["(h) gain or loss"]) == D(
        report["totals"]["long"]
    )
    assert sum(D(t["(g) adjustment"]) for t in totals.values()) == D(report["totals"]["disallowed"])

    json_again = data(investor.get(path, params={"year": year, "format": "json"}))
    assert json_again == report  # json is still the default and unchanged


def test_the_portfolio_pdf_shows_the_report_s_totals_per_box_and_on_schedule_d(
    investor: Investor, sales: dict[str, object]
) -> None:
    taxable, year, report = sales["taxable"], sales["year"], sales["report"]
    assert isinstance(taxable, dict) and isinstance(report, dict)
    response = investor.get(
        f"/api/v1/portfolios/{taxable['id']}/realized-gains", params={"year": year, "format": "pdf"}
    )
    text = pdf_text(response)
    assert "attachment" in response.headers["content-disposition"]
    assert f"Form 8949 — Sales and Other Dispositions of Capital Assets — {year}" in text
    assert "Part I — Short-Term" in text and "Part II — Long-Term" in text
    assert "not the official form" in text
    totals = report["totals"]
    [proceeds_a, _, _, gain_a] = after(text, "2 Totals, box A", 4)
    assert gain_a == shown(totals["short"])
    assert after(text, "Net short-term capital gain or (loss)") == [shown(totals["net_short"])]
    assert after(text, "Net long-term capital gain or (loss)") == [shown(totals["net_long"])]
    assert after(text, "Combine lines 7 and 15") == [shown(totals["net"])]
    [deducted] = after(text, "Loss deducted this year (smaller of line 16 or 3,000)")
    assert read_amount(deducted) == -D(totals["deductible"])
    assert D(totals["deductible"]) == D("3000.00")  # AMD's loss is well over the limit
    gain_d, gain_e = after(text, "2 Totals, box D", 4)[-1], after(text, "2 Totals, box E", 4)[-1]
    assert read_amount(gain_d) + read_amount(gain_e) == D(totals["long"])
    [msft] = [row for row in report["rows"] if row["symbol"] == "MSFT"]
    assert read_amount(proceeds_a) == D(msft["proceeds"])


def test_the_taxpayer_s_documents_cover_every_taxable_portfolio_and_never_the_ira(
    investor: Investor, sales: dict[str, object]
) -> None:
    year, report, ira = sales["year"], sales["report"], sales["ira"]
    assert isinstance(report, dict) and isinstance(ira, dict)
    base = f"/api/v1/me/tax-documents/{year}"
    lines = csv_rows(investor.get(f"{base}/form-8949", params={"format": "csv"}))
    symbols = sorted(line["(a) description"] for line in lines if line["line"] == "row")
    assert symbols == ["10 BBY", "20 JPM", "30 AMD", "5 MSFT"]  # the IRA's JPM sale is not there

    schedule = data(investor.get(f"{base}/schedule-d"))
    lines_by_number = {line["line"]: line for line in schedule["lines"]}
    taxpayer = report["taxpayer_totals"]
    assert lines_by_number["7"]["gain_loss"] == taxpayer["net_short"]
    assert lines_by_number["15"]["gain_loss"] == taxpayer["net_long"]
    assert lines_by_number["16"]["gain_loss"] == taxpayer["net"]
    assert D(lines_by_number["21"]["gain_loss"]) == -D(taxpayer["deductible"])
    assert schedule["carryforward"] == taxpayer["carryforward"]

    as_csv = csv_rows(investor.get(f"{base}/schedule-d", params={"format": "csv"}))
    assert {line["line"]: line["gain_loss"] for line in as_csv if line["line"] != "carryover"} == {
        n: line["gain_loss"] for n, line in lines_by_number.items()
    }
    text = pdf_text(investor.get(f"{base}/form-8949", params={"format": "pdf"}))
    assert after(text, "Combine lines 7 and 15") == [shown(taxpayer["net"])]
    text = pdf_text(investor.get(f"{base}/schedule-d", params={"format": "pdf"}))
    assert "Schedule D summary" in text

    ira_csv = csv_rows(
        investor.get(f"/api/v1/portfolios/{ira['id']}/realized-gains", params={"year": year, "format": "csv"})
    )
    assert ira_csv == []
    ira_pdf = pdf_text(
        investor.get(f"/api/v1/portfolios/{ira['id']}/realized-gains", params={"year": year, "format": "pdf"})
    )
    assert "No reportable sales" in ira_pdf
    assert csv_rows(investor.get(f"/api/v1/portfolios/{ira['id']}/1099-b", params={"year": year})) == []


def test_the_1099b_says_which_sales_are_covered_and_had_their_basis_reported(
    investor: Investor, sales: dict[str, object]
) -> None:
    taxable, year = sales["taxable"], sales["year"]
    assert isinstance(taxable, dict)
    response = investor.get(f"/api/v1/portfolios/{taxable['id']}/1099-b", params={"year": year})
    lines = csv_rows(response)
    assert response.headers["content-disposition"].startswith(f'attachment; filename="1099-b-{year}-')
    by_symbol = {line["description"].split()[1]: line for line in lines}
    assert {
        s: (line["term"], line["covered"], line["basis_reported_to_irs"]) for s, line in by_symbol.items()
    } == {
        "MSFT": ("short", "covered", "yes"),
        "JPM": ("long", "covered", "yes"),
        "BBY": ("long", "covered", "yes"),
        "AMD": ("long", "noncovered", "no"),
    }
    assert D(by_symbol["BBY"]["wash_sale_loss_disallowed"]) > 0
    assert by_symbol["AMD"]["quantity"] == "30"


def test_an_unknown_format_is_a_validation_error_and_someone_else_s_portfolio_is_404(
    http: httpx.Client, database_url: str, investor: Investor
) -> None:
    p = investor.funded("1000.00")
    path = f"/api/v1/portfolios/{p['id']}/realized-gains"
    error(investor.get(path, params={"format": "xlsx"}), 400, "VALIDATION_ERROR")
    error(
        investor.get("/api/v1/me/tax-documents/2024/form-8949", params={"format": "json"}),
        400,
        "VALIDATION_ERROR",
    )
    error(
        investor.get("/api/v1/me/tax-documents/2024/schedule-d", params={"format": "xml"}),
        400,
        "VALIDATION_ERROR",
    )
    stranger = Investor(http, database_url)
    for fmt in ("csv", "pdf"):
        error(stranger.get(path, params={"format": fmt}), 404, "NOT_FOUND")
    error(stranger.get(f"/api/v1/portfolios/{p['id']}/1099-b"), 404, "NOT_FOUND")
    error(stranger.get(f"/api/v1/portfolios/{uuid.uuid4()}/1099-b"), 404, "NOT_FOUND")
    empty = csv_rows(stranger.get("/api/v1/me/tax-documents/2024/form-8949", params={"format": "csv"}))
    assert empty == []  # a taxpayer without sales gets an empty form, never someone else's


def test_gifts_and_inheritances_are_noncovered_when_received_before_2011(investor: Investor) -> None:
    estate = investor.funded("1000.00", name="Estate")
    received = {
        "KO": {  # inherited in 2009 (the date of death): long-term, noncovered
            "acquisition": "inheritance",
            "shares": "10",
            "fair_market_value": "450.00",
            "acquired_at": "2009-06-01",
        },
        "JPM": {  # a gift in 2015 of shares the donor bought in 2005: covered, the donor's holding period
            "acquisition": "gift",
            "shares": "10",
            "donor_cost_basis": "100.00",
            "donor_acquired_at": "2005-01-03",
            "fair_market_value": "300.00",
            "acquired_at": "2015-03-02",
        },
    }
    for symbol, lot in received.items():
        data(
            investor.post(
                f"/api/v1/portfolios/{estate['id']}/lots", {"symbol": symbol, **lot}, str(uuid.uuid4())
            ),
            201,
        )
        sell_all(investor, estate["id"], symbol, "10")
    year = market_today(investor).year
    lines = csv_rows(
        investor.get(
            f"/api/v1/portfolios/{estate['id']}/realized-gains", params={"year": year, "format": "csv"}
        )
    )
    boxes = {
        line["(a) description"]: (line["box"], line["(b) date acquired"])
        for line in lines
        if line["line"] == "row"
    }
    # Column (b) of inherited property reads INHERITED (Form 8949 instructions); a gift shows its date.
    assert boxes == {"10 KO": ("E", "INHERITED"), "10 JPM": ("D", "2005-01-03")}
    statement = csv_rows(investor.get(f"/api/v1/portfolios/{estate['id']}/1099-b", params={"year": year}))
    assert {
        line["description"]: (line["basis_reported_to_irs"], line["date_acquired"], line["term"])
        for line in statement
    } == {
        "10 KO": ("no", "INHERITED", "long"),
        "10 JPM": ("yes", "2005-01-03", "long"),
    }
    text = pdf_text(
        investor.get(
            f"/api/v1/portfolios/{estate['id']}/realized-gains", params={"year": year, "format": "pdf"}
        )
    )
    assert after(text, "10 KO") == ["INHERITED"]
    taxpayer = csv_rows(investor.get(f"/api/v1/me/tax-documents/{year}/form-8949", params={"format": "csv"}))
    assert [line["(b) date acquired"] for line in taxpayer if line["(a) description"] == "10 KO"] == [
        "INHERITED"
    ]
