"""Wash sales one fill at a time: the replay engine of :mod:`wealthalloc.domain.wash_sale` applied to a book.

The trading path keeps no trade history to replay: the ``lots`` table is the
truth, and a fill must change it in the fill's own transaction. So each fill,
with the part of the taxpayer's book it can touch, is stated here as a tiny
history that :func:`~wealthalloc.domain.wash_sale.realize` replays, and the
engine's answer is read back as changes to stored rows. Nothing in this module
decides a wash sale: the engine does, so the order desk, the gains report and
the ``tax report`` command follow one set of rules.

A sale. The shares relieved from each lot become an opening lot in an account
of their own, sold by one transaction carrying exactly the proceeds the desk
booked for them: the engine then sells exactly the shares the desk chose,
whatever the relief method (specific identification included). The open lots
of an identical security that the taxpayer acquired in the last 30 days, in
any account, as the relief left them, are the candidates; the engine matches
the loss with them, earliest acquisition first, and splits a lot when only
part of it is needed. The lots relieved are replayed one after the other, in
the desk's order, each against the candidates the previous ones left.

A buy. Each loss of the last 30 days that still has shares waiting for a
replacement becomes an opening lot sold on its own day for exactly the loss
left; then the buy follows, and the engine matches the new lot with those
losses, earliest sale first. A lot recorded with a date before sales already
booked (a transfer-in) is a buy of that date: the losses of the 30 days after
it follow it in the history, and take what the earlier ones left.

Opening lots that stand for shares already sold are flagged as replacements,
which makes the engine never offer them as replacement shares themselves. The
engine knows a lot's purchase only within one replay, so the book keeps it
(``lots.purchase_lot_id`` for shares split off a purchase) and a sale's
candidates never include the rest of the purchase its shares came from.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from wealthalloc.domain.acquisitions import basis_for_sale, tacked_start
from wealthalloc.domain.lots import Lot, LotMethod, Term
from wealthalloc.domain.wash_sale import (
    WASH_SALE_DAYS,
    AccountLot,
    AccountType,
    IdentityGroups,
    RealizedLot,
    Side,
    Transaction,
    WashSale,
    realize,
)

_WINDOW = dt.timedelta(days=WASH_SALE_DAYS)
# Prices of the synthetic transactions: 8 places keep quantity x price exact within Decimal's
# 28 digits for any amount below 10^12, so the fees that close the gap are exact too.
_STEP = Decimal("0.00000001")
# What a pending loss's synthetic sale brings in: any positive amount works, the loss is what counts.
_PSEUDO_PROCEEDS = Decimal("1.0000")


class BasisTooSmall(ValueError):
    """A buy costing less than the engine's smallest price a share cannot replace a loss (the engine
    states each buy as shares at a positive price)."""


@dataclass(frozen=True)
class HeldLot:
    """An open lot in one of the taxpayer's accounts, as stored.

    Attributes
    ----------
    account_id : str
        The portfolio holding it.
    account_type : AccountType
        Its tax treatment (an IRA replacement takes no basis).
    lot : Lot
        Shares, bases, acquisition date and holding-period start.
    original_shares : Decimal
        The lot's ``original_shares`` column.
    is_replacement : bool
        The lot has already absorbed a sold share's loss, so it absorbs no other.
    purchase : uuid.UUID, optional
        The lot of the purchase these shares came from, when they were split off it;
        ``None`` when the lot is a purchase of its own.
    split_from : uuid.UUID, optional
        The lot these shares were split off just now (in the sale being applied).
    """

    account_id: str
    account_type: AccountType
    lot: Lot
    original_shares: Decimal
    is_replacement: bool = False
    purchase: uuid.UUID | None = None
    split_from: uuid.UUID | None = None

    @property
    def purchase_id(self) -> uuid.UUID:
        """Lots with the same purchase are one block of shares: never each other's replacement."""
        return self.purchase or self.lot.id


@dataclass(frozen=True)
class SoldShares:
    """Shares the desk relieved from one lot in a sale, with their basis and the proceeds booked for them.

    ``purchase`` is as in :class:`HeldLot`; it matters only for a lot the sale used up (a lot
    still held says its purchase itself). ``loss_basis`` is the FMV basis of the shares sold when
    they came as a gift worth less than the donor's basis (:mod:`wealthalloc.domain.acquisitions`),
    ``always_long`` says they were inherited.
    """

    lot: Lot
    shares: Decimal
    cost_basis: Decimal
    adjusted_basis: Decimal
    proceeds: Decimal
    purchase: uuid.UUID | None = None
    loss_basis: Decimal | None = None
    always_long: bool = False

    @property
    def purchase_id(self) -> uuid.UUID:
        return self.purchase or self.lot.id


