"""Orders before they reach a broker: what makes one valid, what it may cost, what it holds back.

Pre-trade checks run in the shard that owns the user, inside the transaction
that records the order, so two orders racing for the same cash or shares are
checked one after the other. Buying power is cash minus what open buys have
reserved (:class:`~wealthalloc.domain.buying_power.BuyingPower`, the one rule
every path that spends or withdraws cash uses); shares available are the open
lots minus what open sells will take.

A buy reserves its worst case: quantity times its price cap plus the
commission at that price. The cap is the limit price of a limit order, and
for market and stop orders the reference price plus a collar (price
protection, as brokers apply to market orders); a buy never fills above its
cap, so a fill never needs more cash than was set aside.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from typing import Any, Protocol

from wealthalloc.domain.buying_power import BuyingPower, HoldsCash
from wealthalloc.domain.buying_power import InsufficientFunds as InsufficientFunds
from wealthalloc.domain.money import SHARE_PLACES, money
from wealthalloc.trading.status import OPEN_STATUSES, OrderStatus
from wealthalloc.trading.tickets import OrderType, Side, TimeInForce

PRICE_PLACES = 6


class InvalidOrder(ValueError):
    """An order that can never be accepted as written; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.field = field
        self.details = details


class InsufficientShares(ValueError):
    def __init__(self, symbol: str, required: Decimal, available: Decimal) -> None:
        super().__init__(f"This order sells {required} {symbol}; {available} shares are available.")
        self.symbol, self.required, self.available = symbol, required, available


@dataclass(frozen=True)
class CommissionModel:
    """Per-share commission with a minimum and a cap as a fraction of the trade value (IBKR fixed)."""

    per_share: Decimal = Decimal("0.005")
    minimum: Decimal = Decimal("1.00")
    max_fraction: Decimal = Decimal("0.01")

    def __call__(self, quantity: Decimal, price: Decimal) -> Decimal:
        value = quantity * price
        fee = max(quantity * self.per_share, self.minimum)
        if self.max_fraction:
            fee = min(fee, value * self.max_fraction)
        return money(fee)


@dataclass(frozen=True)
class OrderRequest:
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = "day"


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def validate(request: OrderRequest, *, reference_price: Decimal, fractional_shares: bool) -> None:
    """Refuse what no market would take: the messages name the field and say what would work.

    ``reference_price`` is the current price of the symbol; stop prices are checked against it
    (a buy stop below the market would trigger at once, so it is a mistake, not an order).
    """
    q = request.quantity
    if q <= 0:
        raise InvalidOrder("quantity must be greater than zero.", "quantity", quantity=str(q))
    if _places(q) > SHARE_PLACES:
        raise InvalidOrder(f"quantity allows at most {SHARE_PLACES} decimal places.", "quantity")
    if q != q.to_integral_value():
        if not fractional_shares:
            raise InvalidOrder("This broker trades whole shares only.", "quantity", quantity=str(q))
        if request.order_type != "market" or request.time_in_force != "day":
            raise InvalidOrder(
                "Fractional quantities are only accepted on market day orders.", "quantity", quantity=str(q)
            )
    needs_limit = request.order_type in ("limit", "stop_limit")
    needs_stop = request.order_type in ("stop", "stop_limit")
    for name, value, needed in (
        ("limit_price", request.limit_price, needs_limit),
        ("stop_price", request.stop_price, needs_stop),
    ):
        if needed and value is None:
            raise InvalidOrder(f"A {request.order_type} order needs a {name}.", name)
        if not needed and value is not None:
            raise InvalidOrder(f"A {request.order_type} order takes no {name}.", name)
        if value is not None:
            if value <= 0:
                raise InvalidOrder(f"{name} must be greater than zero.", name)
            if _places(value) > 4:
                raise InvalidOrder(f"{name} allows at most 4 decimal places.", name)
    stop = request.stop_price
    if stop is not None:
        if request.side == "buy" and stop <= reference_price:
            raise InvalidOrder(
                f"A buy stop must be above the current price of {reference_price}.",
                "stop_price",
                stop_price=str(stop),
                current_price=str(reference_price),
            )
        if request.side == "sell" and stop >= reference_price:
            raise InvalidOrder(
                f"A sell stop must be below the current price of {reference_price}.",
                "stop_price",
                stop_price=str(stop),
                current_price=str(reference_price),
            )
    if request.order_type == "stop_limit":
        assert request.limit_price is not None and stop is not None
        if request.side == "buy" and request.limit_price < stop:
            raise InvalidOrder("A buy stop-limit's limit price must be at or above its stop.", "limit_price")
        if request.side == "sell" and request.limit_price > stop:
            raise InvalidOrder("A sell stop-limit's limit price must be at or below its stop.", "limit_price")


