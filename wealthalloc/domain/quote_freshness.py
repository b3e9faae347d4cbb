"""Whether a market order may be placed against the quote we have for its symbol.

A market order takes whatever price the venue has when it arrives; the quote
the investor saw is their only idea of that price. When the platform's only
quote is stale (kept from before the providers failed, or priced longer ago
than ``market_data_stale_seconds``), that idea may be far from the market, so
a market order is refused and says which quote it would have trusted. A limit
order carries its own worst price and is never refused for an old quote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class QuoteSeen:
    """The quote an order is placed against: when its price is as of, who gave it, whether it is stale."""

    symbol: str
    as_of: datetime
    source: str
    stale: bool

    def age_seconds(self, now: datetime) -> float:
        """Seconds from the price's as-of moment to ``now``, never negative (a naive stamp is UTC)."""
        stamp = self.as_of if self.as_of.tzinfo is not None else self.as_of.replace(tzinfo=UTC)
        return max(0.0, (now - stamp).total_seconds())


class StaleQuote(ValueError):
    """A market order met a quote too old to trust; the fields say which quote and by how much."""

    def __init__(self, seen: QuoteSeen, *, age_s: float, max_age_s: float) -> None:
        self.symbol = seen.symbol
        self.as_of = seen.as_of
        self.source = seen.source
        self.age_s = age_s
        self.max_age_s = max_age_s
        limit = f"; market orders need one at most {max_age_s:g} s old" if max_age_s > 0 else ""
        super().__init__(
            f"The only quote for {seen.symbol} is stale: as of {seen.as_of.isoformat()} from"
            f" {seen.source}, {age_s:.0f} s old{limit}. Place a limit order, or try again when a"
            " fresh quote arrives."
        )


def is_fresh(seen: QuoteSeen, *, now: datetime, max_age_s: float) -> bool:
    """Fresh unless marked stale or, with a limit (``max_age_s`` > 0), priced longer ago than it."""
    if seen.stale:
        return False
    return max_age_s <= 0 or seen.age_seconds(now) <= max_age_s


def require_fresh_quote(order_type: str, seen: QuoteSeen | None, *, now: datetime, max_age_s: float) -> None:
    """Refuse a market order whose quote is stale; every other order type, or no quote at all, passes.

    No quote means the order is priced by the venue's own market (the paper
    venue's close, the broker's book), which is the check that then applies.

    Raises
    ------
    StaleQuote
        For a market order against a stale quote.
    """
    if order_type != "market" or seen is None:
        return
    if not is_fresh(seen, now=now, max_age_s=max_age_s):
        raise StaleQuote(seen, age_s=seen.age_seconds(now), max_age_s=max_age_s)
