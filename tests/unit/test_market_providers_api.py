"""The API's quote path (serve_apps/api/resources.py) with and without provider keys.

No keys: the bundled closes answer exactly as before (source ``paper``, no
HTTP). With keys: the chain answers, and when only the cache could, the
API's QuoteCache serves its last quote marked stale instead of storing it
again as fresh. The chain's Redis parts are left out here (no Redis in unit
tests); tests/integration/test_market_providers.py has them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from serve_apps.api.resources import Resources
from tests.fakes.market_data_server import (
    ALPHA_VANTAGE,
    ALPHA_VANTAGE_KEY,
    LAST_PRICES,
    POLYGON,
    POLYGON_KEY,
    FakeMarketDataServer,
)
from wealthalloc.config import Settings
from wealthalloc.marketdata._bundled import _write_atomically, price_table


@pytest.fixture
def fake() -> Iterator[FakeMarketDataServer]:
    with FakeMarketDataServer() as server:
        yield server


def resources(tmp_path: Path, **overrides: Any) -> Resources:
    prices_dir = tmp_path / "prices"
    prices_dir.mkdir(exist_ok=True)
    closes = pd.Series([181.25, 182.5], index=pd.DatetimeIndex(["2022-12-27", "2022-12-28"]))
    _write_atomically(price_table(closes), prices_dir / "AAPL.parquet")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, market_clock_date=date(2022, 12, 28), **overrides
    )
    return Resources(settings=settings)


def test_without_keys_quotes_are_the_bundled_closes_as_before(tmp_path: Path) -> None:
    quote, from_cache = asyncio.run(resources(tmp_path).quotes.quote("AAPL"))
    assert not from_cache and quote.source == "paper" and quote.last == Decimal("182.5000")


def test_with_keys_the_chain_answers_and_falls_back_to_the_history(
    fake: FakeMarketDataServer, tmp_path: Path
) -> None:
    api = resources(
        tmp_path,
        polygon_api_key=POLYGON_KEY,
        polygon_base_url=fake.url,
        alpha_vantage_api_key=ALPHA_VANTAGE_KEY,
        alpha_vantage_base_url=fake.url,
        market_data_backoff_initial_seconds=0.01,
        market_data_stale_seconds=0,
    )

    async def go() -> list[Any]:
        live, _ = await api.quotes.quote("AAPL")
        fake.always(POLYGON, "server_error")
        fake.always(ALPHA_VANTAGE, "rate_limit")
        fallback, _ = await api.quotes.quote("AAPL")
        return [live, fallback]

    live, fallback = asyncio.run(go())
    assert live.source == "polygon" and live.last == Decimal(LAST_PRICES["AAPL"])
    assert fallback.source == "bundled" and fallback.last == Decimal("182.5000")
