"""The drawn Form 8949 PDF: a section per box, the totals, the Schedule D page, and the docs' sample."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

from pypdf import PdfReader

from wealthalloc.domain.gains_report import year_totals
from wealthalloc.domain.lots import Term
from wealthalloc.domain.tax_forms import (
    BasisReporting,
    box_totals,
    boxed_rows,
    inherited_lots,
    reporting_of_lots,
    same_reporting,
    schedule_d,
)
from wealthalloc.domain.wash_sale import AccountType, RealizedLot
from wealthalloc.tax.form_pdf import form_8949_pdf, pdf_amount
from wealthalloc.tax.sample import write_samples

D = Decimal


def sale(proceeds: str, term: Term, adjustment: str = "0") -> RealizedLot:
    bought = date(2020, 2, 3) if term is Term.LONG else date(2025, 2, 3)
    return RealizedLot(
        symbol="KO",
        account_id="brokerage",
        account_type=AccountType.TAXABLE,
        lot_id=uuid.uuid4(),
        shares=D("12"),
        acquired_at=bought,
        holding_period_start=bought,
        sold=date(2025, 9, 1),
        proceeds=D(proceeds),
        cost_basis=D("1000.00"),
        unadjusted_cost=D("1000.00"),
        adjustment=D(adjustment),
        permanently_disallowed=D(0),
        term=term,
    )


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_losses_are_in_parentheses_as_on_the_form() -> None:
    assert (pdf_amount(D("-1234.5")), pdf_amount(D("987654.321")), pdf_amount(D("-0.001"))) == (
        "(1,234.50)",
        "987,654.32",
        "0.00",
    )


def test_each_box_has_its_part_its_totals_and_schedule_d_ends_the_document() -> None:
    realized = [sale("700.00", Term.SHORT, adjustment="300.00"), sale("2500.00", Term.LONG)]
    rows = boxed_rows(realized, year=2025, reporting=same_reporting(BasisReporting.NOT_REPORTED))
    schedule = schedule_d(box_totals(rows), year_totals(realized, year=2025))
    pdf = form_8949_pdf(rows, year=2025, taxpayer="Lee <b>& Co</b>", schedule=schedule)
    pages = [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]
    assert len(pages) == 3  # box B, box E, Schedule D
    assert "Part I — Short-Term" in pages[0] and "(B) Short-term transactions reported" in pages[0]
    assert "Part II — Long-Term" in pages[1] and "(E) Long-term" in pages[1]
    assert "Schedule D summary" in pages[2]
    assert all("Lee <b>& Co</b>" in page for page in pages)  # a name is text, never markup
    assert "12 KO\n02/03/2025\n09/01/2025\n700.00\n1,000.00\nW\n300.00\n0.00" in pages[0]
    assert "2 Totals, box E\n2,500.00\n1,000.00\n0.00\n1,500.00" in pages[1]


def test_column_b_of_inherited_property_reads_inherited() -> None:
    inherited = sale("2500.00", Term.LONG)
    sources = {inherited.lot_id: "inherited"}
    rows = boxed_rows(
        [inherited], year=2025, reporting=reporting_of_lots(sources), inherited=inherited_lots(sources)
    )
    text = text_of(form_8949_pdf(rows, year=2025, taxpayer="Lee"))
    assert "12 KO\nINHERITED\n09/01/2025\n2,500.00" in text
    assert "02/03/2020" not in text


def test_a_year_without_sales_says_so() -> None:
    text = text_of(form_8949_pdf([], year=2025, taxpayer="Lee", account="IRA (ira, 1a2b3c4d)"))
    assert "No reportable sales in 2025" in text and "Account: IRA (ira, 1a2b3c4d)" in text


def test_the_docs_sample_is_made_again_with_every_box_it_shows(tmp_path: Path) -> None:
    pdf, form, schedule = write_samples(tmp_path)
    lines = list(csv.DictReader(io.StringIO(form.read_text())))
    assert {line["box"] for line in lines} == {"A", "D", "E"}
    assert any(line["(f) code"] == "W" for line in lines)
    assert [line["box"] for line in lines if line["(b) date acquired"] == "INHERITED"] == ["D"]
    text = text_of(pdf.read_bytes())
    assert "Dana Demo" in text and "Schedule D summary" in text
    assert "16" in [line.split(",")[1] for line in schedule.read_text().splitlines()]
    committed = Path(__file__).parents[2] / "docs" / "sample-form-8949.csv"
    assert committed.read_text() == form.read_text()  # the committed sample is up to date
