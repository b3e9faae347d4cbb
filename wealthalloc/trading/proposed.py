"""An order a plan proposes: a rebalance, a recommendation. One type for both.

Nothing is sent anywhere until the plan is carried out, as a market day order
at the desk (:meth:`wealthalloc.trading.desk.OrderDesk.place_many`). Plans add
values up exactly (``value``), so the cash a plan keeps back is never off by
rounding; what a person reads (``estimated_value``) is money, at the four places
cash is kept in (:data:`~wealthalloc.domain.money.MONEY`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from wealthalloc.domain.money import money
from wealthalloc.trading.tickets import Side


@dataclass(frozen=True)
class ProposedOrder:
    """``price`` is the one the plan was made at (today's close); ``reason`` says why, when the plan
    has one to give (a rebalance names the row outside its band that the order brings back)."""

    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    reason: str = ""

    @property
    def value(self) -> Decimal:
        """``quantity × price``, exact: what plans add up and hold against the cash."""
        return self.quantity * self.price

    @property
    def estimated_value(self) -> Decimal:
        """The value as a person reads it, in money (four places, as cash is kept)."""
        return money(self.value)

    def with_quantity(self, quantity: Decimal) -> ProposedOrder:
        return ProposedOrder(self.symbol, self.side, quantity, self.price, self.reason)

    def as_dict(self) -> dict[str, str]:
        shown = {
            "symbol": self.symbol,
            "side": self.side,
            "quantity": format(self.quantity, "f"),
            "price": format(self.price, "f"),
            "estimated_value": format(self.estimated_value, "f"),
        }
        return {**shown, "reason": self.reason} if self.reason else shown
