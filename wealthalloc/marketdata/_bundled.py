"""Real daily prices from the datasets bundled inside the skfolio wheel, converted to Parquet.

No network: ``load_sp500_dataset``, ``load_sp500_index`` and
``load_factors_dataset`` read CSV files shipped in the package. One Parquet
file per symbol keeps "add a symbol" as simple as dropping a file in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

STOCKS = (
    "AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO",
    "LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM",
)
FACTOR_ETFS = ("MTUM", "QUAL", "SIZE", "USMV", "VLUE")
INDEX_SYMBOL = "SPX"
BUNDLED_SYMBOLS = (*STOCKS, INDEX_SYMBOL, *FACTOR_ETFS)

_SCHEMA = pa.schema([("date", pa.date32()), ("close", pa.float64())])


@dataclass(frozen=True)
class LoadReport:
    symbols: tuple[str, ...]
    rows: int
    first_date: date
    last_date: date
    written: int


def _bundled_frames() -> dict[str, pd.Series]:
    from skfolio.datasets import load_factors_dataset, load_sp500_dataset, load_sp500_index

    series: dict[str, pd.Series] = {}
    stocks = load_sp500_dataset()
    for symbol in stocks.columns:
        series[str(symbol)] = stocks[symbol]
    series[INDEX_SYMBOL] = load_sp500_index().iloc[:, 0]
    factors = load_factors_dataset()
    for symbol in factors.columns:
        series[str(symbol)] = factors[symbol]
    return series


def _table(closes: pd.Series) -> pa.Table:
    clean = closes.dropna()
    clean = clean[clean > 0]
    dates = pd.DatetimeIndex(clean.index).date
    return pa.Table.from_arrays([pa.array(dates, pa.date32()), pa.array(clean.to_numpy(float))], schema=_SCHEMA)


def load_bundled_datasets(prices_dir: Path, *, progress: bool = True) -> LoadReport:
    """Write one ``SYMBOL.parquet`` per bundled symbol; a file already identical is left alone.

    Idempotent by content: each run rebuilds the table and rewrites a file only
    when it differs, atomically (temp file, then rename), so a reader never
    sees half a file and a second run writes nothing.
    """
    prices_dir = Path(prices_dir)
    prices_dir.mkdir(parents=True, exist_ok=True)
    frames = _bundled_frames()
    rows = written = 0
    first: date | None = None
    last: date | None = None
    for symbol in tqdm(list(frames), desc="market data", unit="symbol", disable=not progress):
        table = _table(frames[symbol])
        rows += table.num_rows
        dates = table.column("date")
        lo, hi = dates[0].as_py(), dates[-1].as_py()
        first = lo if first is None or lo < first else first
        last = hi if last is None or hi > last else last
        target = prices_dir / f"{symbol}.parquet"
        if target.exists():
            try:
                if pq.read_table(target).select(["date", "close"]).equals(table):
                    continue
            except (OSError, pa.ArrowException, KeyError):
                pass  # unreadable or foreign: replace it
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(target)
        written += 1
    assert first is not None and last is not None
    return LoadReport(symbols=tuple(frames), rows=rows, first_date=first, last_date=last, written=written)
