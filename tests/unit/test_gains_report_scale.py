"""The gains report at scale: the same result as a plain reference, and work that grows as n log n.

The reference below is the replay as first written: every lot and every loss
kept in creation order and scanned in full for each trade, lots relieved by
:func:`~wealthalloc.domain.lots.relieve` over the whole position, frozen lots
rebuilt on every change, and the Schedule D totals summed row by row. It is
quadratic and obviously so; the engine must give the same rows, lots, wash
sales and totals, down to each Decimal's exponent (compared through ``repr``).

Speed is never asserted as a time. The growth test counts the Python lines
the domain code executes (``sys.settrace``) for a history and for one four
times as long: O(n log n) work grows about four times, quadratic work sixteen.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wealthalloc.domain
from wealthalloc.domain import wash_sale_replay
from wealthalloc.domain.gains_report import (
    CapitalLossCarryforward,
    FilingStatus,
    Form8949Row,
    GainsReport,
    YearTotals,
    capital_loss_limit,
    carryforward,
    gains_report,
)
from wealthalloc.domain.lots import Lot, LotMethod, Term, relieve, term
from wealthalloc.domain.money import money
from wealthalloc.domain.native import load_native
from wealthalloc.domain.wash_sale import (
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
    realize,
)

ZERO = Decimal(0)
ACCOUNTS = (
    ("brokerage", AccountType.TAXABLE),
    ("joint", AccountType.TAXABLE),
    ("ira", AccountType.IRA),
    ("roth", AccountType.ROTH_IRA),
)
SYMBOLS = ("VOO", "IVV", "QQQ")
GROUPS = IdentityGroups({"VOO": "sp500", "IVV": "sp500"})


# --- the reference -------------------------------------------------------------------------------


@dataclass
class Held:
    lot: Lot
    account_id: str
    account_type: AccountType
    origin: int
    original_shares: Decimal
    opened_by_ref: str | None
    replacement: bool = False

    @property
    def candidate(self) -> bool:
        return not self.replacement and self.lot.shares > 0


@dataclass
class Loss:
    row: int
    sale: Transaction
    sold: Lot
    origin: int
    shares: Decimal
    loss: Decimal
    shares_left: Decimal = ZERO
    loss_left: Decimal = ZERO
    adjustment: Decimal = ZERO
    permanent: Decimal = ZERO
    matched: list[Any] = field(default_factory=list)


def rebased(lot: Lot, **changes: Any) -> Lot:
    changed = replace(lot, **changes)
    return replace(changed, wash_sale_disallowed=changed.adjusted_basis - changed.cost_basis)


def reference_realize(
    history: Sequence[Transaction],
    *,
    lot_method: LotMethod,
    groups: IdentityGroups,
    opening_lots: Sequence[AccountLot],
    new_lot_id: Callable[[], uuid.UUID],
) -> Realization:
    """The quadratic replay: scan everything, for every trade."""
    lots: list[Held] = []  # in creation order, which is also the order lots enter the window
    losses: list[Loss] = []
    rows: list[RealizedLot] = []
    washes: list[WashSale] = []
    window = timedelta(days=WASH_SALE_DAYS)

    def split(held: Held, shares: Decimal) -> Held:
        lot = held.lot
        cost = money(lot.cost_basis * shares / lot.shares)
        adjusted = money(lot.adjusted_basis * shares / lot.shares)
        part = Held(
            rebased(lot, id=new_lot_id(), shares=shares, cost_basis=cost, adjusted_basis=adjusted),
            held.account_id,
            held.account_type,
            held.origin,
            shares,
            held.opened_by_ref,
        )
        held.lot = rebased(
            lot,
            shares=lot.shares - shares,
            cost_basis=lot.cost_basis - cost,
            adjusted_basis=lot.adjusted_basis - adjusted,
        )
        held.original_shares -= shares
        lots.append(part)
        return part

    def match(loss: Loss, held: Held) -> None:
        shares = min(loss.shares_left, held.lot.shares)
        replacement = split(held, shares) if shares < held.lot.shares else held
        replacement.replacement = True
        if shares == loss.shares_left:
            part = loss.loss_left
        else:
            part = min(money(loss.loss * shares / loss.shares), loss.loss_left)
        loss.shares_left -= shares
        loss.loss_left -= part
        days = 0
        if replacement.account_type is AccountType.TAXABLE:
            days = (loss.sale.date - loss.sold.holding_period_start).days
            lot = replacement.lot
            replacement.lot = rebased(
                lot,
                adjusted_basis=lot.adjusted_basis + part,
                holding_period_start=min(lot.holding_period_start, lot.acquired_at - timedelta(days=days)),
            )
        else:
            loss.permanent += part
        loss.adjustment += part
        washes.append(
            WashSale(
                symbol=loss.sale.symbol,
                account_id=loss.sale.account_id,
                sold=loss.sale.date,
                sold_lot_id=loss.sold.id,
                replacement_symbol=replacement.lot.symbol,
                replacement_account_id=replacement.account_id,
                replacement_account_type=replacement.account_type,
                replacement_lot_id=replacement.lot.id,
                replacement_acquired=replacement.lot.acquired_at,
                shares=shares,
                disallowed=part,
                holding_days=days,
                sale_ref=loss.sale.ref,
            )
        )

    for number, opening in enumerate(sorted(opening_lots, key=lambda held: held.lot.acquired_at)):
        lots.append(
            Held(
                opening.lot,
                opening.account_id,
                opening.account_type,
                -1 - number,
                opening.original_shares,
                opening.opened_by_ref,
                opening.is_replacement,
            )
        )
    for index, tx in enumerate(history):
        key = groups.key(tx.symbol)
        if tx.side is Side.BUY:
            bought = Held(
                Lot(new_lot_id(), tx.symbol, tx.quantity, tx.amount, tx.amount, tx.date, tx.date),
                tx.account_id,
                tx.account_type,
                index,
                tx.quantity,
                tx.ref,
            )
            lots.append(bought)
            for loss in losses:
                if not bought.candidate:
                    break
                if groups.key(loss.sale.symbol) == key and loss.shares_left > 0:
                    if tx.date - window <= loss.sale.date <= tx.date:
                        match(loss, bought)
            continue
        position = [
            held
            for held in lots
            if held.account_id == tx.account_id and held.lot.symbol == tx.symbol and held.lot.shares > 0
        ]
        by_id = {held.lot.id: held for held in position}
        proceeds_left, shares_left = tx.amount, tx.quantity
        reliefs = relieve([held.lot for held in position], tx.quantity, lot_method)
        for relief in reliefs:  # every share sold is gone before any loss looks for replacements
            held = by_id[relief.lot.id]
            held.lot = rebased(
                held.lot,
                shares=held.lot.shares - relief.shares,
                cost_basis=held.lot.cost_basis - relief.cost_basis,
                adjusted_basis=held.lot.adjusted_basis - relief.adjusted_basis,
            )
        for relief in reliefs:
            held = by_id[relief.lot.id]
            shares_left -= relief.shares
            proceeds = proceeds_left if shares_left == 0 else money(tx.amount * relief.shares / tx.quantity)
            proceeds_left -= proceeds
            sold = relief.lot
            rows.append(
                RealizedLot(
                    tx.symbol,
                    tx.account_id,
                    tx.account_type,
                    sold.id,
                    relief.shares,
                    sold.acquired_at,
                    sold.holding_period_start,
                    tx.date,
                    proceeds,
                    relief.adjusted_basis,
                    relief.cost_basis,
                    ZERO,
                    ZERO,
                    term(sold.holding_period_start, tx.date),
                    tx.ref,
                )
            )
            amount = relief.adjusted_basis - proceeds
            if amount <= 0 or tx.account_type is not AccountType.TAXABLE:
                continue
            loss = Loss(len(rows) - 1, tx, sold, held.origin, relief.shares, amount, relief.shares, amount)
            for candidate in lots:
                if loss.shares_left == 0:
                    break
                if candidate.candidate and candidate.origin != loss.origin:
                    if groups.key(candidate.lot.symbol) == key:
                        if tx.date - window <= candidate.lot.acquired_at <= tx.date:
                            match(loss, candidate)
            losses.append(loss)
    for loss in losses:
        if loss.adjustment:
            rows[loss.row] = replace(
                rows[loss.row], adjustment=loss.adjustment, permanently_disallowed=loss.permanent
            )
    still_open = sorted(
        (held for held in lots if held.lot.shares > 0),
        key=lambda held: (held.account_id, held.lot.symbol, held.lot.acquired_at, str(held.lot.id)),
    )
    return Realization(
        realized=tuple(rows),
        open_lots=tuple(
            AccountLot(
                held.account_id,
                held.account_type,
                held.lot,
                held.original_shares,
                held.replacement,
                held.opened_by_ref,
            )
            for held in still_open
        ),
        wash_sales=tuple(washes),
    )


def reference_report(
    realized: Sequence[RealizedLot],
    *,
    year: int | None,
    filing_status: FilingStatus,
    prior: CapitalLossCarryforward,
) -> GainsReport:
    """Form 8949 rows and Schedule D totals, each figure summed on its own over the year's rows."""
    reportable = [row for row in realized if row.account_type is AccountType.TAXABLE]
    rows = sorted(
        (
            Form8949Row(
                row.symbol,
                row.shares,
                row.holding_period_start,
                row.sold,
                row.proceeds,
                row.cost_basis,
                "W" if row.adjustment > 0 else None,
                row.adjustment,
                row.proceeds - row.cost_basis + row.adjustment,
                row.term,
                row.account_id,
            )
            for row in reportable
            if year is None or row.sold.year == year
        ),
        key=lambda row: (row.sold, row.symbol, row.account_id, row.acquired),
    )
    years = sorted({row.sold.year for row in reportable})
    first = year if year is not None else (years[0] if years else None)
    last = year if year is not None else (years[-1] if years else None)
    if first is None or last is None:
        return GainsReport(rows=tuple(rows), totals=())
    if years:
        first = min(first, years[0])
    totals: list[YearTotals] = []
    for each in range(first, last + 1):
        of_year = [row for row in reportable if row.sold.year == each]
        short = sum((row.gain_loss for row in of_year if row.term is Term.SHORT), ZERO)
        long = sum((row.gain_loss for row in of_year if row.term is Term.LONG), ZERO)
        net_short, net_long = short - prior.short, long - prior.long
        net = net_short + net_long
        deductible = min(-net, capital_loss_limit(filing_status)) if net < 0 else ZERO
        totals.append(
            YearTotals(
                year=each,
                filing_status=filing_status,
                rows=len(of_year),
                proceeds=sum((row.proceeds for row in of_year), ZERO),
                cost_basis=sum((row.cost_basis for row in of_year), ZERO),
                short=short,
                long=long,
                prior_carryforward=prior,
                net_short=net_short,
                net_long=net_long,
                net=net,
                disallowed=sum((row.adjustment for row in of_year), ZERO),
                permanently_disallowed=sum((row.permanently_disallowed for row in of_year), ZERO),
                deductible=deductible,
                carryforward=carryforward(net_short=net_short, net_long=net_long, deducted=deductible),
            )
        )
        prior = totals[-1].carryforward
    if year is not None:
        totals = [item for item in totals if item.year == year]
    return GainsReport(rows=tuple(rows), totals=tuple(totals))


