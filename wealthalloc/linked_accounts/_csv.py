"""A positions statement from another broker, as CSV: one line per lot.

The format (``docs/linked-accounts.md``)::

    symbol,quantity,cost_basis,acquired_date
    AAPL,10,1500.00,2021-03-04
    KO,25.5,1320.75,2019-11-20

``cost_basis`` is the lot's total cost, ``acquired_date`` ISO (YYYY-MM-DD). A header is
required (columns in any order, extra columns ignored). Every bad line is reported with
its line number at once, so a person fixes the file in one go; a statement with any
bad line imports nothing.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation

from wealthalloc.linked_accounts._reconcile import BrokerPosition, BrokerSnapshot, StatementLot

CSV_COLUMNS = ("symbol", "quantity", "cost_basis", "acquired_date")
MAX_LINES = 10_000
_SYMBOL = re.compile(r"^[A-Z][A-Z.-]{0,11}$")
_QUANTITY = Decimal("0.000001")
_MONEY = Decimal("0.0001")


class StatementError(ValueError):
    """``problems`` lists ``{"line": n, "field": name, "message": why}`` for each bad line."""

    def __init__(self, problems: list[dict[str, object]]) -> None:
        super().__init__(f"the statement has {len(problems)} problem(s)")
        self.problems = problems


def parse_statement(text: str, *, today: date) -> BrokerSnapshot:
    """The statement's lots grouped by symbol; ``today`` bounds the acquisition dates."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [column for column in CSV_COLUMNS if column not in header]
    if missing:
        raise StatementError(
            [{"line": 1, "field": "header", "message": f"missing column(s) {', '.join(missing)}"}]
        )
    reader.fieldnames = header
    problems: list[dict[str, object]] = []
    lots: dict[str, list[StatementLot]] = {}
    for number, row in enumerate(reader, start=2):
        if number > MAX_LINES + 1:
            problems.append({"line": number, "field": None, "message": f"more than {MAX_LINES} lines"})
            break
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        parsed = _lot(row, number, today, problems)
        if parsed is not None:
            lots.setdefault(parsed[0], []).append(parsed[1])
    if problems:
        raise StatementError(problems)
    if not lots:
        raise StatementError([{"line": 2, "field": None, "message": "the statement lists no positions"}])
    return BrokerSnapshot(
        positions=tuple(
            BrokerPosition(
                symbol,
                sum((lot.quantity for lot in held), Decimal(0)),
                sum((lot.cost_basis for lot in held), Decimal(0)),
                tuple(held),
            )
            for symbol, held in sorted(lots.items())
        ),
        cash=None,
        verified=False,
    )


def _lot(
    row: dict[str, str | None], line: int, today: date, problems: list[dict[str, object]]
) -> tuple[str, StatementLot] | None:
    before = len(problems)

    def bad(name: str, message: str) -> None:
        problems.append({"line": line, "field": name, "message": message})

    symbol = (row.get("symbol") or "").strip().upper()
    if not _SYMBOL.match(symbol):
        bad("symbol", "must be 1-12 letters (dots and dashes allowed)")
    quantity = _number(row.get("quantity"), "quantity", _QUANTITY, bad, positive=True)
    cost = _number(row.get("cost_basis"), "cost_basis", _MONEY, bad, positive=False)
    acquired: date | None = None
    try:
        acquired = date.fromisoformat((row.get("acquired_date") or "").strip())
    except ValueError:
        bad("acquired_date", "must be a date as YYYY-MM-DD")
    if acquired is not None and not date(1900, 1, 1) <= acquired <= today:
        bad("acquired_date", f"must be between 1900-01-01 and {today}")
    if len(problems) > before or quantity is None or cost is None:
        return None
    return symbol, StatementLot(quantity, cost, acquired)


def _number(
    raw: str | None, name: str, step: Decimal, bad: Callable[[str, str], None], *, positive: bool
) -> Decimal | None:
    try:
        value = Decimal((raw or "").strip().replace(",", ""))
    except InvalidOperation:
        bad(name, "must be a decimal number")
        return None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        bad(name, "must be a positive number" if positive else "must not be negative")
        return None
    if value != value.quantize(step):
        bad(name, f"has more than {-int(step.as_tuple().exponent)} decimal places")
        return None
    if value >= Decimal("1e14"):
        bad(name, "is too large")
        return None
    return value
