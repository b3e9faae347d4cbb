"""Request field types shared by routes: decimal strings with a fixed number of places."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator

from wealthalloc.domain.money import CASH_PLACES, SHARE_PLACES, parse_decimal


def _decimal(places: int, *, allow_negative: bool = False, allow_zero: bool = False) -> Any:
    def parse(value: Any) -> Decimal:
        if isinstance(value, Decimal):
            value = str(value)
        if allow_zero and isinstance(value, str) and value.strip() in {"0", "0.0", "0.00"}:
            return Decimal(0)
        return parse_decimal(value, places=places, allow_negative=allow_negative)

    return BeforeValidator(parse)


# Money as a decimal string, never a JSON number: 0.1 as a float is not 0.1.
SignedCash = Annotated[Decimal, _decimal(CASH_PLACES, allow_negative=True)]
PositiveShares = Annotated[Decimal, _decimal(SHARE_PLACES)]
NonNegativeMoney = Annotated[Decimal, _decimal(4, allow_zero=True)]
# An order's quantity: the sign and zero are the order rules' to refuse (INVALID_TRADE), not the parser's.
OrderQuantity = Annotated[Decimal, _decimal(SHARE_PLACES, allow_negative=True, allow_zero=True)]
PositivePrice = Annotated[Decimal, _decimal(4)]
