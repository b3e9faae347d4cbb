"""The values of the wash-sale engine: trades in, realized rows, open lots and wash sales out.

They are plain frozen records, kept apart from the replay
(:mod:`wealthalloc.domain.wash_sale_replay`) so that the replay can be
compiled to native code while the values it hands out stay ordinary Python
objects: picklable across Ray's process boundaries, comparable, the same
type whichever engine made them. :mod:`wealthalloc.domain.wash_sale` is
where callers import them from.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from wealthalloc.domain.lots import Lot, Term
from wealthalloc.domain.money import money
from wealthalloc.domain.records import frozen_record

WASH_SALE_DAYS = 30
"""Days before and after a loss sale in which buying the security again is a wash sale."""

_ZERO = Decimal(0)
_GROUP_PREFIX = "#"  # cannot start a ticker, so a group key never equals a symbol


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


@frozen_record
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


@frozen_record
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
