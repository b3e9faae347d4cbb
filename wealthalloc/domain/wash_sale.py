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
replacement; what has been used up inside the window is jumped over, so
each lookup touches only what it matches: O(n log n) over a history of n
transactions (the log is the lot heap of a position). Lots change in place
while replayed and become frozen :class:`Lot` and :class:`RealizedLot`
values once, at the end. The quadratic :func:`realize_all_pairs` scans
every lot and loss instead; it exists as a reference that tests and the
benchmark compare with.

The replay itself lives in :mod:`wealthalloc.domain.wash_sale_replay`,
the values in :mod:`wealthalloc.domain.wash_sale_records`; both are
imported from here. When ``make install`` has compiled the replay with
mypyc and the build matches the source, :func:`realize` runs the native
build (:data:`ENGINE` says which one runs); the results are the same
records either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from wealthalloc.domain import wash_sale_replay
from wealthalloc.domain.lots import LotMethod
from wealthalloc.domain.native import load_native
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

__all__ = [
    "ENGINE",
    "WASH_SALE_DAYS",
    "AccountLot",
    "AccountType",
    "IdentityGroups",
    "InvalidHistory",
    "Realization",
    "RealizedLot",
    "Side",
    "Transaction",
    "WashSale",
    "realize",
    "realize_all_pairs",
]

_native = load_native(wash_sale_replay)
_realize = wash_sale_replay.realize
if _native is not None:
    _realize = _native.realize  # the same function, compiled
ENGINE = "python" if _native is None else "native"
"""Which build of the replay :func:`realize` runs: ``"native"`` (mypyc) or ``"python"``."""


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
    return _realize(
        transactions,
        lot_method=lot_method,
        groups=groups or IdentityGroups(),
        opening_lots=opening_lots,
        new_lot_id=new_lot_id,
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
    return wash_sale_replay.realize_all_pairs(
        transactions,
        lot_method=lot_method,
        groups=groups or IdentityGroups(),
        opening_lots=opening_lots,
        new_lot_id=new_lot_id,
    )
