"""Order news a broker pushes to us by webhook, in the shapes the gateway already handles.

A broker (or a back office relaying one) may report fills and order states by
signed webhook instead of, or besides, the session the gateway holds. Each
message is checked here when it arrives (a malformed one is refused with 400
and nothing is stored), kept as a receipt, then applied by the gateway through
the owning shard like any fill: by its ``fill_id``, so a fill the gateway also
saw on its own session is applied once.

Message shapes (JSON, signed like our outgoing webhooks)::

    {"id": "msg-1", "type": "execution", "order_id": "<our order id>", "fill_id": "ib:0001f4e8.1",
     "quantity": "10", "price": "151.25", "commission": "1.00", "executed_at": "2026-12-01T15:30:00Z"}
    {"id": "msg-2", "type": "order_status", "order_id": "<our order id>", "status": "cancelled",
     "reason": "cancelled at the venue"}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from wealthalloc.trading.tickets import Execution, StatusChange

SOURCE = "broker"

Positive = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=6, allow_inf_nan=False)]
NonNegative = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=6, allow_inf_nan=False)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    order_id: uuid.UUID


class ExecutionMessage(_Message):
    type: Literal["execution"]
    fill_id: str = Field(min_length=1, max_length=200)
    quantity: Positive
    price: Positive
    commission: NonNegative = Decimal(0)
    executed_at: datetime
    broker_exec_id: str | None = Field(default=None, max_length=200)

    def news(self) -> Execution:
        return Execution(
            fill_id=self.fill_id,
            order_id=self.order_id,
            quantity=self.quantity,
            price=self.price,
            commission=self.commission,
            executed_at=self.executed_at,
            broker_exec_id=self.broker_exec_id,
        )


class StatusMessage(_Message):
    type: Literal["order_status"]
    status: Literal["submitted", "cancelled", "rejected", "expired"]
    broker_order_id: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=500)

    def news(self) -> StatusChange:
        return StatusChange(self.order_id, self.status, self.broker_order_id, self.reason)


BrokerMessage = Annotated[ExecutionMessage | StatusMessage, Field(discriminator="type")]
_ADAPTER: TypeAdapter[ExecutionMessage | StatusMessage] = TypeAdapter(BrokerMessage)


class MalformedMessage(ValueError):
    """The message is not one of the shapes above; ``fields`` names what is wrong."""

    def __init__(self, fields: list[str]) -> None:
        super().__init__(f"not a broker message ({', '.join(fields) or 'shape'})")
        self.fields = fields


def parse(document: Mapping[str, Any]) -> ExecutionMessage | StatusMessage:
    try:
        return _ADAPTER.validate_python(dict(document))
    except ValidationError as exc:
        fields = [".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:5]]
        raise MalformedMessage(fields) from exc
