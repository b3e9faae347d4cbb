"""Daily closes read from the Parquet files of a prices directory.

Every ``*.parquet`` file there is a symbol (its name, upper-cased), so dropping
a file in adds a symbol, and a running service sees it without a restart: the
directory listing and each symbol's series are cached, and a cache entry is
dropped when the directory or the file changes on disk (inode, size, mtime).

Floats serve analytics (returns, volatility, the optimiser); money code gets a
``Decimal`` from :meth:`PriceHistory.close_on`, so a float never reaches a
balance.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wealthalloc.marketdata._bundled import INDEX_SYMBOL
from wealthalloc.marketdata._errors import MarketDataError, NoPriceError, UnknownSymbolError

PRICE_QUANTUM = Decimal("0.0001")
"""Prices are money-adjacent: four decimals, the precision of the NUMERIC price columns."""
ASKED_DAYS_KEPT = 64
"""The days a symbol's closes are remembered for at once (see ``_Loaded.asked``)."""

_Signature = tuple[int, int, int]


@dataclass(frozen=True)
class _Loaded:
    """One symbol's prices as read from one version of its file."""

    signature: _Signature
    days: np.ndarray  # datetime64[D], sorted, unique
    values: np.ndarray  # float64, finite
    closes: pd.Series
    # The last days asked for and their close: an order or a plan asks for today's again and again,
    # and the array search and the decimal rounding were most of a paper order's pricing. It goes
    # with this version of the file, so a replaced file starts empty.
    asked: dict[date, Decimal] = field(default_factory=dict, compare=False, repr=False)


