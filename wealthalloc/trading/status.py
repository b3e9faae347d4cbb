"""An order's statuses, and which of them are still working: the one definition.

An open order (pending, submitted, partially filled) holds cash (a buy's
reservation) or shares (a sell's quantity) back, may still fill, and may be
cancelled; every other status is final. The domain's rules, the storage
queries, the brokers and the API read them here. ``OrderStatus`` is a
``StrEnum``: it compares equal to, serialises as and is stored as its text,
so rows read back from PostgreSQL compare with it directly.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATUSES


OPEN_STATUSES: tuple[OrderStatus, ...] = (
    OrderStatus.PENDING,
    OrderStatus.SUBMITTED,
    OrderStatus.PARTIALLY_FILLED,
)
FINAL_STATUSES: tuple[OrderStatus, ...] = tuple(s for s in OrderStatus if s not in OPEN_STATUSES)
