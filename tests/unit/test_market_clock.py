"""The market clock: the real today, moved back by whole years onto a trading day of the data.

Most examples use the real calendar of the bundled data (the S&P 500's days,
1990-01-02 to 2022-12-28), so holidays are real holidays.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from wealthalloc.marketdata import MarketClock, MarketDataError, PriceHistory

LAST_DAY = date(2022, 12, 28)


@pytest.fixture(scope="module")
def days(data_dir: Path) -> list[date]:
    return PriceHistory(data_dir / "prices").trading_days()


def clock_on(days: list[date], real_today: date) -> MarketClock:
    return MarketClock(days, today=lambda: real_today)


def test_today_moves_back_by_whole_years_into_the_data(days: list[date]) -> None:
    clock = clock_on(days, date(2026, 11, 25))
    assert clock.today() == date(2022, 11, 25)
    assert clock.offset_years() == 4


def test_a_date_inside_the_data_is_itself_with_no_offset(days: list[date]) -> None:
    clock = clock_on(days, date(2020, 3, 16))
    assert clock.today() == date(2020, 3, 16)
    assert clock.offset_years() == 0


def test_the_last_day_of_the_data_is_itself(days: list[date]) -> None:
    assert clock_on(days, LAST_DAY).today() == LAST_DAY


def test_a_date_after_the_last_day_of_its_year_goes_back_one_more_year(days: list[date]) -> None:
    clock = clock_on(days, date(2026, 12, 30))
    assert clock.offset_years() == 5
    assert clock.today() == date(2021, 12, 30)


def test_a_date_just_after_the_data_in_the_same_year_goes_back_a_year(days: list[date]) -> None:
    clock = clock_on(days, date(2022, 12, 29))
    assert clock.offset_years() == 1
    assert clock.today() == date(2021, 12, 29)


def test_a_leap_day_maps_onto_february_28(days: list[date]) -> None:
    clock = clock_on(days, date(2028, 2, 29))
    assert clock.offset_years() == 6
    assert clock.today() == date(2022, 2, 28)  # a Monday


def test_a_leap_day_onto_a_weekend_28th_takes_the_friday(days: list[date]) -> None:
    through_2021 = [day for day in days if day.year <= 2021]
    clock = clock_on(through_2021, date(2028, 2, 29))  # -> 2021-02-28, a Sunday
    assert clock.offset_years() == 7
    assert clock.today() == date(2021, 2, 26)


def test_a_holiday_maps_to_the_previous_trading_day(days: list[date]) -> None:
    assert clock_on(days, date(2026, 11, 24)).today() == date(2022, 11, 23)  # Thanksgiving 2022
    assert clock_on(days, date(2027, 7, 4)).today() == date(2022, 7, 1)  # Independence Day, a Monday


def test_a_weekend_maps_to_friday(days: list[date]) -> None:
    assert clock_on(days, date(2026, 11, 27)).today() == date(2022, 11, 25)  # -> Sunday 2022-11-27


def test_the_clock_follows_the_real_date_as_it_moves(days: list[date]) -> None:
    real = [date(2026, 11, 25)]
    clock = MarketClock(days, today=lambda: real[0])
    assert clock.today() == date(2022, 11, 25)
    real[0] = date(2026, 11, 28)
    assert clock.today() == date(2022, 11, 28)
    real[0] = date(2026, 11, 25)  # a clock set back: the day it maps to is asked again, not kept
    assert clock.today() == date(2022, 11, 25)


def test_a_pinned_clock_is_the_trading_day_at_or_before_the_pin(days: list[date]) -> None:
    clock = MarketClock(days, pinned=date(2021, 7, 4), today=lambda: date(2030, 1, 1))
    assert clock.today() == date(2021, 7, 2)
    assert clock.offset_years() == 0
    assert MarketClock(days, pinned=date(2020, 3, 16)).today() == date(2020, 3, 16)


def test_a_pin_after_the_data_is_its_last_day(days: list[date]) -> None:
    assert MarketClock(days, pinned=date(2025, 1, 1)).today() == LAST_DAY


def test_a_pin_before_the_data_fails_when_the_clock_is_built(days: list[date]) -> None:
    with pytest.raises(MarketDataError, match="before the first trading day"):
        MarketClock(days, pinned=date(1980, 1, 1))


def test_a_real_today_before_the_data_is_an_error(days: list[date]) -> None:
    with pytest.raises(MarketDataError):
        clock_on(days, date(1985, 6, 1)).today()


def test_an_empty_calendar_is_an_error() -> None:
    with pytest.raises(MarketDataError):
        MarketClock([])


def test_previous_trading_day_is_strictly_before_unless_inclusive(days: list[date]) -> None:
    clock = clock_on(days, date(2026, 11, 25))
    assert clock.previous_trading_day(date(2022, 11, 25)) == date(2022, 11, 23)
    assert clock.previous_trading_day(date(2022, 11, 25), inclusive=True) == date(2022, 11, 25)
    assert clock.previous_trading_day(date(2022, 11, 24), inclusive=True) == date(2022, 11, 23)
    assert clock.previous_trading_day(date(2022, 11, 28)) == date(2022, 11, 25)
    with pytest.raises(MarketDataError):
        clock.previous_trading_day(date(1990, 1, 2))


def test_is_trading_day(days: list[date]) -> None:
    clock = clock_on(days, date(2026, 11, 25))
    assert clock.is_trading_day(date(2022, 11, 25))
    assert not clock.is_trading_day(date(2022, 11, 24))  # Thanksgiving
    assert not clock.is_trading_day(date(2022, 11, 26))  # Saturday
    assert not clock.is_trading_day(date(2023, 1, 3))  # after the data


def test_to_real_moves_a_data_day_forward_for_display(days: list[date]) -> None:
    clock = clock_on(days, date(2026, 11, 25))
    assert clock.to_real(clock.today()) == date(2026, 11, 25)
    assert clock.to_real(date(2020, 2, 29)) == date(2024, 2, 29)
    assert clock_on(days, date(2027, 3, 1)).to_real(date(2020, 2, 29)) == date(2025, 2, 28)


def test_the_clock_is_deterministic_for_an_injected_today() -> None:
    calendar = [date(2022, 1, 3), date(2022, 1, 4), date(2022, 1, 5)]
    clock = MarketClock(list(reversed(calendar)) + calendar, today=lambda: date(2030, 1, 4))
    assert [clock.today() for _ in range(3)] == [date(2022, 1, 4)] * 3
    assert (clock.first_day, clock.last_day) == (date(2022, 1, 3), date(2022, 1, 5))
