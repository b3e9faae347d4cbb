"""Realized gains under the wash-sale rule (IRC section 1091, IRS Publication 550), from a trade history.

A loss on a sale in a taxable account is not deductible when the same or a
substantially identical security is bought within 30 days before or after the
sale, in any account of the same taxpayer. The history is replayed once, in
date order, and each loss is matched with replacement shares as the law
matches them:

- the replacement shares are those acquired in the 61-day window, earliest
  acquisition first; a replacement share absorbs the loss of one sold share
  only, and a sale of fewer replacement shares than sold shares disallows the
  loss pro rata, share by share;
- shares sold in the loss sale are not its replacement, nor are the unsold
  shares of the same purchase (Rev. Rul. 56-602: a block is not its own
  replacement); shares bought before the sale count only while still held;
- the disallowed loss is added to the replacement shares' basis and their
  holding period starts earlier by the sold shares' holding days; a
  replacement bought in an IRA or Roth IRA takes no basis (none is ever
  deducted there), so the loss is disallowed for good;
- sales inside an IRA or Roth IRA realize nothing taxable and never start a
  wash sale; they are still reported (``RealizedLot.is_reportable`` is false)
  so that every share and every dollar of basis can be accounted for.

When only part of a lot replaces a loss, the lot is split: the replacement
shares become a lot of their own (new basis, earlier holding period) and the
rest keeps the original lot's id. That is how the ``lots`` table holds them.

The time-ordered replay keeps, per identity group, a window of the lots
bought in the last 30 days and of the losses still waiting for a
replacement, so each lookup touches only that window: O(n log n) over a
history of n transactions (the log is the lot heap of a position). The
quadratic :func:`realize_all_pairs` scans every lot and loss instead; it
exists as a reference that tests and the benchmark compare with.
"""

from __future__ import annotations

import datetime as dt
import enum
import heapq
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

from wealthalloc.domain.lots import InsufficientShares, Lot, LotMethod, LotRelief, Term, relieve, term
from wealthalloc.domain.money import money

WASH_SALE_DAYS = 30
"""Days before and after a loss sale in which buying the security again is a wash sale."""

_ZERO = Decimal(0)
_WINDOW = dt.timedelta(days=WASH_SALE_DAYS)
_GROUP_PREFIX = "#"  # cannot start a ticker, so a group key never equals a symbol
_T = TypeVar("_T")


class AccountType(enum.StrEnum):
    TAXABLE = "taxable"
    IRA = "ira"
    ROTH_IRA = "roth_ira"

    @property
    def is_taxable(self) -> bool:
        """Gains and losses here are reported; in an IRA or Roth IRA they never are."""
        return self is AccountType.TAXABLE


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class InvalidHistory(ValueError):
    """A transaction the replay cannot apply; ``index`` is its position in the input, ``ref`` its ref."""

    def __init__(self, message: str, *, index: int, ref: str | None) -> None:
        where = f"transaction {index + 1}" + (f" ({ref})" if ref else "")
        super().__init__(f"{where}: {message}")
        self.index, self.ref = index, ref


@dataclass(frozen=True)
class Transaction:
    """One executed trade, as the engine replays it.

    Attributes
    ----------
    date : datetime.date
        The trade date (settlement does not matter for the wash-sale rule).
    account_id : str
        Any stable identifier of the account (a portfolio id).
    account_type : AccountType
        Decides whether a loss can be deducted and whether a replacement takes basis.
    symbol : str
        Upper-case ticker.
    side : Side
        Buy or sell.
    quantity, price : Decimal
        Positive; quantity up to six decimals.
    fees : Decimal
        Commissions: added to a buy's basis, taken from a sale's proceeds.
    ref : str, optional
        The caller's name for the trade (a fill id, "line 7"), carried to the
        lots and rows it produces.
    """

    date: dt.date
    account_id: str
    account_type: AccountType
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fees: Decimal = _ZERO
    ref: str | None = None

    @property
    def amount(self) -> Decimal:
        """A buy's cost (price times quantity plus fees) or a sale's proceeds (minus fees)."""
        gross = self.quantity * self.price
        return money(gross + self.fees if self.side is Side.BUY else gross - self.fees)


