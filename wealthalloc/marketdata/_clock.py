"""The market clock: today, mapped onto a trading day of the historical data.

The bundled prices end in 2022; the demo has to live on a day those prices
cover. Shifting by whole years keeps the season and the weekday pattern
roughly right and moves forward one day per real day.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import date

from wealthalloc.marketdata._errors import MarketDataError


def _shift_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # Feb 29 onto a non-leap year
        return day.replace(year=day.year - years, day=28)


class MarketClock:
    def __init__(
        self,
        trading_days: Sequence[date],
        *,
        pinned: date | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        if not trading_days:
            raise MarketDataError("the market clock needs at least one trading day")
        self._days = sorted(trading_days)
        self._pinned = pinned
        self._today = today

    def offset_years(self) -> int:
        if self._pinned is not None:
            return 0
        real = self._today()
        last = self._days[-1]
        years = max(0, real.year - last.year)
        if _shift_years(real, years) > last:
            years += 1
        return years

    def today(self) -> date:
        target = self._pinned if self._pinned is not None else _shift_years(self._today(), self.offset_years())
        return self.previous_trading_day(target, inclusive=True)

    def previous_trading_day(self, day: date, *, inclusive: bool = False) -> date:
        index = bisect.bisect_right(self._days, day) if inclusive else bisect.bisect_left(self._days, day)
        if index == 0:
            raise MarketDataError(f"{day} is before the first trading day of the data ({self._days[0]})")
        return self._days[index - 1]

    def is_trading_day(self, day: date) -> bool:
        index = bisect.bisect_left(self._days, day)
        return index < len(self._days) and self._days[index] == day

    def to_real(self, day: date) -> date:
        """The real date a day of the data stands for, for display."""
        years = self.offset_years()
        try:
            return day.replace(year=day.year + years)
        except ValueError:
            return day.replace(year=day.year + years, day=28)