# --- the differential test -----------------------------------------------------------------------


@st.composite
def books(draw: st.DrawFn) -> tuple[list[AccountLot], list[Transaction]]:
    """A few lots held at the start, then trades a few days apart, so that the 30-day window is hit
    often; sells never exceed what the account holds."""
    first_day = date(2021, 11, 1)
    opening: list[AccountLot] = []
    held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for number in range(draw(st.integers(0, 3))):
        account, kind = draw(st.sampled_from(ACCOUNTS))
        symbol = draw(st.sampled_from(SYMBOLS))
        shares = Decimal(draw(st.integers(1, 3000))) / 100
        cost = Decimal(draw(st.integers(1000, 900000))) / 100
        carried = ZERO if kind is not AccountType.TAXABLE else Decimal(draw(st.integers(0, 5000))) / 100
        acquired = first_day - timedelta(days=draw(st.integers(0, 500)))
        lot = Lot(
            uuid.UUID(int=10**6 + number),
            symbol,
            shares,
            cost,
            cost + carried,
            acquired,
            acquired - timedelta(days=draw(st.integers(0, 40)) if carried else 0),
            carried,
        )
        opening.append(AccountLot(account, kind, lot, shares, opened_by_ref=f"open {number}"))
        held[(account, symbol)] += shares
    steps = draw(st.lists(st.tuples(
        st.sampled_from([0, 0, 0, 1, 2, 3, 5, 9, 20, 29, 30, 31, 40, 370]),  # days since the previous trade
        st.sampled_from(ACCOUNTS[:1] * 3 + ACCOUNTS),
        st.sampled_from(SYMBOLS[:1] * 2 + SYMBOLS),
        st.sampled_from([True, True, False]),  # sell if the account holds shares
        st.integers(1, 4000),  # quantity in hundredths
        st.integers(1000, 30000),  # price in cents: losses and gains both common
        st.integers(0, 300),  # fees in cents
    ), min_size=1, max_size=50))  # fmt: skip
    day = first_day
    history: list[Transaction] = []
    for number, (gap, (account, kind), symbol, sell, hundredths, cents, fee_cents) in enumerate(steps):
        day += timedelta(days=gap)
        quantity = Decimal(hundredths) / 100
        price, fees = Decimal(cents) / 100, Decimal(fee_cents) / 100
        side = Side.BUY
        if sell and held[(account, symbol)] > 0:
            side, quantity = Side.SELL, min(quantity, held[(account, symbol)])
            fees = min(fees, quantity * price)
        held[(account, symbol)] += quantity if side is Side.BUY else -quantity
        history.append(Transaction(day, account, kind, symbol, side, quantity, price, fees, ref=f"t{number}"))
    return opening, history


