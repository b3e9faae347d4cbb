"""What the API's envelope writes: money and ids as strings, never floats, and for every kind of
value the same JSON FastAPI's own encoder would give (the envelope walks plain data itself)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel

from serve_apps.api.envelope import _ENCODERS, encode
from wealthalloc.trading.status import OrderStatus


class Side(enum.Enum):
    BUY = "buy"


class Money(BaseModel):
    amount: Decimal


@dataclass
class Fill:
    quantity: Decimal
    at: datetime


def test_money_and_ids_leave_as_strings() -> None:
    order_id = uuid.UUID("12345678-1234-5678-1234-567812345678")

    assert encode({"id": order_id, "cash": Decimal("1234.5600"), "shares": [Decimal("2.5")]}) == {
        "id": "12345678-1234-5678-1234-567812345678",
        "cash": "1234.5600",
        "shares": ["2.5"],
    }


def test_every_kind_of_value_encodes_as_fastapi_would() -> None:
    value = {
        "text": "x",
        "count": 3,
        "ratio": 0.25,
        "flag": True,
        "nothing": None,
        "day": date(2026, 12, 4),
        "moment": datetime(2026, 12, 4, 15, 30, tzinfo=UTC),
        "status": OrderStatus.FILLED,
        "side": Side.BUY,
        "pair": (1, Decimal("2")),
        "model": Money(amount=Decimal("9.99")),
        "fill": Fill(Decimal("1"), datetime(2026, 12, 4, tzinfo=UTC)),
        "nested": [{"lots": [{"basis": Decimal("5.0000")}]}],
        uuid.UUID(int=7): "a uuid key",
        "symbols": {"AAPL", "KO"},
    }
    expected = jsonable_encoder(value, custom_encoder=_ENCODERS)

    encoded = encode(value)

    assert {k: v for k, v in encoded.items() if k != "symbols"} == {
        k: v for k, v in expected.items() if k != "symbols"
    }
    assert sorted(encoded["symbols"]) == sorted(expected["symbols"]) == ["AAPL", "KO"]
