"""Wash sales one fill at a time give what the replay of the whole history gives.

The order desk applies the engine fill by fill (:mod:`wealthalloc.domain.wash_sale_book`);
these tests run histories both ways, a book kept fill by fill as the trading path keeps the
``lots`` table, and :func:`realize` over the whole history, and compare them.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from hypothesis import assume, given, settings

from tests.unit.test_wash_sale import GROUPS, histories
from wealthalloc.domain.lots import Lot, LotMethod, relieve
from wealthalloc.domain.money import money
from wealthalloc.domain.wash_sale import (
    AccountType,
    IdentityGroups,
    Realization,
    RealizedLot,
    Side,
    Transaction,
    realize,
)
from wealthalloc.domain.wash_sale_book import HeldLot, PendingLoss, SoldShares, on_buy, on_sale

D = Decimal
EXACT = D(0)
TAXABLE, IRA = AccountType.TAXABLE, AccountType.IRA


@dataclass
class _Loss:
    row: int
    symbol: str
    sold: date
    holding_period_start: date
    shares_left: Decimal
    loss_left: Decimal


class Book:
    """A taxpayer's lots kept fill by fill, as the order desk keeps them in PostgreSQL."""

    def __init__(self, groups: IdentityGroups, ids: Callable[[], uuid.UUID]) -> None:
        self.groups = groups
        self.ids = ids
        self.held: dict[uuid.UUID, HeldLot] = {}
        self.rows: list[RealizedLot] = []
        self.losses: dict[uuid.UUID, _Loss] = {}
        self.deferred = D(0)
        self.permanent = D(0)
        self.washes = 0

    def apply(self, tx: Transaction) -> None:
        if tx.side is Side.BUY:
            self.buy(tx)
        else:
            self.sell(tx)

    def buy(self, tx: Transaction) -> None:
        outcome = on_buy(
            account_id=tx.account_id,
            account_type=tx.account_type,
            symbol=tx.symbol,
            day=tx.date,
            shares=tx.quantity,
            cost=tx.amount,
            losses=[
                PendingLoss(
                    ref, loss.symbol, loss.sold, loss.holding_period_start, loss.shares_left, loss.loss_left
                )
                for ref, loss in self.losses.items()
            ],
            groups=self.groups,
            lot_id=self.ids(),
            new_lot_id=self.ids,
        )
        for change in outcome.lots:
            self.held[change.lot.id] = HeldLot(
                change.account_id,
                change.account_type,
                change.lot,
                change.original_shares,
                change.is_replacement,
                purchase=change.purchase,
            )
        for wash in outcome.wash_sales:
            loss = self.losses[wash.sold_lot_id]
            loss.shares_left -= wash.shares
            loss.loss_left -= wash.disallowed
            row = self.rows[loss.row]
            self.rows[loss.row] = replace(
                row,
                adjustment=row.adjustment + wash.disallowed,
                permanently_disallowed=row.permanently_disallowed
                + (wash.disallowed if wash.permanent else 0),
            )
            self._count(wash.disallowed, wash.permanent)

    def sell(self, tx: Transaction) -> None:
        position = [
            h.lot for h in self.held.values() if h.account_id == tx.account_id and h.lot.symbol == tx.symbol
        ]
        reliefs = relieve(position, tx.quantity, LotMethod.FIFO)
        sold: list[SoldShares] = []
        left = tx.amount
        for i, relief in enumerate(reliefs):
            share = left if i == len(reliefs) - 1 else money(tx.amount * relief.shares / tx.quantity)
            left -= share
            sold.append(
                SoldShares(relief.lot, relief.shares, relief.cost_basis, relief.adjusted_basis, share)
            )
            kept = self.held[relief.lot.id]
            remaining = relief.remaining
            self.held[relief.lot.id] = replace(
                kept,
                lot=replace(remaining, wash_sale_disallowed=remaining.adjusted_basis - remaining.cost_basis),
            )
        outcome = on_sale(
            account_id=tx.account_id,
            account_type=tx.account_type,
            symbol=tx.symbol,
            day=tx.date,
            sold=sold,
            held=list(self.held.values()),
            groups=self.groups,
            new_lot_id=self.ids,
        )
        rows = {}
        for realized in outcome.realized:
            rows[realized.lot_id] = len(self.rows)
            self.rows.append(realized)
        for change in outcome.lots:
            self.held[change.lot.id] = HeldLot(
                change.account_id,
                change.account_type,
                change.lot,
                change.original_shares,
                change.is_replacement,
                purchase=change.purchase,
            )
        matched: dict[uuid.UUID, tuple[Decimal, Decimal]] = {}
        for wash in outcome.wash_sales:
            shares, amount = matched.get(wash.sold_lot_id, (D(0), D(0)))
            matched[wash.sold_lot_id] = (shares + wash.shares, amount + wash.disallowed)
            self._count(wash.disallowed, wash.permanent)
        for realized in outcome.realized:
            loss = realized.cost_basis - realized.proceeds
            shares, amount = matched.get(realized.lot_id, (D(0), D(0)))
            if loss > 0 and tx.account_type.is_taxable and shares < realized.shares:
                self.losses[uuid.uuid4()] = _Loss(
                    rows[realized.lot_id],
                    tx.symbol,
                    tx.date,
                    realized.holding_period_start,
                    realized.shares - shares,
                    loss - amount,
                )

    def _count(self, disallowed: Decimal, permanent: bool) -> None:
        self.washes += 1
        if permanent:
            self.permanent += disallowed
        else:
            self.deferred += disallowed

    def open_lots(self) -> list[HeldLot]:
        return [h for h in self.held.values() if h.lot.shares > 0]


