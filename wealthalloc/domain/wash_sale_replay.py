"""The replay behind :func:`wealthalloc.domain.wash_sale.realize`: one pass over a history in date order.

Lots and losses being replayed are mutable slots; the frozen records of
:mod:`wealthalloc.domain.wash_sale_records` are made from them once, at the
end. This module is the whole hot path of a gains report, so it is written
to compile with mypyc (``make install`` builds
``_wash_sale_replay_native``, see :mod:`wealthalloc.ops.native`): plain
classes with typed attributes, no dynamic attribute tricks. The Python
source stays the definition: the native build is used only while it was
built from this very file (its digest is checked at import).
"""

from __future__ import annotations

import datetime as dt
import heapq
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

from wealthalloc.domain.lots import InsufficientShares, Lot, LotMethod, basis_of_part, relieve, term
from wealthalloc.domain.money import money
from wealthalloc.domain.wash_sale_records import (
    WASH_SALE_DAYS,
    AccountLot,
    AccountType,
    IdentityGroups,
    InvalidHistory,
    Realization,
    RealizedLot,
    Side,
    Transaction,
    WashSale,
)

_ZERO = Decimal(0)
_WINDOW = dt.timedelta(days=WASH_SALE_DAYS)


class _Slot:
    """A lot being replayed, its figures kept as mutable fields.

    A lot changes on every sale that relieves it and every loss it absorbs;
    building a frozen :class:`Lot` for each change was most of the replay's
    time, so the fields change in place and a :class:`Lot` is built only when
    one is asked for (the open lots at the end, the reference's
    :func:`relieve`). An opening lot that never changes is handed back as given.
    """

    __slots__ = (
        "account_id",
        "account_type",
        "acquired_at",
        "adjusted",
        "cost",
        "holding_period_start",
        "id",
        "key",
        "opened_by_ref",
        "origin",
        "original_shares",
        "replacement",
        "shares",
        "symbol",
        "taxable",
        "version",
        "window_date",
        "candidate",
        "_disallowed",
        "_lot",
    )

    def __init__(
        self,
        *,
        lot_id: uuid.UUID,
        symbol: str,
        shares: Decimal,
        cost: Decimal,
        adjusted: Decimal,
        acquired_at: dt.date,
        holding_period_start: dt.date,
        account_id: str,
        account_type: AccountType,
        key: str,
        origin: int,
        original_shares: Decimal,
        opened_by_ref: str | None,
        replacement: bool = False,
        lot: Lot | None = None,
        disallowed: Decimal | None = None,
    ) -> None:
        self.id, self.symbol = lot_id, symbol
        self.shares, self.cost, self.adjusted = shares, cost, adjusted
        self.acquired_at, self.holding_period_start = acquired_at, holding_period_start
        self.window_date = acquired_at  # a lot replaces losses within 30 days of its acquisition
        self.account_id, self.account_type = account_id, account_type
        self.taxable = account_type.is_taxable
        self.key = key
        self.origin = origin  # the purchase this lot came from (splits share it)
        self.original_shares = original_shares
        self.opened_by_ref = opened_by_ref
        self.replacement = replacement
        # Still held and not yet a replacement: these shares can absorb a loss. Kept as a field,
        # not a property, because the window index reads it for every lot it steps over.
        self.candidate = not replacement and shares > 0
        self.version = 0
        self._lot = lot  # the Lot these fields equal, while they do
        # What the Lot says was disallowed until the figures change (None: adjusted minus cost).
        self._disallowed = disallowed

    @property
    def lot(self) -> Lot:
        """The lot as it stands, ``wash_sale_disallowed`` kept equal to adjusted minus cost basis."""
        if self._lot is None:
            self._lot = Lot(
                id=self.id,
                symbol=self.symbol,
                shares=self.shares,
                cost_basis=self.cost,
                adjusted_basis=self.adjusted,
                acquired_at=self.acquired_at,
                holding_period_start=self.holding_period_start,
                wash_sale_disallowed=self.adjusted - self.cost
                if self._disallowed is None
                else self._disallowed,
            )
        return self._lot

    def take(self, shares: Decimal, cost: Decimal, adjusted: Decimal) -> None:
        """Remove ``shares`` and their basis (sold, or split off into a lot of their own)."""
        self.shares -= shares
        self.cost -= cost
        self.adjusted -= adjusted
        self.candidate = self.candidate and self.shares > 0
        self._lot = self._disallowed = None

    def make_replacement(self) -> None:
        """These shares now replace sold shares, so they can absorb no other loss."""
        self.replacement = True
        self.candidate = False

    def absorb(self, disallowed: Decimal, holding_days: int) -> None:
        """Add a disallowed loss to the basis and move the holding period back by the sold shares' days."""
        self.adjusted += disallowed
        self.holding_period_start = min(
            self.holding_period_start, self.acquired_at - dt.timedelta(days=holding_days)
        )
        self._lot = self._disallowed = None

    def public(self) -> AccountLot:
        return AccountLot(
            account_id=self.account_id,
            account_type=self.account_type,
            lot=self.lot,
            original_shares=self.original_shares,
            is_replacement=self.replacement,
            opened_by_ref=self.opened_by_ref,
        )


