"""The market clock: the real today, mapped onto a trading day of the historical data.

The bundled prices end on 2022-12-28, yet the demo must live on a "today" the
data covers, and move forward as real days pass. Shifting by whole years keeps
the month and day (so "today" reads like today, one year or more ago) and
advances one day per real day; only the last few days of December, after the
data's last day, fall back one more year.

Engines get the clock through their constructor, with ``today`` injectable,
so a test or a replay decides what day it is.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import date

from wealthalloc.marketdata._errors import MarketDataError


class MarketClock:
    """Which day of the data it is now.

    Rule: when ``pinned``, today is the last trading day at or before the
    pinned date. Otherwise the real today is moved back by the smallest
    whole number of years ``k >= 0`` that lands on or before the last trading
    day (Feb 29 becomes Feb 28 in a common year), and today is the last
    trading day at or before that date. With data ending 2022-12-28, the real
    2026-11-25 is 2022-11-25 (``k = 4``) and the real 2026-12-30 is 2021-12-30
    (``k = 5``).

    Parameters
    ----------
    trading_days : sequence of date
        The calendar of the data, e.g. ``PriceHistory.trading_days()``; any
        order, duplicates allowed.
    pinned : date, optional
        Freeze the clock (``WEALTHALLOC_MARKET_CLOCK_DATE``). A pinned day on
        a weekend or holiday means the trading day before it.
    today : callable, default=date.today
        The real date, asked on every call so a long-running service moves
        on at midnight.

    Raises
    ------
    MarketDataError
        When ``trading_days`` is empty or ``pinned`` is before its first day:
        a misconfigured clock fails at start-up, not at the first request.
    """

    def __init__(
        self,
        trading_days: Sequence[date],
        *,
        pinned: date | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self._days: list[date] = sorted(set(trading_days))
        if not self._days:
            raise MarketDataError("the market clock needs at least one trading day (load the prices first)")
        self._pinned = pinned
        self._real_today = today
        # A pinned clock's day never moves; today's moves only when the real date does. The shard
        # asks for it several times an order, so the answer is kept until then.
        self._pinned_day = (
            self._at_or_before(pinned, why=f"the pinned market date {pinned}") if pinned is not None else None
        )
        self._answered: tuple[date, date] | None = None  # (real date, the trading day it maps to)

    def __repr__(self) -> str:
        pin = f", pinned={self._pinned}" if self._pinned is not None else ""
        return f"MarketClock({self._days[0]}..{self._days[-1]}{pin})"

    @property
    def first_day(self) -> date:
        """The first trading day of the data."""
        return self._days[0]

    @property
    def last_day(self) -> date:
        """The last trading day of the data."""
        return self._days[-1]

    def today(self) -> date:
        """The trading day the demo lives on now.

        Raises
        ------
        MarketDataError
            When the real today maps before the first trading day (a clock
            set far in the past).
        """
        if self._pinned_day is not None:
            return self._pinned_day
        real = self._real_today()
        answered = self._answered
        if answered is not None and answered[0] == real:
            return answered[1]
        shifted = _shift_years(real, -self._offset_for(real))
        day = self._at_or_before(shifted, why=f"today ({real}, mapped to {shifted})")
        self._answered = (real, day)
        return day

    def offset_years(self) -> int:
        """How many years the data's today lies behind the real today; 0 when pinned.

        A pinned clock shows its own dates: the pin names a day of the data,
        and shifting it for display would show a date nobody chose.
        """
        if self._pinned is not None:
            return 0
        return self._offset_for(self._real_today())

    def previous_trading_day(self, day: date, *, inclusive: bool = False) -> date:
        """The trading day before ``day``, or at or before it when ``inclusive``.

        Strictly before by default because that is what a day's change is
        measured against (the previous close); ``inclusive=True`` answers
        "which trading day does this date fall on", e.g. a holiday's.

        Raises
        ------
        MarketDataError
            When there is no such day in the data.
        """
        if inclusive:
            return self._at_or_before(day, why=str(day))
        position = bisect.bisect_left(self._days, day)
        if position == 0:
            raise MarketDataError(f"no trading day before {day}; the data starts on {self._days[0]}")
        return self._days[position - 1]

    def is_trading_day(self, day: date) -> bool:
        """Whether the data has prices on ``day`` (weekends and exchange holidays do not)."""
        position = bisect.bisect_left(self._days, day)
        return position < len(self._days) and self._days[position] == day

    def to_real(self, day: date) -> date:
        """The real date a day of the data stands for, so screens can show dates people recognise.

        ``day`` moved forward by :meth:`offset_years`. It inverts the clock's
        shift except on leap days: Feb 29 onto a common year becomes Feb 28.
        """
        return _shift_years(day, self.offset_years())

    def _offset_for(self, real: date) -> int:
        last = self._days[-1]
        years = max(0, real.year - last.year)
        while _shift_years(real, -years) > last:
            years += 1
        return years

    def _at_or_before(self, day: date, *, why: str) -> date:
        position = bisect.bisect_right(self._days, day)
        if position == 0:
            raise MarketDataError(f"{why} is before the first trading day of the data ({self._days[0]})")
        return self._days[position - 1]


def _shift_years(day: date, years: int) -> date:
    """``day`` moved by whole years; Feb 29 lands on Feb 28 in a common year."""
    year = day.year + years
    try:
        return day.replace(year=year)
    except ValueError:
        return day.replace(year=year, day=28)
