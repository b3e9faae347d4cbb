"""``wealthalloc data fetch``: daily bars of several symbols from a provider into the price store.

Symbols are fetched one after another: the provider's budget (5 a minute on
a free Alpha Vantage key) is the bottleneck, and the guard waits for it
instead of failing, so a long list finishes at the provider's pace with a
progress bar showing it. One symbol failing (unknown, refused) does not stop
the others; the summary says which failed and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tqdm import tqdm

from wealthalloc.marketdata.providers._base import HistoryProvider, ProviderError
from wealthalloc.marketdata.providers._store import StoreReport, write_daily_bars


@dataclass
class FetchSummary:
    """Per symbol: what was written, or why nothing was."""

    provider: str
    written: list[StoreReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


async def fetch_history(
    provider: HistoryProvider,
    symbols: Sequence[str],
    *,
    since: date,
    until: date,
    prices_dir: Path,
    progress: bool = True,
) -> FetchSummary:
    """Fetch and store each symbol's daily bars from ``since`` to ``until``."""
    summary = FetchSummary(provider=provider.name)
    description = f"fetch ({provider.name})"
    with tqdm(total=len(symbols), desc=description, unit="symbol", disable=not progress) as bar:
        for symbol in symbols:
            bar.set_postfix_str(symbol)
            try:
                bars = await provider.daily_bars(symbol, since, until)
            except ProviderError as exc:
                summary.failed[symbol] = str(exc)
            else:
                if bars:
                    summary.written.append(write_daily_bars(prices_dir, symbol, bars))
                else:
                    summary.failed[symbol] = f"{provider.name}: no bars between {since} and {until}"
            bar.update(1)
    return summary
