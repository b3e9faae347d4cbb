"""A replica that quotes through the market-data providers closes their pooled HTTP client when it
shuts down, so no sockets outlive it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from serve_apps.api.resources import Resources
from tests.fakes.market_data_server import FakeMarketDataServer
from wealthalloc.config import Settings

pytestmark = pytest.mark.integration


def test_the_providers_http_client_closes_with_the_replica(data_dir: Path) -> None:
    with FakeMarketDataServer() as server:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=data_dir,
            polygon_api_key="test-key",
            polygon_base_url=server.url,
            market_data_chain=["polygon", "bundled"],
        )

        async def scenario() -> None:
            resources = Resources(settings)
            quote = await resources.quote_source("AAPL")
            http = resources.quote_source.http
            assert quote.symbol == "AAPL" and http is not None and not http.is_closed
            await resources.close()
            assert http.is_closed and "quote_source" not in resources.__dict__

        asyncio.run(scenario())