def counting_ids() -> Callable[[], uuid.UUID]:
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter))


def both_ways(history: list[Transaction], groups: IdentityGroups = GROUPS) -> tuple[Book, Realization]:
    book = Book(groups, counting_ids())
    for tx in history:
        book.apply(tx)
    return book, realize(history, lot_method=LotMethod.FIFO, groups=groups, new_lot_id=counting_ids())


def tx(
    day: str,
    account: str,
    kind: AccountType,
    symbol: str,
    side: Side,
    quantity: str,
    price: str,
    fees: str = "0",
) -> Transaction:
    return Transaction(date.fromisoformat(day), account, kind, symbol, side, D(quantity), D(price), D(fees))


def assert_same(book: Book, whole: Realization, tolerance: Decimal = EXACT) -> None:
    mine = {h.lot.id: h for h in book.open_lots()}
    theirs = {h.lot.id: h for h in whole.open_lots}
    assert mine.keys() == theirs.keys()
    for lot_id, held in theirs.items():
        a, b = mine[lot_id].lot, held.lot
        assert (a.shares, a.cost_basis, a.acquired_at, a.holding_period_start) == (
            b.shares,
            b.cost_basis,
            b.acquired_at,
            b.holding_period_start,
        )
        assert abs(a.adjusted_basis - b.adjusted_basis) <= tolerance
        assert mine[lot_id].is_replacement == held.is_replacement
    assert len(book.rows) == len(whole.realized)
    for a_row, b_row in zip(book.rows, whole.realized, strict=True):
        assert (a_row.lot_id, a_row.shares, a_row.proceeds, a_row.term) == (
            b_row.lot_id,
            b_row.shares,
            b_row.proceeds,
            b_row.term,
        )
        assert abs(a_row.cost_basis - b_row.cost_basis) <= tolerance
        assert abs(a_row.adjustment - b_row.adjustment) <= tolerance
        assert abs(a_row.permanently_disallowed - b_row.permanently_disallowed) <= tolerance
    assert abs(book.deferred - whole.deferred_total) <= tolerance
    assert abs(book.permanent - whole.permanently_disallowed_total) <= tolerance


# --- worked examples ---------------------------------------------------------------------------