class PriceHistory:
    """The daily closes of every symbol in a prices directory.

    Files need a ``date`` column (date32, timestamp or ISO text) and a
    ``close`` column (numeric, the adjusted close); column names are matched
    case-insensitively and any other columns (``open``, ``high``, ``low``,
    ``volume``...) are ignored. Rows with a missing or non-finite close are
    dropped; when a day appears twice the later row wins.

    Nothing is read until asked for; each symbol is read once and then served
    from memory until its file changes. A lock guards the caches, which is
    enough for a read-mostly service with a few threads.

    Parameters
    ----------
    prices_dir : Path
        The directory of ``{SYMBOL}.parquet`` files; it may not exist yet
        (then there are no symbols).
    recheck_seconds : float
        How long a file's (or the directory's) ``stat`` is trusted before it
        is looked at again. 0, the default, looks at every read; a service
        that prices thousands of orders a second passes a second or so: two
        ``stat`` calls a price were a tenth of an order's work, and a price
        file replaced is then seen within that time.
    """

    def __init__(self, prices_dir: Path | str, *, recheck_seconds: float = 0.0) -> None:
        self._dir = Path(prices_dir)
        self._recheck = recheck_seconds
        self._seen: dict[Path, tuple[float, _Signature | None]] = {}
        self._lock = threading.Lock()
        self._listing: tuple[_Signature | None, dict[str, Path]] | None = None
        self._loaded: dict[str, _Loaded] = {}
        self._calendar: tuple[tuple[object, ...], list[date]] | None = None

    @property
    def prices_dir(self) -> Path:
        """Where the Parquet files are read from."""
        return self._dir

    def __repr__(self) -> str:
        return f"PriceHistory({str(self._dir)!r})"

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and _normalise(symbol) in self._files()

    def symbols(self) -> list[str]:
        """The symbols with a Parquet file, sorted; empty when the directory is missing."""
        return sorted(self._files())

    def closes(self, symbol: str) -> pd.Series:
        """Every close of ``symbol``, oldest first.

        Returns
        -------
        Series
            float64 values named after the symbol, indexed by a ``DatetimeIndex``
            named ``date`` (midnight, no time zone). A copy: callers may
            modify it without touching the cache.

        Raises
        ------
        UnknownSymbolError
            When the prices directory has no file for the symbol.
        MarketDataError
            When the file cannot be read or lacks ``date``/``close``.
        """
        return self._load(symbol).closes.copy()

    def close_on(self, symbol: str, day: date) -> Decimal:
        """The last close at or before ``day``, as a ``Decimal`` with four decimals.

        A weekend or holiday answers with the close of the trading day before
        it, which is what a valuation "as of" that day means.

        The float is converted through its shortest representation
        (``repr``), not its exact binary value: the number in the file came
        from decimal text such as ``246.333``, and rounding that text (half to
        even) is what a person checking the figure by hand would do.

        Raises
        ------
        UnknownSymbolError
            When the prices directory has no file for the symbol.
        NoPriceError
            When ``day`` is before the symbol's first price.
        """
        loaded = self._load(symbol)
        wanted = _as_date(day)
        known = loaded.asked.get(wanted)
        if known is not None:
            return known
        target = np.datetime64(wanted, "D")
        position = int(np.searchsorted(loaded.days, target, side="right"))
        if position == 0:
            first = loaded.days[0].astype(object) if len(loaded.days) else None
            raise NoPriceError(_normalise(symbol), wanted, first)
        value = float(loaded.values[position - 1])
        close = Decimal(repr(value)).quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)
        if len(loaded.asked) >= ASKED_DAYS_KEPT:  # a valuation over years walks every day once
            loaded.asked.clear()
        loaded.asked[wanted] = close
        return close

    def trading_days(self) -> list[date]:
        """The market calendar: the days of ``SPX`` when present, else the union of all symbols' days.

        The index is the reference because it has a close on exactly the
        exchange's days: in a union, one dropped file with a stray weekend or
        holiday row would add a day the market was closed. Empty when there
        are no symbols.
        """
        files = self._files()
        sources = [INDEX_SYMBOL] if INDEX_SYMBOL in files else sorted(files)
        loaded = [self._load(symbol) for symbol in sources]
        key = tuple((symbol, item.signature) for symbol, item in zip(sources, loaded, strict=True))
        with self._lock:
            if self._calendar is not None and self._calendar[0] == key:
                return list(self._calendar[1])
        if not loaded:
            days = np.array([], dtype="datetime64[D]")
        elif len(loaded) == 1:
            days = loaded[0].days
        else:
            days = np.unique(np.concatenate([item.days for item in loaded]))
        calendar: list[date] = days.astype(object).tolist()
        with self._lock:
            self._calendar = (key, calendar)
        return list(calendar)

    @property
    def first_date(self) -> date:
        """The first day of :meth:`trading_days`.

        Raises
        ------
        MarketDataError
            When there are no prices at all.
        """
        return self._calendar_bound(0)

    @property
    def last_date(self) -> date:
        """The last day of :meth:`trading_days`.

        Raises
        ------
        MarketDataError
            When there are no prices at all.
        """
        return self._calendar_bound(-1)

    def frame(
        self,
        symbols: Iterable[str] | None = None,
        start: date | None = None,
        end: date | None = None,
    ) -> pd.DataFrame:
        """Closes of several symbols side by side, one column per symbol.

        Rows are the union of the symbols' days between ``start`` and ``end``
        (both inclusive, either open when ``None``); a symbol without a price
        on a row's day is NaN there, not filled, because whether to fill,
        drop or start later is the caller's modelling choice.

        Parameters
        ----------
        symbols : iterable of str, optional
            Column order as given (upper-cased); every symbol when ``None``.
        start, end : date, optional
            Inclusive bounds.

        Raises
        ------
        UnknownSymbolError
            When one of the symbols has no file.
        """
        if isinstance(symbols, str):
            symbols = [symbols]
        names = self.symbols() if symbols is None else [_normalise(symbol) for symbol in symbols]
        columns = {name: self._load(name).closes for name in names}
        if not columns:
            return pd.DataFrame(index=pd.DatetimeIndex([], name="date", dtype="datetime64[ns]"))
        data = pd.concat(columns, axis=1, join="outer").sort_index()
        data.index.name = "date"
        lower = pd.Timestamp(_as_date(start)) if start is not None else None
        upper = pd.Timestamp(_as_date(end)) if end is not None else None
        return data.loc[lower:upper].copy()

    def _calendar_bound(self, position: int) -> date:
        days = self.trading_days()
        if not days:
            raise MarketDataError(f"no Parquet prices in {self._dir}")
        return days[position]

    def _signature(self, path: Path) -> _Signature | None:
        """The file's signature, looked at again once ``recheck_seconds`` have passed."""
        if self._recheck <= 0:
            return _signature(path)
        now = time.monotonic()
        seen = self._seen.get(path)
        if seen is not None and now - seen[0] < self._recheck:
            return seen[1]
        signature = _signature(path)
        self._seen[path] = (now, signature)
        return signature

    def _files(self) -> dict[str, Path]:
        signature = self._signature(self._dir)
        with self._lock:
            if self._listing is not None and self._listing[0] == signature and signature is not None:
                return self._listing[1]
        files: dict[str, Path] = {}
        if signature is not None:
            for path in sorted(self._dir.glob("*.parquet")):
                if path.name.startswith(".") or not path.is_file():
                    continue  # hidden files: temporary writes, macOS "._" resource forks
                symbol = _normalise(path.stem)
                if symbol in files:
                    raise MarketDataError(
                        f"{files[symbol].name} and {path.name} in {self._dir} are both {symbol}; remove one"
                    )
                files[symbol] = path
        with self._lock:
            self._listing = (signature, files)
        return files

    def _load(self, symbol: str) -> _Loaded:
        key = _normalise(symbol)
        path = self._files().get(key)
        if path is None:
            raise UnknownSymbolError(key, self._dir)
        signature = self._signature(path)
        if signature is None:  # removed since the directory was listed
            with self._lock:
                self._listing = None
                self._loaded.pop(key, None)
            raise UnknownSymbolError(key, self._dir)
        with self._lock:
            cached = self._loaded.get(key)
            if cached is not None and cached.signature == signature:
                return cached
            loaded = _read(path, key, signature)
            self._loaded[key] = loaded
            return loaded


