"""Daily bars from a provider, written into the Parquet price store the rest of the platform reads.

Same layout as the bundled history (``{SYMBOL}.parquet`` with ``date`` as
date32 and ``close`` as float64, sorted), written the same way (a hidden
temporary file renamed over the target), so :class:`PriceHistory` and
everything built on it (valuation, performance, the models' features) sees
the fetched days without knowing where they came from.

A fetch merges into what is there: days the provider answered take the
provider's close, other days keep theirs. The close is stored as float64
like every other row of the store; :meth:`PriceHistory.close_on` turns it
back into a four-decimal ``Decimal`` through its shortest text, which gives
back the provider's price for any price with up to 15 significant digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wealthalloc.marketdata._bundled import _write_atomically, price_table
from wealthalloc.marketdata._errors import MarketDataError
from wealthalloc.marketdata.providers._base import DailyBar


@dataclass(frozen=True)
class StoreReport:
    """What one symbol's write did: rows from the provider, rows in the file now, the span written."""

    symbol: str
    fetched: int
    total: int
    first: date | None
    last: date | None
    path: Path


def write_daily_bars(prices_dir: Path, symbol: str, bars: Sequence[DailyBar]) -> StoreReport:
    """Merge ``bars`` into ``prices_dir/{SYMBOL}.parquet`` (created if missing).

    Raises
    ------
    MarketDataError
        When an existing file cannot be read (it is left as it is).
    """
    name = symbol.strip().upper()
    prices_dir = Path(prices_dir)
    prices_dir.mkdir(parents=True, exist_ok=True)
    target = prices_dir / f"{name}.parquet"
    existing = _existing(target)
    fetched = pd.Series(
        [float(bar.close) for bar in bars],
        index=pd.DatetimeIndex([pd.Timestamp(bar.day) for bar in bars]),
        dtype="float64",
    )
    if existing is not None:
        fetched = pd.concat([existing[~existing.index.isin(fetched.index)], fetched])
    merged = fetched
    table = price_table(merged.sort_index())
    if table.num_rows:
        _write_atomically(table, target)
    days = [bar.day for bar in bars]
    return StoreReport(
        symbol=name,
        fetched=len(bars),
        total=table.num_rows,
        first=min(days) if days else None,
        last=max(days) if days else None,
        path=target,
    )


def _existing(target: Path) -> pd.Series | None:
    if not target.is_file():
        return None
    try:
        names = {n.lower(): n for n in pq.read_schema(target).names}
        if "date" not in names or "close" not in names:
            raise MarketDataError(f"{target} needs 'date' and 'close' columns; not merging into it")
        table = pq.read_table(target, columns=[names["date"], names["close"]])
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise MarketDataError(f"cannot read {target} to merge into it: {exc}") from exc
    frame = table.to_pandas()
    index = pd.DatetimeIndex(pd.to_datetime(frame[names["date"]])).tz_localize(None).normalize()
    return pd.Series(frame[names["close"]].astype("float64").to_numpy(), index=index)