def counting_ids() -> Callable[[], uuid.UUID]:
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter))


@settings(max_examples=300, deadline=None)
@given(
    book=books(),
    method=st.sampled_from([LotMethod.FIFO, LotMethod.HIFO]),
    year=st.sampled_from([None, 2021, 2022, 2023]),
    filing_status=st.sampled_from(list(FilingStatus)),
    carried=st.tuples(st.integers(0, 500000), st.integers(0, 500000)),
)
def test_the_report_equals_the_quadratic_reference_to_the_last_digit(
    book: tuple[list[AccountLot], list[Transaction]],
    method: LotMethod,
    year: int | None,
    filing_status: FilingStatus,
    carried: tuple[int, int],
) -> None:
    opening, history = book
    prior = CapitalLossCarryforward(short=Decimal(carried[0]) / 100, long=Decimal(carried[1]) / 100)
    result = realize(
        history, lot_method=method, groups=GROUPS, opening_lots=opening, new_lot_id=counting_ids()
    )
    expected = reference_realize(
        history, lot_method=method, groups=GROUPS, opening_lots=opening, new_lot_id=counting_ids()
    )
    assert repr(result) == repr(expected)
    report = gains_report(result.realized, year=year, filing_status=filing_status, prior_carryforward=prior)
    assert repr(report) == repr(
        reference_report(expected.realized, year=year, filing_status=filing_status, prior=prior)
    )