@dataclass(frozen=True)
class AccountLot:
    """An open lot and the account that holds it.

    Attributes
    ----------
    account_id : str
        The holding account.
    account_type : AccountType
        Its tax treatment.
    lot : Lot
        Shares, cost basis, adjusted basis (cost plus wash-sale losses carried
        in), acquisition date, holding-period start and ``wash_sale_disallowed``
        (always ``adjusted_basis - cost_basis``).
    original_shares : Decimal
        Shares the lot had when it was opened (for a split-off replacement
        lot, the shares split off).
    is_replacement : bool
        The lot has absorbed a sold share's loss and cannot absorb another.
    opened_by_ref : str, optional
        The ``ref`` of the buy that opened the lot.
    """

    account_id: str
    account_type: AccountType
    lot: Lot
    original_shares: Decimal
    is_replacement: bool = False
    opened_by_ref: str | None = None


@dataclass(frozen=True)
class RealizedLot:
    """The shares of one lot relieved by one sale: one row of Form 8949.

    Attributes
    ----------
    cost_basis : Decimal
        The adjusted basis of the shares sold (Form 8949 column e), which
        includes any wash-sale loss carried in from an earlier sale.
    unadjusted_cost : Decimal
        What was paid for the shares sold, without carried-in losses.
    adjustment : Decimal
        The loss disallowed by the wash-sale rule (column g, code W), >= 0.
    permanently_disallowed : Decimal
        The part of ``adjustment`` whose replacement shares are in an IRA or
        Roth IRA: it will never be deducted.
    """

    symbol: str
    account_id: str
    account_type: AccountType
    lot_id: uuid.UUID
    shares: Decimal
    acquired_at: dt.date
    holding_period_start: dt.date
    sold: dt.date
    proceeds: Decimal
    cost_basis: Decimal
    unadjusted_cost: Decimal
    adjustment: Decimal
    permanently_disallowed: Decimal
    term: Term
    sale_ref: str | None = None

    @property
    def adjustment_code(self) -> str | None:
        """ "W" when part of the loss is disallowed as a wash sale, else ``None``."""
        return "W" if self.adjustment > 0 else None

    @property
    def gain_loss(self) -> Decimal:
        """Proceeds minus basis plus the disallowed loss (column h)."""
        return self.proceeds - self.cost_basis + self.adjustment

    @property
    def basis_carried(self) -> Decimal:
        """Wash-sale losses carried in from earlier sales and realized now."""
        return self.cost_basis - self.unadjusted_cost

    @property
    def is_reportable(self) -> bool:
        """Only sales in a taxable account go on Form 8949."""
        return self.account_type.is_taxable


@dataclass(frozen=True)
class WashSale:
    """Replacement shares matched with the loss of sold shares.

    ``disallowed`` is the part of the sold shares' loss these replacement
    shares take; ``holding_days`` is how far back their holding period was
    moved (0 when the replacement is in an IRA and takes nothing).
    """

    symbol: str
    account_id: str
    sold: dt.date
    sold_lot_id: uuid.UUID
    replacement_symbol: str
    replacement_account_id: str
    replacement_account_type: AccountType
    replacement_lot_id: uuid.UUID
    replacement_acquired: dt.date
    shares: Decimal
    disallowed: Decimal
    holding_days: int
    sale_ref: str | None = None

    @property
    def permanent(self) -> bool:
        """The replacement is in an IRA or Roth IRA, so the loss is never deducted."""
        return not self.replacement_account_type.is_taxable