@dataclass(frozen=True)
class PendingLoss:
    """A loss realized in a taxable account whose sold shares are not all replaced yet.

    Attributes
    ----------
    ref : uuid.UUID
        The realized row that booked the loss; wash sales found for it name it.
    symbol : str
        The security sold.
    sold : datetime.date
        The sale date, which opens the 30 days after it.
    holding_period_start : datetime.date
        Of the shares sold: carried over to their replacement.
    shares_left, loss_left : Decimal
        Shares not yet replaced, and the part of the loss still deductible (positive).
    """

    ref: uuid.UUID
    symbol: str
    sold: dt.date
    holding_period_start: dt.date
    shares_left: Decimal
    loss_left: Decimal


@dataclass(frozen=True)
class LotChange:
    """A lot as the engine left it, to be written back.

    ``split_from`` is ``None`` for a stored lot changed in place (or the lot a
    buy opens), else the lot whose shares were split off into this new one;
    ``purchase`` the lot of the purchase they all came from (``None``: the lot
    itself); ``original_shares`` is the value of that column after the change.
    """

    account_id: str
    account_type: AccountType
    lot: Lot
    original_shares: Decimal
    is_replacement: bool
    split_from: uuid.UUID | None = None
    purchase: uuid.UUID | None = None


@dataclass(frozen=True)
class SaleOutcome:
    """What a sale realizes and changes.

    Attributes
    ----------
    realized : tuple of RealizedLot
        One row per :class:`SoldShares`, in the order given; ``adjustment`` is
        the part of the loss disallowed by replacement shares already held.
    wash_sales : tuple of WashSale
        Each match; ``sold_lot_id`` is the id of the lot the shares were sold from.
    lots : tuple of LotChange
        Lots that became replacements (an IRA's keeps its basis), with their new basis and
        holding period, and lots split off.
    """

    realized: tuple[RealizedLot, ...]
    wash_sales: tuple[WashSale, ...]
    lots: tuple[LotChange, ...]


@dataclass(frozen=True)
class BuyOutcome:
    """The lots a buy opens (the first keeps the id asked for) and the losses it replaced.

    ``wash_sales[i].sold_lot_id`` is the ``ref`` of the :class:`PendingLoss` matched.
    """

    lots: tuple[LotChange, ...]
    wash_sales: tuple[WashSale, ...]


