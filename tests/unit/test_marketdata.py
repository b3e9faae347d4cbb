"""Market data: skfolio's bundled prices as Parquet, closes as Decimal, and the reference table.

The bundled data is loaded once per test session (the ``data_dir`` fixture of
``tests/conftest.py``) and only read here; tests that change files work on a
copy or on a directory of their own.
"""

from __future__ import annotations

import shutil
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wealthalloc.marketdata import (
    BUNDLED_SYMBOLS,
    FACTOR_ETFS,
    INDEX_SYMBOL,
    STOCKS,
    LoadReport,
    MarketDataError,
    NoPriceError,
    PriceHistory,
    Security,
    SecurityReference,
    UnknownSymbolError,
    load_bundled_datasets,
)
from wealthalloc.marketdata._prices import ASKED_DAYS_KEPT

FIRST_DAY = date(1990, 1, 2)
LAST_DAY = date(2022, 12, 28)
ETF_FIRST_DAY = date(2014, 1, 2)
DAYS_1990_2022 = 8313
DAYS_2014_2022 = 2264


@pytest.fixture(scope="module")
def prices_dir(data_dir: Path) -> Path:
    return data_dir / "prices"


@pytest.fixture(scope="module")
def prices(prices_dir: Path) -> PriceHistory:
    return PriceHistory(prices_dir)