def price_cap(request: OrderRequest, *, reference_price: Decimal, collar: Decimal) -> Decimal | None:
    """The highest price a buy may fill at (None for sells: a sell never needs more cash)."""
    if request.side != "buy":
        return None
    if request.limit_price is not None:
        return request.limit_price
    base = max(reference_price, request.stop_price or reference_price)
    return (base * (1 + collar)).quantize(Decimal("0.0001"), rounding=ROUND_UP)


def reservation(
    request: OrderRequest, cap: Decimal | None, commission: CommissionModel, quantity: Decimal | None = None
) -> Decimal:
    """Cash an open buy holds back: its quantity at the cap, plus the commission at that price."""
    if request.side != "buy" or cap is None:
        return Decimal(0)
    q = request.quantity if quantity is None else quantity
    if q <= 0:
        return Decimal(0)
    return money(q * cap) + commission(q, cap)


class OpenOrder(HoldsCash, Protocol):
    """What the checks read of an open order (an :class:`~wealthalloc.trading.order.Order`)."""

    @property
    def symbol(self) -> str: ...

    @property
    def quantity(self) -> Decimal: ...

    @property
    def filled_quantity(self) -> Decimal: ...


def shares_available(held: Decimal, symbol: str, open_orders: Iterable[OpenOrder]) -> Decimal:
    """``held`` less what the open sells of ``symbol`` will still take."""
    committed = sum(
        (o.quantity - o.filled_quantity for o in open_orders if o.side == "sell" and o.symbol == symbol),
        Decimal(0),
    )
    return held - committed


def check_affordable(
    request: OrderRequest,
    *,
    reserve: Decimal,
    cash: Decimal,
    held: Decimal,
    open_orders: Sequence[OpenOrder],
) -> None:
    """Raise InsufficientFunds / InsufficientShares with what is required and what is available."""
    if request.side == "buy":
        BuyingPower.of(cash, open_orders).check_buy(reserve)
    else:
        free = shares_available(held, request.symbol, open_orders)
        if request.quantity > free:
            raise InsufficientShares(request.symbol, request.quantity, free)


@dataclass(frozen=True)
class FillApplied:
    """Everything one fill changes on the order and in the portfolio's cash, decided before a row is
    written: the desk only stores it (and relieves or opens the lots it names)."""

    filled: Decimal
    average: Decimal
    reserved: Decimal
    status: OrderStatus
    value: Decimal  # quantity × price, in money
    cash: Decimal  # the signed change of the portfolio's cash


def apply_fill(
    *,
    side: str,
    status: str,
    quantity: Decimal,
    filled: Decimal,
    average: Decimal | None,
    reserved: Decimal,
    fill_quantity: Decimal,
    fill_price: Decimal,
    commission: Decimal,
) -> FillApplied:
    """A fill on an order (its ``status``, ``quantity``, ``filled`` so far, ``average`` and
    ``reserved`` before it): the order after it and the cash it moves.

    The reservation shrinks in proportion to what is left, so a partly filled buy still holds
    exactly what its remainder could cost and a filled one holds nothing. A buy pays the value and
    the commission; a sell receives the value less the commission. A fill that raced a cancel at the
    venue still happened: it is applied, the order keeps its final status (``filled`` when this fill
    completes it) and holds no reservation any more.
    """
    new_filled = filled + fill_quantity
    if new_filled > quantity:
        raise ValueError(f"a fill of {fill_quantity} exceeds the order's open quantity {quantity - filled}")
    prior_value = (average or Decimal(0)) * filled
    new_average = ((prior_value + fill_price * fill_quantity) / new_filled).quantize(
        Decimal(1).scaleb(-PRICE_PLACES)
    )
    remaining_before = quantity - filled
    remaining_after = quantity - new_filled
    new_reserved = money(reserved * remaining_after / remaining_before) if remaining_after else Decimal(0)
    new_status = OrderStatus.FILLED if remaining_after == 0 else OrderStatus.PARTIALLY_FILLED
    if status not in OPEN_STATUSES:
        new_status = OrderStatus.FILLED if new_filled == quantity else OrderStatus(status)
        new_reserved = Decimal(0)
    value = money(fill_quantity * fill_price)
    cash = -(value + commission) if side == "buy" else value - commission
    return FillApplied(new_filled, new_average, new_reserved, new_status, value, cash)