def on_sale(
    *,
    account_id: str,
    account_type: AccountType,
    symbol: str,
    day: dt.date,
    sold: Sequence[SoldShares],
    held: Sequence[HeldLot],
    groups: IdentityGroups,
    new_lot_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> SaleOutcome:
    """Realize a sale the desk has relieved, and apply its losses to replacement shares already held.

    The shares of each lot relieved are sold, in the desk's order, by a replay of their own
    whose candidates are the lots as the earlier ones left them: the order in which the whole
    replay matches the losses of one sale.

    Parameters
    ----------
    account_id, account_type : str, AccountType
        The selling portfolio.
    symbol : str
        The security sold.
    day : date
        The trade date.
    sold : sequence of SoldShares
        The desk's reliefs, in its order, with the proceeds it booked for each.
    held : sequence of HeldLot
        The taxpayer's open lots in every account after the relief (what is left of a lot the
        sale took shares from is a candidate too, except for the loss of its own purchase).
    groups : IdentityGroups
        Substantially identical securities.
    new_lot_id : callable
        Ids of the lots split off.

    Returns
    -------
    SaleOutcome
    """
    state = {
        item.lot.id: item
        for item in held
        if item.lot.shares > 0
        and day - _WINDOW <= item.lot.acquired_at <= day
        and groups.identical(item.lot.symbol, symbol)
    }
    before = dict(state)
    purchase_of = {item.lot.id: item.purchase_id for item in held}
    realized: list[RealizedLot] = []
    washes: list[WashSale] = []
    pseudo = f"{account_id}/sold"
    for part in sold:
        own = purchase_of.get(part.lot.id, part.purchase_id)
        carried_in = part.adjusted_basis - part.cost_basis  # wash-sale losses the shares carry
        figured = basis_for_sale(
            amount_realized=part.proceeds,
            basis=part.adjusted_basis,
            loss_basis=None if part.loss_basis is None else part.loss_basis + carried_in,
            holding_period_start=part.lot.holding_period_start,
            acquired_at=part.lot.acquired_at,
        )
        lot = Lot(
            id=part.lot.id,
            symbol=symbol,
            shares=part.shares,
            cost_basis=figured.basis - carried_in,
            adjusted_basis=figured.basis,
            acquired_at=part.lot.acquired_at,
            # What a replacement tacks on (an inherited lot's is over a year); the row keeps the real one.
            holding_period_start=tacked_start(
                holding_period_start=figured.holding_period_start, always_long=part.always_long, sold_on=day
            ),
            wash_sale_disallowed=carried_in,
        )
        opening = [AccountLot(pseudo, account_type, lot, part.shares, is_replacement=True)]
        opening.extend(
            AccountLot(
                item.account_id, item.account_type, item.lot, item.original_shares, opened_by_ref=str(key)
            )
            for key, item in state.items()
            if not item.is_replacement and item.purchase_id != own  # a purchase is not its own replacement
        )
        sale = _sale(day, pseudo, account_type, symbol, part.shares, part.proceeds, ref=str(part.lot.id))
        result = realize(
            [sale], lot_method=LotMethod.FIFO, groups=groups, opening_lots=opening, new_lot_id=new_lot_id
        )
        realized.extend(
            replace(
                row,
                account_id=account_id,
                holding_period_start=figured.holding_period_start,
                term=Term.LONG if part.always_long else row.term,
            )
            for row in result.realized
        )
        washes.extend(replace(wash, account_id=account_id) for wash in result.wash_sales)
        for after in result.open_lots:
            if after.account_id == pseudo:
                continue
            origin = state[uuid.UUID(str(after.opened_by_ref))]  # each candidate's ref is its own id
            if after.lot.id == origin.lot.id:
                state[after.lot.id] = replace(
                    origin,
                    lot=after.lot,
                    original_shares=after.original_shares,
                    is_replacement=after.is_replacement,
                )
            else:  # shares split off a stored lot: a lot of its own, of the same purchase
                state[after.lot.id] = HeldLot(
                    account_id=after.account_id,
                    account_type=after.account_type,
                    lot=after.lot,
                    original_shares=after.original_shares,
                    is_replacement=after.is_replacement,
                    purchase=origin.purchase_id,
                    split_from=origin.lot.id,
                )
    changes = [
        LotChange(
            account_id=item.account_id,
            account_type=item.account_type,
            lot=item.lot,
            original_shares=item.original_shares,
            is_replacement=item.is_replacement,
            split_from=item.split_from if key not in before else None,
            purchase=item.purchase,
        )
        for key, item in state.items()
        if key not in before
        or (before[key].lot, before[key].original_shares, before[key].is_replacement)
        != (item.lot, item.original_shares, item.is_replacement)
    ]
    return SaleOutcome(realized=tuple(realized), wash_sales=tuple(washes), lots=tuple(changes))


def on_buy(
    *,
    account_id: str,
    account_type: AccountType,
    symbol: str,
    day: dt.date,
    shares: Decimal,
    cost: Decimal,
    losses: Sequence[PendingLoss],
    groups: IdentityGroups,
    lot_id: uuid.UUID,
    new_lot_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> BuyOutcome:
    """The lots a buy opens, after the engine matched them with the losses of the last 30 days.

    Losses of the 30 days after ``day`` are matched too, after those before it: a lot recorded
    with an earlier date than sales already booked (a transfer-in) replaces them as the purchase
    it was would have.

    Parameters
    ----------
    account_id, account_type : str, AccountType
        The buying portfolio (an IRA replacement takes no basis: the loss is lost for good).
    symbol : str
        The security bought.
    day : date
        The trade date.
    shares, cost : Decimal
        Shares bought and their cost, commission included.
    losses : sequence of PendingLoss
        The taxpayer's losses still waiting for replacement shares (any
        symbol and date: those not identical or not in the window are ignored).
    groups : IdentityGroups
        Substantially identical securities.
    lot_id : uuid.UUID
        The id of the lot the buy opens; the shares split off as the
        replacement of an earlier loss get ids from ``new_lot_id``.
    new_lot_id : callable
        Ids of the lots split off.
    """
    waiting = sorted(
        (
            loss
            for loss in losses
            if loss.shares_left > 0
            and loss.loss_left > 0
            and day - _WINDOW <= loss.sold <= day + _WINDOW
            and groups.identical(loss.symbol, symbol)
        ),
        key=lambda loss: loss.sold,
    )
    if not waiting:  # nothing to replace: the lot as bought (also when it cost nothing)
        lot = Lot(
            id=lot_id,
            symbol=symbol,
            shares=shares,
            cost_basis=cost,
            adjusted_basis=cost,
            acquired_at=day,
            holding_period_start=day,
        )
        return BuyOutcome(
            lots=(LotChange(account_id, account_type, lot, shares, is_replacement=False),), wash_sales=()
        )
    if cost < shares * _STEP:
        raise BasisTooSmall(
            f"{symbol}: a basis of {cost} for {shares} shares (below {_STEP} a share) cannot take"
            " a wash-sale loss here"
        )
    opening: list[AccountLot] = []
    history: list[Transaction] = []
    first_sale = waiting[0].sold if waiting else day
    for loss in waiting:
        pseudo = f"loss/{loss.ref}"
        basis = loss.loss_left + _PSEUDO_PROCEEDS
        lot = Lot(
            id=loss.ref,
            symbol=loss.symbol,
            shares=loss.shares_left,
            cost_basis=basis,
            adjusted_basis=basis,
            # Never a replacement, so its acquisition date only has to precede the history.
            acquired_at=min(loss.holding_period_start, first_sale),
            holding_period_start=loss.holding_period_start,
        )
        opening.append(AccountLot(pseudo, AccountType.TAXABLE, lot, loss.shares_left, is_replacement=True))
        history.append(
            _sale(loss.sold, pseudo, AccountType.TAXABLE, loss.symbol, loss.shares_left, _PSEUDO_PROCEEDS)
        )
    # In date order: the losses of the days up to the buy, the buy, then those after it.
    before = sum(1 for loss in waiting if loss.sold <= day)
    history.insert(before, _purchase(day, account_id, account_type, symbol, shares, cost))
    ids = _first_then(lot_id, new_lot_id)
    result = realize(history, lot_method=LotMethod.FIFO, groups=groups, opening_lots=opening, new_lot_id=ids)
    lots = [after for after in result.open_lots if after.account_id == account_id]
    lots.sort(key=lambda after: after.lot.id != lot_id)  # the lot keeping the id first
    return BuyOutcome(
        lots=tuple(
            LotChange(
                account_id=after.account_id,
                account_type=after.account_type,
                lot=after.lot,
                original_shares=after.original_shares,
                is_replacement=after.is_replacement,
                split_from=None if after.lot.id == lot_id else lot_id,
                purchase=None if after.lot.id == lot_id else lot_id,
            )
            for after in lots
        ),
        wash_sales=result.wash_sales,
    )


def _first_then(first: uuid.UUID, rest: Callable[[], uuid.UUID]) -> Callable[[], uuid.UUID]:
    def ids() -> Iterator[uuid.UUID]:
        yield first
        while True:
            yield rest()

    it = ids()
    return lambda: next(it)


def _sale(
    day: dt.date,
    account_id: str,
    account_type: AccountType,
    symbol: str,
    quantity: Decimal,
    proceeds: Decimal,
    *,
    ref: str | None = None,
) -> Transaction:
    """A sale whose proceeds (``Transaction.amount``) are exactly ``proceeds``, whatever the rounding."""
    price = max((proceeds / quantity).quantize(_STEP, rounding=ROUND_CEILING), _STEP)
    return Transaction(
        date=day,
        account_id=account_id,
        account_type=account_type,
        symbol=symbol,
        side=Side.SELL,
        quantity=quantity,
        price=price,
        fees=quantity * price - proceeds,
        ref=ref,
    )


def _purchase(
    day: dt.date, account_id: str, account_type: AccountType, symbol: str, quantity: Decimal, cost: Decimal
) -> Transaction:
    """A buy whose cost (``Transaction.amount``) is exactly ``cost``."""
    price = (cost / quantity).quantize(_STEP, rounding=ROUND_FLOOR)
    return Transaction(
        date=day,
        account_id=account_id,
        account_type=account_type,
        symbol=symbol,
        side=Side.BUY,
        quantity=quantity,
        price=price,
        fees=cost - quantity * price,
    )
