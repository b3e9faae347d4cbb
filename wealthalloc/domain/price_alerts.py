"""When a price alert fires: the rule, apart from where prices and alerts live.

An alert watches one symbol for a crossing of its level, upward (``above``) or
downward (``below``). It is set on the side it watches from, so that setting
it cannot fire it: an ``above`` alert needs a level over the current price.
It fires on the first price at or past the level and then never again; a
user who wants to hear about the next crossing sets a new alert.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

Direction = Literal["above", "below"]


class AlertOnWrongSide(ValueError):
    """The level is already reached at the current price: the alert would fire at once."""

    def __init__(self, direction: Direction, level: Decimal, current: Decimal) -> None:
        side = "under" if direction == "above" else "over"
        super().__init__(
            f"An alert for {direction} {level} needs a level {side} the current price {current};"
            f" the price is there already."
        )
        self.direction = direction
        self.level = level
        self.current = current


def check_level(direction: Direction, level: Decimal, current: Decimal) -> None:
    """Refuse an alert whose level the current price has already reached."""
    if reached(direction, level, current):
        raise AlertOnWrongSide(direction, level, current)


def reached(direction: Direction, level: Decimal, price: Decimal) -> bool:
    """True when ``price`` is at or past ``level`` in the watched direction."""
    return price >= level if direction == "above" else price <= level