@dataclass(frozen=True)
class Realization:
    """What a trade history leaves behind: realized rows, open lots and the wash sales between them."""

    realized: tuple[RealizedLot, ...]
    open_lots: tuple[AccountLot, ...]
    wash_sales: tuple[WashSale, ...]

    @property
    def permanently_disallowed(self) -> tuple[WashSale, ...]:
        """The wash sales whose replacement is in an IRA or Roth IRA."""
        return tuple(wash for wash in self.wash_sales if wash.permanent)

    @property
    def permanently_disallowed_total(self) -> Decimal:
        return sum((wash.disallowed for wash in self.wash_sales if wash.permanent), _ZERO)

    @property
    def deferred_total(self) -> Decimal:
        """Disallowed losses added to replacement lots' basis (deducted when those are sold)."""
        return sum((wash.disallowed for wash in self.wash_sales if not wash.permanent), _ZERO)


class IdentityGroups:
    """Which securities are substantially identical to which.

    A symbol is identical to itself; beyond that, only to the symbols the
    operator puts in the same group (share classes of one company, funds
    tracking the same index from the same issuer...). Whether two securities
    are substantially identical is a judgement the IRS leaves to the facts, so
    it is data (the ``wash_sale_groups`` table or a CSV), never code.

    Parameters
    ----------
    groups : mapping of str to str, optional
        Symbol to group name.
    """

    def __init__(self, groups: Mapping[str, str] | None = None) -> None:
        self._group = {symbol.strip().upper(): name for symbol, name in (groups or {}).items()}
        members: dict[str, set[str]] = {}
        for symbol, name in self._group.items():
            members.setdefault(name, set()).add(symbol)
        self._members = {name: frozenset(symbols) for name, symbols in members.items()}

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]]) -> IdentityGroups:
        """Groups from ``(group_name, symbol)`` pairs, as the ``wash_sale_groups`` table holds them.

        The table's key is the pair, so a symbol may sit in two groups; being
        identical is transitive, so such groups are merged (under the first
        name in sort order).

        Parameters
        ----------
        rows : iterable of (str, str)
            ``(group_name, symbol)`` pairs.
        """
        parent: dict[str, str] = {}

        def find(name: str) -> str:
            while parent.setdefault(name, name) != name:
                parent[name] = parent[parent[name]]
                name = parent[name]
            return name

        first_group: dict[str, str] = {}
        for group_name, symbol in rows:
            symbol = symbol.strip().upper()
            find(group_name)
            if symbol in first_group:
                a, b = find(first_group[symbol]), find(group_name)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first_group[symbol] = group_name
        return cls({symbol: find(name) for symbol, name in first_group.items()})

    @property
    def mapping(self) -> dict[str, str]:
        """Symbol to group name, for the symbols in a group."""
        return dict(self._group)

    def key(self, symbol: str) -> str:
        """The same string for every symbol identical to ``symbol`` (its group, or itself)."""
        name = self._group.get(symbol)
        return symbol if name is None else _GROUP_PREFIX + name

    def identical(self, a: str, b: str) -> bool:
        return a == b or self.key(a) == self.key(b)

    def members(self, symbol: str) -> frozenset[str]:
        """Every symbol identical to ``symbol``, itself included."""
        name = self._group.get(symbol)
        return frozenset({symbol}) if name is None else self._members[name] | {symbol}

    def __len__(self) -> int:
        return len(self._group)

    def __repr__(self) -> str:
        return f"IdentityGroups({len(self._group)} symbols in {len(self._members)} groups)"