def native_replay() -> Any:
    """The compiled replay; ``make test`` builds it and asks for it, elsewhere its absence skips."""
    native = load_native(wash_sale_replay)
    if native is None:
        if os.environ.get("WEALTHALLOC_REQUIRE_NATIVE") == "1":
            pytest.fail("no current native build of the replay: python -m wealthalloc.ops.native build")
        pytest.skip("no current native build of the replay (python -m wealthalloc.ops.native build)")
    return native


@settings(max_examples=300, deadline=None)
@given(book=books(), method=st.sampled_from([LotMethod.FIFO, LotMethod.HIFO]))
def test_the_native_replay_makes_exactly_the_records_of_the_python_replay(
    book: tuple[list[AccountLot], list[Transaction]], method: LotMethod
) -> None:
    opening, history = book
    native = native_replay()
    replays = [
        engine.realize(
            history, lot_method=method, groups=GROUPS, opening_lots=opening, new_lot_id=counting_ids()
        )
        for engine in (native, wash_sale_replay)
    ]
    assert replays[0] == replays[1]
    assert repr(replays[0]) == repr(replays[1])  # the same Decimal digits, not only equal values
    assert {type(row) for row in replays[0].realized} <= {RealizedLot}


def test_the_native_replay_refuses_a_history_as_the_python_replay_does() -> None:
    native = native_replay()
    day = date(2024, 5, 1)
    oversold = [
        Transaction(day, "brokerage", AccountType.TAXABLE, "VOO", Side.BUY, Decimal(2), Decimal(100)),
        Transaction(day, "brokerage", AccountType.TAXABLE, "VOO", Side.SELL, Decimal(3), Decimal(90)),
    ]
    messages = []
    for engine in (native, wash_sale_replay):
        with pytest.raises(InvalidHistory) as raised:
            engine.realize(
                oversold, lot_method=LotMethod.FIFO, groups=GROUPS, opening_lots=(), new_lot_id=counting_ids()
            )
        messages.append((str(raised.value), raised.value.index, raised.value.ref))
    assert messages[0] == messages[1]


