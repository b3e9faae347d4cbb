"""Market data: bundled prices as Parquet, Decimal closes, the reference table and the market clock."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wealthalloc.marketdata import (
    BUNDLED_SYMBOLS,
    MarketClock,
    MarketDataError,
    NoPriceError,
    PriceHistory,
    SecurityReference,
    UnknownSymbolError,
    load_bundled_datasets,
)


@pytest.fixture(scope="module")
def prices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prices")
    load_bundled_datasets(path, progress=False)
    return path


@pytest.fixture(scope="module")
def prices(prices_dir: Path) -> PriceHistory:
    return PriceHistory(prices_dir)


def test_the_loader_writes_one_parquet_per_bundled_symbol(prices: PriceHistory) -> None:
    assert prices.symbols() == sorted(BUNDLED_SYMBOLS)
    assert len(BUNDLED_SYMBOLS) == 26
    assert prices.closes("AAPL").index[0].date() == date(1990, 1, 2)
    assert prices.closes("MTUM").index[0].date() == date(2014, 1, 2)
    assert prices.last_date == date(2022, 12, 28)


def test_a_second_load_writes_nothing(prices_dir: Path) -> None:
    report = load_bundled_datasets(prices_dir, progress=False)
    assert report.written == 0
    assert report.first_date == date(1990, 1, 2) and report.last_date == date(2022, 12, 28)


def test_a_dropped_parquet_file_with_ohlcv_adds_a_symbol(tmp_path: Path) -> None:
    table = pa.table(
        {
            "date": pa.array([date(2022, 1, 3), date(2022, 1, 4)], pa.date32()),
            "open": [10.0, 11.0], "high": [11.0, 12.0], "low": [9.5, 10.5], "close": [10.5, 11.25],
            "volume": [1000, 2000],
        }
    )
    pq.write_table(table, tmp_path / "acme.parquet")
    history = PriceHistory(tmp_path)
    assert history.symbols() == ["ACME"]
    assert history.close_on("acme", date(2022, 1, 4)) == Decimal("11.2500")


def test_close_on_a_weekend_is_fridays_close_as_a_decimal(prices: PriceHistory) -> None:
    friday = prices.close_on("MSFT", date(2022, 11, 25))
    assert prices.close_on("MSFT", date(2022, 11, 27)) == friday
    assert isinstance(friday, Decimal) and friday.as_tuple().exponent == -4


def test_unknown_symbols_and_days_before_the_data_are_errors(prices: PriceHistory) -> None:
    with pytest.raises(UnknownSymbolError):
        prices.close_on("NOPE", date(2022, 1, 3))
    with pytest.raises(NoPriceError):
        prices.close_on("MTUM", date(2013, 12, 31))
    assert issubclass(UnknownSymbolError, MarketDataError)


def test_the_calendar_is_the_index_trading_days(prices: PriceHistory) -> None:
    days = prices.trading_days()
    assert date(2022, 11, 24) not in days  # Thanksgiving
    assert date(2022, 11, 25) in days


@pytest.fixture(scope="module")
def days(prices: PriceHistory) -> list[date]:
    return prices.trading_days()


def test_the_clock_maps_today_back_by_whole_years(days: list[date]) -> None:
    clock = MarketClock(days, today=lambda: date(2026, 11, 25))
    assert clock.today() == date(2022, 11, 25)
    assert clock.offset_years() == 4
    assert clock.to_real(date(2022, 11, 25)) == date(2026, 11, 25)


def test_a_day_after_the_last_date_of_its_year_goes_back_one_more_year(days: list[date]) -> None:
    clock = MarketClock(days, today=lambda: date(2026, 12, 30))
    assert clock.offset_years() == 5
    assert clock.today() == date(2021, 12, 30)


def test_a_leap_day_maps_onto_the_28th(days: list[date]) -> None:
    clock = MarketClock(days, today=lambda: date(2028, 2, 29))
    assert clock.today() == date(2022, 2, 28)


def test_a_holiday_maps_to_the_previous_trading_day(days: list[date]) -> None:
    clock = MarketClock(days, today=lambda: date(2026, 11, 24))  # -> 2022-11-24, Thanksgiving
    assert clock.today() == date(2022, 11, 23)


def test_a_date_inside_the_data_is_itself(days: list[date]) -> None:
    clock = MarketClock(days, today=lambda: date(2020, 6, 1))
    assert clock.offset_years() == 0
    assert clock.today() == date(2020, 6, 1)


def test_a_pinned_clock_ignores_today_and_refuses_days_before_the_data(days: list[date]) -> None:
    assert MarketClock(days, pinned=date(2021, 7, 4), today=lambda: date(2030, 1, 1)).today() == date(2021, 7, 2)
    with pytest.raises(MarketDataError):
        MarketClock(days, pinned=date(1980, 1, 1)).today()


def test_every_bundled_symbol_has_a_sector_and_asset_class() -> None:
    reference = SecurityReference()
    for symbol in BUNDLED_SYMBOLS:
        security = reference.get(symbol)
        assert security is not None, symbol
        assert security.sector and security.asset_class in {"equity", "etf", "index"}
    assert reference.get("aapl") == reference.get("AAPL")
    assert reference.get("SPX").asset_class == "index"  # type: ignore[union-attr]
    assert reference.get("NOPE") is None
