"""The market a book is valued in: the clock's day, closes, the previous close, sector and class."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

import numpy as np
import pandas as pd

from wealthalloc.domain.valuation import SecurityInfo
from wealthalloc.marketdata import MarketClock, MarketDataError, PriceHistory, SecurityReference

RISK_LOOKBACK_DAYS = 252


class Market:
    def __init__(self, prices: PriceHistory, clock: MarketClock, securities: SecurityReference) -> None:
        self.prices = prices
        self.clock = clock
        self.securities = securities

    def today(self) -> date:
        return self.clock.today()

    def previous_day(self, day: date) -> date:
        return self.clock.previous_trading_day(day)

    def next_day(self, day: date) -> date:
        """The trading day after ``day``: a weekday past the end of the data, which has no calendar."""
        following = day + timedelta(days=1)
        while following <= self.clock.last_day:
            if self.clock.is_trading_day(following):
                return following
            following += timedelta(days=1)
        while following.weekday() >= 5:
            following += timedelta(days=1)
        return following

    def known(self, symbol: str) -> bool:
        return symbol in self.prices

    def close(self, symbol: str, day: date) -> Decimal:
        return self.prices.close_on(symbol, day)

    def closes(self, symbols: set[str], day: date) -> dict[str, Decimal]:
        return {s: self.prices.close_on(s, day) for s in symbols}

    def info(self, symbol: str) -> SecurityInfo:
        security = self.securities.get(symbol)
        if security is None:
            return SecurityInfo(sector="Unknown", asset_class="unknown")
        return SecurityInfo(sector=security.sector, asset_class=security.asset_class)

    def to_market_date(self, real: date) -> date:
        """The data's day standing for a real calendar day (the inverse of the clock's mapping)."""
        years = self.clock.offset_years()
        try:
            shifted = real.replace(year=real.year - years)
        except ValueError:
            shifted = real.replace(year=real.year - years, day=28)
        return self.clock.previous_trading_day(min(shifted, self.clock.last_day), inclusive=True)

    def volatility(self, weights: dict[str, float], day: date) -> float:
        """Annualised volatility of today's weights over the past year of daily returns."""
        if not weights:
            return 0.0
        frame = _returns(self.prices, tuple(sorted(weights)), day)
        if len(frame) < 20:
            return float("nan")
        w = np.array([weights[s] for s in frame.columns])
        portfolio = frame.to_numpy() @ w
        return float(np.std(portfolio, ddof=1) * np.sqrt(252))


@lru_cache(maxsize=512)
def _returns(prices: PriceHistory, symbols: tuple[str, ...], day: date) -> pd.DataFrame:
    columns = {}
    for symbol in symbols:
        try:
            series = prices.closes(symbol)
        except MarketDataError:
            continue
        series = series[series.index <= pd.Timestamp(day)].tail(RISK_LOOKBACK_DAYS + 1)
        columns[symbol] = series.astype(float)
    frame = pd.DataFrame(columns).ffill().pct_change().dropna(how="any")
    return frame
