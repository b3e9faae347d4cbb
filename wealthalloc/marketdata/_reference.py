"""Names, sectors and asset classes: a small table shipped in the repository, not fetched.

Price files say nothing about what a symbol is, yet allocation by sector and
asset class needs it. A CSV in the package (``reference/securities.csv``,
package data read with ``importlib.resources`` so it works from a wheel or a
zip) keeps the table reviewable in a diff and available without network.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Final

from wealthalloc.marketdata._errors import MarketDataError

ASSET_CLASSES: Final = frozenset({"equity", "etf", "index"})
"""``equity`` for single stocks, ``etf`` for funds, ``index`` for benchmarks that cannot be bought."""

_COLUMNS: Final = ("symbol", "name", "asset_class", "sector", "currency")
_RESOURCE: Final = ("wealthalloc.marketdata", "reference/securities.csv")


@dataclass(frozen=True)
class Security:
    """One row of the reference table.

    Attributes
    ----------
    symbol : str
        Upper-case ticker, as the price files name it.
    name : str
        The issuer's or fund's name.
    asset_class : str
        One of :data:`ASSET_CLASSES`.
    sector : str
        GICS sector for stocks; the fund category for ETFs ("US Equity
        Factor"); "Broad Market" for an index.
    currency : str
        ISO 4217 code of the prices.
    """

    symbol: str
    name: str
    asset_class: str
    sector: str
    currency: str


class SecurityReference:
    """The reference table, looked up by symbol (case-insensitively).

    Parameters
    ----------
    securities : iterable of Security, optional
        The rows to serve; the table shipped in the package when ``None``.
        Passing rows lets tests and other deployments compose their own.

    Raises
    ------
    MarketDataError
        When the table is malformed: a missing column, an empty symbol,
        sector or name, an unknown asset class, or a symbol listed twice.
    """

    def __init__(self, securities: Iterable[Security] | None = None) -> None:
        rows = _shipped_rows() if securities is None else list(securities)
        by_symbol: dict[str, Security] = {}
        for row in rows:
            _check(row)
            if row.symbol in by_symbol:
                raise MarketDataError(f"security {row.symbol} is listed twice in the reference table")
            by_symbol[row.symbol] = row
        self._by_symbol = by_symbol

    def get(self, symbol: str) -> Security | None:
        """The row for ``symbol`` (any case, surrounding spaces ignored), or ``None``.

        ``None`` rather than an error because a symbol may have prices (a
        dropped Parquet file) without a reference row; callers show it as
        unclassified.
        """
        return self._by_symbol.get(symbol.strip().upper())

    def symbols(self) -> list[str]:
        """Every symbol in the table, sorted."""
        return sorted(self._by_symbol)

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and symbol.strip().upper() in self._by_symbol

    def __iter__(self) -> Iterator[Security]:
        return iter(sorted(self._by_symbol.values(), key=lambda row: row.symbol))

    def __len__(self) -> int:
        return len(self._by_symbol)


def _shipped_rows() -> list[Security]:
    package, name = _RESOURCE
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in _COLUMNS if column not in (reader.fieldnames or ())]
    if missing:
        raise MarketDataError(f"{name} lacks column(s) {', '.join(missing)}")
    return [
        Security(
            symbol=record["symbol"].strip().upper(),
            name=record["name"].strip(),
            asset_class=record["asset_class"].strip().lower(),
            sector=record["sector"].strip(),
            currency=record["currency"].strip().upper(),
        )
        for record in reader
    ]


def _check(row: Security) -> None:
    if not row.symbol or row.symbol != row.symbol.strip().upper():
        raise MarketDataError(f"reference symbol {row.symbol!r} must be non-empty and upper-case")
    if not row.name or not row.sector:
        raise MarketDataError(f"security {row.symbol} needs a name and a sector")
    if row.asset_class not in ASSET_CLASSES:
        raise MarketDataError(
            f"security {row.symbol} has asset class {row.asset_class!r},"
            f" expected one of {', '.join(sorted(ASSET_CLASSES))}"
        )
    if len(row.currency) != 3:
        raise MarketDataError(f"security {row.symbol} has currency {row.currency!r}, expected an ISO code")
