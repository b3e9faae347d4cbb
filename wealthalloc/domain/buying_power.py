"""How much of a portfolio's cash may be spent, and how much may leave it.

Cash is one number in the book, but not all of it is free. Two things hold
part of it back:

- an open buy (pending, submitted or partially filled) reserves the worst
  case of what its unfilled remainder can cost (:func:`wealthalloc.trading.rules.reservation`);
  that cash belongs to the order until it fills, is cancelled or expires;
- a sale's proceeds are credited when the sale fills, but they *settle* only
  on the next trading day (T+1, the US equities cycle since May 2024). Until
  then they may buy, as a cash account's unsettled proceeds may, but they may
  not be withdrawn: the money has not arrived from the clearing house yet.

So the spendable cash (buying power) is cash minus reservations, and the
withdrawable cash is that minus the unsettled proceeds, never below zero.
Every path that takes cash out (orders, withdrawals, rebalancing, harvests,
accepted recommendations) decides with :class:`BuyingPower`, so the rule is
written once. Buys are taken to spend unsettled proceeds first, which is the
conservative reading: a withdrawal never counts on money that has not settled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

from wealthalloc.domain.money import money
from wealthalloc.trading.status import OPEN_STATUSES

SETTLEMENT_DAYS = 1
"""Trading days after the trade date on which a sale's proceeds settle (T+1)."""

_ZERO = Decimal(0)


class InsufficientFunds(ValueError):
    """More cash asked for than is available; ``available`` is what could be taken instead."""

    def __init__(self, required: Decimal, available: Decimal, *, withdrawal: bool = False) -> None:
        what = "This withdrawal needs" if withdrawal else "This order needs"
        kind = "withdrawable cash" if withdrawal else "buying power"
        super().__init__(f"{what} {required} of {kind}; {available} is available.")
        self.required, self.available = required, available


@dataclass(frozen=True)
class SaleFill:
    """One fill of a sell order: the day it traded on and what it credited to cash."""

    traded_on: date
    quantity: Decimal
    price: Decimal
    commission: Decimal

    @property
    def proceeds(self) -> Decimal:
        """The cash the fill credited: its value less the commission (as the fill books it)."""
        return money(self.quantity * self.price) - self.commission


def settles_on(
    traded_on: date, next_trading_day: Callable[[date], date], days: int = SETTLEMENT_DAYS
) -> date:
    """The trading day a trade made on ``traded_on`` settles: ``days`` trading days later."""
    day = traded_on
    for _ in range(days):
        day = next_trading_day(day)
    return day


def unsettled_proceeds(
    sales: Iterable[SaleFill], *, today: date, next_trading_day: Callable[[date], date]
) -> Decimal:
    """What the sales credited that has not settled by ``today`` (settled on the settlement day itself)."""
    return sum(
        (s.proceeds for s in sales if settles_on(s.traded_on, next_trading_day) > today),
        _ZERO,
    )


class HoldsCash(Protocol):
    """What an order says of the cash it holds back (an :class:`~wealthalloc.trading.order.Order`)."""

    @property
    def side(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def reserved_cash(self) -> Decimal: ...


def reserved_by(open_orders: Iterable[HoldsCash]) -> Decimal:
    """Cash held back by the open buys among ``open_orders``."""
    return sum(
        (o.reserved_cash for o in open_orders if o.side == "buy" and o.status in OPEN_STATUSES),
        _ZERO,
    )


@dataclass(frozen=True)
class BuyingPower:
    """A portfolio's cash split into what is held back and what is free.

    Attributes
    ----------
    cash : Decimal
        The cash balance (settled and unsettled, reserved or not).
    reserved : Decimal
        Held back by open buys.
    unsettled : Decimal
        Sale proceeds not yet settled: they may buy, they may not be withdrawn.
    """

    cash: Decimal
    reserved: Decimal = _ZERO
    unsettled: Decimal = _ZERO

    @classmethod
    def of(
        cls, cash: Decimal, open_orders: Iterable[HoldsCash] = (), unsettled: Decimal = _ZERO
    ) -> BuyingPower:
        return cls(cash=cash, reserved=reserved_by(open_orders), unsettled=unsettled)

    @property
    def for_buys(self) -> Decimal:
        """What a new buy may reserve: unsettled proceeds count, reservations do not."""
        return self.cash - self.reserved

    @property
    def withdrawable(self) -> Decimal:
        """What may leave the portfolio: settled cash no open buy holds back."""
        return max(self.cash - self.reserved - self.unsettled, _ZERO)

    def check_buy(self, reserve: Decimal) -> None:
        """Raise :class:`InsufficientFunds` when a buy reserving ``reserve`` does not fit."""
        if reserve > self.for_buys:
            raise InsufficientFunds(reserve, money(max(self.for_buys, _ZERO)))

    def check_withdrawal(self, amount: Decimal) -> None:
        """Raise :class:`InsufficientFunds` when ``amount`` (positive) is more than is withdrawable."""
        if amount > self.withdrawable:
            raise InsufficientFunds(amount, money(self.withdrawable), withdrawal=True)

    def as_dict(self) -> dict[str, Decimal]:
        """The figures a portfolio shows: ``available_cash`` is what may be withdrawn."""
        return {
            "cash_balance": money(self.cash),
            "reserved_cash": money(self.reserved),
            "unsettled_cash": money(self.unsettled),
            "available_cash": money(self.withdrawable),
            "buying_power": money(max(self.for_buys, _ZERO)),
        }
