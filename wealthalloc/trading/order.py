"""An order of record: one row of ``orders``, as the desk, the gateway and the API read it.

The desk decides with it (is it open, what a fill does to it), the gateway hands it to a broker as a
:class:`~wealthalloc.trading.tickets.Ticket`, and the API shows it (:meth:`Order.described`). Typed
fields, where the row was a dict read by string keys in some seventy places, so a reader and mypy can
follow a field from the table to the answer. Pure data: no broker, no database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from wealthalloc.domain.json_form import json_scalar
from wealthalloc.trading import rules
from wealthalloc.trading.status import OrderStatus
from wealthalloc.trading.tickets import Execution, OrderType, Side, Ticket, TimeInForce


@dataclass(frozen=True, slots=True)
class Order:
    """An order as PostgreSQL holds it; the field names are the table's columns."""

    id: uuid.UUID
    portfolio_id: uuid.UUID
    user_id: uuid.UUID
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce
    status: OrderStatus
    filled_quantity: Decimal
    average_fill_price: Decimal | None
    reserved_cash: Decimal
    broker: str
    broker_order_id: str | None
    reject_reason: str | None
    lot_method: str | None
    lot_ids: tuple[uuid.UUID, ...] | None  # the lots a sell named (specific identification)
    price_cap: Decimal | None
    market_date: date | None
    origin: str
    submitted_at: datetime | None
    created_date: datetime
    updated_date: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Order:
        """``row`` has every column of :data:`COLUMNS` (``lot_ids`` as JSON text or a list of ids)."""
        values = {name: row[name] for name in COLUMNS}
        values["status"] = OrderStatus(values["status"])
        lot_ids = values["lot_ids"]
        if isinstance(lot_ids, str):
            lot_ids = json.loads(lot_ids)
        values["lot_ids"] = None if lot_ids is None else tuple(uuid.UUID(str(i)) for i in lot_ids)
        return cls(**values)

    @property
    def is_open(self) -> bool:
        """Still working: it holds cash or shares back, may fill, may be cancelled."""
        return self.status.is_open

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    def filled_by(self, execution: Execution) -> rules.FillApplied:
        """What ``execution`` does to the order as it stands (its fills so far, its reservation)."""
        return rules.apply_fill(
            side=self.side,
            status=self.status,
            quantity=self.quantity,
            filled=self.filled_quantity,
            average=self.average_fill_price,
            reserved=self.reserved_cash,
            fill_quantity=execution.quantity,
            fill_price=execution.price,
            commission=execution.commission,
        )

    def with_status(self, status: OrderStatus, broker_order_id: str | None = None) -> Order:
        """The order moved to ``status``, keeping its broker id unless the broker gave one."""
        return replace(self, status=status, broker_order_id=broker_order_id or self.broker_order_id)

    def ticket(self) -> Ticket:
        """The order as a broker sees it."""
        return Ticket(
            order_id=self.id,
            user_id=self.user_id,
            portfolio_id=self.portfolio_id,
            symbol=self.symbol,
            side=self.side,
            quantity=self.quantity,
            order_type=self.order_type,
            limit_price=self.limit_price,
            stop_price=self.stop_price,
            time_in_force=self.time_in_force,
            filled_quantity=self.filled_quantity,
            broker_order_id=self.broker_order_id,
            created_at=self.created_date,
            price_cap=self.price_cap,
            market_date=self.market_date,
        )

    def light(self) -> dict[str, Any]:
        """What the gateway needs back: the order's state, not its fills."""
        return {"id": str(self.id), "status": str(self.status), "filled_quantity": str(self.filled_quantity)}

    def described(self, fills: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
        """The order as the API answers it: every column, what remains to fill, and its fills
        (``None`` where a list does not read them), JSON-ready."""
        shown: dict[str, Any] = {name: json_scalar(getattr(self, name)) for name in _SCALARS}
        shown["lot_ids"] = None if self.lot_ids is None else [str(i) for i in self.lot_ids]
        shown["remaining_quantity"] = str(self.remaining)
        shown["fills"] = None if fills is None else [{k: json_scalar(v) for k, v in f.items()} for f in fills]
        return shown


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Order))
_SCALARS = tuple(name for name in COLUMNS if name != "lot_ids")  # the named lots are a list
