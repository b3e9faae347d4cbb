"""Market data: the bundled daily prices, the reference table and the market clock."""

from wealthalloc.marketdata._bundled import BUNDLED_SYMBOLS, INDEX_SYMBOL, LoadReport, load_bundled_datasets
from wealthalloc.marketdata._clock import MarketClock
from wealthalloc.marketdata._errors import MarketDataError, NoPriceError, UnknownSymbolError
from wealthalloc.marketdata._prices import PriceHistory
from wealthalloc.marketdata._reference import Security, SecurityReference

__all__ = [
    "BUNDLED_SYMBOLS",
    "INDEX_SYMBOL",
    "LoadReport",
    "MarketClock",
    "MarketDataError",
    "NoPriceError",
    "PriceHistory",
    "Security",
    "SecurityReference",
    "UnknownSymbolError",
    "load_bundled_datasets",
]