# --- the growth test -----------------------------------------------------------------------------

DOMAIN = str(Path(wealthalloc.domain.__file__).parent)


def lines_executed(work: Callable[[], object]) -> int:
    """How many lines of ``wealthalloc/domain`` code ``work`` runs: a measure of work, not of time."""
    count = 0

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if not frame.f_code.co_filename.startswith(DOMAIN):
            return None
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        work()
    finally:
        sys.settrace(None)
    return count


def report_work(history: list[Transaction]) -> int:
    # The Python replay: the native build runs no lines a tracer can count.
    def work() -> object:
        replay = wash_sale_replay.realize(
            history, lot_method=LotMethod.FIFO, groups=GROUPS, opening_lots=(), new_lot_id=counting_ids()
        )
        return gains_report(replay.realized)

    return lines_executed(work)


def trading_month(rounds: int) -> list[Transaction]:
    """A month of trading that made the old window index quadratic.

    A large lot is bought first and sold a share at a time at a loss: its own
    purchase cannot replace those losses, so every sale looked through the
    whole window, where many other lots had been bought and sold at a gain.
    """
    day = date(2023, 3, 1)
    history = [
        Transaction(day, "brokerage", AccountType.TAXABLE, "VOO", Side.BUY, Decimal(10**6), Decimal(100))
    ]
    for number in range(rounds):
        on = day + timedelta(days=number * 28 // rounds)
        for side, price in ((Side.BUY, Decimal(100)), (Side.SELL, Decimal(110))):
            history.append(Transaction(on, "joint", AccountType.TAXABLE, "VOO", side, Decimal(1), price))
    last = history[-1].date
    history += [
        Transaction(last, "brokerage", AccountType.TAXABLE, "VOO", Side.SELL, Decimal(1), Decimal(90))
    ] * rounds
    return history


def busy_years(trades: int, seed: int = 3) -> list[Transaction]:
    """Random trades in three accounts over about 16 trading days per 20 trades, as in the benchmark."""
    rng = random.Random(seed)
    held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    history: list[Transaction] = []
    day = dt.date(2015, 1, 2)
    for _ in range(trades):
        day += timedelta(days=rng.choice((0, 0, 0, 0, 1, 1, 2, 3)))
        account, kind = rng.choice(ACCOUNTS[:3])
        symbol = rng.choice(SYMBOLS)
        price = Decimal(rng.randint(8000, 12000)) / 100
        owned = held[(account, symbol)]
        side, quantity = Side.BUY, Decimal(rng.randint(1, 60))
        if owned > 0 and rng.random() < 0.45:
            side, quantity = Side.SELL, min(owned, quantity)
        held[(account, symbol)] += quantity if side is Side.BUY else -quantity
        history.append(Transaction(day, account, kind, symbol, side, quantity, price))
    return history


def test_the_work_of_a_report_grows_as_n_log_n_when_losses_cannot_use_the_window() -> None:
    small, large = report_work(trading_month(150)), report_work(trading_month(600))
    # Four times the trades: about four times the work (sixteen times when it was quadratic).
    assert large < 5 * small


def test_the_work_of_a_report_grows_as_n_log_n_on_years_of_busy_trading() -> None:
    small, large = report_work(busy_years(1000)), report_work(busy_years(4000))
    assert large < 5 * small
