"""Orders of record built in memory, for the tests of what reads them (the checks, buying power)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from wealthalloc.trading.order import Order
from wealthalloc.trading.status import OrderStatus

_WORKING = Order(
    id=uuid.UUID(int=1),
    portfolio_id=uuid.UUID(int=2),
    user_id=uuid.UUID(int=3),
    symbol="AAPL",
    side="buy",
    quantity=Decimal(1),
    order_type="market",
    limit_price=None,
    stop_price=None,
    time_in_force="day",
    status=OrderStatus.SUBMITTED,
    filled_quantity=Decimal(0),
    average_fill_price=None,
    reserved_cash=Decimal(0),
    broker="paper",
    broker_order_id=None,
    reject_reason=None,
    lot_method=None,
    lot_ids=None,
    price_cap=None,
    market_date=None,
    origin="api",
    submitted_at=None,
    created_date=datetime(2026, 1, 5, 15, 0, tzinfo=UTC),
    updated_date=datetime(2026, 1, 5, 15, 0, tzinfo=UTC),
)


def working(**fields: Any) -> Order:
    """A submitted market buy of one AAPL, with ``fields`` changed (``status`` may be its text)."""
    if "status" in fields:
        fields["status"] = OrderStatus(fields["status"])
    return replace(_WORKING, id=uuid.uuid4(), **fields)