# What one sale takes from one lot: (slot, shares, cost basis, adjusted basis). A plain tuple: one
# is made for every lot every sale relieves.
_Relief = tuple[_Slot, Decimal, Decimal, Decimal]


class _Loss:
    """A sale of one lot's shares at a loss: the realized row it will be, and how much of the loss
    still awaits replacement shares.

    The row's adjustment grows as replacements are matched, bought later as
    well as before, so the frozen :class:`RealizedLot` is built once, at the
    end (:meth:`realized`).
    """

    __slots__ = (
        "acquired_at",
        "adjustment",
        "candidate",
        "cost",
        "adjusted",
        "holding_days",
        "holding_period_start",
        "key",
        "loss",
        "loss_left",
        "origin",
        "permanent",
        "proceeds",
        "sale",
        "shares",
        "shares_left",
        "sold",
        "sold_lot_id",
        "window_date",
    )

    def __init__(
        self, *, sale: Transaction, key: str, relief: _Relief, proceeds: Decimal, loss: Decimal
    ) -> None:
        slot, shares, self.cost, self.adjusted = relief
        self.sale, self.key, self.origin, self.proceeds = sale, key, slot.origin, proceeds
        self.sold: dt.date = sale.date
        self.window_date = sale.date  # a loss takes replacement shares bought within 30 days of the sale
        # The sold lot as it was at the sale: it may be split or become a replacement later.
        self.sold_lot_id, self.acquired_at = slot.id, slot.acquired_at
        self.holding_period_start = slot.holding_period_start
        self.holding_days = (sale.date - slot.holding_period_start).days
        self.shares = self.shares_left = shares
        self.loss = self.loss_left = loss
        self.adjustment = self.permanent = _ZERO
        self.candidate = True  # some sold shares still wait for replacement shares

    def take(self, shares: Decimal) -> Decimal:
        """The loss of ``shares`` more sold shares; the last share matched takes what rounding left."""
        if shares == self.shares_left:
            part = self.loss_left
        else:
            part = min(money(self.loss * shares / self.shares), self.loss_left)
        self.shares_left -= shares
        self.loss_left -= part
        self.candidate = self.shares_left > 0
        return part

    def realized(self) -> RealizedLot:
        # A loss matched only with shares whose part rounds to nothing keeps the row's plain zeros.
        adjusted = bool(self.adjustment)
        sale = self.sale
        return RealizedLot(
            symbol=sale.symbol,
            account_id=sale.account_id,
            account_type=sale.account_type,
            lot_id=self.sold_lot_id,
            shares=self.shares,
            acquired_at=self.acquired_at,
            holding_period_start=self.holding_period_start,
            sold=self.sold,
            proceeds=self.proceeds,
            cost_basis=self.adjusted,
            unadjusted_cost=self.cost,
            adjustment=self.adjustment if adjusted else _ZERO,
            permanently_disallowed=self.permanent if adjusted else _ZERO,
            term=term(self.holding_period_start, self.sold),
            sale_ref=sale.ref,
        )


