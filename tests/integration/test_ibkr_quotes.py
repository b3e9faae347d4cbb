"""IBKR live quotes at the head of the provider chain, from the fake IB Gateway over a real socket.

The real client library (``ib_async``, and ``ib_insync`` as its fallback)
talks to ``FakeIbGateway`` on loopback; Polygon and Alpha Vantage are the
fake market-data server. While the gateway is connected IBKR answers first;
when it goes away the IBKR link is skipped (not failed, no wait) and the next
provider answers; when it comes back IBKR answers again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.market_data_server import (
    ALPHA_VANTAGE,
    ALPHA_VANTAGE_KEY,
    LAST_PRICES,
    POLYGON,
    POLYGON_KEY,
    FakeMarketDataServer,
)
from tests.integration import test_ibkr_broker as ib_tests
from tests.integration.test_ibkr_broker import (
    DROPPED,
    LibraryErrors,
    cut,
    gateway_and_broker,
    run,
    wait_until,
)
from tests.integration.test_market_providers import bundled
from wealthalloc.config import Settings
from wealthalloc.marketdata.providers import ChainAnswer, SharedLimiter, broker_quotes, build_chain

pytestmark = pytest.mark.integration

# As in the broker's own tests: every test once per client library, and any ERROR it logs fails it.
library_errors = ib_tests.library_errors


@pytest.fixture(params=ib_tests.LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def providers() -> Iterator[FakeMarketDataServer]:
    with FakeMarketDataServer() as server:
        yield server


def chain_settings(providers: FakeMarketDataServer, tmp_path: Path) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "broker": "ibkr",
        "polygon_api_key": POLYGON_KEY,
        "polygon_base_url": providers.url,
        "alpha_vantage_api_key": ALPHA_VANTAGE_KEY,
        "alpha_vantage_base_url": providers.url,
        "market_data_timeout_seconds": 1.0,
        "market_data_retries": 0,
        "market_data_stale_seconds": 0,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def outcomes(answer: ChainAnswer) -> list[tuple[str, str]]:
    return [(attempt.provider, attempt.outcome) for attempt in answer.attempts]


def test_ibkr_answers_first_while_connected_and_is_skipped_while_the_gateway_is_down(
    library: str, library_errors: LibraryErrors, providers: FakeMarketDataServer, tmp_path: Path
) -> None:
    library_errors.expect(*DROPPED)
    settings = chain_settings(providers, tmp_path)
    prices = bundled(tmp_path)

    async def scenario() -> None:
        async with gateway_and_broker(library) as (ib, broker, _), httpx.AsyncClient() as http:
            chain = build_chain(
                settings,
                http=http,
                redis=None,
                prices=prices,
                today=lambda: date(2022, 12, 28),
                ibkr=broker_quotes(broker, recheck_s=0),
                limiter=SharedLimiter(None),
            )
            assert chain.names == ["ibkr", "polygon", "alpha_vantage", "bundled"]

            live = await chain.answer("AAPL")
            assert outcomes(live) == [("ibkr", "ok")]
            assert (live.quote.source, live.quote.last) == ("ibkr", Decimal("150.25"))
            assert (live.quote.bid, live.quote.ask) == (Decimal("150.24"), Decimal("150.26"))
            assert providers.count(POLYGON) == 0

            await cut(ib, broker)
            started = time.perf_counter()
            down = await chain.answer("AAPL")
            assert time.perf_counter() - started < 0.5  # skipped at once, not a timeout waited out
            assert outcomes(down) == [("ibkr", "skipped"), ("polygon", "ok")]
            assert (down.quote.source, down.quote.last) == ("polygon", Decimal(LAST_PRICES["AAPL"]))

            providers.always(POLYGON, "server_error")
            both_down = await chain.answer("AAPL")
            assert both_down.fallback_order == ["ibkr", "polygon", "alpha_vantage"]
            assert outcomes(both_down)[:2] == [("ibkr", "skipped"), ("polygon", "unavailable")]
            assert both_down.served_by == ALPHA_VANTAGE

            await ib.refuse_connections(False)
            await wait_until(lambda: broker.health().status != "down", timeout=10, what="reconnected")
            back = await chain.answer("AAPL")
            assert outcomes(back) == [("ibkr", "ok")] and back.quote.source == "ibkr"

    run(scenario())


def test_an_unknown_symbol_at_ibkr_is_not_found_and_the_next_provider_answers(
    library: str, library_errors: LibraryErrors, providers: FakeMarketDataServer, tmp_path: Path
) -> None:
    library_errors.expect("No security definition has been found")
    settings = chain_settings(providers, tmp_path)

    async def scenario() -> None:
        async with gateway_and_broker(library) as (_, broker, _), httpx.AsyncClient() as http:
            chain = build_chain(
                settings,
                http=http,
                redis=None,
                prices=bundled(tmp_path),
                today=lambda: date(2022, 12, 28),
                ibkr=broker_quotes(broker),
                limiter=SharedLimiter(None),
            )
            answer = await chain.answer("IBM")  # priced by the providers, not by the fake gateway
            assert outcomes(answer) == [("ibkr", "not_found"), ("polygon", "ok")]
            assert broker.health().status == "healthy"

    run(scenario())


def test_symbols_asked_at_once_each_get_their_own_ibkr_snapshot(
    library: str, providers: FakeMarketDataServer, tmp_path: Path
) -> None:
    """Ten quotes asked together share the data connection and none gets another's price."""
    settings = chain_settings(providers, tmp_path)

    async def scenario() -> None:
        async with gateway_and_broker(library) as (ib, broker, _), httpx.AsyncClient() as http:
            for n in range(10):
                ib.set_price(f"S{n}", f"{10 + n}.50")
            chain = build_chain(
                settings,
                http=http,
                redis=None,
                prices=bundled(tmp_path),
                today=lambda: date(2022, 12, 28),
                ibkr=broker_quotes(broker),
                limiter=SharedLimiter(None),
            )
            answers = await asyncio.gather(*(chain.answer(f"S{n}") for n in range(10)))
            assert [a.quote.last for a in answers] == [Decimal(f"{10 + n}.50") for n in range(10)]
            assert {a.served_by for a in answers} == {"ibkr"}

    run(scenario())