@pytest.fixture
def prices_copy(prices_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the loaded prices, for tests that change files."""
    return Path(shutil.copytree(prices_dir, tmp_path / "prices"))


def write_prices(path: Path, rows: dict[date, float], **extra: list[Any]) -> None:
    table = pa.table(
        {
            "date": pa.array(list(rows), pa.date32()),
            "close": pa.array(list(rows.values()), pa.float64()),
            **extra,
        }
    )
    pq.write_table(table, path)


# --- the loader ---------------------------------------------------------------------------------


def test_there_are_26_bundled_symbols_20_stocks_the_index_and_5_factor_etfs() -> None:
    assert len(STOCKS) == 20 and len(FACTOR_ETFS) == 5 and INDEX_SYMBOL == "SPX"
    assert BUNDLED_SYMBOLS == (*STOCKS, "SPX", *FACTOR_ETFS)
    assert len(set(BUNDLED_SYMBOLS)) == 26


def test_the_loader_writes_one_parquet_file_per_symbol_and_nothing_else(prices_dir: Path) -> None:
    assert sorted(path.name for path in prices_dir.iterdir()) == sorted(
        f"{symbol}.parquet" for symbol in BUNDLED_SYMBOLS
    )


def test_each_file_holds_a_date32_date_and_a_float64_close(prices_dir: Path) -> None:
    for symbol in BUNDLED_SYMBOLS:
        table = pq.read_table(prices_dir / f"{symbol}.parquet")
        assert table.schema.names == ["date", "close"], symbol
        assert table.schema.field("date").type == pa.date32(), symbol
        assert table.schema.field("close").type == pa.float64(), symbol
        assert table.column("close").null_count == 0, symbol
        days = table.column("date").to_pylist()
        assert days == sorted(set(days)), symbol


@pytest.mark.parametrize("symbol", [*STOCKS, INDEX_SYMBOL])
def test_stocks_and_the_index_cover_1990_01_02_to_2022_12_28(prices: PriceHistory, symbol: str) -> None:
    closes = prices.closes(symbol)
    assert (closes.index[0].date(), closes.index[-1].date()) == (FIRST_DAY, LAST_DAY)
    assert len(closes) == DAYS_1990_2022


@pytest.mark.parametrize("symbol", FACTOR_ETFS)
def test_factor_etfs_cover_2014_01_02_to_2022_12_28(prices: PriceHistory, symbol: str) -> None:
    closes = prices.closes(symbol)
    assert (closes.index[0].date(), closes.index[-1].date()) == (ETF_FIRST_DAY, LAST_DAY)
    assert len(closes) == DAYS_2014_2022


def test_closes_are_skfolios_adjusted_closes(prices: PriceHistory) -> None:
    # Values from skfolio's own documentation of the three datasets.
    assert prices.closes("AAPL").iloc[:2].tolist() == [0.264, 0.266]
    assert prices.closes("SPX").iloc[0] == 359.69
    assert prices.closes("MTUM").iloc[0] == 52.704
    assert prices.closes("VLUE").iloc[1] == 46.999


def test_a_second_load_writes_nothing_and_leaves_the_files_untouched(prices_dir: Path) -> None:
    before = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in prices_dir.iterdir()}

    report = load_bundled_datasets(prices_dir, progress=False)

    assert report.written == ()
    assert report.skipped == BUNDLED_SYMBOLS
    assert {
        path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in prices_dir.iterdir()
    } == before


def test_the_report_describes_the_whole_bundle(prices_dir: Path) -> None:
    report = load_bundled_datasets(prices_dir, progress=False)
    assert report == LoadReport(
        symbols=BUNDLED_SYMBOLS,
        written=(),
        rows=21 * DAYS_1990_2022 + 5 * DAYS_2014_2022,
        first_date=FIRST_DAY,
        last_date=LAST_DAY,
        prices_dir=prices_dir,
    )


def test_a_damaged_or_changed_bundled_file_is_rewritten_and_the_others_are_not(prices_copy: Path) -> None:
    (prices_copy / "AAPL.parquet").write_bytes(b"not parquet")
    write_prices(prices_copy / "MTUM.parquet", {date(2022, 1, 3): 1.0})
    (prices_copy / "XOM.parquet").unlink()

    report = load_bundled_datasets(prices_copy, progress=False)

    assert sorted(report.written) == ["AAPL", "MTUM", "XOM"]
    assert PriceHistory(prices_copy).closes("MTUM").iloc[0] == 52.704


def test_loading_leaves_no_temporary_files_and_creates_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "prices"
    report = load_bundled_datasets(target, progress=False)
    assert report.written == BUNDLED_SYMBOLS
    assert sorted(path.name for path in target.iterdir()) == sorted(f"{s}.parquet" for s in BUNDLED_SYMBOLS)


def test_loading_needs_no_network_and_no_skfolio_download_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bundled datasets must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    skfolio_home = tmp_path / "skfolio_data"
    monkeypatch.setenv("SKFOLIO_DATA", str(skfolio_home))

    report = load_bundled_datasets(tmp_path / "prices", progress=False)

    assert report.symbols == BUNDLED_SYMBOLS
    assert not skfolio_home.exists()


def test_the_progress_bar_counts_symbols_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_bundled_datasets(tmp_path / "quiet", progress=False)
    assert "26/26" not in capsys.readouterr().err

    load_bundled_datasets(tmp_path / "loud", progress=True)
    assert "26/26" in capsys.readouterr().err


# --- reading prices -----------------------------------------------------------------------------


def test_every_parquet_file_is_a_symbol(prices: PriceHistory) -> None:
    assert prices.symbols() == sorted(BUNDLED_SYMBOLS)
    assert "aapl" in prices and "NOPE" not in prices


def test_closes_are_a_float_series_on_a_datetime_index(prices: PriceHistory) -> None:
    closes = prices.closes("msft")
    assert isinstance(closes.index, pd.DatetimeIndex)
    assert closes.index.is_monotonic_increasing and closes.index.is_unique
    assert closes.dtype == np.float64 and closes.name == "MSFT"


def test_changing_a_returned_series_does_not_change_the_prices(prices: PriceHistory) -> None:
    closes = prices.closes("KO")
    closes.iloc[0] = -1.0
    assert prices.closes("KO").iloc[0] > 0


def test_close_on_is_a_decimal_with_four_places(prices: PriceHistory) -> None:
    close = prices.close_on("MSFT", date(2022, 11, 25))
    assert close == Decimal("246.3330")
    assert isinstance(close, Decimal) and close.as_tuple().exponent == -4


def test_close_on_a_weekend_is_fridays_close(prices: PriceHistory) -> None:
    friday = date(2022, 11, 25)
    assert prices.close_on("MSFT", date(2022, 11, 26)) == prices.close_on("MSFT", friday)
    assert prices.close_on("MSFT", date(2022, 11, 27)) == prices.close_on("MSFT", friday)


def test_close_on_a_holiday_is_the_previous_trading_days_close(prices: PriceHistory) -> None:
    thanksgiving = date(2022, 11, 24)
    assert prices.close_on("MSFT", thanksgiving) == Decimal("246.4230")  # Wednesday 2022-11-23


def test_close_on_after_the_data_is_the_last_close(prices: PriceHistory) -> None:
    assert prices.close_on("SPX", date(2030, 1, 1)) == Decimal("3783.2200")


def test_close_on_takes_a_datetime_as_its_day(prices: PriceHistory) -> None:
    assert prices.close_on("MSFT", datetime(2022, 11, 25, 23, 59)) == Decimal("246.3330")


def test_close_on_is_case_insensitive(prices: PriceHistory) -> None:
    assert prices.close_on(" aapl ", date(1990, 1, 2)) == prices.close_on("AAPL", date(1990, 1, 2))


def test_an_unknown_symbol_is_an_unknown_symbol_error(prices: PriceHistory) -> None:
    with pytest.raises(UnknownSymbolError) as raised:
        prices.close_on("NOPE", date(2022, 1, 3))
    assert raised.value.symbol == "NOPE"
    with pytest.raises(UnknownSymbolError):
        prices.closes("NOPE")


def test_a_day_before_the_first_price_is_a_no_price_error(prices: PriceHistory) -> None:
    with pytest.raises(NoPriceError) as raised:
        prices.close_on("MTUM", date(2013, 12, 31))
    assert raised.value.first == ETF_FIRST_DAY
    assert prices.close_on("MTUM", ETF_FIRST_DAY) == Decimal("52.7040")


def test_market_data_errors_share_one_base_class() -> None:
    assert issubclass(UnknownSymbolError, MarketDataError)
    assert issubclass(NoPriceError, MarketDataError)
    assert issubclass(UnknownSymbolError, LookupError)


def test_decimals_round_half_to_even_from_the_written_figure(tmp_path: Path) -> None:
    # 1.00005 is stored as 1.0000500000000001...: rounding the exact binary value would give 1.0001.
    write_prices(tmp_path / "ROUND.parquet", {date(2022, 1, 3): 1.00005, date(2022, 1, 4): 1.00015})
    history = PriceHistory(tmp_path)
    assert history.close_on("ROUND", date(2022, 1, 3)) == Decimal("1.0000")
    assert history.close_on("ROUND", date(2022, 1, 4)) == Decimal("1.0002")


def test_the_calendar_is_the_index_trading_days(prices: PriceHistory) -> None:
    days = prices.trading_days()
    assert len(days) == DAYS_1990_2022
    assert (days[0], days[-1]) == (FIRST_DAY, LAST_DAY)
    assert all(type(day) is date for day in days[:5])
    assert date(2022, 11, 24) not in days  # Thanksgiving
    assert date(2022, 11, 25) in days
    assert date(2001, 9, 11) not in days and date(2001, 9, 17) in days  # the market closed after 9/11
    assert (prices.first_date, prices.last_date) == (FIRST_DAY, LAST_DAY)


def test_a_symbol_priced_on_a_weekend_does_not_change_the_calendar(prices_copy: Path) -> None:
    saturday = date(2022, 11, 26)
    write_prices(prices_copy / "COIN24.parquet", {saturday: 100.0})
    history = PriceHistory(prices_copy)
    assert saturday not in history.trading_days()  # the index decides, not the union
    assert history.close_on("COIN24", saturday) == Decimal("100.0000")


def test_without_the_index_the_calendar_is_the_union_of_all_symbols(tmp_path: Path) -> None:
    write_prices(tmp_path / "A.parquet", {date(2022, 1, 3): 1.0, date(2022, 1, 5): 1.0})
    write_prices(tmp_path / "B.parquet", {date(2022, 1, 4): 2.0, date(2022, 1, 5): 2.0})
    history = PriceHistory(tmp_path)
    assert history.trading_days() == [date(2022, 1, 3), date(2022, 1, 4), date(2022, 1, 5)]


def test_frame_puts_symbols_side_by_side_between_inclusive_dates(prices: PriceHistory) -> None:
    frame = prices.frame(["mtum", "AAPL"], date(2013, 12, 31), date(2014, 1, 3))
    assert list(frame.columns) == ["MTUM", "AAPL"]
    assert [stamp.date() for stamp in frame.index] == [
        date(2013, 12, 31),
        date(2014, 1, 2),
        date(2014, 1, 3),
    ]
    assert np.isnan(frame.loc["2013-12-31", "MTUM"])  # not filled: the ETF had no price yet
    assert frame.loc["2014-01-02", "MTUM"] == 52.704


def test_frame_of_every_symbol_by_default(prices: PriceHistory) -> None:
    frame = prices.frame(start=date(2022, 12, 27))
    assert list(frame.columns) == sorted(BUNDLED_SYMBOLS)
    assert len(frame) == 2 and not frame.isna().any().any()


def test_a_dropped_parquet_file_with_ohlcv_columns_adds_a_symbol(prices_copy: Path) -> None:
    history = PriceHistory(prices_copy)
    assert "ACME" not in history.symbols()

    write_prices(
        prices_copy / "acme.parquet",
        {date(2022, 1, 3): 10.5, date(2022, 1, 4): 11.25},
        open=[10.0, 11.0],
        high=[11.0, 12.0],
        low=[9.5, 10.5],
        volume=[1000, 2000],
    )

    assert history.symbols() == sorted([*BUNDLED_SYMBOLS, "ACME"])
    assert history.close_on("acme", date(2022, 1, 5)) == Decimal("11.2500")
    assert history.trading_days() == PriceHistory(prices_copy).trading_days()  # still the index's


def test_files_written_by_pandas_with_other_date_types_are_read(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "Date": pd.DatetimeIndex(["2022-01-04", "2022-01-03", "2022-01-04"], tz="America/New_York"),
            "Close": [11, 10, 12],
            "Volume": [1, 2, 3],
        }
    )
    frame.to_parquet(tmp_path / "TZ.parquet")
    closes = PriceHistory(tmp_path).closes("TZ")
    # Sorted, the later duplicate wins, the exchange's day is kept, integers become floats.
    assert [stamp.date() for stamp in closes.index] == [date(2022, 1, 3), date(2022, 1, 4)]
    assert closes.tolist() == [10.0, 12.0]


def test_rows_without_a_close_are_dropped(tmp_path: Path) -> None:
    table = pa.table(
        {
            "date": pa.array([date(2022, 1, 3), date(2022, 1, 4), date(2022, 1, 5)], pa.date32()),
            "close": pa.array([1.0, None, float("nan")], pa.float64()),
        }
    )
    pq.write_table(table, tmp_path / "GAPS.parquet")
    history = PriceHistory(tmp_path)
    assert len(history.closes("GAPS")) == 1
    assert history.close_on("GAPS", date(2022, 1, 5)) == Decimal("1.0000")


def test_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    write_prices(tmp_path / "ACME.parquet", {date(2022, 1, 3): 1.0})
    history = PriceHistory(tmp_path)
    assert history.close_on("ACME", date(2022, 1, 3)) == Decimal("1.0000")

    write_prices(tmp_path / "new.tmp", {date(2022, 1, 3): 2.0})
    (tmp_path / "new.tmp").replace(tmp_path / "ACME.parquet")

    assert history.close_on("ACME", date(2022, 1, 3)) == Decimal("2.0000")


def test_closes_asked_again_and_past_what_is_remembered_are_the_same_closes(tmp_path: Path) -> None:
    """A close asked for again comes from memory; more days than it keeps (a valuation over years)
    still answer each day's own close, the first time and the second."""
    days = [date(2022, 1, 3) + timedelta(days=n) for n in range(3 * ASKED_DAYS_KEPT)]
    write_prices(tmp_path / "ACME.parquet", {day: 1.0 + n / 1000 for n, day in enumerate(days)})
    history = PriceHistory(tmp_path)
    expected = [Decimal(f"{1 + n / 1000:.3f}") + Decimal("0.0000") for n in range(len(days))]
    assert [history.close_on("ACME", day) for day in days] == expected
    assert [history.close_on("ACME", day) for day in reversed(days)] == expected[::-1]
    assert history.close_on("acme", days[-1]) is history.close_on("ACME", days[-1])  # remembered


def test_a_removed_file_removes_the_symbol(tmp_path: Path) -> None:
    write_prices(tmp_path / "ACME.parquet", {date(2022, 1, 3): 1.0})
    history = PriceHistory(tmp_path)
    assert history.closes("ACME").iloc[0] == 1.0
    (tmp_path / "ACME.parquet").unlink()
    assert history.symbols() == []
    with pytest.raises(UnknownSymbolError):
        history.closes("ACME")


def test_a_file_without_a_close_column_is_a_market_data_error(tmp_path: Path) -> None:
    table = pa.table({"date": pa.array([date(2022, 1, 3)], pa.date32()), "price": [1.0]})
    pq.write_table(table, tmp_path / "X.parquet")
    with pytest.raises(MarketDataError, match="'close'"):
        PriceHistory(tmp_path).closes("X")


def test_a_missing_directory_has_no_symbols(tmp_path: Path) -> None:
    history = PriceHistory(tmp_path / "absent")
    assert history.symbols() == [] and history.trading_days() == []
    with pytest.raises(MarketDataError):
        _ = history.last_date
    with pytest.raises(UnknownSymbolError):
        history.close_on("AAPL", date(2022, 1, 3))


def test_concurrent_readers_get_the_same_answers(prices_dir: Path) -> None:
    history = PriceHistory(prices_dir)
    day = date(2020, 3, 16)
    expected = {symbol: PriceHistory(prices_dir).close_on(symbol, day) for symbol in BUNDLED_SYMBOLS}

    def read_all(_: int) -> dict[str, Decimal]:
        return {symbol: history.close_on(symbol, day) for symbol in BUNDLED_SYMBOLS}

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(read_all, range(32)))
    assert all(result == expected for result in results)


