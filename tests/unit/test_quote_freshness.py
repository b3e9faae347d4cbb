"""The stale-quote rule of market orders: a market order needs a fresh quote, a limit order never does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wealthalloc.domain.quote_freshness import QuoteSeen, StaleQuote, is_fresh, require_fresh_quote

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
LIMIT_S = 900.0


def seen(age_s: float, *, stale: bool = False, source: str = "polygon") -> QuoteSeen:
    return QuoteSeen(symbol="AAPL", as_of=NOW - timedelta(seconds=age_s), source=source, stale=stale)


def test_a_market_order_against_a_quote_within_the_limit_passes() -> None:
    require_fresh_quote("market", seen(LIMIT_S), now=NOW, max_age_s=LIMIT_S)


def test_a_market_order_against_a_quote_older_than_the_limit_is_refused_naming_the_quote() -> None:
    with pytest.raises(StaleQuote) as caught:
        require_fresh_quote("market", seen(3600), now=NOW, max_age_s=LIMIT_S)
    refused = caught.value
    assert (refused.symbol, refused.source, refused.as_of) == ("AAPL", "polygon", NOW - timedelta(hours=1))
    assert (refused.age_s, refused.max_age_s) == (3600.0, LIMIT_S)
    said = str(refused)
    assert "AAPL" in said and "polygon" in said and "2026-03-02T14:00:00+00:00" in said
    assert "at most 900 s old" in said


def test_a_quote_marked_stale_is_refused_however_young_its_price() -> None:
    """The cache's last-known quote, served after the providers failed, is stale by being a fallback."""
    with pytest.raises(StaleQuote):
        require_fresh_quote("market", seen(5, stale=True, source="cache"), now=NOW, max_age_s=LIMIT_S)
    with pytest.raises(StaleQuote, match="5 s old. Place a limit order"):
        require_fresh_quote("market", seen(5, stale=True), now=NOW, max_age_s=0)


@pytest.mark.parametrize("order_type", ["limit", "stop", "stop_limit"])
def test_orders_that_carry_their_own_price_are_never_refused_for_an_old_quote(order_type: str) -> None:
    require_fresh_quote(order_type, seen(86_400, stale=True), now=NOW, max_age_s=LIMIT_S)


def test_without_a_quote_the_rule_leaves_the_order_to_the_venue() -> None:
    require_fresh_quote("market", None, now=NOW, max_age_s=LIMIT_S)


def test_a_limit_of_zero_trusts_any_quote_not_marked_stale() -> None:
    assert is_fresh(seen(10 * 86_400), now=NOW, max_age_s=0)
    assert not is_fresh(seen(10 * 86_400), now=NOW, max_age_s=LIMIT_S)


def test_age_counts_from_the_as_of_moment_and_a_naive_stamp_is_utc() -> None:
    naive = QuoteSeen(symbol="KO", as_of=datetime(2026, 3, 2, 14, 59), source="ibkr", stale=False)
    assert naive.age_seconds(NOW) == 60.0
    ahead = QuoteSeen(symbol="KO", as_of=NOW + timedelta(seconds=3), source="ibkr", stale=False)
    assert ahead.age_seconds(NOW) == 0.0  # a provider's clock a little ahead is not a negative age