def _realized(sale: Transaction, relief: _Relief, proceeds: Decimal) -> RealizedLot:
    """The row of shares sold at a gain, or where no loss counts (an IRA): final as it is made."""
    slot, shares, cost, adjusted = relief
    return RealizedLot(
        symbol=sale.symbol,
        account_id=sale.account_id,
        account_type=sale.account_type,
        lot_id=slot.id,
        shares=shares,
        acquired_at=slot.acquired_at,
        holding_period_start=slot.holding_period_start,
        sold=sale.date,
        proceeds=proceeds,
        cost_basis=adjusted,
        unadjusted_cost=cost,
        adjustment=_ZERO,
        permanently_disallowed=_ZERO,
        term=term(slot.holding_period_start, sale.date),
        sale_ref=sale.ref,
    )


class _Index(Protocol):
    """Where the replay finds replacement shares for a loss, and losses for new shares."""

    def add_lot(self, slot: _Slot) -> None: ...

    def lots_before(self, key: str, sold: dt.date) -> Iterator[_Slot]: ...

    def add_loss(self, loss: _Loss) -> None: ...

    def losses_before(self, key: str, bought: dt.date) -> Iterator[_Loss]: ...


class _Windowed(Protocol):
    candidate: bool
    window_date: dt.date


_W = TypeVar("_W", bound=_Windowed)


class _Window(Generic[_W]):
    """The lots (or losses) of one identity group in date order, read from the front of the window on.

    The replay moves forward in time, so what has left the window (dated more
    than 30 days before today) can never match again and is dropped from the
    front. What stops being a candidate in the middle (a lot sold or used up
    as a replacement, a loss fully replaced) never becomes one again, so it is
    marked with a jump past it, and jumps are shortened as they are followed
    (path compression, as in union-find). Each entry is thus stepped over a
    bounded number of times instead of once per query: without the jumps, a
    long-held lot whose own sales cannot replace it, followed by many lots
    sold within the window, made every loss re-read all of them (O(n^2)).
    """

    __slots__ = ("head", "items", "jump")

    def __init__(self) -> None:
        self.items: list[_W] = []
        self.jump: list[int] = []  # jump[i] == i: not known dead; else where the next candidate may be
        self.head = 0

    def append(self, item: _W) -> None:
        self.jump.append(len(self.items))
        self.items.append(item)

    def _next_candidate(self, start: int) -> int:
        """The first position from ``start`` on holding a candidate (``len(items)`` if none)."""
        items, jump = self.items, self.jump
        end = len(items)
        if start < end and jump[start] == start and items[start].candidate:
            return start  # the usual case, without the bookkeeping below
        passed: list[int] = []
        position = start
        while position < end:
            ahead = jump[position]
            if ahead == position:
                if items[position].candidate:
                    break
                ahead = position + 1
            passed.append(position)
            position = ahead
        for dead in passed:
            jump[dead] = position
        return position

    def _drop_before(self, start: dt.date) -> None:
        """Move the front past whatever is dated before ``start`` or no longer a candidate."""
        items = self.items
        position = self._next_candidate(self.head)
        while position < len(items) and items[position].window_date < start:
            position = self._next_candidate(position + 1)
        self.head = position
        if position > 64 and position * 2 > len(items):
            del items[:position]
            self.jump = [ahead - position for ahead in self.jump[position:]]
            self.head = 0

    def since(self, start: dt.date) -> Iterator[_W]:
        """The candidates dated from ``start`` on, oldest first, re-checked as the caller uses them up."""
        self._drop_before(start)
        items = self.items
        position = self.head
        while position < len(items):
            yield items[position]
            position = self._next_candidate(position + 1)


