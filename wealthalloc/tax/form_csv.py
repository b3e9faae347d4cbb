"""Form 8949, Schedule D and 1099-B as CSV files a preparer (or their software) imports.

The files are opened in spreadsheets, so a text cell that starts with
``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) would run as a
formula: such a cell gets a leading apostrophe. Amounts are written as plain
decimal strings (``-123.45``), never escaped, so they stay numbers.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal

from wealthalloc.domain.money import cents
from wealthalloc.domain.tax_forms import (
    Box,
    BoxedRow,
    BoxTotals,
    BrokerStatementRow,
    ScheduleD,
    box_totals,
    quantity_text,
)

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

FORM_8949_COLUMNS = (
    "tax_year",
    "part",
    "box",
    "line",
    "(a) description",
    "(b) date acquired",
    "(c) date sold",
    "(d) proceeds",
    "(e) cost basis",
    "(f) code",
    "(g) adjustment",
    "(h) gain or loss",
)
SCHEDULE_D_COLUMNS = ("tax_year", "line", "description", "proceeds", "cost_basis", "adjustment", "gain_loss")
BROKER_STATEMENT_COLUMNS = (
    "description",
    "quantity",
    "date_acquired",
    "date_sold",
    "proceeds",
    "cost_basis",
    "wash_sale_loss_disallowed",
    "term",
    "covered",
    "basis_reported_to_irs",
)


def amount_text(value: Decimal) -> str:
    """An amount in cents as a plain decimal string: ``-123.45``, ``0.00`` (never ``-0.00``)."""
    rounded = cents(value)
    return str(rounded if rounded != 0 else abs(rounded))


def text_cell(value: str) -> str:
    """Text made inert for a spreadsheet: a leading apostrophe before a formula's first character."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return amount_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return text_cell(str(value))


def _write(header: Sequence[str], lines: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_cell(value) for value in line] for line in lines)
    return out.getvalue()


def form_8949_csv(rows: Sequence[BoxedRow], *, year: int) -> str:
    """Form 8949 of ``year``: each box's rows (``line`` = ``row``), then its totals (``line`` = ``total``).

    A box without rows has no lines at all; a year without sales is the header alone.
    """
    totals = box_totals(rows)
    lines: list[Sequence[object]] = []
    for box in Box:
        mine = [boxed for boxed in rows if boxed.box is box]
        if not mine:
            continue
        lines.extend(_row_line(year, boxed) for boxed in mine)
        lines.append(_total_line(year, totals[box]))
    return _write(FORM_8949_COLUMNS, lines)


def _row_line(year: int, boxed: BoxedRow) -> Sequence[object]:
    row = boxed.row
    return (
        year,
        boxed.box.part,
        boxed.box.value,
        "row",
        boxed.description,
        boxed.date_acquired,
        row.sold,
        row.proceeds,
        row.cost_basis,
        row.adjustment_code,
        row.adjustment if row.adjustment_code else None,
        row.gain_loss,
    )


def _total_line(year: int, total: BoxTotals) -> Sequence[object]:
    box = total.box
    return (
        year,
        box.part,
        box.value,
        "total",
        f"Totals, box {box.value} ({total.rows} {'row' if total.rows == 1 else 'rows'})",
        None,
        None,
        total.proceeds,
        total.cost_basis,
        None,
        total.adjustment,
        total.gain_loss,
    )


def schedule_d_csv(schedule: ScheduleD) -> str:
    """Schedule D's lines, then the carryforward into the next year (short and long apart).

    Carried-over losses (lines 6, 14) and the deduction (line 21) are negative, as they add up.
    """
    lines: list[Sequence[object]] = [
        (
            schedule.year,
            item.line,
            item.description,
            item.proceeds,
            item.cost_basis,
            item.adjustment,
            item.gain_loss,
        )
        for item in schedule.lines
    ]
    nxt = schedule.year + 1
    lines.append(
        (
            schedule.year,
            "carryover",
            f"Short-term loss carried into {nxt}",
            None,
            None,
            None,
            schedule.carryforward_short,
        )
    )
    lines.append(
        (
            schedule.year,
            "carryover",
            f"Long-term loss carried into {nxt}",
            None,
            None,
            None,
            schedule.carryforward_long,
        )
    )
    return _write(SCHEDULE_D_COLUMNS, lines)


def broker_statement_csv(statement: Iterable[BrokerStatementRow]) -> str:
    """The platform's 1099-B for one account: a line per sale."""
    return _write(
        BROKER_STATEMENT_COLUMNS,
        (
            (
                line.description,
                quantity_text(line.quantity),
                line.date_acquired,
                line.sold,
                line.proceeds,
                line.cost_basis,
                line.wash_sale_disallowed,
                line.term.value,
                "covered" if line.covered else "noncovered",
                "yes" if line.basis_reported else "no",
            )
            for line in statement
        ),
    )