def test_a_loss_replaced_in_part_in_another_account_and_in_part_in_an_ira() -> None:
    history = [
        tx("2020-01-06", "brokerage", TAXABLE, "JPM", Side.BUY, "100", "50"),
        tx("2022-03-01", "brokerage", TAXABLE, "JPM", Side.SELL, "100", "30"),  # loss 2,000
        tx("2022-03-15", "ira", IRA, "JPM", Side.BUY, "40", "29"),  # 800 lost for good
        tx("2022-03-20", "second", TAXABLE, "JPM", Side.BUY, "100", "28"),  # 60 shares take 1,200
    ]
    book, whole = both_ways(history)
    assert_same(book, whole)
    assert (book.deferred, book.permanent) == (D(1200), D(800))
    [row] = book.rows
    assert (row.adjustment, row.permanently_disallowed, row.gain_loss) == (D(2000), D(800), D(0))
    replacement = next(h.lot for h in book.open_lots() if h.account_id == "second" and h.is_replacement)
    assert (replacement.shares, replacement.adjusted_basis) == (D(60), D(1680) + D(1200))
    assert replacement.holding_period_start == date(2022, 3, 20) - (date(2022, 3, 1) - date(2020, 1, 6))


def test_shares_bought_before_a_loss_sale_are_its_replacement_but_the_rest_of_the_lot_sold_is_not() -> None:
    history = [
        tx("2022-01-03", "brokerage", TAXABLE, "AAA", Side.BUY, "100", "50"),
        tx("2022-05-02", "second", TAXABLE, "AAB", Side.BUY, "30", "41"),  # AAB is identical to AAA
        tx("2022-05-10", "brokerage", TAXABLE, "AAA", Side.BUY, "10", "40"),
        tx("2022-05-20", "brokerage", TAXABLE, "AAA", Side.SELL, "50", "40"),  # sells from the first lot
    ]
    book, whole = both_ways(history)
    assert_same(book, whole)
    [row] = book.rows
    # 10 a share, for 30 shares in the second account and the 10 bought on 05-10; the loss of the
    # other 10 shares waits for a later buy.
    assert row.adjustment == book.deferred == D(400)
    assert [(loss.shares_left, loss.loss_left) for loss in book.losses.values()] == [(D(10), D(100))]
    held = {(h.account_id, h.lot.symbol, h.lot.shares): h.lot.adjusted_basis for h in book.open_lots()}
    assert held[("second", "AAB", D(30))] == D(1230) + D(300)
    assert held[("brokerage", "AAA", D(50))] == D(2500)  # the rest of the lot sold from: no replacement


def test_a_sale_of_the_lots_the_desk_named_realizes_those_lots_whatever_fifo_would_take() -> None:
    early = Lot(uuid.uuid4(), "MSFT", D(10), D(1000), D(1000), date(2020, 1, 2), date(2020, 1, 2))
    late = Lot(uuid.uuid4(), "MSFT", D(10), D(3000), D(3000), date(2022, 1, 3), date(2022, 1, 3))
    held = [HeldLot("a", TAXABLE, early, D(10)), HeldLot("a", TAXABLE, late, D(10))]
    outcome = on_sale(
        account_id="a",
        account_type=TAXABLE,
        symbol="MSFT",
        day=date(2022, 6, 1),
        sold=[SoldShares(late, D(4), D("1200.0000"), D("1200.0000"), D("1003.3333"))],
        held=held,
        groups=IdentityGroups(),
    )
    [row] = outcome.realized
    assert (row.lot_id, row.shares, row.proceeds, row.cost_basis) == (late.id, D(4), D("1003.3333"), D(1200))
    assert outcome.wash_sales == () and outcome.lots == ()


def test_the_rest_of_a_purchase_does_not_replace_the_loss_of_shares_split_off_it() -> None:
    # 150 bought on 03-10; 100 of them were split off as the replacement of an earlier loss.
    kept = Lot(uuid.uuid4(), "AAA", D(50), D(1900), D(1900), date(2022, 3, 10), date(2022, 3, 10))
    split = Lot(uuid.uuid4(), "AAA", D(100), D(3800), D(4800), date(2022, 3, 10), date(2022, 1, 10))
    other = Lot(uuid.uuid4(), "AAA", D(20), D(700), D(700), date(2022, 3, 15), date(2022, 3, 15))
    held = [
        HeldLot("a", TAXABLE, kept, D(50)),
        HeldLot("b", TAXABLE, other, D(20)),
    ]
    outcome = on_sale(
        account_id="a",
        account_type=TAXABLE,
        symbol="AAA",
        day=date(2022, 3, 20),
        sold=[SoldShares(split, D(100), D(3800), D(4800), D(3500), purchase=kept.id)],
        held=held,
        groups=IdentityGroups(),
    )
    [row] = outcome.realized
    assert row.adjustment == D(260)  # 20 of the 100 shares, replaced in account b; never by the other 50
    assert [(w.replacement_lot_id, w.shares) for w in outcome.wash_sales] == [(other.id, D(20))]
    [changed] = outcome.lots
    assert changed.lot.id == other.id and changed.lot.adjusted_basis == D(960)


