"""Tax lots and which of them a sale relieves.

A position is the sum of its open lots; each lot keeps its own acquisition
date and basis because the tax on a sale depends on exactly which shares were
sold. The relief method decides that:

- FIFO: the oldest lots first (the IRS default when no lot is identified);
- HIFO: the highest basis per share first, which realises the smallest gain
  (or largest loss) — the usual choice for tax-aware selling;
- specific: the lots the seller names, in the order named (IRS "specific
  identification", which needs the lots identified at the time of sale).

Basis is relieved pro rata within a lot, and the last shares of a lot take
whatever basis remains, so a lot sold in several pieces relieves exactly its
basis in total, with no rounding left behind.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from wealthalloc.domain.money import money


class LotMethod(enum.StrEnum):
    FIFO = "fifo"
    HIFO = "hifo"
    SPECIFIC = "specific"


class Term(enum.StrEnum):
    SHORT = "short"
    LONG = "long"


class InsufficientShares(ValueError):
    def __init__(self, symbol: str, wanted: Decimal, available: Decimal) -> None:
        super().__init__(f"{symbol}: {wanted} shares wanted, {available} available")
        self.symbol, self.wanted, self.available = symbol, wanted, available


class UnknownLot(ValueError):
    pass


@dataclass(frozen=True)
class Lot:
    """An open lot: ``shares`` still held, ``cost_basis`` and ``adjusted_basis`` of those shares."""

    id: uuid.UUID
    symbol: str
    shares: Decimal
    cost_basis: Decimal
    adjusted_basis: Decimal
    acquired_at: date
    holding_period_start: date
    wash_sale_disallowed: Decimal = Decimal(0)

    @property
    def basis_per_share(self) -> Decimal:
        return self.adjusted_basis / self.shares if self.shares else Decimal(0)


@dataclass(frozen=True)
class LotRelief:
    """Shares taken from one lot by a sale, with the basis that goes with them."""

    lot: Lot
    shares: Decimal
    cost_basis: Decimal
    adjusted_basis: Decimal

    @property
    def remaining(self) -> Lot:
        """The lot after this relief (zero shares when it is used up)."""
        return replace(
            self.lot,
            shares=self.lot.shares - self.shares,
            cost_basis=self.lot.cost_basis - self.cost_basis,
            adjusted_basis=self.lot.adjusted_basis - self.adjusted_basis,
        )


def term(holding_period_start: date, sold_on: date) -> Term:
    """Long-term when held MORE than one year: sold after the first anniversary of the start."""
    try:
        anniversary = holding_period_start.replace(year=holding_period_start.year + 1)
    except ValueError:  # bought on 29 February
        anniversary = date(holding_period_start.year + 1, 3, 1)
    return Term.LONG if sold_on > anniversary else Term.SHORT


def order_lots(lots: Sequence[Lot], method: LotMethod, lot_ids: Sequence[uuid.UUID] = ()) -> list[Lot]:
    open_lots = [lot for lot in lots if lot.shares > 0]
    if method is LotMethod.FIFO:
        return sorted(open_lots, key=lambda lot: (lot.acquired_at, str(lot.id)))
    if method is LotMethod.HIFO:
        return sorted(open_lots, key=lambda lot: (-lot.basis_per_share, lot.acquired_at, str(lot.id)))
    by_id = {lot.id: lot for lot in open_lots}
    missing = [str(i) for i in lot_ids if i not in by_id]
    if missing or not lot_ids:
        raise UnknownLot(
            f"specific identification needs open lots of the position; unknown: {missing or 'none given'}"
        )
    if len(set(lot_ids)) != len(lot_ids):
        raise UnknownLot("a lot is named twice")
    return [by_id[i] for i in lot_ids]


def basis_of_part(
    shares: Decimal, held: Decimal, cost_basis: Decimal, adjusted_basis: Decimal
) -> tuple[Decimal, Decimal]:
    """The cost and adjusted basis of ``shares`` of a lot of ``held`` shares: pro rata, rounded to
    money, and the lot's own figures when all of it goes (so no rounding residue is left behind)."""
    if shares == held:
        return cost_basis, adjusted_basis
    fraction = shares / held
    return money(cost_basis * fraction), money(adjusted_basis * fraction)


def relieve(
    lots: Sequence[Lot], shares: Decimal, method: LotMethod, lot_ids: Sequence[uuid.UUID] = ()
) -> list[LotRelief]:
    """The lots (and shares of each) a sale of ``shares`` takes, by ``method``."""
    if shares <= 0:
        raise ValueError("shares to relieve must be positive")
    ordered = order_lots(lots, method, lot_ids)
    available = sum((lot.shares for lot in ordered), Decimal(0))
    if shares > available:
        symbol = lots[0].symbol if lots else "?"
        raise InsufficientShares(symbol, shares, available)
    reliefs: list[LotRelief] = []
    left = shares
    for lot in ordered:
        if left <= 0:
            break
        taken = min(left, lot.shares)
        cost, adjusted = basis_of_part(taken, lot.shares, lot.cost_basis, lot.adjusted_basis)
        reliefs.append(LotRelief(lot=lot, shares=taken, cost_basis=cost, adjusted_basis=adjusted))
        left -= taken
    return reliefs