# --- the reference table ------------------------------------------------------------------------


def test_every_bundled_symbol_has_a_reference_row_with_a_sector() -> None:
    reference = SecurityReference()
    assert reference.symbols() == sorted(BUNDLED_SYMBOLS)
    for symbol in BUNDLED_SYMBOLS:
        security = reference.get(symbol)
        assert security is not None, symbol
        assert security.sector.strip() and security.name.strip(), symbol
        assert security.currency == "USD", symbol


def test_asset_classes_are_equity_for_stocks_etf_for_funds_index_for_spx() -> None:
    by_symbol = {security.symbol: security for security in SecurityReference()}
    assert {by_symbol[symbol].asset_class for symbol in STOCKS} == {"equity"}
    assert {(by_symbol[symbol].asset_class, by_symbol[symbol].sector) for symbol in FACTOR_ETFS} == {
        ("etf", "US Equity Factor")
    }
    assert by_symbol["SPX"] == Security("SPX", "S&P 500 Index", "index", "Broad Market", "USD")


@pytest.mark.parametrize(
    ("symbol", "sector"),
    [
        ("AAPL", "Information Technology"),
        ("AMD", "Information Technology"),
        ("RRC", "Energy"),
        ("GE", "Industrials"),
        ("BBY", "Consumer Discretionary"),
        ("JPM", "Financials"),
        ("LLY", "Health Care"),
        ("WMT", "Consumer Staples"),
    ],
)
def test_stocks_carry_their_gics_sector(symbol: str, sector: str) -> None:
    security = SecurityReference().get(symbol)
    assert security is not None and security.sector == sector