def _normalise(symbol: str) -> str:
    return symbol.strip().upper()


def _as_date(day: date) -> date:
    # datetime (and pandas.Timestamp) subclass date; their time of day would
    # otherwise make numpy/pandas compare them as instants.
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, date):
        return day
    raise TypeError(f"expected a date, got {type(day).__name__}")


def _signature(path: Path) -> _Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _read(path: Path, symbol: str, signature: _Signature) -> _Loaded:
    try:
        names = {name.lower(): name for name in pq.read_schema(path).names}
        date_name, close_name = names.get("date"), names.get("close")
        if date_name is None or close_name is None:
            raise MarketDataError(
                f"{path} needs 'date' and 'close' columns, it has {', '.join(names.values()) or 'none'}"
            )
        table = pq.read_table(path, columns=[date_name, close_name])
        days = _days(table.column(date_name))
        values = pc.cast(table.column(close_name), pa.float64()).to_numpy(zero_copy_only=False)
    except MarketDataError:
        raise
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise MarketDataError(f"cannot read prices from {path}: {exc}") from exc
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values) & ~np.isnat(days)
    days, values = days[keep], values[keep]
    order = np.argsort(days, kind="stable")
    days, values = days[order], values[order]
    last_of_each_day = np.append(days[1:] != days[:-1], True) if len(days) else np.array([], dtype=bool)
    days, values = days[last_of_each_day], values[last_of_each_day]
    days.flags.writeable = False
    values.flags.writeable = False
    closes = pd.Series(
        values.copy(),
        index=pd.DatetimeIndex(days.astype("datetime64[ns]"), name="date"),
        name=symbol,
        dtype=np.float64,
    )
    return _Loaded(signature=signature, days=days, values=values, closes=closes)


def _days(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_date(column.type):
        return np.asarray(column.cast(pa.date32()).to_numpy(), dtype="datetime64[D]")
    stamps = pd.to_datetime(pd.Series(column.to_pandas()))
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_localize(None)  # keep the exchange's calendar day, not UTC's
    return np.asarray(stamps.dt.normalize().to_numpy(), dtype="datetime64[D]")
