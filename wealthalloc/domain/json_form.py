"""The form every answer and stored answer gives a value: decimals and ids as strings, times and days
in ISO form. One rule, whether a whole answer goes through JSON text (``jsonable``) or an order is
shown field by field without that round trip (``Order.described``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def json_value(value: Any) -> Any:
    """A value JSON has no type for, as answers write it (``json.dumps``'s ``default``)."""
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def json_scalar(value: Any) -> Any:
    """One scalar as it reads back from an answer's JSON: what JSON has a type for stays as it is, a
    string (an ``OrderStatus`` too) becomes a plain one, anything else goes through :func:`json_value`."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)
    return json_value(value)
