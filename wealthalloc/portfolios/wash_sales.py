"""The wash-sale rule inside the order desk: each fill's effect on lots, in the fill's own transaction.

A sell fill realizes its rows here, and a loss among them takes replacement
shares the taxpayer already holds (bought in the 30 days before, in any
portfolio); a buy fill opens its lot here, and the lot takes the losses of
the 30 days before that still wait for replacement shares. The rules are the
engine's (:mod:`wealthalloc.domain.wash_sale_book` states the fill for it);
this module reads the rows the engine needs and writes back what it decided:
realized rows with their adjustment, lots with their new basis and holding
period (split when only part of a lot replaces), and one ``wash_sales`` row
per match, so a replacement lot is never matched twice.

Buying back a security whose loss was harvested is refused outright while
the harvest's window is open (:func:`blocking_harvest`, :func:`refuse_blocked`): the engine would
get the tax right, but the user asked for the loss.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from wealthalloc.domain.acquisitions import is_purchase, tacked_start
from wealthalloc.domain.lots import basis_of_part
from wealthalloc.domain.wash_sale import WASH_SALE_DAYS, AccountType, IdentityGroups, WashSale
from wealthalloc.domain.wash_sale_book import HeldLot, LotChange, PendingLoss, SoldShares, on_buy, on_sale
from wealthalloc.errors import ServiceError
from wealthalloc.storage import books as store
from wealthalloc.storage import households, lots
from wealthalloc.storage import tax as tax_store

_WINDOW = timedelta(days=WASH_SALE_DAYS)


async def blocking_harvest(
    conn: store.Conn,
    user_id: uuid.UUID,
    symbol: str,
    today: date,
    *,
    groups: IdentityGroups | None = None,
    circle: Sequence[uuid.UUID] | None = None,
) -> store.Row | None:
    """The executed harvest whose wash-sale window forbids the user buying ``symbol`` today, if any:
    a harvest of it (or of one substantially identical) less than 31 days ago, in any of the user's
    portfolios or their household's.

    ``groups`` is the identity table when this transaction has read it already, ``circle`` the
    user's wash-sale circle when it has read it under the household's lock (the same for every
    function here: each reads them only when not given)."""
    blocking = await blocking_harvests(conn, user_id, [symbol], today, groups=groups, circle=circle)
    return blocking[symbol]


async def blocking_harvests(
    conn: store.Conn,
    user_id: uuid.UUID,
    symbols: Iterable[str],
    today: date,
    *,
    groups: IdentityGroups | None = None,
    circle: Sequence[uuid.UUID] | None = None,
    waiting: WaitingLosses | None = None,
) -> dict[str, store.Row | None]:
    """What :func:`blocking_harvest` finds for each of ``symbols``, in one query: the orders of a
    request that buy ten symbols read once, not ten times.

    ``waiting``: the losses the buys may replace are read in the same round trip, where the first
    buy's fill took one more."""
    if groups is None:
        groups = await tax_store.identity_groups(conn)
    household = circle if circle is not None else await households.wash_sale_circle(conn, user_id, lock=False)
    members = {symbol: groups.members(symbol) for symbol in symbols}
    if not members:
        return {}
    queries = [
        tax_store.blocking_harvests_query(household, symbols=set().union(*members.values()), today=today)
    ]
    if waiting is not None and waiting.symbols:
        queries.append(waiting.query(household, groups, today))
    rows, *pending = await store.rows_together(conn, *queries)
    if waiting is not None and pending:
        waiting.read(pending[0], today)
    return {
        symbol: next((r for r in rows if r["symbol"] in wanted), None) for symbol, wanted in members.items()
    }


def refuse_blocked(symbol: str, harvest: store.Row | None) -> None:
    """Refuse the buy that ``harvest`` (what :func:`blocking_harvest` found) blocks: 400
    ``WASH_SALE_BLOCKED`` with the last blocked day."""
    if harvest is None:
        return
    end: date = harvest["wash_sale_window_end"]
    raise ServiceError(
        400,
        "WASH_SALE_BLOCKED",
        f"Buying {symbol} before {end + timedelta(days=1)} would be a wash sale: the loss on"
        f" {harvest['symbol']} harvested on {end - _WINDOW} stays deductible only if it is not bought"
        f" back, in any account, through {end}.",
        {
            "symbol": symbol,
            "harvested_symbol": harvest["symbol"],
            "harvest_id": harvest["id"],
            "wash_sale_window_end": end,
            "allowed_from": end + timedelta(days=1),
        },
    )


