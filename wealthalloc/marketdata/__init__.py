"""Market data: real daily prices, what each symbol is, and which day it is in the data.

The default provider needs no network: :func:`load_bundled_datasets` converts
the price history shipped inside the skfolio wheel to one Parquet file per
symbol, :class:`PriceHistory` reads whatever Parquet files are in the prices
directory, :class:`SecurityReference` says what a symbol is (sector, asset
class), and :class:`MarketClock` maps the real today onto a trading day of the
data. Pure Python: no Ray, database or Redis here.
"""

from wealthalloc.marketdata._bundled import (
    BUNDLED_SYMBOLS,
    FACTOR_ETFS,
    INDEX_SYMBOL,
    STOCKS,
    LoadReport,
    load_bundled_datasets,
)
from wealthalloc.marketdata._clock import MarketClock
from wealthalloc.marketdata._errors import MarketDataError, NoPriceError, UnknownSymbolError
from wealthalloc.marketdata._prices import PRICE_QUANTUM, PriceHistory
from wealthalloc.marketdata._reference import ASSET_CLASSES, Security, SecurityReference

__all__ = [
    "ASSET_CLASSES",
    "BUNDLED_SYMBOLS",
    "FACTOR_ETFS",
    "INDEX_SYMBOL",
    "PRICE_QUANTUM",
    "STOCKS",
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
