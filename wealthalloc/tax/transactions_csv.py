"""A trade history from CSV, checked in full before anything is computed from it.

The file has a header row naming the columns, in any order::

    date,account_id,account_type,symbol,side,quantity,price,fees,currency

``fees`` and ``currency`` may be left out (or left empty: no fees, USD).
Dates are ISO (``2022-03-15``), ``account_type`` is ``taxable``, ``ira`` or
``roth_ira``, ``side`` is ``buy`` or ``sell``, numbers are plain decimals
(quantities and prices up to six places, fees up to four).

Rows are the order trades happened in, so same-day trades are applied in file
order: a buy and a sell on the same day are legal, and which comes first
decides whether the sale may take the shares just bought. A row dated before
the row above it is an error by default, since a history out of order usually
means a file put together wrongly; ``sort=True`` sorts by date instead,
keeping the file order within a day.

Every problem is reported with its line number (the header is line 1), all
of them at once, and no transaction is returned when there is any: a tax
report from half a file would be wrong without saying so.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from wealthalloc.domain.money import InvalidAmount, parse_decimal
from wealthalloc.domain.wash_sale import AccountType, IdentityGroups, Side, Transaction

REQUIRED_COLUMNS = ("date", "account_id", "account_type", "symbol", "side", "quantity", "price")
OPTIONAL_COLUMNS = ("fees", "currency")
CURRENCY = "USD"
SHOWN_PROBLEMS = 10

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SYMBOL = re.compile(r"[A-Z][A-Z0-9.\-]{0,15}")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class CsvProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class TransactionsCsvError(ValueError):
    """The file cannot be used; ``problems`` lists every problem found, by line."""

    def __init__(self, problems: list[CsvProblem], source: str = "") -> None:
        problems = sorted(problems, key=lambda problem: problem.line)
        shown = "; ".join(str(problem) for problem in problems[:SHOWN_PROBLEMS])
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        super().__init__(f"{source + ': ' if source else ''}{shown}{more}")
        self.problems = problems
        self.source = source

    @property
    def line(self) -> int:
        """The line of the first problem."""
        return self.problems[0].line


def read_transactions_csv(
    path: Path | str,
    *,
    today: date,
    known_symbols: Collection[str] | None = None,
    sort: bool = False,
) -> list[Transaction]:
    """The checked transactions of a CSV file (UTF-8, a byte-order mark allowed).

    Parameters and errors as :func:`parse_transactions_csv`; an unreadable
    file raises ``OSError``.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    return parse_transactions_csv(text, today=today, known_symbols=known_symbols, sort=sort, source=str(path))


def parse_transactions_csv(
    text: str,
    *,
    today: date,
    known_symbols: Collection[str] | None = None,
    sort: bool = False,
    source: str = "",
) -> list[Transaction]:
    """Check a CSV trade history and return it as the wash-sale engine's input.

    Parameters
    ----------
    text : str
        The whole file.
    today : date
        Trades dated after it are refused.
    known_symbols : collection of str, optional
        The symbols that exist; any well-formed ticker when ``None``.
    sort : bool
        Sort rows by date (stable) instead of refusing a row dated before the one above.
    source : str
        Named in the error message (a file name).

    Returns
    -------
    list of Transaction
        In date order, each with ``ref`` "line N".

    Raises
    ------
    TransactionsCsvError
        With every problem and its line: a missing or unknown column, a
        malformed row (too many or too few fields), a bad or future date, an
        unknown account type, side or symbol, an account given two types, a
        non-USD currency, a zero, negative or malformed quantity, price or
        fee, fees above a sale's gross amount, a row out of date order, a
        sale of more shares than the account holds at that point.
    """
    known = None if known_symbols is None else {symbol.strip().upper() for symbol in known_symbols}
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        raise TransactionsCsvError([CsvProblem(1, "empty file: expected a header row")], source)
    columns = [cell.strip().lower() for cell in header]
    header_problems = _header_problems(columns)
    if header_problems:
        raise TransactionsCsvError([CsvProblem(1, problem) for problem in header_problems], source)

    problems: list[CsvProblem] = []
    rows: list[tuple[int, Transaction]] = []
    for cells in reader:
        line = reader.line_num
        if not cells or not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            problems.append(CsvProblem(line, f"{len(cells)} fields, the header has {len(columns)}"))
            continue
        record = dict(zip(columns, (cell.strip() for cell in cells), strict=True))
        found, tx = _transaction(record, line, today, known)
        problems.extend(found)
        if tx is not None:
            rows.append((line, tx))
    if not rows and not problems:
        problems.append(CsvProblem(1, "no transactions after the header"))
    if problems:
        raise TransactionsCsvError(problems, source)

    if sort:
        rows.sort(key=lambda row: row[1].date)
    problems.extend(_history_problems(rows, sorted_by_us=sort))
    if problems:
        raise TransactionsCsvError(problems, source)
    return [tx for _, tx in rows]


def _header_problems(columns: list[str]) -> list[str]:
    problems: list[str] = []
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        problems.append(
            f"missing column(s) {', '.join(missing)} (the header must name {', '.join(REQUIRED_COLUMNS)})"
        )
    unknown = [name for name in columns if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(repr(name) for name in unknown)}")
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        problems.append(f"column(s) named twice: {', '.join(twice)}")
    return problems