class _WindowIndex:
    """Per identity group, the lots bought and the losses taken in the last 30 days, oldest first."""

    def __init__(self) -> None:
        self._lots: dict[str, _Window[_Slot]] = {}
        self._losses: dict[str, _Window[_Loss]] = {}

    def add_lot(self, slot: _Slot) -> None:
        window = self._lots.get(slot.key)
        if window is None:
            window = self._lots[slot.key] = _Window()
        window.append(slot)

    def lots_before(self, key: str, sold: dt.date) -> Iterator[_Slot]:
        window = self._lots.get(key)
        return iter(()) if window is None else window.since(sold - _WINDOW)

    def add_loss(self, loss: _Loss) -> None:
        window = self._losses.get(loss.key)
        if window is None:
            window = self._losses[loss.key] = _Window()
        window.append(loss)

    def losses_before(self, key: str, bought: dt.date) -> Iterator[_Loss]:
        window = self._losses.get(key)
        return iter(()) if window is None else window.since(bought - _WINDOW)


class _AllPairsIndex:
    """Every lot and every loss ever seen, scanned in full for each query."""

    def __init__(self) -> None:
        self._lots: list[_Slot] = []
        self._losses: list[_Loss] = []

    def add_lot(self, slot: _Slot) -> None:
        self._lots.append(slot)

    def lots_before(self, key: str, sold: dt.date) -> Iterator[_Slot]:
        for slot in list(self._lots):
            if slot.key == key and slot.candidate and sold - _WINDOW <= slot.acquired_at <= sold:
                yield slot

    def add_loss(self, loss: _Loss) -> None:
        self._losses.append(loss)

    def losses_before(self, key: str, bought: dt.date) -> Iterator[_Loss]:
        for loss in list(self._losses):
            if loss.key == key and loss.shares_left > 0 and bought - _WINDOW <= loss.sold <= bought:
                yield loss


class _Position(Protocol):
    """The open lots of one symbol in one account, and which of them a sale relieves."""

    def add(self, slot: _Slot) -> None: ...

    def changed(self, slot: _Slot) -> None: ...

    def sell(self, quantity: Decimal, symbol: str) -> list[_Relief]: ...


class _ListPosition:
    """A plain list, handed whole to :func:`relieve` on every sale."""

    def __init__(self, method: LotMethod) -> None:
        self._method = method
        self._slots: list[_Slot] = []

    def add(self, slot: _Slot) -> None:
        self._slots.append(slot)

    def changed(self, slot: _Slot) -> None:
        pass

    def sell(self, quantity: Decimal, symbol: str) -> list[_Relief]:
        self._slots = [slot for slot in self._slots if slot.shares > 0]
        by_id = {slot.id: slot for slot in self._slots}
        if not self._slots:
            raise InsufficientShares(symbol, quantity, _ZERO)
        reliefs = [
            (by_id[relief.lot.id], relief.shares, relief.cost_basis, relief.adjusted_basis)
            for relief in relieve([slot.lot for slot in self._slots], quantity, self._method)
        ]
        for slot, shares, cost, adjusted in reliefs:
            slot.take(shares, cost, adjusted)
        return reliefs


