"""Sectors and asset classes: a small table shipped in the repository, not fetched."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Security:
    symbol: str
    name: str
    asset_class: str
    sector: str
    currency: str


class SecurityReference:
    def __init__(self, rows: list[Security] | None = None) -> None:
        if rows is None:
            text = resources.files("wealthalloc.marketdata").joinpath("reference/securities.csv").read_text()
            rows = [
                Security(
                    symbol=r["symbol"].upper(), name=r["name"], asset_class=r["asset_class"],
                    sector=r["sector"], currency=r["currency"],
                )
                for r in csv.DictReader(io.StringIO(text))
            ]
        self._by_symbol = {row.symbol: row for row in rows}

    def get(self, symbol: str) -> Security | None:
        return self._by_symbol.get(symbol.strip().upper())

    def symbols(self) -> list[str]:
        return sorted(self._by_symbol)
