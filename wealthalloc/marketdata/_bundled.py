"""Real daily prices from the datasets shipped inside the skfolio wheel, as one Parquet file per symbol.

The three loaders used here (``load_sp500_dataset``, ``load_sp500_index``,
``load_factors_dataset``) read gzip-compressed CSV files from the installed
package with ``importlib.resources``; unlike skfolio's larger datasets
(FTSE 100, NASDAQ) they never download and never touch ``~/skfolio_data``, so
a fresh machine without network gets real prices.

One file per symbol keeps "add a symbol" as simple as dropping a Parquet file
into the prices directory, and lets :class:`~wealthalloc.marketdata.PriceHistory`
load only the symbols a process asks for.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from wealthalloc.marketdata._errors import MarketDataError

STOCKS: tuple[str, ...] = (
    "AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO",
    "LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM",
)  # fmt: skip
"""The 20 S&P 500 constituents of ``load_sp500_dataset``."""

INDEX_SYMBOL = "SPX"
"""The symbol the S&P 500 index is stored under (skfolio names its column ``SP500``)."""

FACTOR_ETFS: tuple[str, ...] = ("MTUM", "QUAL", "SIZE", "USMV", "VLUE")
"""The iShares factor ETFs of ``load_factors_dataset`` (from 2014)."""

BUNDLED_SYMBOLS: tuple[str, ...] = (*STOCKS, INDEX_SYMBOL, *FACTOR_ETFS)
"""Every symbol :func:`load_bundled_datasets` writes, fixed here so that code
and tests can name them without importing skfolio (which takes a second)."""

PRICE_SCHEMA = pa.schema([("date", pa.date32()), ("close", pa.float64())])
"""What the loader writes; readers need only these two columns and ignore any others."""


@dataclass(frozen=True)
class LoadReport:
    """What a call to :func:`load_bundled_datasets` left in the prices directory.

    Attributes
    ----------
    symbols : tuple of str
        Every bundled symbol, now current on disk (written by this call or
        already identical), in :data:`BUNDLED_SYMBOLS` order.
    written : tuple of str
        The symbols whose file this call (re)wrote; empty on a second run.
    rows : int
        Price rows over all symbols (after dropping NaN).
    first_date, last_date : date
        The earliest and latest day over all symbols.
    prices_dir : Path
        Where the files are.
    """

    symbols: tuple[str, ...]
    written: tuple[str, ...]
    rows: int
    first_date: date
    last_date: date
    prices_dir: Path

    @property
    def skipped(self) -> tuple[str, ...]:
        """Symbols whose file was already current, so a caller can say "nothing to do"."""
        return tuple(symbol for symbol in self.symbols if symbol not in self.written)


def load_bundled_datasets(prices_dir: Path, *, progress: bool = True) -> LoadReport:
    """Write ``prices_dir/{SYMBOL}.parquet`` for each of the 26 bundled symbols.

    Each file holds ``date`` (date32) and ``close`` (float64, the adjusted
    close) with NaN rows dropped, sorted by date.

    Idempotence: a file whose ``date`` and ``close`` columns already equal
    what would be written is left alone (same bytes, same mtime), so a second
    run writes nothing and running processes keep their cached prices. Any
    other file under a bundled name (missing, unreadable, different prices)
    is replaced: the bundled symbols belong to this loader. A user's richer
    file under a bundled name survives only if its closes are identical.

    Each write goes to a hidden temporary file in the same directory, then
    ``os.replace`` renames it over the target: a reader in another process
    sees either the old file or the new one, never half of one, and a crash
    leaves no ``*.parquet`` behind that is not whole.

    Parameters
    ----------
    prices_dir : Path
        Created if missing.
    progress : bool, default=True
        Show a tqdm bar on stderr, one step per symbol.

    Returns
    -------
    LoadReport

    Raises
    ------
    MarketDataError
        When the installed skfolio no longer ships one of the bundled symbols.
    """
    prices_dir = Path(prices_dir)
    prices_dir.mkdir(parents=True, exist_ok=True)
    closes = _bundled_closes()
    written: list[str] = []
    rows = 0
    firsts: list[date] = []
    lasts: list[date] = []
    for symbol in tqdm(BUNDLED_SYMBOLS, desc="prices", unit="symbol", disable=not progress):
        table = price_table(closes[symbol])
        if table.num_rows == 0:
            raise MarketDataError(f"skfolio's bundled data has no prices for {symbol}")
        target = prices_dir / f"{symbol}.parquet"
        if not _is_current(target, table):
            _write_atomically(table, target)
            written.append(symbol)
        rows += table.num_rows
        day_column = table.column("date")
        firsts.append(day_column[0].as_py())
        lasts.append(day_column[-1].as_py())
    return LoadReport(
        symbols=BUNDLED_SYMBOLS,
        written=tuple(written),
        rows=rows,
        first_date=min(firsts),
        last_date=max(lasts),
        prices_dir=prices_dir,
    )


def price_table(closes: pd.Series) -> pa.Table:
    """A close series as the Parquet table the readers expect.

    Non-finite values are dropped rather than forward-filled: a missing close
    is "no price that day", and readers already answer a day without a price
    with the last close before it.
    """
    values = closes.to_numpy(dtype=np.float64, na_value=np.nan)
    days = pd.DatetimeIndex(closes.index).to_numpy(dtype="datetime64[D]")
    keep = np.isfinite(values) & ~np.isnat(days)
    days, values = days[keep], values[keep]
    order = np.argsort(days, kind="stable")
    return pa.Table.from_arrays(
        [pa.array(days[order], type=pa.date32()), pa.array(values[order], type=pa.float64())],
        schema=PRICE_SCHEMA,
    )


def _bundled_closes() -> dict[str, pd.Series]:
    # Imported here: skfolio pulls in scikit-learn and SciPy (about a second),
    # which readers of the prices (the API, the actors) never need.
    from skfolio.datasets import load_factors_dataset, load_sp500_dataset, load_sp500_index

    closes: dict[str, pd.Series] = {}
    closes.update(_columns(load_sp500_dataset, STOCKS))
    index = load_sp500_index()
    if index.shape[1] != 1:
        raise MarketDataError(f"skfolio's load_sp500_index returned {index.shape[1]} columns, expected 1")
    closes[INDEX_SYMBOL] = index.iloc[:, 0]
    closes.update(_columns(load_factors_dataset, FACTOR_ETFS))
    return closes


def _columns(loader: Callable[[], pd.DataFrame], symbols: tuple[str, ...]) -> dict[str, pd.Series]:
    frame = loader()
    missing = [symbol for symbol in symbols if symbol not in frame.columns]
    if missing:
        raise MarketDataError(f"skfolio's {loader.__name__} no longer has {', '.join(missing)}")
    return {symbol: frame[symbol] for symbol in symbols}


def _is_current(target: Path, table: pa.Table) -> bool:
    if not target.is_file():
        return False
    try:
        existing = pq.read_table(target, columns=list(PRICE_SCHEMA.names))
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return False  # unreadable or missing a column: replace it
    return bool(existing.select(list(PRICE_SCHEMA.names)).equals(table))


def _write_atomically(table: pa.Table, target: Path) -> None:
    # The temporary name starts with a dot and does not end in .parquet, so a
    # PriceHistory scanning the directory meanwhile never takes it for a symbol.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
