"""An investor downloads Form 8949 from the tax documents screen in Chromium, and gets the API's own document.

Real PostgreSQL, Redis and Ray Serve; the page signs in with the form,
picks the year and saves the file the way a person would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.browser import Session, needs_chromium
from tests.integration.people import Investor, data
from tests.integration.test_tax_api import market_today

pytestmark = [pytest.mark.integration, needs_chromium]


def test_the_tax_documents_screen_saves_the_selected_portfolio_s_form_8949_as_csv_and_pdf(
    browse: Callable[..., Session], http: httpx.Client, database_url: str, tmp_path: Path
) -> None:
    investor = Investor(http, database_url)
    portfolio = investor.funded("20000.00", name="Brokerage")
    data(investor.trade(portfolio["id"], symbol="MSFT", side="buy", quantity="4"), 201)
    data(investor.trade(portfolio["id"], symbol="MSFT", side="sell", quantity="4"), 201)
    year = market_today(investor).year
    expected = investor.get(
        f"/api/v1/portfolios/{portfolio['id']}/realized-gains", params={"year": year, "format": "csv"}
    )
    assert expected.status_code == 200, expected.text

    page = browse(investor, accept_downloads=True).submit_sign_in()
    page.click("#nav-tax", timeout=30_000)
    page.wait_for_selector("#tax-documents", state="visible", timeout=30_000)
    page.select_option("#tax-year", str(year))

    with page.expect_download(timeout=30_000) as csv_download:
        page.click("#form-8949-csv")
    saved = tmp_path / csv_download.value.suggested_filename
    csv_download.value.save_as(saved)
    assert saved.name == f"form-8949-{year}-{str(portfolio['id']).split('-')[0]}.csv"
    assert saved.read_bytes() == expected.content
    assert "4 MSFT" in saved.read_text()

    with page.expect_download(timeout=30_000) as pdf_download:
        page.click("#form-8949-pdf")
    pdf = tmp_path / pdf_download.value.suggested_filename
    pdf_download.value.save_as(pdf)
    assert pdf.suffix == ".pdf" and pdf.read_bytes().startswith(b"%PDF-")
    page.wait_for_selector("#tax-documents-status:has-text('Saved')")
    assert not page.is_visible("#login")  # nothing left the investor signed out