async def record_sale(
    conn: store.Conn,
    *,
    user_id: uuid.UUID,
    portfolio: dict[str, Any],
    symbol: str,
    sold: Sequence[SoldShares],
    fill_row_id: uuid.UUID,
    day: date,
    groups: IdentityGroups | None = None,
    circle: Sequence[uuid.UUID] | None = None,
) -> set[uuid.UUID]:
    """Write the realized rows of a sale whose lots the desk has relieved, and apply its losses to the
    replacement shares already held. Returns the other portfolios whose lots changed."""
    if groups is None:
        groups = await tax_store.identity_groups(conn)
    household = circle if circle is not None else await households.wash_sale_circle(conn, user_id)
    rows = await tax_store.open_lots(conn, household, symbols=groups.members(symbol), since=day - _WINDOW)
    stored = await tax_store.lot_sources(conn, {part.lot.id for part in sold})
    sold = [_as_stored(part, stored[part.lot.id]) for part in sold]
    for part in sold:
        if part.loss_basis is not None:
            await lots.relieve_loss_basis(conn, part.lot.id, part.loss_basis)
    outcome = on_sale(
        account_id=str(portfolio["id"]),
        account_type=AccountType(portfolio["account_type"]),
        symbol=symbol,
        day=day,
        sold=sold,
        # Gifts and inheritances are not purchases: never replacement shares.
        held=[_held(row) for row in rows if is_purchase(row["source"])],
        groups=groups,
    )
    realized_ids: dict[uuid.UUID, uuid.UUID] = {}
    for realized in outcome.realized:
        realized_ids[realized.lot_id] = await tax_store.insert_realized(
            conn,
            portfolio_id=portfolio["id"],
            lot_id=realized.lot_id,
            fill_row_id=fill_row_id,
            symbol=symbol,
            shares=realized.shares,
            acquired_at=realized.holding_period_start,
            sold_at=day,
            proceeds=realized.proceeds,
            cost_basis=realized.cost_basis,
            wash_sale_disallowed=realized.adjustment,
            term=realized.term.value,
        )
    sources = await tax_store.lot_sources(conn, {c.split_from for c in outcome.lots if c.split_from})

    def source_of(change: LotChange) -> str:
        assert change.split_from is not None, "only shares split off are new lots here"
        return str(sources[change.split_from]["source"])

    await _write_lots(conn, outcome.lots, source_of=source_of, fill=None)
    await _write_wash_sales(
        conn, user_id, outcome.wash_sales, lambda w: realized_ids[w.sold_lot_id], fill_row_id
    )
    touched = {(uuid.UUID(c.account_id), c.lot.symbol) for c in outcome.lots}
    for portfolio_id, held_symbol in touched:
        await store.refresh_holdings(conn, portfolio_id, held_symbol)
    return {portfolio_id for portfolio_id, _ in touched} - {portfolio["id"]}


@dataclass
class WaitingLosses:
    """The losses waiting for replacement shares, read once for a request's buys (a batch, a
    rebalance) and kept current by them.

    Read for each buy, they cost a statement an order. Here the first buy reads them for every
    symbol the request buys (and those substantially identical), under the same row locks, and each
    buy takes what it replaced off them, as the ``wash_sales`` rows it writes would in the query. A
    sale may realize a new loss, so after one the next buy reads again.
    """

    symbols: frozenset[str]  # the request's buys
    rows: list[dict[str, Any]] | None = None
    day: date | None = None

    def query(self, circle: Sequence[uuid.UUID], groups: IdentityGroups, day: date) -> store.Query:
        """The losses every buy of the request on ``day`` may replace (:meth:`read` takes its rows)."""
        members = set().union(*(groups.members(s) for s in self.symbols))
        return tax_store.pending_losses_query(
            circle, symbols=members, since=day - _WINDOW, until=day + _WINDOW
        )

    def read(self, rows: Iterable[store.Row], day: date) -> None:
        self.rows = [dict(row) for row in rows]
        self.day = day

    async def for_buy(
        self,
        conn: store.Conn,
        circle: Sequence[uuid.UUID],
        groups: IdentityGroups,
        symbol: str,
        day: date,
    ) -> list[dict[str, Any]]:
        """The losses a buy of ``symbol`` on ``day`` may replace, earliest sale first."""
        wanted = groups.members(symbol)
        if symbol not in self.symbols:
            return list(await _pending(conn, circle, wanted, day))
        if self.rows is None or self.day != day:
            [rows] = await store.rows_together(conn, self.query(circle, groups, day))
            self.read(rows, day)
        return [row for row in self.rows or () if row["symbol"] in wanted]

    def replaced(self, washes: Iterable[WashSale]) -> None:
        """A buy's wash sales: the shares and loss each took from its sale."""
        if self.rows is None:
            return
        by_id = {row["id"]: row for row in self.rows}
        for wash in washes:
            row = by_id.get(wash.sold_lot_id)
            if row is not None:
                row["shares_left"] -= wash.shares
                row["loss_left"] -= wash.disallowed
        self.rows = [row for row in self.rows if row["shares_left"] > 0]

    def sold(self) -> None:
        """A sale was booked: it may have realized a loss the next buy must see."""
        self.rows = None


async def _pending(
    conn: store.Conn, circle: Sequence[uuid.UUID], symbols: Iterable[str], day: date
) -> list[store.Row]:
    return await tax_store.pending_losses(
        conn, circle, symbols=set(symbols), since=day - _WINDOW, until=day + _WINDOW
    )


