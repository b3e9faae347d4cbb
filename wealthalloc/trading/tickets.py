"""An order as it travels between the desk and a broker, and what comes back.

A broker only ever sees a ``Ticket`` (our order id travels with it, as IB's
``orderRef``). An ``Execution`` carries a ``fill_id`` that is the same every
time the broker reports the same execution (IB's execId, the paper broker's
order id and step), which is what lets the shard apply a fill exactly once
however often it hears of it. Pure data: no broker, no database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
TimeInForce = Literal["day", "gtc"]


@dataclass(frozen=True)
class Ticket:
    """An order as a broker needs it; ``filled_quantity`` is what we already hold fills for."""

    order_id: uuid.UUID
    user_id: uuid.UUID
    portfolio_id: uuid.UUID
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = "day"
    filled_quantity: Decimal = Decimal(0)
    broker_order_id: str | None = None
    created_at: datetime | None = None
    # A buy never fills above this (price protection); None for sells.
    price_cap: Decimal | None = None
    # The trading day the order was placed on: a day order expires once the market clock passes it.
    market_date: date | None = None

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity


@dataclass(frozen=True)
class Execution:
    """One fill, as the broker reported it. ``fill_id`` is stable across re-reports."""

    fill_id: str
    order_id: uuid.UUID
    quantity: Decimal
    price: Decimal
    commission: Decimal
    executed_at: datetime
    broker_exec_id: str | None = None


@dataclass(frozen=True)
class StatusChange:
    """A change of an order's state that is not a fill: accepted, cancelled, rejected, expired."""

    order_id: uuid.UUID
    status: Literal["submitted", "cancelled", "rejected", "expired"]
    broker_order_id: str | None = None
    reason: str | None = None