def test_lookups_ignore_case_and_unknown_symbols_are_none() -> None:
    reference = SecurityReference()
    assert reference.get("aapl") == reference.get(" AAPL ")
    assert reference.get("aapl").symbol == "AAPL"  # type: ignore[union-attr]
    assert reference.get("NOPE") is None
    assert "msft" in reference and len(reference) == 26


def test_securities_are_frozen() -> None:
    security = SecurityReference().get("AAPL")
    with pytest.raises(AttributeError):
        security.sector = "Energy"  # type: ignore[misc, union-attr]


def test_the_table_ships_as_package_data() -> None:
    csv_file = resources.files("wealthalloc.marketdata").joinpath("reference/securities.csv")
    assert csv_file.is_file()
    assert csv_file.read_text(encoding="utf-8").splitlines()[0] == "symbol,name,asset_class,sector,currency"


def test_a_reference_can_be_composed_and_is_validated() -> None:
    acme = Security("ACME", "Acme Corp.", "equity", "Industrials", "USD")
    assert SecurityReference([acme]).get("acme") == acme
    with pytest.raises(MarketDataError, match="twice"):
        SecurityReference([acme, acme])
    with pytest.raises(MarketDataError, match="asset class"):
        SecurityReference([Security("ACME", "Acme Corp.", "bond", "Industrials", "USD")])
    with pytest.raises(MarketDataError, match="sector"):
        SecurityReference([Security("ACME", "Acme Corp.", "equity", "", "USD")])


def test_a_history_that_rechecks_its_files_now_and_then_sees_a_replaced_file_once_the_time_is_up(
    tmp_path: Path,
) -> None:
    write_prices(tmp_path / "ACME.parquet", {date(2022, 1, 3): 1.0})
    history = PriceHistory(tmp_path, recheck_seconds=0.5)
    assert history.close_on("ACME", date(2022, 1, 3)) == Decimal("1.0000")

    write_prices(tmp_path / "new.tmp", {date(2022, 1, 3): 2.0})
    (tmp_path / "new.tmp").replace(tmp_path / "ACME.parquet")

    assert history.close_on("ACME", date(2022, 1, 3)) == Decimal("1.0000")  # not looked at yet
    time.sleep(0.6)
    assert history.close_on("ACME", date(2022, 1, 3)) == Decimal("2.0000")
