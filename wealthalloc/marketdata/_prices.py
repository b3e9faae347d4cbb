"""Daily closes read from the Parquet files of a prices directory.

Every ``*.parquet`` there is a symbol, so dropping a file in adds one. Floats
serve analytics (returns, volatility); :meth:`PriceHistory.close_on` hands
money code a ``Decimal``.
"""

from __future__ import annotations

import threading
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from wealthalloc.marketdata._bundled import INDEX_SYMBOL
from wealthalloc.marketdata._errors import MarketDataError, NoPriceError, UnknownSymbolError

PRICE_QUANTUM = Decimal("0.0001")


class PriceHistory:
    def __init__(self, prices_dir: Path) -> None:
        self.prices_dir = Path(prices_dir)
        self._cache: dict[str, pd.Series] = {}
        self._lock = threading.Lock()
        self._calendar: list[date] | None = None

    def _files(self) -> dict[str, Path]:
        if not self.prices_dir.is_dir():
            return {}
        return {p.stem.upper(): p for p in self.prices_dir.glob("*.parquet")}

    def symbols(self) -> list[str]:
        return sorted(self._files())

    def closes(self, symbol: str) -> pd.Series:
        key = symbol.strip().upper()
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        path = self.prices_dir / f"{key}.parquet"
        if not path.is_file():
            found = self._files().get(key)
            if found is None:
                raise UnknownSymbolError(f"no prices for symbol {key!r}")
            path = found
        try:
            table = pq.read_table(path, columns=["date", "close"])
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise MarketDataError(f"cannot read {path}: {exc}") from exc
        frame = table.to_pandas()
        series = pd.Series(
            frame["close"].to_numpy(float), index=pd.DatetimeIndex(pd.to_datetime(frame["date"])), name=key
        ).sort_index()
        series = series[~series.index.duplicated(keep="last")].dropna()
        with self._lock:
            self._cache[key] = series
        return series

    def close_on(self, symbol: str, day: date) -> Decimal:
        """The last close at or before ``day``, as money code wants it."""
        series = self.closes(symbol)
        position = series.index.searchsorted(pd.Timestamp(day), side="right")
        if position == 0:
            raise NoPriceError(f"no price for {symbol.upper()} on or before {day}")
        return Decimal(repr(float(series.iloc[position - 1]))).quantize(PRICE_QUANTUM, ROUND_HALF_EVEN)

    def trading_days(self) -> list[date]:
        """The market calendar: the index's dates, or the union of all symbols without it."""
        if self._calendar is None:
            symbols = self.symbols()
            if not symbols:
                raise MarketDataError(f"no Parquet prices in {self.prices_dir}")
            if INDEX_SYMBOL in symbols:
                index = self.closes(INDEX_SYMBOL).index
            else:
                index = pd.DatetimeIndex(sorted(set().union(*(self.closes(s).index for s in symbols))))
            self._calendar = [ts.date() for ts in index]
        return self._calendar

    @property
    def first_date(self) -> date:
        return self.trading_days()[0]

    @property
    def last_date(self) -> date:
        return self.trading_days()[-1]

    def frame(self, symbols: list[str], start: date | None = None, end: date | None = None) -> pd.DataFrame:
        data = pd.concat({s.upper(): self.closes(s) for s in symbols}, axis=1)
        return data.loc[pd.Timestamp(start) if start else None : pd.Timestamp(end) if end else None]