class _HeapPosition:
    """Open lots in a heap ordered as :func:`order_lots` orders them, so a sale pops only what it takes.

    An entry is the lot's order key, then a push counter (so two entries never
    compare lots), the lot's version and the lot. A lot whose order may have
    changed (partly sold, split, basis raised) is pushed again under a new
    version; entries of older versions are skipped when popped. Under FIFO the
    order (acquisition, id) never changes, so only a partly sold lot goes back.
    A UUID's integer orders as its string does (fixed-width lower-case hex), so
    ``id.int`` stands for the ``str(id)`` of :func:`order_lots`.
    """

    def __init__(self, method: LotMethod) -> None:
        self._hifo = method is LotMethod.HIFO
        self._heap: list[tuple[object, ...]] = []
        self._pushed = 0

    def add(self, slot: _Slot) -> None:
        slot.version += 1
        self._pushed += 1
        if self._hifo:
            per_share = slot.adjusted / slot.shares if slot.shares else _ZERO  # Lot.basis_per_share
            entry: tuple[object, ...] = (
                -per_share,
                slot.acquired_at,
                slot.id.int,
                self._pushed,
                slot.version,
                slot,
            )
        else:
            entry = (slot.acquired_at, slot.id.int, self._pushed, slot.version, slot)
        heapq.heappush(self._heap, entry)

    def changed(self, slot: _Slot) -> None:
        if self._hifo:
            self.add(slot)

    def sell(self, quantity: Decimal, symbol: str) -> list[_Relief]:
        taken, available = self._pop_lots_holding(quantity)
        if available < quantity:
            for slot in taken:
                self.add(slot)
            raise InsufficientShares(symbol, quantity, available)
        reliefs = _relieve_in_order(taken, quantity)
        for slot, shares, cost, adjusted in reliefs:
            slot.take(shares, cost, adjusted)
            if slot.shares > 0:
                self.add(slot)
        return reliefs

    def _pop_lots_holding(self, quantity: Decimal) -> tuple[list[_Slot], Decimal]:
        """The first lots in relief order, until they hold ``quantity`` shares or none are left, and
        the shares they hold."""
        heap = self._heap
        taken: list[_Slot] = []
        available = _ZERO
        while available < quantity and heap:
            entry = heapq.heappop(heap)
            slot: _Slot = entry[-1]  # type: ignore[assignment]
            if entry[-2] == slot.version and slot.shares > 0:
                taken.append(slot)
                available += slot.shares
        return taken, available


def _relieve_in_order(slots: list[_Slot], quantity: Decimal) -> list[_Relief]:
    """What :func:`relieve` takes from lots already in relief order, computed the same way."""
    reliefs: list[_Relief] = []
    left = quantity
    for slot in slots:
        if left <= 0:
            break
        shares = min(left, slot.shares)
        cost, adjusted = basis_of_part(shares, slot.shares, slot.cost, slot.adjusted)
        reliefs.append((slot, shares, cost, adjusted))
        left -= shares
    return reliefs