def test_proceeds_and_costs_pass_through_exactly_whatever_their_rounding() -> None:
    lot = Lot(
        uuid.uuid4(), "KO", D("3.333333"), D("200.0001"), D("200.0001"), date(2022, 1, 3), date(2022, 1, 3)
    )
    outcome = on_sale(
        account_id="a",
        account_type=TAXABLE,
        symbol="KO",
        day=date(2022, 6, 1),
        sold=[SoldShares(lot, D("3.333333"), D("200.0001"), D("200.0001"), D("199.9999"))],
        held=[],
        groups=IdentityGroups(),
    )
    assert outcome.realized[0].proceeds == D("199.9999")
    bought = on_buy(
        account_id="b",
        account_type=TAXABLE,
        symbol="KO",
        day=date(2022, 6, 3),
        shares=D("3.333333"),
        cost=D("1234.5679"),
        losses=[
            PendingLoss(uuid.uuid4(), "KO", date(2022, 6, 1), date(2022, 1, 3), D("3.333333"), D("0.0002"))
        ],
        groups=IdentityGroups(),
        lot_id=uuid.uuid4(),
    )
    [lot_bought] = bought.lots
    assert lot_bought.lot.cost_basis == D("1234.5679") and lot_bought.lot.adjusted_basis == D("1234.5681")


def test_a_buy_ignores_losses_of_other_securities_and_outside_the_window() -> None:
    losses = [
        PendingLoss(uuid.uuid4(), "KO", date(2022, 4, 1), date(2021, 1, 4), D(10), D(100)),  # 31 days before
        PendingLoss(uuid.uuid4(), "PEP", date(2022, 5, 1), date(2021, 1, 4), D(10), D(100)),
    ]
    bought = on_buy(
        account_id="b",
        account_type=TAXABLE,
        symbol="KO",
        day=date(2022, 5, 2),
        shares=D(10),
        cost=D(600),
        losses=losses,
        groups=IdentityGroups(),
        lot_id=uuid.uuid4(),
    )
    assert bought.wash_sales == () and [c.lot.adjusted_basis for c in bought.lots] == [D(600)]


# --- properties over random histories --------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(history=histories())
def test_fill_by_fill_gives_what_the_whole_replay_gives(history: list[Transaction]) -> None:
    whole = realize(history, lot_method=LotMethod.FIFO, groups=GROUPS, new_lot_id=counting_ids())
    # A sale within a few ten-thousandths of its basis could tip either way on pro-rata rounding.
    assume(all(abs(row.cost_basis - row.proceeds) >= D("0.01") for row in whole.realized))
    book, _ = both_ways(history)
    # Pro-rata shares of a loss are rounded per fill here and per history there: 0.0001 each at most.
    assert_same(book, whole, tolerance=D("0.0001") * (len(whole.wash_sales) + 1))


@settings(max_examples=150, deadline=None)
@given(history=histories())
def test_fill_by_fill_conserves_basis_exactly(history: list[Transaction]) -> None:
    book, _ = both_ways(history)
    paid = sum((t.amount for t in history if t.side is Side.BUY), D(0))
    open_adjusted = sum((h.lot.adjusted_basis for h in book.open_lots()), D(0))
    open_cost = sum((h.lot.cost_basis for h in book.open_lots()), D(0))
    realized_basis = sum((row.cost_basis for row in book.rows), D(0))
    disallowed = sum((row.adjustment for row in book.rows), D(0))
    assert open_adjusted + realized_basis == paid + book.deferred
    assert disallowed == book.deferred + book.permanent
    assert open_cost <= paid
    for held in book.open_lots():
        assert held.lot.holding_period_start <= held.lot.acquired_at
        assert held.account_type.is_taxable or held.lot.adjusted_basis == held.lot.cost_basis
