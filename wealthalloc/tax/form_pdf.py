"""Form 8949 and a Schedule D summary as a PDF, drawn with ReportLab in the layout of the IRS forms.

The IRS's fillable PDF cannot be fetched where the platform runs (no
internet), so the pages are drawn: Part I (short-term) and Part II
(long-term), one section per box with columns (a) to (h) and the box's
totals (line 2), then the Schedule D lines. A preparer copies the figures to
the official forms or attaches the pages as a statement in the form's layout.
Losses are shown in parentheses, as on the forms.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import landscape, letter
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import inch
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from wealthalloc.domain.money import cents
from wealthalloc.domain.tax_forms import Box, BoxedRow, BoxTotals, ScheduleD, box_totals

_STYLES = getSampleStyleSheet()
_TITLE = ParagraphStyle("title", parent=_STYLES["Heading2"], spaceAfter=2)
_BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontSize=9, leading=11)
_CELL = ParagraphStyle("cell", parent=_BODY, fontSize=8, leading=9.5)

_HEADERS = (
    "(a) Description of property",
    "(b) Date acquired",
    "(c) Date sold",
    "(d) Proceeds",
    "(e) Cost or other basis",
    "(f) Code",
    "(g) Amount of adjustment",
    "(h) Gain or (loss)",
)
_WIDTHS = [2.3 * inch, 0.95 * inch, 0.95 * inch, 1.2 * inch, 1.2 * inch, 0.5 * inch, 1.2 * inch, 1.2 * inch]
_NOTICE = (
    "Drawn by WealthAlloc in the layout of IRS Form 8949 and Schedule D; not the official form. "
    "Copy the figures to the official forms or attach these pages as a statement."
)


def pdf_amount(value: Decimal) -> str:
    """An amount as the forms show it: ``1,234.56``, a loss in parentheses ``(1,234.56)``."""
    rounded = cents(value)
    return f"({-rounded:,.2f})" if rounded < 0 else f"{abs(rounded):,.2f}"


def form_8949_pdf(
    rows: Sequence[BoxedRow],
    *,
    year: int,
    taxpayer: str,
    schedule: ScheduleD | None = None,
    account: str | None = None,
) -> bytes:
    """The PDF: a section per box that has rows (Part I, then Part II), then the Schedule D page.

    Parameters
    ----------
    rows : sequence of BoxedRow
        The year's rows in box order (:func:`~wealthalloc.domain.tax_forms.boxed_rows`).
    year : int
        The tax year, printed on every page.
    taxpayer : str
        "Name(s) shown on return".
    schedule : ScheduleD, optional
        The Schedule D lines for the summary page; no summary page without it.
    account : str, optional
        Which account the rows come from, when they are not all of the taxpayer's.
    """
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=landscape(letter),
        leftMargin=0.5 * inch,
        rightMargin=0.5 * inch,
        topMargin=0.5 * inch,
        bottomMargin=0.7 * inch,
        title=f"Form 8949 {year}",
        author="WealthAlloc",
        subject=f"Form 8949 and Schedule D summary, tax year {year}",
    )
    story: list[Flowable] = []
    totals = box_totals(rows)
    for box in Box:
        mine = [boxed for boxed in rows if boxed.box is box]
        if not mine:
            continue
        if story:
            story.append(PageBreak())
        story.extend(_heading(year, taxpayer, account))
        story.extend(_box_section(box, mine, totals[box]))
    if not story:
        story.extend(_heading(year, taxpayer, account))
        story.append(
            Paragraph(
                f"No reportable sales in {year}. Sales in an IRA or Roth IRA are never reported.", _BODY
            )
        )
    if schedule is not None:
        story.append(PageBreak())
        story.extend(_schedule_d_page(schedule, taxpayer, account))

    def footer(canvas: Canvas, _: object) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.drawString(0.5 * inch, 0.45 * inch, _NOTICE)
        canvas.drawRightString(
            landscape(letter)[0] - 0.5 * inch,
            0.3 * inch,
            f"Tax year {year}  ·  page {canvas.getPageNumber()}",
        )
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()


def _heading(year: int, taxpayer: str, account: str | None) -> list[Flowable]:
    parts: list[Flowable] = [
        Paragraph(f"Form 8949 &mdash; Sales and Other Dispositions of Capital Assets &mdash; {year}", _TITLE),
        Paragraph(f"Name(s) shown on return: <b>{escape(taxpayer)}</b>", _BODY),
    ]
    if account:
        parts.append(Paragraph(f"Account: {escape(account)}", _BODY))
    parts.append(Spacer(1, 6))
    return parts


def _box_section(box: Box, rows: Sequence[BoxedRow], total: BoxTotals) -> list[Flowable]:
    part = (
        "Part I &mdash; Short-Term. Transactions involving capital assets you held 1 year or less"
        if box.part == "I"
        else "Part II &mdash; Long-Term. Transactions involving capital assets you held more than 1 year"
    )
    table_rows: list[list[object]] = [[Paragraph(f"<b>{h}</b>", _CELL) for h in _HEADERS]]
    for boxed in rows:
        row = boxed.row
        table_rows.append(
            [
                escape(boxed.description),
                _date_acquired(boxed),
                row.sold.strftime("%m/%d/%Y"),
                pdf_amount(row.proceeds),
                pdf_amount(row.cost_basis),
                row.adjustment_code or "",
                pdf_amount(row.adjustment) if row.adjustment_code else "",
                pdf_amount(row.gain_loss),
            ]
        )
    table_rows.append(
        [
            f"2 Totals, box {box.value}",
            "",
            "",
            pdf_amount(total.proceeds),
            pdf_amount(total.cost_basis),
            "",
            pdf_amount(total.adjustment),
            pdf_amount(total.gain_loss),
        ]
    )
    table = Table(table_rows, colWidths=_WIDTHS, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
                ("FONT", (0, -1), (-1, -1), "Helvetica-Bold", 8),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.black),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("BACKGROUND", (0, -1), (-1, -1), colors.HexColor("#eeeeee")),
                ("ALIGN", (3, 1), (-1, -1), "RIGHT"),
                ("ALIGN", (5, 1), (5, -1), "CENTER"),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ]
        )
    )
    return [
        Paragraph(f"<b>{part}</b>", _BODY),
        Paragraph(f"[X] <b>({box.value})</b> {escape(box.wording)}", _BODY),
        Spacer(1, 6),
        table,
    ]


def _date_acquired(boxed: BoxedRow) -> str:
    acquired = boxed.date_acquired
    return acquired if isinstance(acquired, str) else acquired.strftime("%m/%d/%Y")


def _schedule_d_page(schedule: ScheduleD, taxpayer: str, account: str | None) -> list[Flowable]:
    story: list[Flowable] = [
        Paragraph(f"Schedule D summary &mdash; Capital Gains and Losses &mdash; {schedule.year}", _TITLE),
        Paragraph(f"Name(s) shown on return: <b>{escape(taxpayer)}</b>", _BODY),
    ]
    if account:
        story.append(
            Paragraph(
                f"Account: {escape(account)} &mdash; this account's sales only; the return's Schedule D "
                "adds every taxable account (the taxpayer-wide export).",
                _BODY,
            )
        )
    story.append(Spacer(1, 6))
    table_rows: list[list[object]] = [
        [
            Paragraph(f"<b>{h}</b>", _CELL)
            for h in ("Line", "", "(d) Proceeds", "(e) Cost basis", "(g) Adjustments", "(h) Gain or (loss)")
        ]
    ]
    for item in schedule.lines:
        table_rows.append(
            [
                item.line,
                Paragraph(escape(item.description), _CELL),
                "" if item.proceeds is None else pdf_amount(item.proceeds),
                "" if item.cost_basis is None else pdf_amount(item.cost_basis),
                "" if item.adjustment is None else pdf_amount(item.adjustment),
                pdf_amount(item.gain_loss),
            ]
        )
    nxt = schedule.year + 1
    table_rows.append(
        ["", f"Short-term loss carried into {nxt}", "", "", "", pdf_amount(schedule.carryforward_short)]
    )
    table_rows.append(
        ["", f"Long-term loss carried into {nxt}", "", "", "", pdf_amount(schedule.carryforward_long)]
    )
    table = Table(
        table_rows,
        colWidths=[0.5 * inch, 4.3 * inch, 1.15 * inch, 1.15 * inch, 1.15 * inch, 1.25 * inch],
        repeatRows=1,
    )
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.black),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("ALIGN", (2, 1), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ]
        )
    )
    story.append(table)
    return story
