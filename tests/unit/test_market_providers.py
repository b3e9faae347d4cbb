"""The market-data provider clients, guard and chain against a fake Polygon / Alpha Vantage on loopback.

Every request goes over a real socket to ``tests/fakes/market_data_server.py``;
nothing here reaches the network. Redis is replaced by an in-memory stand-in
(the quote cache) or left out (the limiter keeps its buckets in memory);
tests/integration/test_market_providers.py runs the same chain on real Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.fakes.market_data_server import (
    ALPHA_VANTAGE,
    ALPHA_VANTAGE_KEY,
    LAST_PRICES,
    LAST_TRADE_AT,
    POLYGON,
    POLYGON_KEY,
    PREV_DAY,
    FakeMarketDataServer,
    close_for,
    trading_days,
)
from wealthalloc.brokers.base import Quote
from wealthalloc.config import Settings
from wealthalloc.marketdata import PriceHistory
from wealthalloc.marketdata._bundled import _write_atomically, price_table
from wealthalloc.marketdata.providers import (
    AlphaVantageClient,
    CircuitOpen,
    MalformedAnswer,
    NoQuoteError,
    PolygonClient,
    ProviderGuard,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SharedLimiter,
    SymbolNotFound,
    build_chain,
    close_of,
    fetch_history,
    network_configured,
    policy,
    quote_age,
    redact,
    write_daily_bars,
)

SPREAD = Decimal("2")


@pytest.fixture
def fake() -> Iterator[FakeMarketDataServer]:
    with FakeMarketDataServer(page_size=20) as server:
        yield server


def settings_for(fake: FakeMarketDataServer, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "polygon_api_key": POLYGON_KEY,
        "polygon_base_url": fake.url,
        "alpha_vantage_api_key": ALPHA_VANTAGE_KEY,
        "alpha_vantage_base_url": fake.url,
        "market_data_timeout_seconds": 1.0,
        "market_data_retries": 1,
        "market_data_backoff_initial_seconds": 0.01,
        "market_data_backoff_max_seconds": 0.02,
        "market_data_stale_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class Sleeps:
    """Records the delays a guard asks for, without waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@asynccontextmanager
async def polygon(
    fake: FakeMarketDataServer, tmp_path: Path, *, sleep: Sleeps | None = None, **overrides: Any
) -> AsyncIterator[PolygonClient]:
    settings = settings_for(fake, tmp_path, **overrides)
    async with httpx.AsyncClient(timeout=5) as http:
        guard = ProviderGuard(policy(settings, "polygon"), SharedLimiter(None), sleep=sleep or Sleeps())
        yield PolygonClient(
            http, api_key=POLYGON_KEY, base_url=fake.url, guard=guard, spread_bps=SPREAD,
            use_last_trade=settings.polygon_last_trade,
        )  # fmt: skip


@asynccontextmanager
async def alpha(
    fake: FakeMarketDataServer, tmp_path: Path, *, sleep: Sleeps | None = None, **overrides: Any
) -> AsyncIterator[AlphaVantageClient]:
    settings = settings_for(fake, tmp_path, **overrides)
    async with httpx.AsyncClient(timeout=5) as http:
        guard = ProviderGuard(policy(settings, "alpha_vantage"), SharedLimiter(None), sleep=sleep or Sleeps())
        yield AlphaVantageClient(
            http, api_key=ALPHA_VANTAGE_KEY, base_url=fake.url, guard=guard, spread_bps=SPREAD,
            today=lambda: date(2024, 3, 28),
        )  # fmt: skip


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# Polygon ---------------------------------------------------------------------------------------


