"""A plan of several orders (rebalance, harvest, accepted recommendation) against the quotes it would meet."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from wealthalloc.domain.quote_freshness import (
    PlannedOrder,
    QuoteSeen,
    StaleQuotes,
    quote_shown,
    require_fresh_quotes,
    stale_quotes,
)
from wealthalloc.errors import ServiceError
from wealthalloc.portfolios.quotes import PlanQuotes

NOW = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
LIMIT = 900.0


def seen(symbol: str, *, age_s: float = 5, stale: bool = False, source: str = "polygon") -> QuoteSeen:
    return QuoteSeen(symbol=symbol, as_of=NOW - timedelta(seconds=age_s), source=source, stale=stale)


def test_a_plan_on_fresh_quotes_passes() -> None:
    orders = [PlannedOrder("AAPL"), PlannedOrder("KO")]
    quotes = {"AAPL": seen("AAPL"), "KO": seen("KO", age_s=LIMIT)}
    assert stale_quotes(orders, quotes, now=NOW, max_age_s=LIMIT) == []
    require_fresh_quotes(orders, quotes, now=NOW, max_age_s=LIMIT)


def test_every_stale_quote_is_named_once_in_plan_order_and_the_fresh_ones_are_not() -> None:
    orders = [PlannedOrder("KO"), PlannedOrder("AAPL"), PlannedOrder("JNJ"), PlannedOrder("KO")]
    quotes = {
        "AAPL": seen("AAPL", age_s=LIMIT + 1),  # older than the limit
        "KO": seen("KO", stale=True, source="cache"),  # kept from before the providers failed
        "JNJ": seen("JNJ"),
    }
    with pytest.raises(StaleQuotes) as caught:
        require_fresh_quotes(orders, quotes, now=NOW, max_age_s=LIMIT)
    stale = caught.value.stale
    assert [s.symbol for s in stale] == ["KO", "AAPL"]
    assert stale[0].source == "cache" and stale[1].age_s == pytest.approx(LIMIT + 1)
    assert "KO" in str(caught.value) and "AAPL" in str(caught.value) and "JNJ" not in str(caught.value)


def test_limit_orders_and_symbols_without_a_quote_are_not_refused() -> None:
    old = seen("AAPL", age_s=3600)
    assert stale_quotes([PlannedOrder("AAPL", "limit")], {"AAPL": old}, now=NOW, max_age_s=LIMIT) == []
    assert stale_quotes([PlannedOrder("XOM")], {"XOM": None}, now=NOW, max_age_s=LIMIT) == []
    assert stale_quotes([PlannedOrder("XOM")], {}, now=NOW, max_age_s=LIMIT) == []


def test_without_an_age_limit_only_a_kept_quote_is_stale() -> None:
    orders = [PlannedOrder("AAPL"), PlannedOrder("KO")]
    quotes = {"AAPL": seen("AAPL", age_s=86_400), "KO": seen("KO", stale=True)}
    assert [s.symbol for s in stale_quotes(orders, quotes, now=NOW, max_age_s=0)] == ["KO"]


def test_a_preview_shows_source_as_of_age_and_staleness() -> None:
    shown = quote_shown(seen("AAPL", age_s=3600), now=NOW, max_age_s=LIMIT)
    assert shown == {
        "source": "polygon",
        "as_of": NOW - timedelta(hours=1),
        "age_seconds": 3600,
        "stale": True,
    }
    assert quote_shown(seen("AAPL"), now=NOW, max_age_s=LIMIT)["stale"] is False  # type: ignore[index]
    assert quote_shown(None, now=NOW, max_age_s=LIMIT) is None


def test_plan_quotes_answer_409_quote_stale_naming_each_stale_quote() -> None:
    book = {"AAPL": seen("AAPL", age_s=3600), "KO": seen("KO"), "GE": seen("GE", stale=True)}
    asked: list[list[str]] = []

    async def lookup(symbols: list[str]) -> dict[str, QuoteSeen | None]:
        asked.append(symbols)
        return {s: book[s] for s in symbols if s in book}

    quotes = PlanQuotes(lookup, max_age_s=LIMIT, now=lambda: NOW)
    found = asyncio.run(quotes.seen(["AAPL", "KO", "AAPL", "GE", "XOM"]))
    assert asked == [["AAPL", "KO", "GE", "XOM"]]  # one reading, each symbol once
    assert found["XOM"] is None
    orders = [PlannedOrder(s) for s in ("AAPL", "KO", "GE", "XOM")]
    with pytest.raises(ServiceError) as caught:
        quotes.refuse_stale(orders, found)
    refused = caught.value.as_dict()
    assert (refused["status"], refused["code"]) == (409, "QUOTE_STALE")
    details = refused["details"]
    assert details["symbols"] == ["AAPL", "GE"] and details["max_age_seconds"] == LIMIT
    aapl = details["quotes"][0]
    assert aapl == {
        "symbol": "AAPL",
        "as_of": (NOW - timedelta(hours=1)).isoformat(),
        "source": "polygon",
        "age_seconds": 3600,
        "max_age_seconds": LIMIT,
    }
    quotes.refuse_stale([PlannedOrder("KO"), PlannedOrder("XOM")], found)  # fresh or unquoted: passes
