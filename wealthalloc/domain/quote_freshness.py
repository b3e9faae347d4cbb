"""Whether a market order may be placed against the quote we have for its symbol.

A market order takes whatever price the venue has when it arrives; the quote
the investor saw is their only idea of that price. When the platform's only
quote is stale (kept from before the providers failed, or priced longer ago
than ``market_data_stale_seconds``), that idea may be far from the market, so
a market order is refused and says which quote it would have trusted. A limit
order carries its own worst price and is never refused for an old quote.
"""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass(frozen=True)
class PlannedOrder:
    """One order of a plan that places several at once (a rebalance, a harvest, a recommendation)."""

    symbol: str
    order_type: str = "market"


class StaleQuotes(ValueError):
    """A plan's market orders met stale quotes; ``stale`` names each one (in the plan's order)."""

    def __init__(self, stale: list[StaleQuote]) -> None:
        self.stale = stale
        names = ", ".join(s.symbol for s in stale)
        which = f"quote for {names} is" if len(stale) == 1 else f"quotes for {names} are"
        super().__init__(
            f"The only {which} stale, so none of these orders is placed. " + " ".join(str(s) for s in stale)
        )


def stale_quotes(
    orders: list[PlannedOrder],
    seen: Mapping[str, QuoteSeen | None],
    *,
    now: datetime,
    max_age_s: float,
) -> list[StaleQuote]:
    """The stale quotes the plan's market orders would execute on, one per symbol, in plan order.

    ``seen`` maps a symbol to the quote read for it (None or absent: no quote, priced by the venue).
    """
    found: dict[str, StaleQuote] = {}
    for order in orders:
        if order.symbol in found:
            continue
        try:
            require_fresh_quote(order.order_type, seen.get(order.symbol), now=now, max_age_s=max_age_s)
        except StaleQuote as exc:
            found[order.symbol] = exc
    return list(found.values())


def require_fresh_quotes(
    orders: list[PlannedOrder],
    seen: Mapping[str, QuoteSeen | None],
    *,
    now: datetime,
    max_age_s: float,
) -> None:
    """Refuse a whole plan when any of its market orders would execute on a stale quote.

    Raises
    ------
    StaleQuotes
        Naming every stale quote, so one answer says all that has to come back fresh.
    """
    stale = stale_quotes(orders, seen, now=now, max_age_s=max_age_s)
    if stale:
        raise StaleQuotes(stale)


def quote_shown(seen: QuoteSeen | None, *, now: datetime, max_age_s: float) -> dict[str, object] | None:
    """What a preview shows of the quote an order would execute on: source, as-of, age, stale."""
    if seen is None:
        return None
    return {
        "source": seen.source,
        "as_of": seen.as_of,
        "age_seconds": round(seen.age_seconds(now)),
        "stale": not is_fresh(seen, now=now, max_age_s=max_age_s),
    }