def test_polygon_last_trade_is_a_decimal_quote_stamped_with_the_trade_time(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    async def go() -> Quote:
        async with polygon(fake, tmp_path) as client:
            return await client.quote("aapl")

    quote = run(go())
    assert quote.symbol == "AAPL" and quote.source == "polygon" and not quote.stale
    assert quote.last == Decimal(LAST_PRICES["AAPL"]) and isinstance(quote.last, Decimal)
    assert quote.bid < quote.last < quote.ask
    assert quote.timestamp == LAST_TRADE_AT
    seen = fake.requests[-1]
    assert seen.path == "/v2/last/trade/AAPL"
    assert seen.headers["Authorization"] == f"Bearer {POLYGON_KEY}" and "apiKey" not in seen.query


def test_polygon_plan_without_trades_falls_back_to_the_previous_close_for_good(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    fake.script(POLYGON, "forbidden")

    async def go() -> list[Quote]:
        async with polygon(fake, tmp_path) as client:
            return [await client.quote("MSFT"), await client.quote("MSFT")]

    first, second = run(go())
    assert first.last == second.last == Decimal(LAST_PRICES["MSFT"])
    assert first.timestamp == close_of(PREV_DAY) == datetime(2024, 1, 4, 21, 0, tzinfo=UTC)
    assert [seen.path for seen in fake.requests] == [
        "/v2/last/trade/MSFT", "/v2/aggs/ticker/MSFT/prev", "/v2/aggs/ticker/MSFT/prev",
    ]  # fmt: skip


def test_polygon_429_is_rate_limited_at_once_without_retry_or_breaker_count(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    fake.script(POLYGON, "rate_limit")
    sleeps = Sleeps()

    async def go() -> PolygonClient:
        async with polygon(fake, tmp_path, sleep=sleeps) as client:
            with pytest.raises(RateLimited, match="exceeded the maximum requests per minute") as caught:
                await client.quote("AAPL")
            assert caught.value.retry_after_s == 1.0
            return client

    client = run(go())
    assert fake.count(POLYGON) == 1 and sleeps.delays == []
    assert client.guard.breaker.failures == 0


def test_polygon_5xx_is_retried_with_backoff_then_answers(fake: FakeMarketDataServer, tmp_path: Path) -> None:
    fake.script(POLYGON, "server_error")
    sleeps = Sleeps()

    async def go() -> Quote:
        async with polygon(fake, tmp_path, sleep=sleeps) as client:
            return await client.quote("AAPL")

    assert run(go()).last == Decimal(LAST_PRICES["AAPL"])
    assert fake.count(POLYGON) == 2
    assert len(sleeps.delays) == 1 and 0.005 <= sleeps.delays[0] <= 0.01


@pytest.mark.parametrize("behaviour", ["malformed", "not_json"])
def test_polygon_malformed_bodies_are_errors_counted_by_the_breaker(
    fake: FakeMarketDataServer, tmp_path: Path, behaviour: str
) -> None:
    fake.script(POLYGON, behaviour)

    async def go() -> int:
        async with polygon(fake, tmp_path) as client:
            with pytest.raises(MalformedAnswer):
                await client.quote("AAPL")
            return client.guard.breaker.failures

    assert run(go()) == 1
    assert fake.count(POLYGON) == 1  # a malformed body is not retried: it would be malformed again


def test_polygon_unknown_key_and_unknown_ticker(fake: FakeMarketDataServer, tmp_path: Path) -> None:
    async def go() -> None:
        async with polygon(fake, tmp_path) as client:
            with pytest.raises(SymbolNotFound):
                await client.quote("ZZZZ")
            with pytest.raises(SymbolNotFound, match="not a ticker"):
                await client.quote("../v1/x")
            assert client.guard.breaker.failures == 0
        fake.script(POLYGON, "unauthorized")
        async with polygon(fake, tmp_path) as client:
            with pytest.raises(ProviderRejected, match="Unknown API Key"):
                await client.quote("AAPL")

    run(go())


def test_a_timeout_is_retried_then_opens_the_breaker_and_an_open_breaker_sends_nothing(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    fake.always(POLYGON, "slow:0.5")

    async def go() -> None:
        async with polygon(
            fake, tmp_path, market_data_timeout_seconds=0.1, market_data_breaker_failures=2
        ) as client:
            for _ in range(2):
                with pytest.raises(ProviderUnavailable, match="no answer within 0.1 s"):
                    await client.quote("AAPL")
            assert client.guard.breaker.state == "open"
            sent = fake.count(POLYGON)
            with pytest.raises(CircuitOpen):
                await client.quote("AAPL")
            assert fake.count(POLYGON) == sent

    run(go())
    assert fake.count(POLYGON) == 4  # two calls, each tried twice (one retry)


def test_polygon_daily_bars_follow_next_url_and_keep_decimal_closes(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    since, until = date(2024, 1, 1), date(2024, 3, 1)

    async def go() -> Any:
        async with polygon(fake, tmp_path) as client:
            return await client.daily_bars("AAPL", since, until)

    bars = run(go())
    expected = list(trading_days(since, until))
    assert [bar.day for bar in bars] == expected
    assert all(bar.close == Decimal(close_for("AAPL", bar.day)) for bar in bars)
    assert fake.count(POLYGON) == 3  # 44 weekdays, pages of 20


def test_polygon_history_waits_out_a_429_between_pages_and_keeps_every_bar(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    since, until = date(2024, 1, 1), date(2024, 3, 1)
    fake.script(POLYGON, "ok", "rate_limit")  # the second page is refused once, then answered
    sleeps = Sleeps()

    async def go() -> Any:
        async with polygon(fake, tmp_path, sleep=sleeps) as client:
            return await client.daily_bars("AAPL", since, until)

    assert [bar.day for bar in run(go())] == list(trading_days(since, until))
    assert sleeps.delays == [1.0]  # the answer's Retry-After
    assert fake.count(POLYGON) == 4


@pytest.mark.parametrize("behaviour", ["malformed", "not_json"])
def test_a_broken_history_answer_fails_that_symbol_only_and_writes_nothing_for_it(
    fake: FakeMarketDataServer, tmp_path: Path, behaviour: str
) -> None:
    prices_dir = tmp_path / "prices"
    prices_dir.mkdir()
    fake.script(POLYGON, behaviour)  # the first symbol's answer; not retried: a 2xx that is wrong stays wrong

    async def go() -> Any:
        async with polygon(fake, tmp_path) as client:
            return await fetch_history(
                client, ["MSFT", "AAPL"], since=date(2024, 1, 2), until=date(2024, 1, 31),
                prices_dir=prices_dir, progress=False,
            )  # fmt: skip

    summary = run(go())
    assert list(summary.failed) == ["MSFT"] and "polygon" in summary.failed["MSFT"]
    assert [report.symbol for report in summary.written] == ["AAPL"]
    assert PriceHistory(prices_dir).symbols() == ["AAPL"]


# Alpha Vantage ---------------------------------------------------------------------------------


def test_alpha_vantage_global_quote_is_a_decimal_quote_as_of_its_trading_days_close(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    async def go() -> Quote:
        async with alpha(fake, tmp_path) as client:
            return await client.quote("IBM")

    quote = run(go())
    assert quote.source == "alpha_vantage" and quote.last == Decimal("162.1300")
    assert quote.timestamp == close_of(PREV_DAY)
    seen = fake.requests[-1]
    assert seen.query == {"function": "GLOBAL_QUOTE", "symbol": "IBM", "apikey": ALPHA_VANTAGE_KEY}


@pytest.mark.parametrize(
    ("behaviour", "error", "message"),
    [
        ("rate_limit", RateLimited, "5 calls per minute"),
        ("rate_limit_information", RateLimited, "25 requests per day"),
        ("unauthorized", ProviderRejected, "apikey is invalid"),
        ("not_found", SymbolNotFound, "no quote for IBM"),
        ("malformed", MalformedAnswer, "not a number"),
        ("not_json", MalformedAnswer, "not JSON"),
        ("server_error", ProviderUnavailable, "HTTP 503"),
    ],
)
def test_alpha_vantage_documented_failures(
    fake: FakeMarketDataServer, tmp_path: Path, behaviour: str, error: type[Exception], message: str
) -> None:
    fake.always(ALPHA_VANTAGE, behaviour)

    async def go() -> None:
        async with alpha(fake, tmp_path) as client:
            with pytest.raises(error, match=message):
                await client.quote("IBM")

    run(go())


def test_alpha_vantage_daily_series_and_its_error_message(fake: FakeMarketDataServer, tmp_path: Path) -> None:
    since, until = date(2024, 1, 1), date(2024, 1, 31)

    async def go() -> Any:
        async with alpha(fake, tmp_path) as client:
            bars = await client.daily_bars("MSFT", since, until)
            with pytest.raises(SymbolNotFound, match="Invalid API call"):
                await client.daily_bars("NOPE", since, until)
            return bars

    bars = run(go())
    assert [bar.day for bar in bars] == list(trading_days(since, until))
    assert all(bar.close == Decimal(close_for("MSFT", bar.day)) for bar in bars)
    assert fake.requests[0].query["outputsize"] == "compact"


def test_history_waits_out_a_rate_limit_note_instead_of_failing(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    fake.script(ALPHA_VANTAGE, "rate_limit")
    sleeps = Sleeps()

    async def go() -> Any:
        async with alpha(fake, tmp_path, sleep=sleeps) as client:
            return await client.daily_bars("IBM", date(2024, 3, 1), date(2024, 3, 28))

    assert len(run(go())) == 20
    assert fake.count(ALPHA_VANTAGE) == 2 and len(sleeps.delays) == 1


def test_the_shared_limiter_holds_alpha_vantage_to_5_a_minute(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    async def go() -> None:
        async with alpha(fake, tmp_path) as client:
            for _ in range(5):
                await client.quote("IBM")
            with pytest.raises(RateLimited, match="budget of 5/min is spent"):
                await client.quote("IBM")

    run(go())
    assert fake.count(ALPHA_VANTAGE) == 5  # the sixth never left the process


# The chain -------------------------------------------------------------------------------------


class MemoryRedis:
    """What QuoteCache uses of redis.asyncio.Redis (get, a pipeline of sets), in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def pipeline(self, transaction: bool = True) -> MemoryRedis._Pipe:
        return MemoryRedis._Pipe(self)

    class _Pipe:
        def __init__(self, owner: MemoryRedis) -> None:
            self._owner = owner
            self._sets: list[tuple[str, str]] = []

        async def __aenter__(self) -> MemoryRedis._Pipe:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        def set(self, key: str, value: str, ex: int | None = None) -> None:
            self._sets.append((key, value))

        async def execute(self) -> None:
            for key, value in self._sets:
                self._owner.data[key] = value.encode()


def bundled_prices(tmp_path: Path) -> PriceHistory:
    prices_dir = tmp_path / "prices"
    prices_dir.mkdir(exist_ok=True)
    closes = pd.Series([181.25, 182.5], index=pd.DatetimeIndex(["2022-12-27", "2022-12-28"]))
    _write_atomically(price_table(closes), prices_dir / "AAPL.parquet")
    return PriceHistory(prices_dir)


def cached(quote_json: dict[str, str]) -> bytes:
    return json.dumps(quote_json).encode()


def test_when_polygon_and_alpha_vantage_fail_the_cache_answers_then_the_bundled_history(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    fake.always(POLYGON, "server_error")
    fake.always(ALPHA_VANTAGE, "rate_limit")
    settings = settings_for(fake, tmp_path)
    memory = MemoryRedis()
    memory.data["quote:last:AAPL"] = cached(
        {"symbol": "AAPL", "bid": "187.10", "ask": "187.20", "last": "187.15",
         "timestamp": "2024-01-05T20:00:00+00:00", "source": "polygon"}
    )  # fmt: skip
    prices = bundled_prices(tmp_path)

    async def go() -> tuple[Any, Any]:
        async with httpx.AsyncClient() as http:
            chain = build_chain(
                settings, http=http, redis=memory,  # type: ignore[arg-type]
                prices=prices, today=lambda: date(2022, 12, 28), limiter=SharedLimiter(None),
            )  # fmt: skip
            assert chain.names == ["polygon", "alpha_vantage", "cache", "bundled"]
            from_cache = await chain.answer("AAPL")
            memory.data.clear()
            from_history = await chain.answer("AAPL")
            return from_cache, from_history

    from_cache, from_history = run(go())
    assert from_cache.fallback_order == ["polygon", "alpha_vantage", "cache"]
    assert [a.outcome for a in from_cache.attempts] == ["unavailable", "rate_limited", "ok"]
    assert from_cache.served_by == "cache" and from_cache.quote.stale
    assert from_cache.quote.last == Decimal("187.15") and from_cache.quote.source == "polygon"
    assert from_cache.quote.timestamp == datetime(2024, 1, 5, 20, tzinfo=UTC)

    assert from_history.fallback_order == ["polygon", "alpha_vantage", "cache", "bundled"]
    assert [a.outcome for a in from_history.attempts] == ["unavailable", "rate_limited", "not_found", "ok"]
    assert from_history.quote.source == "bundled" and from_history.quote.last == Decimal("182.5000")
    assert from_history.age_seconds() < 5
    assert fake.count(POLYGON) == 4 and fake.count(ALPHA_VANTAGE) == 2  # polygon retried once each time


def test_the_chain_answers_from_the_first_provider_that_works(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    settings = settings_for(fake, tmp_path, market_data_stale_seconds=900)

    async def go() -> Any:
        async with httpx.AsyncClient() as http:
            chain = build_chain(
                settings,
                http=http,
                redis=None,
                prices=bundled_prices(tmp_path),
                today=lambda: date(2022, 12, 28),
            )
            return await chain.answer("MSFT")

    answer = run(go())
    assert answer.fallback_order == ["polygon"] and answer.quote.last == Decimal("374.5100")
    assert answer.quote.stale  # the fake's trade is from January 2024: far older than 15 minutes
    assert fake.count(ALPHA_VANTAGE) == 0


def test_every_link_failing_is_one_error_that_lists_them(fake: FakeMarketDataServer, tmp_path: Path) -> None:
    fake.always(POLYGON, "not_found")
    fake.always(ALPHA_VANTAGE, "not_found")
    settings = settings_for(fake, tmp_path)

    async def go() -> None:
        async with httpx.AsyncClient() as http:
            chain = build_chain(
                settings,
                http=http,
                redis=None,
                prices=bundled_prices(tmp_path),
                today=lambda: date(2022, 12, 28),
            )
            with pytest.raises(NoQuoteError, match="polygon: not_found; alpha_vantage: not_found; bundled"):
                await chain.answer("ZZZZ")

    run(go())


def test_without_api_keys_the_chain_is_the_original_one(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert not network_configured(settings)

    async def ibkr(symbol: str) -> Quote:
        raise AssertionError("not asked")

    async def go() -> tuple[list[str], list[str]]:
        async with httpx.AsyncClient() as http:
            prices = bundled_prices(tmp_path)
            plain = build_chain(settings, http=http, redis=None, prices=prices, today=date.today)
            live = build_chain(
                settings, http=http, redis=MemoryRedis(),  # type: ignore[arg-type]
                prices=prices, today=date.today, ibkr=ibkr, limiter=SharedLimiter(None),
            )  # fmt: skip
            return plain.names, live.names

    assert run(go()) == (["bundled"], ["ibkr", "cache", "bundled"])
    assert network_configured(replace_key(settings, "alpha_vantage_api_key", "k"))


def replace_key(settings: Settings, field: str, value: str) -> Settings:
    return Settings(_env_file=None, **{**settings.model_dump(), field: value})  # type: ignore[call-arg]


# History into the price store ------------------------------------------------------------------


def test_fetched_bars_merge_into_the_parquet_store_and_read_back_as_decimals(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    prices = bundled_prices(tmp_path)
    since, until = date(2024, 1, 2), date(2024, 2, 29)

    async def go() -> Any:
        async with polygon(fake, tmp_path) as client:
            return await fetch_history(
                client, ["AAPL", "MSFT", "ZZZZ"], since=since, until=until,
                prices_dir=prices.prices_dir, progress=False,
            )  # fmt: skip

    summary = run(go())
    assert [report.symbol for report in summary.written] == ["AAPL", "MSFT"]
    assert list(summary.failed) == ["ZZZZ"]
    days = list(trading_days(since, until))
    assert summary.written[0].total == 2 + len(days)  # the bundled two days are kept
    assert prices.close_on("AAPL", date(2022, 12, 28)) == Decimal("182.5000")
    for day in days[:5] + days[-5:]:
        assert prices.close_on("MSFT", day) == Decimal(close_for("MSFT", day))
    # A second fetch of an overlapping span replaces those days, adds none twice.
    report = write_daily_bars(prices.prices_dir, "MSFT", run(_bars(fake, tmp_path, date(2024, 2, 1), until)))
    assert report.total == len(days)


async def _bars(fake: FakeMarketDataServer, tmp_path: Path, since: date, until: date) -> Any:
    async with polygon(fake, tmp_path) as client:
        return await client.daily_bars("MSFT", since, until)


def test_data_fetch_command_writes_the_store_with_a_progress_bar(
    fake: FakeMarketDataServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unused_port: Callable[[], int],
) -> None:
    from typer.testing import CliRunner

    from wealthalloc.cli import app

    for name, value in {
        "DATA_DIR": str(tmp_path), "ALPHA_VANTAGE_API_KEY": ALPHA_VANTAGE_KEY,
        "ALPHA_VANTAGE_BASE_URL": fake.url, "REDIS_URL": f"redis://127.0.0.1:{unused_port()}/0",
        "POLYGON_API_KEY": "",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"WEALTHALLOC_{name}", value)
    result = CliRunner().invoke(
        app, ["data", "fetch", "--symbols", "IBM,MSFT", "--since", "2024-03-01", "--until", "2024-03-28"]
    )
    assert result.exit_code == 0, result.output
    assert "IBM: 20 day(s) 2024-03-01 .. 2024-03-28 from alpha_vantage" in result.output
    assert "fetch (alpha_vantage)" in result.output  # tqdm's bar, on stderr
    assert PriceHistory(tmp_path / "prices").symbols() == ["IBM", "MSFT"]


def test_no_provider_key_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from wealthalloc.cli import app

    monkeypatch.setenv("WEALTHALLOC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WEALTHALLOC_POLYGON_API_KEY", "")
    monkeypatch.setenv("WEALTHALLOC_ALPHA_VANTAGE_API_KEY", "")
    result = CliRunner().invoke(app, ["data", "fetch", "--symbols", "IBM", "--since", "2024-03-01"])
    assert result.exit_code == 1
    assert "no market data provider has an API key" in result.output


# Small parts -----------------------------------------------------------------------------------


def test_keys_never_reach_httpx_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    assert redact("GET http://x/query?function=GLOBAL_QUOTE&apikey=SECRET1&symbol=IBM") == (
        "GET http://x/query?function=GLOBAL_QUOTE&apikey=***&symbol=IBM"
    )
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info("HTTP Request: %s %s", "GET", httpx.URL("http://x/q?apiKey=SECRET2"))
    assert "SECRET2" not in caplog.text and "apiKey=***" in caplog.text


def test_quote_age_counts_from_the_as_of_moment() -> None:
    quote = Quote("AAPL", Decimal(1), Decimal(1), Decimal(1), close_of(date(2024, 1, 4)), "polygon")
    assert quote_age(quote, datetime(2024, 1, 4, 22, tzinfo=UTC)) == 3600
    assert quote_age(replace(quote, timestamp=datetime(2030, 1, 1, tzinfo=UTC))) == 0
