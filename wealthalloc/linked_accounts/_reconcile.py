"""A broker's positions against ours: what differs, what arrives, what a broker vouches for.

A sync never overwrites the book. The broker's statement and the platform's lots can
disagree for good reasons (a trade not yet booked on one side, a transfer in flight,
a corporate action), so every difference becomes a reconciliation item a person
reads and settles. Two cases are acted on, because they lose nothing:

- a position the broker holds and the portfolio does not hold at all arrives as
  *pending* transfer-in lots (the statement's lots when it gives them, else one lot
  at the broker's average cost): visible, valued, but not sellable until confirmed;
- when the source is a broker we read directly (``verified``: IBKR, not a CSV a
  person uploaded), pending lots of a symbol are confirmed oldest first as far as
  the broker's quantity covers them beside the settled shares.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

_ZERO = Decimal(0)


class DifferenceKind(enum.StrEnum):
    MISSING_HERE = "missing_here"  # held at the broker, not in the portfolio
    MISSING_AT_BROKER = "missing_at_broker"  # held in the portfolio, not at the broker
    QUANTITY = "quantity_mismatch"
    CASH = "cash_mismatch"


@dataclass(frozen=True)
class StatementLot:
    """One lot as the broker reports it; ``acquired_at`` is unknown when the broker gives none."""

    quantity: Decimal
    cost_basis: Decimal
    acquired_at: date | None = None


@dataclass(frozen=True)
class BrokerPosition:
    """Shares of one symbol at the broker, with their total cost (and the lots, if the source has them)."""

    symbol: str
    quantity: Decimal
    cost_basis: Decimal
    lots: tuple[StatementLot, ...] = ()

    def arriving_lots(self) -> tuple[StatementLot, ...]:
        return self.lots or (StatementLot(self.quantity, self.cost_basis),)


@dataclass(frozen=True)
class BrokerSnapshot:
    positions: tuple[BrokerPosition, ...]
    cash: Decimal | None = None
    verified: bool = False


@dataclass(frozen=True)
class PendingLot:
    id: uuid.UUID
    shares: Decimal
    acquired_at: date


@dataclass(frozen=True)
class HeldPosition:
    """A symbol in the portfolio: settled shares (sellable) and pending transfer-in lots."""

    symbol: str
    settled: Decimal = _ZERO
    pending: tuple[PendingLot, ...] = ()

    @property
    def total(self) -> Decimal:
        return self.settled + sum((lot.shares for lot in self.pending), _ZERO)


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind
    symbol: str | None
    broker_quantity: Decimal | None = None
    platform_quantity: Decimal | None = None
    broker_cash: Decimal | None = None
    platform_cash: Decimal | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the item across syncs: a later sync updates it rather than adding one."""
        return self.kind.value, self.symbol or ""


@dataclass(frozen=True)
class Reconciliation:
    differences: tuple[Difference, ...]
    transfers_in: tuple[BrokerPosition, ...] = ()
    confirm: tuple[uuid.UUID, ...] = field(default_factory=tuple)


def reconcile(snapshot: BrokerSnapshot, held: Mapping[str, HeldPosition], cash: Decimal) -> Reconciliation:
    """The differences between ``snapshot`` and the portfolio (``held`` by symbol, its ``cash``)."""
    broker = _merged(snapshot.positions)
    differences: list[Difference] = []
    arriving: list[BrokerPosition] = []
    confirm: list[uuid.UUID] = []
    for symbol in sorted(broker.keys() | held.keys()):
        at_broker = broker.get(symbol)
        ours = held.get(symbol, HeldPosition(symbol))
        theirs = at_broker.quantity if at_broker is not None else _ZERO
        if snapshot.verified:
            confirm.extend(_covered(ours, theirs))
        if theirs == ours.total:
            continue
        if ours.total == 0 and at_broker is not None:
            differences.append(Difference(DifferenceKind.MISSING_HERE, symbol, theirs, _ZERO))
            arriving.append(at_broker)
        elif theirs == 0:
            differences.append(Difference(DifferenceKind.MISSING_AT_BROKER, symbol, _ZERO, ours.total))
        else:
            differences.append(Difference(DifferenceKind.QUANTITY, symbol, theirs, ours.total))
    if snapshot.cash is not None and snapshot.cash != cash:
        differences.append(
            Difference(DifferenceKind.CASH, None, broker_cash=snapshot.cash, platform_cash=cash)
        )
    return Reconciliation(tuple(differences), tuple(arriving), tuple(confirm))


def _covered(ours: HeldPosition, broker_quantity: Decimal) -> list[uuid.UUID]:
    """Pending lots the broker's quantity accounts for after the settled shares, oldest first."""
    room = broker_quantity - ours.settled
    confirmed = []
    for lot in sorted(ours.pending, key=lambda lot: (lot.acquired_at, str(lot.id))):
        if lot.shares > room:
            break
        room -= lot.shares
        confirmed.append(lot.id)
    return confirmed


def _merged(positions: Sequence[BrokerPosition]) -> dict[str, BrokerPosition]:
    """One position per symbol (a statement may list a symbol on several lines); empty ones dropped."""
    merged: dict[str, BrokerPosition] = {}
    for position in positions:
        seen = merged.get(position.symbol)
        if seen is not None:
            position = BrokerPosition(
                position.symbol,
                seen.quantity + position.quantity,
                seen.cost_basis + position.cost_basis,
                seen.arriving_lots() + position.arriving_lots(),
            )
        merged[position.symbol] = position
    return {symbol: p for symbol, p in merged.items() if p.quantity != 0}