def realize(
    transactions: Sequence[Transaction],
    *,
    lot_method: LotMethod = LotMethod.FIFO,
    groups: IdentityGroups | None = None,
    opening_lots: Sequence[AccountLot] = (),
    new_lot_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> Realization:
    """Replay a trade history: realized rows with wash-sale adjustments, and the lots left open.

    Parameters
    ----------
    transactions : sequence of Transaction
        Every trade of one taxpayer, in all accounts, in date order (same-day
        trades in the order they happened).
    lot_method : LotMethod
        ``FIFO`` or ``HIFO``: which lots each sale relieves. Specific
        identification needs lot ids the transactions do not carry.
    groups : IdentityGroups, optional
        Substantially identical securities; only same-symbol by default.
    opening_lots : sequence of AccountLot
        Lots already held when the history starts (loaded from the ``lots``
        table), acquired no later than the first transaction.
    new_lot_id : callable, optional
        Makes the id of each lot a buy opens or a split creates (random UUIDs
        by default; pass a deterministic one to compare two replays).

    Returns
    -------
    Realization
        Realized rows in sale order, open lots by account, symbol and
        acquisition, and every wash sale matched.

    Raises
    ------
    InvalidHistory
        When a transaction is out of date order, sells more than its account
        holds, has a non-positive quantity or price, negative fees, fees larger
        than a sale's gross amount, or an account changes type.
    ValueError
        For the ``SPECIFIC`` lot method.
    """
    return _Replay(lot_method, groups or IdentityGroups(), _WindowIndex(), _HeapPosition, new_lot_id).run(
        transactions, opening_lots
    )


def realize_all_pairs(
    transactions: Sequence[Transaction],
    *,
    lot_method: LotMethod = LotMethod.FIFO,
    groups: IdentityGroups | None = None,
    opening_lots: Sequence[AccountLot] = (),
    new_lot_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> Realization:
    """The same result as :func:`realize`, by scanning every lot and loss for every trade: O(n^2).

    A reference implementation with nothing clever in it (no windows, no
    heaps), for tests and the benchmark to check :func:`realize` against.
    Same parameters, result and errors.
    """
    return _Replay(lot_method, groups or IdentityGroups(), _AllPairsIndex(), _ListPosition, new_lot_id).run(
        transactions, opening_lots
    )


# --- the replay ---------------------------------------------------------------------------------


class _Slot:
    """A lot being replayed: mutable, unlike :class:`Lot`, because it changes on every sale."""

    __slots__ = (
        "account_id",
        "account_type",
        "key",
        "lot",
        "opened_by_ref",
        "origin",
        "original_shares",
        "replacement",
        "version",
    )

    def __init__(
        self,
        lot: Lot,
        *,
        account_id: str,
        account_type: AccountType,
        key: str,
        origin: int,
        original_shares: Decimal,
        opened_by_ref: str | None,
        replacement: bool = False,
    ) -> None:
        self.lot = lot
        self.account_id = account_id
        self.account_type = account_type
        self.key = key
        self.origin = origin  # the purchase this lot came from (splits share it)
        self.original_shares = original_shares
        self.opened_by_ref = opened_by_ref
        self.replacement = replacement
        self.version = 0

    @property
    def candidate(self) -> bool:
        """Still held and not yet a replacement: these shares can absorb a loss."""
        return not self.replacement and self.lot.shares > 0

    def public(self) -> AccountLot:
        return AccountLot(
            account_id=self.account_id,
            account_type=self.account_type,
            lot=self.lot,
            original_shares=self.original_shares,
            is_replacement=self.replacement,
            opened_by_ref=self.opened_by_ref,
        )


class _Row:
    """A realized row whose adjustment may still grow when a replacement is bought later."""

    __slots__ = ("adjustment", "frozen_fields", "permanent")

    def __init__(self, frozen_fields: RealizedLot) -> None:
        self.frozen_fields = frozen_fields
        self.adjustment = _ZERO
        self.permanent = _ZERO

    def public(self) -> RealizedLot:
        if not self.adjustment:
            return self.frozen_fields
        return replace(self.frozen_fields, adjustment=self.adjustment, permanently_disallowed=self.permanent)


class _Loss:
    """The loss on shares of one lot sold, and how much of it still awaits replacement shares."""

    __slots__ = (
        "holding_days",
        "key",
        "loss",
        "loss_left",
        "origin",
        "row",
        "sale",
        "shares",
        "shares_left",
        "sold",
        "sold_lot_id",
    )

    def __init__(
        self,
        *,
        row: _Row,
        sale: Transaction,
        key: str,
        sold_lot: Lot,
        origin: int,
        shares: Decimal,
        loss: Decimal,
    ) -> None:
        self.row, self.sale, self.key, self.origin = row, sale, key, origin
        self.sold: dt.date = sale.date
        self.sold_lot_id = sold_lot.id
        self.shares = self.shares_left = shares
        self.loss = self.loss_left = loss
        self.holding_days = (sale.date - sold_lot.holding_period_start).days

    def take(self, shares: Decimal) -> Decimal:
        """The loss of ``shares`` more sold shares; the last share matched takes what rounding left."""
        if shares == self.shares_left:
            part = self.loss_left
        else:
            part = min(money(self.loss * shares / self.shares), self.loss_left)
        self.shares_left -= shares
        self.loss_left -= part
        return part


class _Index(Protocol):
    """Where the replay finds replacement shares for a loss, and losses for new shares."""

    def add_lot(self, slot: _Slot) -> None: ...

    def lots_before(self, key: str, sold: dt.date) -> Iterator[_Slot]: ...

    def add_loss(self, loss: _Loss) -> None: ...

    def losses_before(self, key: str, bought: dt.date) -> Iterator[_Loss]: ...


class _Queue(Generic[_T]):
    """A list consumed from the front, with a read position instead of pops (cheap at any length)."""

    __slots__ = ("head", "items")

    def __init__(self) -> None:
        self.items: list[_T] = []
        self.head = 0

    def compact(self) -> None:
        if self.head > 64 and self.head * 2 > len(self.items):
            del self.items[: self.head]
            self.head = 0


class _WindowIndex:
    """Per identity group, the lots bought and the losses taken in the last 30 days, oldest first.

    The replay moves forward in time, so whatever has left a group's window
    (a lot bought more than 30 days before today's sale, a loss more than 30
    days before today's buy) can never match again and is dropped from the
    front; a used-up entry in the middle is skipped and dropped when it
    reaches the front.
    """

    def __init__(self) -> None:
        self._lots: dict[str, _Queue[_Slot]] = {}
        self._losses: dict[str, _Queue[_Loss]] = {}

    def add_lot(self, slot: _Slot) -> None:
        self._lots.setdefault(slot.key, _Queue()).items.append(slot)

    def lots_before(self, key: str, sold: dt.date) -> Iterator[_Slot]:
        queue = self._lots.get(key)
        if queue is None:
            return
        start = sold - _WINDOW
        items = queue.items
        while queue.head < len(items):
            slot = items[queue.head]
            if slot.candidate and slot.lot.acquired_at >= start:
                break
            queue.head += 1
        queue.compact()
        for position in range(queue.head, len(queue.items)):
            slot = queue.items[position]
            if slot.candidate:
                yield slot

    def add_loss(self, loss: _Loss) -> None:
        self._losses.setdefault(loss.key, _Queue()).items.append(loss)

    def losses_before(self, key: str, bought: dt.date) -> Iterator[_Loss]:
        queue = self._losses.get(key)
        if queue is None:
            return
        start = bought - _WINDOW
        items = queue.items
        while queue.head < len(items):
            loss = items[queue.head]
            if loss.shares_left > 0 and loss.sold >= start:
                break
            queue.head += 1
        queue.compact()
        for position in range(queue.head, len(queue.items)):
            loss = queue.items[position]
            if loss.shares_left > 0:
                yield loss


class _AllPairsIndex:
    """Every lot and every loss ever seen, scanned in full for each query."""

    def __init__(self) -> None:
        self._lots: list[_Slot] = []
        self._losses: list[_Loss] = []

    def add_lot(self, slot: _Slot) -> None:
        self._lots.append(slot)

    def lots_before(self, key: str, sold: dt.date) -> Iterator[_Slot]:
        for slot in list(self._lots):
            if slot.key == key and slot.candidate and sold - _WINDOW <= slot.lot.acquired_at <= sold:
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

    def sell(self, quantity: Decimal, symbol: str) -> list[tuple[LotRelief, _Slot]]: ...


def _rebased(
    lot: Lot,
    *,
    shares: Decimal,
    cost: Decimal,
    adjusted: Decimal,
    lot_id: uuid.UUID | None = None,
    holding_period_start: dt.date | None = None,
) -> Lot:
    """``lot`` with other shares and basis, ``wash_sale_disallowed`` kept equal to adjusted minus cost.

    What ``dataclasses.replace`` would give, built directly: it runs for every
    share relieved or matched, and ``replace`` costs several times more.
    """
    return Lot(
        id=lot.id if lot_id is None else lot_id,
        symbol=lot.symbol,
        shares=shares,
        cost_basis=cost,
        adjusted_basis=adjusted,
        acquired_at=lot.acquired_at,
        holding_period_start=lot.holding_period_start
        if holding_period_start is None
        else holding_period_start,
        wash_sale_disallowed=adjusted - cost,
    )


def _after_relief(relief: LotRelief) -> Lot:
    """The lot less the shares relieved, as ``LotRelief.remaining`` but with its wash-sale part in step."""
    lot = relief.lot
    return _rebased(
        lot,
        shares=lot.shares - relief.shares,
        cost=lot.cost_basis - relief.cost_basis,
        adjusted=lot.adjusted_basis - relief.adjusted_basis,
    )


class _ListPosition:
    """A plain list, handed whole to :func:`relieve` on every sale."""

    def __init__(self, method: LotMethod) -> None:
        self._method = method
        self._slots: list[_Slot] = []

    def add(self, slot: _Slot) -> None:
        self._slots.append(slot)

    def changed(self, slot: _Slot) -> None:
        pass

    def sell(self, quantity: Decimal, symbol: str) -> list[tuple[LotRelief, _Slot]]:
        self._slots = [slot for slot in self._slots if slot.lot.shares > 0]
        by_id = {slot.lot.id: slot for slot in self._slots}
        if not self._slots:
            raise InsufficientShares(symbol, quantity, _ZERO)
        reliefs = relieve([slot.lot for slot in self._slots], quantity, self._method)
        pairs = [(relief, by_id[relief.lot.id]) for relief in reliefs]
        for relief, slot in pairs:
            slot.lot = _after_relief(relief)
        return pairs


class _HeapPosition:
    """Open lots in a heap ordered as :func:`order_lots` orders them, so a sale pops only what it takes.

    A lot whose order may have changed (partly sold, split, basis raised) is
    pushed again under a new version; entries of older versions are skipped
    when popped.
    """

    def __init__(self, method: LotMethod) -> None:
        self._method = method
        self._heap: list[tuple[tuple[object, ...], int, int, _Slot]] = []
        self._pushed = 0

    def _order(self, lot: Lot) -> tuple[object, ...]:
        # A UUID's integer orders as its string does (fixed-width lower-case hex): the order of
        # order_lots(), at the cost of an attribute read instead of a string.
        if self._method is LotMethod.HIFO:
            return (-lot.basis_per_share, lot.acquired_at, lot.id.int)
        return (lot.acquired_at, lot.id.int)

    def add(self, slot: _Slot) -> None:
        slot.version += 1
        self._pushed += 1
        heapq.heappush(self._heap, (self._order(slot.lot), self._pushed, slot.version, slot))

    changed = add

    def sell(self, quantity: Decimal, symbol: str) -> list[tuple[LotRelief, _Slot]]:
        taken: list[_Slot] = []
        available = _ZERO
        while available < quantity and self._heap:
            _, _, version, slot = heapq.heappop(self._heap)
            if version == slot.version and slot.lot.shares > 0:
                taken.append(slot)
                available += slot.lot.shares
        if available < quantity:
            for slot in taken:
                self.add(slot)
            raise InsufficientShares(symbol, quantity, available)
        # The lots popped are the first in relief order, so relieve() takes exactly what it
        # would take from the whole position.
        by_id = {slot.lot.id: slot for slot in taken}
        pairs = [
            (relief, by_id[relief.lot.id])
            for relief in relieve([s.lot for s in taken], quantity, self._method)
        ]
        for relief, slot in pairs:
            slot.lot = _after_relief(relief)
        for slot in taken:
            if slot.lot.shares > 0:
                self.add(slot)
        return pairs


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
        self._rows: list[_Row] = []
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
            self._check(index, tx)
            if tx.side is Side.BUY:
                self._buy(index, tx)
            else:
                self._sell(index, tx)
        open_lots = sorted(
            (slot for slot in self._slots if slot.lot.shares > 0),
            key=lambda slot: (slot.account_id, slot.lot.symbol, slot.lot.acquired_at, str(slot.lot.id)),
        )
        return Realization(
            realized=tuple(row.public() for row in self._rows),
            open_lots=tuple(slot.public() for slot in open_lots),
            wash_sales=tuple(self._washes),
        )

    def _check(self, index: int, tx: Transaction) -> None:
        if tx.quantity <= 0 or tx.price <= 0:
            raise InvalidHistory("quantity and price must be positive", index=index, ref=tx.ref)
        if tx.fees < 0:
            raise InvalidHistory("fees must not be negative", index=index, ref=tx.ref)
        if tx.side is Side.SELL and tx.amount < 0:
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
        slot = _Slot(
            held.lot,
            account_id=held.account_id,
            account_type=held.account_type,
            key=self._groups.key(held.lot.symbol),
            origin=origin,
            original_shares=held.original_shares,
            opened_by_ref=held.opened_by_ref,
            replacement=held.is_replacement,
        )
        self._slots.append(slot)
        self._position(slot.account_id, held.lot.symbol).add(slot)
        if slot.candidate:
            self._index.add_lot(slot)
        return slot

    def _buy(self, index: int, tx: Transaction) -> None:
        cost = tx.amount
        lot = Lot(
            id=self._new_lot_id(),
            symbol=tx.symbol,
            shares=tx.quantity,
            cost_basis=cost,
            adjusted_basis=cost,
            acquired_at=tx.date,
            holding_period_start=tx.date,
        )
        slot = _Slot(
            lot,
            account_id=tx.account_id,
            account_type=tx.account_type,
            key=self._groups.key(tx.symbol),
            origin=index,
            original_shares=tx.quantity,
            opened_by_ref=tx.ref,
        )
        self._slots.append(slot)
        self._position(tx.account_id, tx.symbol).add(slot)
        for loss in self._index.losses_before(slot.key, tx.date):
            self._match(loss, slot)
            if not slot.candidate:
                break
        if slot.candidate:
            self._index.add_lot(slot)

    def _sell(self, index: int, tx: Transaction) -> None:
        try:
            pairs = self._position(tx.account_id, tx.symbol).sell(tx.quantity, tx.symbol)
        except InsufficientShares as exc:
            raise InvalidHistory(
                f"sells {exc.wanted} {tx.symbol} in account {tx.account_id}, which holds {exc.available}",
                index=index,
                ref=tx.ref,
            ) from exc
        proceeds_left = tx.amount
        shares_left = tx.quantity
        key = self._groups.key(tx.symbol)
        for relief, slot in pairs:
            shares_left -= relief.shares
            proceeds = proceeds_left if shares_left == 0 else money(tx.amount * relief.shares / tx.quantity)
            proceeds_left -= proceeds
            sold = relief.lot
            row = _Row(
                RealizedLot(
                    symbol=tx.symbol,
                    account_id=tx.account_id,
                    account_type=tx.account_type,
                    lot_id=sold.id,
                    shares=relief.shares,
                    acquired_at=sold.acquired_at,
                    holding_period_start=sold.holding_period_start,
                    sold=tx.date,
                    proceeds=proceeds,
                    cost_basis=relief.adjusted_basis,
                    unadjusted_cost=relief.cost_basis,
                    adjustment=_ZERO,
                    permanently_disallowed=_ZERO,
                    term=term(sold.holding_period_start, tx.date),
                    sale_ref=tx.ref,
                )
            )
            self._rows.append(row)
            loss_amount = relief.adjusted_basis - proceeds
            if loss_amount <= 0 or not tx.account_type.is_taxable:
                continue
            loss = _Loss(
                row=row,
                sale=tx,
                key=key,
                sold_lot=sold,
                origin=slot.origin,
                shares=relief.shares,
                loss=loss_amount,
            )
            for candidate in self._index.lots_before(key, tx.date):
                if candidate.origin == loss.origin:
                    continue  # the rest of the purchase sold from is not its own replacement
                self._match(loss, candidate)
                if loss.shares_left == 0:
                    break
            if loss.shares_left > 0:
                self._index.add_loss(loss)

    def _match(self, loss: _Loss, candidate: _Slot) -> None:
        """Make (part of) ``candidate`` the replacement of (part of) ``loss``."""
        shares = min(loss.shares_left, candidate.lot.shares)
        replacement = self._split(candidate, shares) if shares < candidate.lot.shares else candidate
        replacement.replacement = True
        disallowed = loss.take(shares)
        holding_days = 0
        if replacement.account_type.is_taxable:
            holding_days = loss.holding_days
            lot = replacement.lot
            replacement.lot = _rebased(
                lot,
                shares=lot.shares,
                cost=lot.cost_basis,
                adjusted=lot.adjusted_basis + disallowed,
                holding_period_start=min(
                    lot.holding_period_start, lot.acquired_at - dt.timedelta(days=holding_days)
                ),
            )
            self._position(replacement.account_id, lot.symbol).changed(replacement)
        else:
            loss.row.permanent += disallowed
        loss.row.adjustment += disallowed
        self._washes.append(
            WashSale(
                symbol=loss.sale.symbol,
                account_id=loss.sale.account_id,
                sold=loss.sold,
                sold_lot_id=loss.sold_lot_id,
                replacement_symbol=replacement.lot.symbol,
                replacement_account_id=replacement.account_id,
                replacement_account_type=replacement.account_type,
                replacement_lot_id=replacement.lot.id,
                replacement_acquired=replacement.lot.acquired_at,
                shares=shares,
                disallowed=disallowed,
                holding_days=holding_days,
                sale_ref=loss.sale.ref,
            )
        )

    def _split(self, slot: _Slot, shares: Decimal) -> _Slot:
        """Split ``shares`` off into a new lot (basis pro rata); ``slot`` keeps its id and the rest."""
        lot = slot.lot
        cost = money(lot.cost_basis * shares / lot.shares)
        adjusted = money(lot.adjusted_basis * shares / lot.shares)
        part = _Slot(
            _rebased(lot, lot_id=self._new_lot_id(), shares=shares, cost=cost, adjusted=adjusted),
            account_id=slot.account_id,
            account_type=slot.account_type,
            key=slot.key,
            origin=slot.origin,
            original_shares=shares,
            opened_by_ref=slot.opened_by_ref,
        )
        slot.lot = _rebased(
            lot,
            shares=lot.shares - shares,
            cost=lot.cost_basis - cost,
            adjusted=lot.adjusted_basis - adjusted,
        )
        slot.original_shares -= shares
        position = self._position(slot.account_id, lot.symbol)
        position.changed(slot)
        position.add(part)
        self._slots.append(part)
        return part
