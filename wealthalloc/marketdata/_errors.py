"""The failures of market data, under one base class.

The CLI turns any :class:`MarketDataError` into a one-line message and
``/health`` into a failed check, so both catch the base class and never need to
know which file or symbol went wrong. The subclasses are also ``LookupError``
because that is what they are: a key (symbol, day) with no value.
"""

from __future__ import annotations

from datetime import date


class MarketDataError(Exception):
    """Market data cannot answer; the message says what is missing and where."""


class UnknownSymbolError(MarketDataError, LookupError):
    """A symbol with no Parquet file in the prices directory."""

    def __init__(self, symbol: str, where: object = None) -> None:
        self.symbol = symbol
        suffix = f" in {where}" if where is not None else ""
        super().__init__(f"no prices for symbol {symbol!r}{suffix}")


class NoPriceError(MarketDataError, LookupError):
    """A known symbol asked for a day before its first price."""

    def __init__(self, symbol: str, day: date, first: date | None) -> None:
        self.symbol = symbol
        self.day = day
        self.first = first
        since = f"; its prices start on {first}" if first is not None else "; it has no prices at all"
        super().__init__(f"no price for {symbol} on or before {day}{since}")