class _Replay:
    """One pass over a history, with the index and position kinds given."""

    def __init__(
        self,
        method: LotMethod,
        groups: IdentityGroups,
        index: _Index,
        position: type[_HeapPosition] | type[_ListPosition],
        new_lot_id: Callable[[], uuid.UUID],
    ) -> None:
        if method is LotMethod.SPECIFIC:
            raise ValueError("a trade history names no lots: use fifo or hifo")
        self._method = method
        self._groups = groups
        self._index = index
        self._position_kind = position
        self._new_lot_id = new_lot_id
        self._positions: dict[tuple[str, str], _Position] = {}
        self._slots: list[_Slot] = []
        self._rows: list[RealizedLot | _Loss] = []  # in sale order; a loss becomes its row at the end
        self._washes: list[WashSale] = []
        self._account_types: dict[str, AccountType] = {}

    def run(self, transactions: Sequence[Transaction], opening_lots: Sequence[AccountLot]) -> Realization:
        first_day = transactions[0].date if transactions else None
        for number, held in enumerate(sorted(opening_lots, key=lambda held: held.lot.acquired_at)):
            if first_day is not None and held.lot.acquired_at > first_day:
                raise ValueError(f"opening lot {held.lot.id} was acquired after the first transaction")
            if self._account_types.setdefault(held.account_id, held.account_type) is not held.account_type:
                raise ValueError(f"opening lots give account {held.account_id} two types")
            self._open(held, origin=-1 - number)
        previous: dt.date | None = None
        for index, tx in enumerate(transactions):
            if previous is not None and tx.date < previous:
                raise InvalidHistory(f"dated {tx.date}, after a trade of {previous}", index=index, ref=tx.ref)
            previous = tx.date
            amount = tx.amount
            self._check(index, tx, amount)
            if tx.side is Side.BUY:
                self._buy(index, tx, amount)
            else:
                self._sell(index, tx, amount)
        # id.int orders as str(id) does (see _HeapPosition).
        open_lots = sorted(
            (slot for slot in self._slots if slot.shares > 0),
            key=lambda slot: (slot.account_id, slot.symbol, slot.acquired_at, slot.id.int),
        )
        return Realization(
            realized=tuple(row if isinstance(row, RealizedLot) else row.realized() for row in self._rows),
            open_lots=tuple(slot.public() for slot in open_lots),
            wash_sales=tuple(self._washes),
        )

    def _check(self, index: int, tx: Transaction, amount: Decimal) -> None:
        if tx.quantity <= 0 or tx.price <= 0:
            raise InvalidHistory("quantity and price must be positive", index=index, ref=tx.ref)
        if tx.fees < 0:
            raise InvalidHistory("fees must not be negative", index=index, ref=tx.ref)
        if tx.side is Side.SELL and amount < 0:
            raise InvalidHistory("fees exceed the sale's gross amount", index=index, ref=tx.ref)
        known = self._account_types.setdefault(tx.account_id, tx.account_type)
        if known is not tx.account_type:
            raise InvalidHistory(
                f"account {tx.account_id} is {known.value}, not {tx.account_type.value}",
                index=index,
                ref=tx.ref,
            )

    def _position(self, account_id: str, symbol: str) -> _Position:
        position = self._positions.get((account_id, symbol))
        if position is None:
            position = self._positions[(account_id, symbol)] = self._position_kind(self._method)
        return position

    def _open(self, held: AccountLot, *, origin: int) -> _Slot:
        lot = held.lot
        slot = _Slot(
            lot_id=lot.id,
            symbol=lot.symbol,
            shares=lot.shares,
            cost=lot.cost_basis,
            adjusted=lot.adjusted_basis,
            acquired_at=lot.acquired_at,
            holding_period_start=lot.holding_period_start,
            account_id=held.account_id,
            account_type=held.account_type,
            key=self._groups.key(lot.symbol),
            origin=origin,
            original_shares=held.original_shares,
            opened_by_ref=held.opened_by_ref,
            replacement=held.is_replacement,
            lot=lot,
        )
        self._slots.append(slot)
        self._position(slot.account_id, slot.symbol).add(slot)
        if slot.candidate:
            self._index.add_lot(slot)
        return slot

    def _buy(self, index: int, tx: Transaction, cost: Decimal) -> None:
        slot = _Slot(
            lot_id=self._new_lot_id(),
            symbol=tx.symbol,
            shares=tx.quantity,
            cost=cost,
            adjusted=cost,
            acquired_at=tx.date,
            holding_period_start=tx.date,
            account_id=tx.account_id,
            account_type=tx.account_type,
            key=self._groups.key(tx.symbol),
            origin=index,
            original_shares=tx.quantity,
            opened_by_ref=tx.ref,
            disallowed=_ZERO,  # as a new Lot says
        )
        self._slots.append(slot)
        self._position(tx.account_id, tx.symbol).add(slot)
        for loss in self._index.losses_before(slot.key, tx.date):
            self._match(loss, slot)
            if not slot.candidate:
                break
        if slot.candidate:
            self._index.add_lot(slot)

    def _sell(self, index: int, tx: Transaction, amount: Decimal) -> None:
        try:
            reliefs = self._position(tx.account_id, tx.symbol).sell(tx.quantity, tx.symbol)
        except InsufficientShares as exc:
            raise InvalidHistory(
                f"sells {exc.wanted} {tx.symbol} in account {tx.account_id}, which holds {exc.available}",
                index=index,
                ref=tx.ref,
            ) from exc
        proceeds_left = amount
        shares_left = tx.quantity
        taxable = tx.account_type.is_taxable
        key = self._groups.key(tx.symbol)
        # Every row is taken down before any loss is matched: matching one lot's loss may move the
        # holding period of another lot this sale relieves, and its row keeps the period it was sold with.
        losses: list[_Loss] = []
        for relief in reliefs:
            _, shares, _, adjusted = relief
            shares_left -= shares
            proceeds = proceeds_left if shares_left == 0 else money(amount * shares / tx.quantity)
            proceeds_left -= proceeds
            loss = adjusted - proceeds
            if loss > 0 and taxable:
                losses.append(_Loss(sale=tx, key=key, relief=relief, proceeds=proceeds, loss=loss))
                self._rows.append(losses[-1])
            else:
                self._rows.append(_realized(tx, relief, proceeds))
        for pending in losses:
            self._replace(pending)

    def _replace(self, loss: _Loss) -> None:
        """Match a new loss with the lots bought in the 30 days before; what is left waits for buys."""
        for candidate in self._index.lots_before(loss.key, loss.sold):
            if candidate.origin == loss.origin:
                continue  # the rest of the purchase sold from is not its own replacement
            self._match(loss, candidate)
            if loss.shares_left == 0:
                break
        if loss.shares_left > 0:
            self._index.add_loss(loss)

    def _match(self, loss: _Loss, candidate: _Slot) -> None:
        """Make (part of) ``candidate`` the replacement of (part of) ``loss``."""
        shares = min(loss.shares_left, candidate.shares)
        replacement = self._split(candidate, shares) if shares < candidate.shares else candidate
        replacement.make_replacement()
        disallowed = loss.take(shares)
        loss.adjustment += disallowed
        holding_days = 0
        if replacement.taxable:
            holding_days = loss.holding_days
            replacement.absorb(disallowed, holding_days)
            self._position(replacement.account_id, replacement.symbol).changed(replacement)
        else:
            loss.permanent += disallowed
        self._washes.append(
            WashSale(
                symbol=loss.sale.symbol,
                account_id=loss.sale.account_id,
                sold=loss.sold,
                sold_lot_id=loss.sold_lot_id,
                replacement_symbol=replacement.symbol,
                replacement_account_id=replacement.account_id,
                replacement_account_type=replacement.account_type,
                replacement_lot_id=replacement.id,
                replacement_acquired=replacement.acquired_at,
                shares=shares,
                disallowed=disallowed,
                holding_days=holding_days,
                sale_ref=loss.sale.ref,
            )
        )

    def _split(self, slot: _Slot, shares: Decimal) -> _Slot:
        """Split ``shares`` off into a new lot (basis pro rata); ``slot`` keeps its id and the rest."""
        cost = money(slot.cost * shares / slot.shares)
        adjusted = money(slot.adjusted * shares / slot.shares)
        part = _Slot(
            lot_id=self._new_lot_id(),
            symbol=slot.symbol,
            shares=shares,
            cost=cost,
            adjusted=adjusted,
            acquired_at=slot.acquired_at,
            holding_period_start=slot.holding_period_start,
            account_id=slot.account_id,
            account_type=slot.account_type,
            key=slot.key,
            origin=slot.origin,
            original_shares=shares,
            opened_by_ref=slot.opened_by_ref,
        )
        slot.take(shares, cost, adjusted)
        slot.original_shares -= shares
        position = self._position(slot.account_id, slot.symbol)
        position.changed(slot)
        position.add(part)
        self._slots.append(part)
        return part


def realize(
    transactions: Sequence[Transaction],
    *,
    lot_method: LotMethod,
    groups: IdentityGroups,
    opening_lots: Sequence[AccountLot],
    new_lot_id: Callable[[], uuid.UUID],
) -> Realization:
    """The windowed replay (see :func:`wealthalloc.domain.wash_sale.realize`, which documents it)."""
    return _Replay(lot_method, groups, _WindowIndex(), _HeapPosition, new_lot_id).run(
        transactions, opening_lots
    )


def realize_all_pairs(
    transactions: Sequence[Transaction],
    *,
    lot_method: LotMethod,
    groups: IdentityGroups,
    opening_lots: Sequence[AccountLot],
    new_lot_id: Callable[[], uuid.UUID],
) -> Realization:
    """The quadratic reference replay (see :func:`wealthalloc.domain.wash_sale.realize_all_pairs`)."""
    return _Replay(lot_method, groups, _AllPairsIndex(), _ListPosition, new_lot_id).run(
        transactions, opening_lots
    )