async def record_buy(
    conn: store.Conn,
    *,
    user_id: uuid.UUID,
    portfolio: dict[str, Any],
    symbol: str,
    shares: Decimal,
    cost: Decimal,
    day: date,
    source: str,
    fill_row_id: uuid.UUID | None,
    groups: IdentityGroups | None = None,
    circle: Sequence[uuid.UUID] | None = None,
    waiting: WaitingLosses | None = None,
) -> uuid.UUID:
    """Open the lot(s) of a buy fill, replacing the losses of the last 30 days that wait for shares.

    The lot keeping the new id carries ``opened_by_fill_id``; shares split off as a replacement
    are lots of their own (their basis raised by the loss, their holding period moved back).
    A lot transferred in is a purchase on its acquisition date (``day``) without a fill: its
    ``fill_row_id`` is ``None``, and so is the ``fill_id`` of the wash sales it makes. Its date may
    precede sales already booked: their losses of the 30 days after it wait for it too (a fill's
    ``day`` is today, so none does).
    """
    if groups is None:
        groups = await tax_store.identity_groups(conn)
    if circle is None:
        circle = await households.wash_sale_circle(conn, user_id)
    if waiting is not None:
        losses = await waiting.for_buy(conn, circle, groups, symbol, day)
    else:
        losses = await _pending(conn, circle, groups.members(symbol), day)
    lot_id = uuid.uuid4()
    outcome = on_buy(
        account_id=str(portfolio["id"]),
        account_type=AccountType(portfolio["account_type"]),
        symbol=symbol,
        day=day,
        shares=shares,
        cost=cost,
        losses=[
            PendingLoss(
                ref=row["id"],
                symbol=row["symbol"],
                sold=row["sold_at"],
                holding_period_start=tacked_start(
                    holding_period_start=row["acquired_at"],
                    always_long=row["always_long"],
                    sold_on=row["sold_at"],
                ),
                shares_left=row["shares_left"],
                loss_left=row["loss_left"],
            )
            for row in losses
        ],
        groups=groups,
        lot_id=lot_id,
    )
    await _write_lots(conn, outcome.lots, source_of=lambda _: source, fill=(lot_id, fill_row_id), new=True)
    for wash in outcome.wash_sales:
        await tax_store.disallow_more(conn, wash.sold_lot_id, wash.disallowed)
    await _write_wash_sales(conn, user_id, outcome.wash_sales, lambda w: w.sold_lot_id, fill_row_id)
    if waiting is not None:
        waiting.replaced(outcome.wash_sales)
    return lot_id


def _as_stored(part: SoldShares, stored: dict[str, Any]) -> SoldShares:
    """The shares sold with what only the stored lot knows: its purchase, and for a gift or an
    inheritance the part of the loss basis that goes with them and whether they are always long."""
    loss_basis = stored["loss_basis"]
    if loss_basis is not None:
        loss_basis, _ = basis_of_part(part.shares, part.lot.shares, loss_basis, loss_basis)
    return replace(
        part, purchase=stored["purchase_lot_id"], loss_basis=loss_basis, always_long=stored["always_long"]
    )


def _held(row: dict[str, Any]) -> HeldLot:
    return HeldLot(
        account_id=str(row["portfolio_id"]),
        account_type=AccountType(row["account_type"]),
        lot=store.lot_from_row(row),
        original_shares=row["original_shares"],
        is_replacement=row["is_replacement"],
        purchase=row["purchase_lot_id"],
    )


async def _write_lots(
    conn: store.Conn,
    changes: Iterable[LotChange],
    *,
    source_of: Callable[[LotChange], str],
    fill: tuple[uuid.UUID, uuid.UUID | None] | None,
    new: bool = False,
) -> None:
    """Lots changed in place are rewritten; new ones (a buy's, or shares split off) are inserted."""
    for change in changes:
        if change.split_from is None and not new:
            await lots.rewrite_lot(conn, change.lot, original_shares=change.original_shares)
            continue
        opened_by = fill[1] if fill is not None and change.lot.id == fill[0] else None
        await lots.insert_lot(
            conn,
            portfolio_id=uuid.UUID(change.account_id),
            lot=change.lot,
            original_shares=change.original_shares,
            source=source_of(change),
            opened_by_fill_id=opened_by,
            purchase_lot_id=change.purchase,
        )


async def _write_wash_sales(
    conn: store.Conn,
    user_id: uuid.UUID,
    washes: Iterable[WashSale],
    realized_id: Callable[[WashSale], uuid.UUID],
    fill_row_id: uuid.UUID | None,
) -> None:
    for wash in washes:
        await tax_store.insert_wash_sale(
            conn,
            user_id=user_id,
            realized_lot_id=realized_id(wash),
            replacement_lot_id=wash.replacement_lot_id,
            replacement_portfolio_id=uuid.UUID(wash.replacement_account_id),
            replacement_account_type=wash.replacement_account_type.value,
            symbol=wash.symbol,
            replacement_symbol=wash.replacement_symbol,
            sold_at=wash.sold,
            replacement_acquired_at=wash.replacement_acquired,
            shares=wash.shares,
            disallowed=wash.disallowed,
            holding_days=wash.holding_days,
            permanent=wash.permanent,
            fill_id=fill_row_id,
        )