def _transaction(
    record: dict[str, str], line: int, today: date, known: set[str] | None
) -> tuple[list[CsvProblem], Transaction | None]:
    problems: list[str] = []

    day: date | None = None
    text = record["date"]
    if not _DATE.fullmatch(text):
        problems.append(f"date {text!r} is not YYYY-MM-DD")
    else:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            problems.append(f"date {text!r} does not exist")
    if day is not None and day > today:
        problems.append(f"date {day} is in the future (today is {today})")

    account_id = record["account_id"]
    if not account_id:
        problems.append("account_id is empty")
    account_type: AccountType | None = None
    try:
        account_type = AccountType(record["account_type"].lower())
    except ValueError:
        problems.append(
            f"account_type {record['account_type']!r} is not one of"
            f" {', '.join(kind.value for kind in AccountType)}"
        )

    symbol = record["symbol"].upper()
    if not _SYMBOL.fullmatch(symbol):
        problems.append(f"symbol {record['symbol']!r} is not a ticker")
    elif known is not None and symbol not in known:
        problems.append(f"unknown symbol {symbol}")

    side: Side | None = None
    try:
        side = Side(record["side"].lower())
    except ValueError:
        problems.append(f"side {record['side']!r} is not buy or sell")

    quantity = _amount(record["quantity"], "quantity", places=6, problems=problems)
    price = _amount(record["price"], "price", places=6, problems=problems)
    fees = _fees(record.get("fees", ""), problems)

    currency = record.get("currency", "").upper()
    if currency and currency != CURRENCY:
        problems.append(f"currency {record['currency']!r}: only {CURRENCY} is supported")

    if problems or day is None or account_type is None or side is None or quantity is None or price is None:
        return [CsvProblem(line, problem) for problem in problems], None
    tx = Transaction(
        date=day,
        account_id=account_id,
        account_type=account_type,
        symbol=symbol,
        side=side,
        quantity=quantity,
        price=price,
        fees=fees,
        ref=f"line {line}",
    )
    if side is Side.SELL and tx.amount < 0:
        return [CsvProblem(line, f"fees {fees} exceed the sale's gross amount {quantity * price}")], None
    return [], tx


def _amount(text: str, name: str, *, places: int, problems: list[str]) -> Decimal | None:
    try:
        return parse_decimal(text, places=places, positive=True)
    except InvalidAmount as exc:
        problems.append(f"{name} {text!r}: {exc}" if text else f"{name} is empty")
        return None


def _fees(text: str, problems: list[str]) -> Decimal:
    if not text:
        return _ZERO
    try:
        if Decimal(text) == 0 and text.replace(".", "").isdigit():
            return _ZERO  # "0" and "0.00": no fees (parse_decimal refuses zero amounts)
    except ArithmeticError:
        pass
    value = _amount(text, "fees", places=4, problems=problems)
    return _ZERO if value is None else value


def _history_problems(rows: list[tuple[int, Transaction]], *, sorted_by_us: bool) -> list[CsvProblem]:
    """Order, account types and holdings: what only the rows together can show."""
    problems: list[CsvProblem] = []
    latest: tuple[int, date] | None = None
    account_types: dict[str, tuple[int, AccountType]] = {}
    held: dict[tuple[str, str], Decimal] = {}
    for line, tx in rows:
        if not sorted_by_us and latest is not None and tx.date < latest[1]:
            problems.append(
                CsvProblem(
                    line,
                    f"dated {tx.date}, before line {latest[0]} ({latest[1]}): rows must be in date order"
                    " (or sort them: --sort)",
                )
            )
        if latest is None or tx.date >= latest[1]:
            latest = (line, tx.date)
        first = account_types.setdefault(tx.account_id, (line, tx.account_type))
        if first[1] is not tx.account_type:
            problems.append(
                CsvProblem(
                    line,
                    f"account {tx.account_id} is {tx.account_type.value} here"
                    f" but {first[1].value} on line {first[0]}",
                )
            )
        position = (tx.account_id, tx.symbol)
        shares = held.get(position, _ZERO)
        if tx.side is Side.BUY:
            held[position] = shares + tx.quantity
        elif tx.quantity > shares:
            problems.append(
                CsvProblem(
                    line,
                    f"sells {tx.quantity} {tx.symbol} but account {tx.account_id}"
                    f" holds {shares} on {tx.date}",
                )
            )
        else:
            held[position] = shares - tx.quantity
    return problems


def read_identity_groups_csv(path: Path | str) -> IdentityGroups:
    """Substantially identical securities from a CSV file with columns ``group_name,symbol``.

    Raises
    ------
    TransactionsCsvError
        On a missing column, an empty group name or a malformed symbol, with its line.
    """
    path = Path(path)
    return parse_identity_groups_csv(path.read_text(encoding="utf-8-sig"), source=str(path))


def parse_identity_groups_csv(text: str, *, source: str = "") -> IdentityGroups:
    """Groups from CSV text with the columns of the ``wash_sale_groups`` table, ``group_name,symbol``."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip().lower() for cell in next(reader, [])]
    if "group_name" not in header or "symbol" not in header:
        raise TransactionsCsvError([CsvProblem(1, "the header must name group_name and symbol")], source)
    name_at, symbol_at = header.index("group_name"), header.index("symbol")
    pairs: list[tuple[str, str]] = []
    problems: list[CsvProblem] = []
    for cells in reader:
        if not cells or not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            problems.append(CsvProblem(reader.line_num, f"{len(cells)} fields, the header has {len(header)}"))
            continue
        name, symbol = cells[name_at].strip(), cells[symbol_at].strip().upper()
        if not name or not _SYMBOL.fullmatch(symbol):
            problems.append(CsvProblem(reader.line_num, "needs a group name and a ticker"))
            continue
        pairs.append((name, symbol))
    if problems:
        raise TransactionsCsvError(problems, source)
    return IdentityGroups.from_rows(pairs)
