"""The wash-sale rule on trade histories: the worked examples of IRS Publication 550, and invariants.

Each example states its facts and the numbers the publication gives (or that
follow from its rules); the property tests replay random histories over
several accounts and check that no dollar of basis or share is created or
lost, and that the windowed engine agrees with the all-pairs reference.
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wealthalloc.domain.lots import Lot, LotMethod, Term
from wealthalloc.domain.wash_sale import (
    AccountLot,
    AccountType,
    IdentityGroups,
    InvalidHistory,
    Realization,
    Side,
    Transaction,
    realize,
    realize_all_pairs,
)

TAXABLE, IRA, ROTH = AccountType.TAXABLE, AccountType.IRA, AccountType.ROTH_IRA


def trade(
    day: str,
    side: str,
    quantity: str,
    price: str,
    symbol: str = "XYZ",
    account: str = "brokerage",
    kind: AccountType = TAXABLE,
    fees: str = "0",
) -> Transaction:
    return Transaction(
        date=date.fromisoformat(day),
        account_id=account,
        account_type=kind,
        symbol=symbol,
        side=Side(side),
        quantity=Decimal(quantity),
        price=Decimal(price),
        fees=Decimal(fees),
    )


def open_lots(result: Realization, symbol: str | None = None) -> list[Lot]:
    return [held.lot for held in result.open_lots if symbol is None or held.lot.symbol == symbol]


def by_acquisition(result: Realization) -> dict[date, Lot]:
    return {lot.acquired_at: lot for lot in open_lots(result)}


# --- Publication 550, "Wash Sales" ------------------------------------------------------------


def test_pub550_example_1_loss_disallowed_and_added_to_the_replacement_basis() -> None:
    # Buy 100 shares for $1,000; sell them for $750; within 30 days buy 100 for $800.
    result = realize(
        [
            trade("2022-01-10", "buy", "100", "10.00"),
            trade("2022-03-01", "sell", "100", "7.50"),
            trade("2022-03-20", "buy", "100", "8.00"),
        ]
    )
    [row] = result.realized
    assert (row.proceeds, row.cost_basis) == (Decimal("750"), Decimal("1000"))
    assert row.adjustment_code == "W"
    assert row.adjustment == Decimal("250")
    assert row.gain_loss == 0
    [replacement] = open_lots(result)
    assert replacement.cost_basis == Decimal("800")
    assert replacement.adjusted_basis == Decimal("1050")
    assert replacement.wash_sale_disallowed == Decimal("250")


def test_pub550_example_3_buys_within_30_days_before_the_sale_replace_75_of_100_shares() -> None:
    # 100 M bought 2018-09-24 for $5,000; 50 bought 2018-12-21 for $2,750; 25 bought 2018-12-28 for
    # $1,125; the September shares sold 2019-01-04 for $4,000. $750 of the $1,000 loss is
    # disallowed: $500 to the 50 shares (basis $3,250), $250 to the 25 shares (basis $1,375).
    result = realize(
        [
            trade("2018-09-24", "buy", "100", "50.00", symbol="M"),
            trade("2018-12-21", "buy", "50", "55.00", symbol="M"),
            trade("2018-12-28", "buy", "25", "45.00", symbol="M"),
            trade("2019-01-04", "sell", "100", "40.00", symbol="M"),
        ],
        lot_method=LotMethod.FIFO,
    )
    [row] = result.realized
    assert row.cost_basis - row.proceeds == Decimal("1000")
    assert row.adjustment == Decimal("750")
    assert row.gain_loss == Decimal("-250")
    lots = by_acquisition(result)
    assert lots[date(2018, 12, 21)].adjusted_basis == Decimal("3250")
    assert lots[date(2018, 12, 28)].adjusted_basis == Decimal("1375")
    assert [wash.disallowed for wash in result.wash_sales] == [Decimal("500"), Decimal("250")]


def test_pub550_example_4_replacements_matched_in_order_of_acquisition() -> None:
    # 100 shares sold at a $1,000 loss; 50 bought on each of the next four days from 2019-02-12.
    # Half the loss goes to the shares of 2019-02-12, half to those of 2019-02-13; the others are untouched.
    result = realize(
        [
            trade("2018-09-24", "buy", "100", "30.00", symbol="M"),
            trade("2019-02-03", "sell", "100", "20.00", symbol="M"),
            *(trade(f"2019-02-{day}", "buy", "50", "21.00", symbol="M") for day in (12, 13, 14, 15)),
        ]
    )
    assert result.realized[0].adjustment == Decimal("1000")
    lots = by_acquisition(result)
    assert lots[date(2019, 2, 12)].adjusted_basis == Decimal("1550")
    assert lots[date(2019, 2, 13)].adjusted_basis == Decimal("1550")
    assert lots[date(2019, 2, 14)].adjusted_basis == Decimal("1050")
    assert lots[date(2019, 2, 15)].adjusted_basis == Decimal("1050")


def test_partial_replacement_disallows_the_loss_pro_rata() -> None:
    # Sell 100 at a $300 loss, buy back 50: half the loss is disallowed, half deducted.
    result = realize(
        [
            trade("2022-01-03", "buy", "100", "10.00"),
            trade("2022-05-02", "sell", "100", "7.00"),
            trade("2022-05-10", "buy", "50", "7.10"),
        ]
    )
    [row] = result.realized
    assert row.adjustment == Decimal("150")
    assert row.gain_loss == Decimal("-150")
    [replacement] = open_lots(result)
    assert replacement.adjusted_basis == Decimal("355") + Decimal("150")


def test_a_replacement_bigger_than_the_sale_is_split_and_only_the_replacement_shares_take_basis() -> None:
    result = realize(
        [
            trade("2022-01-03", "buy", "40", "10.00"),
            trade("2022-05-02", "sell", "40", "8.00"),  # $80 loss
            trade("2022-05-10", "buy", "100", "8.00"),
        ]
    )
    lots = sorted(open_lots(result), key=lambda lot: lot.shares)
    assert [lot.shares for lot in lots] == [Decimal("40"), Decimal("60")]
    replacement, rest = lots
    assert (replacement.cost_basis, replacement.adjusted_basis) == (Decimal("320"), Decimal("400"))
    assert replacement.holding_period_start < replacement.acquired_at
    assert (rest.cost_basis, rest.adjusted_basis) == (Decimal("480"), Decimal("480"))
    assert rest.holding_period_start == rest.acquired_at
    held = {held.lot.id: held for held in result.open_lots}
    assert held[replacement.id].is_replacement and not held[rest.id].is_replacement
    assert held[replacement.id].original_shares + held[rest.id].original_shares == Decimal("100")


def test_a_replacement_in_an_ira_disallows_the_loss_for_good() -> None:
    # Rev. Rul. 2008-27: the loss is disallowed and the IRA's basis is not increased.
    result = realize(
        [
            trade("2022-01-03", "buy", "100", "10.00"),
            trade("2022-06-01", "sell", "100", "7.50"),
            trade("2022-06-15", "buy", "100", "8.00", account="ira", kind=IRA),
        ]
    )
    [row] = result.realized
    assert row.adjustment == Decimal("250") and row.permanently_disallowed == Decimal("250")
    assert row.gain_loss == 0
    [ira_lot] = open_lots(result)
    assert ira_lot.adjusted_basis == ira_lot.cost_basis == Decimal("800")
    assert ira_lot.holding_period_start == ira_lot.acquired_at
    assert result.permanently_disallowed_total == Decimal("250")
    assert result.deferred_total == 0


def test_a_replacement_in_a_roth_ira_in_part_splits_the_loss_between_deferred_and_lost() -> None:
    result = realize(
        [
            trade("2022-01-03", "buy", "100", "10.00"),
            trade("2022-06-01", "sell", "100", "6.00"),  # $400 loss
            trade("2022-06-02", "buy", "25", "6.00", account="roth", kind=ROTH),
            trade("2022-06-03", "buy", "25", "6.00"),
        ]
    )
    [row] = result.realized
    assert row.adjustment == Decimal("200")
    assert row.permanently_disallowed == Decimal("100")
    assert row.gain_loss == Decimal("-200")
    lots = {held.account_id: held.lot for held in result.open_lots}
    assert lots["roth"].adjusted_basis == Decimal("150")
    assert lots["brokerage"].adjusted_basis == Decimal("250")


def test_the_holding_period_of_the_sold_shares_carries_over_and_can_make_the_replacement_long_term() -> None:
    # Held 300 days, sold at a loss, bought back 10 days later; the replacement is sold 70 days after
    # it was bought: 300 + 70 > 365 days, a long-term sale although the shares were held 70 days.
    bought = date(2021, 3, 1)
    sold = bought + timedelta(days=300)
    rebought = sold + timedelta(days=10)
    result = realize(
        [
            trade(bought.isoformat(), "buy", "10", "100.00"),
            trade(sold.isoformat(), "sell", "10", "80.00"),
            trade(rebought.isoformat(), "buy", "10", "81.00"),
            trade((rebought + timedelta(days=70)).isoformat(), "sell", "10", "90.00"),
        ]
    )
    first, second = result.realized
    assert first.term is Term.SHORT and first.adjustment == Decimal("200")
    assert second.holding_period_start == rebought - timedelta(days=300)
    assert second.acquired_at == rebought
    assert second.term is Term.LONG
    assert second.cost_basis == Decimal("1010")  # 810 paid + 200 carried in
    assert second.gain_loss == Decimal("-110")
    assert second.basis_carried == Decimal("200")


def test_members_of_an_identity_group_replace_each_other() -> None:
    # Two share classes of one company, declared substantially identical by the operator.
    groups = IdentityGroups({"GOOG": "alphabet", "GOOGL": "alphabet"})
    history = [
        trade("2022-01-03", "buy", "10", "150.00", symbol="GOOGL"),
        trade("2022-05-02", "sell", "10", "120.00", symbol="GOOGL"),
        trade("2022-05-20", "buy", "10", "118.00", symbol="GOOG"),
    ]
    result = realize(history, groups=groups)
    assert result.realized[0].adjustment == Decimal("300")
    [goog] = open_lots(result, "GOOG")
    assert goog.adjusted_basis == Decimal("1480")
    # Without the group the two classes are different securities.
    assert realize(history).realized[0].adjustment == 0


def test_a_buy_of_another_security_never_washes() -> None:
    result = realize(
        [
            trade("2022-01-03", "buy", "10", "150.00", symbol="JPM"),
            trade("2022-05-02", "sell", "10", "120.00", symbol="JPM"),
            trade("2022-05-03", "buy", "40", "30.00", symbol="BAC"),
        ]
    )
    assert result.realized[0].adjustment == 0 and result.wash_sales == ()


def test_a_buy_within_30_days_before_the_sale_is_a_replacement_even_in_another_account() -> None:
    result = realize(
        [
            trade("2022-01-03", "buy", "100", "10.00"),
            trade("2022-04-20", "buy", "100", "8.50", account="second-brokerage"),
            trade("2022-05-02", "sell", "100", "8.00"),
        ]
    )
    assert result.realized[0].adjustment == Decimal("200")
    other = next(held.lot for held in result.open_lots if held.account_id == "second-brokerage")
    assert other.adjusted_basis == Decimal("1050")


def test_the_window_is_30_days_on_each_side_inclusive() -> None:
    def adjustment(days_after: int) -> Decimal:
        sale = date(2022, 6, 1)
        result = realize(
            [
                trade("2022-01-03", "buy", "10", "10.00"),
                trade(sale.isoformat(), "sell", "10", "8.00"),
                trade((sale + timedelta(days=days_after)).isoformat(), "buy", "10", "8.00"),
            ]
        )
        return result.realized[0].adjustment

    assert adjustment(30) == Decimal("20")
    assert adjustment(31) == 0

    def adjustment_before(days_before: int) -> Decimal:
        sale = date(2022, 6, 1)
        result = realize(
            [
                trade("2022-01-03", "buy", "10", "10.00"),
                trade((sale - timedelta(days=days_before)).isoformat(), "buy", "10", "9.00"),
                trade(sale.isoformat(), "sell", "10", "8.00"),
            ]
        )
        return result.realized[0].adjustment

    assert adjustment_before(30) == Decimal("20")
    assert adjustment_before(31) == 0


def test_a_sale_at_a_gain_never_washes() -> None:
    result = realize(
        [
            trade("2022-01-03", "buy", "10", "10.00"),
            trade("2022-02-01", "sell", "10", "12.00"),
            trade("2022-02-02", "buy", "10", "11.00"),
        ]
    )
    [row] = result.realized
    assert row.adjustment_code is None and row.gain_loss == Decimal("20")
    [lot] = open_lots(result)
    assert lot.adjusted_basis == lot.cost_basis == Decimal("110")


def test_the_lot_sold_is_not_its_own_replacement() -> None:
    # 100 shares bought together; 50 of them sold at a loss 10 days later: the other 50 of the same
    # purchase do not replace them (Rev. Rul. 56-602).
    result = realize(
        [
            trade("2022-03-01", "buy", "100", "10.00"),
            trade("2022-03-11", "sell", "50", "9.00"),
        ]
    )
    assert result.realized[0].adjustment == 0
    assert result.realized[0].gain_loss == Decimal("-50")
    # Shares bought and sold in the same loss sale replace nothing either.
    result = realize(
        [
            trade("2022-01-03", "buy", "10", "10.00"),
            trade("2022-03-01", "buy", "10", "9.50"),
            trade("2022-03-11", "sell", "20", "9.00"),
        ]
    )
    assert [row.adjustment for row in result.realized] == [0, 0]


def test_same_day_buy_and_sell_in_the_order_they_happened() -> None:
    # Sold at a loss in the morning, bought back in the afternoon: a wash sale.
    result = realize(
        [
            trade("2022-01-03", "buy", "10", "10.00"),
            trade("2022-06-01", "sell", "10", "8.00"),
            trade("2022-06-01", "buy", "10", "8.05"),
        ]
    )
    assert result.realized[0].adjustment == Decimal("20")
    # Bought in the morning, the older lot sold at a loss in the afternoon (FIFO): the morning's
    # shares, still held, are the replacement.
    result = realize(
        [
            trade("2022-01-03", "buy", "10", "10.00"),
            trade("2022-06-01", "buy", "10", "8.05"),
            trade("2022-06-01", "sell", "10", "8.00"),
        ]
    )
    assert result.realized[0].adjustment == Decimal("20")
    # A day trade: bought and sold the same shares at a loss, nothing else bought: no wash sale.
    result = realize(
        [
            trade("2022-06-01", "buy", "10", "8.05"),
            trade("2022-06-01", "sell", "10", "8.00"),
        ]
    )
    assert result.realized[0].adjustment == 0


def test_a_replacement_share_absorbs_only_one_sold_shares_loss() -> None:
    # Two loss sales, one buy of 10 shares after both: the earlier sale is matched first and uses
    # the shares up; the second sale's loss stays deductible.
    result = realize(
        [
            trade("2022-01-03", "buy", "20", "10.00"),
            trade("2022-06-01", "sell", "10", "8.00"),
            trade("2022-06-05", "sell", "10", "7.00"),
            trade("2022-06-10", "buy", "10", "7.50"),
        ]
    )
    first, second = result.realized
    assert (first.adjustment, second.adjustment) == (Decimal("20"), 0)
    assert second.gain_loss == Decimal("-30")


def test_a_loss_inside_an_ira_is_not_a_wash_sale_and_not_reportable() -> None:
    result = realize(
        [
            trade("2022-01-03", "buy", "10", "10.00", account="ira", kind=IRA),
            trade("2022-06-01", "sell", "10", "8.00", account="ira", kind=IRA),
            trade("2022-06-02", "buy", "10", "8.00"),
        ]
    )
    [row] = result.realized
    assert row.adjustment == 0 and not row.is_reportable
    [lot] = open_lots(result)
    assert lot.adjusted_basis == lot.cost_basis


def test_a_washed_replacement_sold_at_a_loss_and_washed_again_carries_both_losses() -> None:
    result = realize(
        [
            trade("2022-01-03", "buy", "10", "10.00"),
            trade("2022-03-01", "sell", "10", "8.00"),  # -20, washed
            trade("2022-03-10", "buy", "10", "8.00"),  # basis 80 + 20
            trade("2022-03-20", "sell", "10", "7.00"),  # 70 - 100 = -30, washed again
            trade("2022-03-25", "buy", "10", "7.00"),  # basis 70 + 30
            trade("2022-06-01", "sell", "10", "9.00"),  # 90 - 100 = -10, no buy follows
        ]
    )
    assert [row.adjustment for row in result.realized] == [Decimal("20"), Decimal("30"), 0]
    assert result.realized[-1].gain_loss == Decimal("-10")
    # In all: paid 100 + 80 + 70, received 80 + 70 + 90: a loss of 10, all of it deducted in the end.
    assert sum((row.gain_loss for row in result.realized), Decimal(0)) == Decimal("-10")


def test_fees_are_part_of_basis_and_reduce_proceeds() -> None:
    result = realize(
        [
            trade("2022-01-03", "buy", "10", "10.00", fees="1.00"),
            trade("2022-02-01", "sell", "10", "10.00", fees="1.00"),
        ]
    )
    [row] = result.realized
    assert (row.cost_basis, row.proceeds, row.gain_loss) == (Decimal("101"), Decimal("99"), Decimal("-2"))


def test_hifo_and_fifo_relieve_different_lots() -> None:
    history = [
        trade("2022-01-03", "buy", "10", "10.00"),
        trade("2022-01-04", "buy", "10", "20.00"),
        trade("2022-06-01", "sell", "10", "15.00"),
    ]
    assert realize(history, lot_method=LotMethod.FIFO).realized[0].gain_loss == Decimal("50")
    assert realize(history, lot_method=LotMethod.HIFO).realized[0].gain_loss == Decimal("-50")


def test_opening_lots_from_the_lots_table_take_part() -> None:
    held = AccountLot(
        account_id="brokerage",
        account_type=TAXABLE,
        lot=Lot(
            id=uuid.uuid4(),
            symbol="XYZ",
            shares=Decimal("10"),
            cost_basis=Decimal("100"),
            adjusted_basis=Decimal("100"),
            acquired_at=date(2022, 5, 20),
            holding_period_start=date(2022, 5, 20),
        ),
        original_shares=Decimal("10"),
    )
    older = AccountLot(
        account_id="brokerage",
        account_type=TAXABLE,
        lot=Lot(
            id=uuid.uuid4(),
            symbol="XYZ",
            shares=Decimal("10"),
            cost_basis=Decimal("150"),
            adjusted_basis=Decimal("150"),
            acquired_at=date(2021, 1, 4),
            holding_period_start=date(2021, 1, 4),
        ),
        original_shares=Decimal("10"),
    )
    result = realize([trade("2022-06-01", "sell", "10", "9.00")], opening_lots=[held, older])
    [row] = result.realized
    assert row.lot_id == older.lot.id and row.adjustment == Decimal("60")
    [replacement] = open_lots(result)
    assert replacement.id == held.lot.id and replacement.adjusted_basis == Decimal("160")


def test_invalid_histories_are_refused_with_the_transaction() -> None:
    with pytest.raises(InvalidHistory, match="transaction 2"):
        realize([trade("2022-01-03", "buy", "10", "10"), trade("2022-01-04", "sell", "11", "10")])
    with pytest.raises(InvalidHistory, match="after a trade of 2022-01-04"):
        realize([trade("2022-01-04", "buy", "10", "10"), trade("2022-01-03", "sell", "1", "10")])
    with pytest.raises(InvalidHistory, match="is taxable, not ira"):
        realize([trade("2022-01-03", "buy", "1", "10"), trade("2022-01-04", "buy", "1", "10", kind=IRA)])
    with pytest.raises(InvalidHistory, match="fees exceed"):
        realize([trade("2022-01-03", "buy", "1", "10"), trade("2022-01-04", "sell", "1", "1", fees="2")])
    with pytest.raises(InvalidHistory, match="positive"):
        realize([trade("2022-01-03", "buy", "0", "10")])
    with pytest.raises(ValueError, match="fifo or hifo"):
        realize([], lot_method=LotMethod.SPECIFIC)


def test_identity_groups_from_table_rows_merge_groups_sharing_a_symbol() -> None:
    groups = IdentityGroups.from_rows(
        [("sp500-a", "VOO"), ("sp500-a", "IVV"), ("sp500-b", "IVV"), ("sp500-b", "SPLG")]
    )
    assert groups.identical("VOO", "SPLG")
    assert groups.members("VOO") == {"VOO", "IVV", "SPLG"}
    assert groups.members("AAPL") == {"AAPL"}
    assert not groups.identical("VOO", "AAPL")


# --- properties over random histories --------------------------------------------------------

ACCOUNTS = (("taxable-1", TAXABLE), ("taxable-2", TAXABLE), ("ira", IRA), ("roth", ROTH))
SYMBOLS = ("AAA", "AAB", "CCC")  # AAA and AAB are one identity group
GROUPS = IdentityGroups({"AAA": "a-shares", "AAB": "a-shares"})


@st.composite
def histories(draw: st.DrawFn) -> list[Transaction]:
    """Valid trade histories: sells never exceed what the account holds."""
    steps = draw(st.lists(st.tuples(
        st.sampled_from([0, 0, 1, 2, 3, 5, 8, 13, 29, 30, 31, 45, 200]),  # days since the previous trade
        st.sampled_from(ACCOUNTS[:1] * 3 + ACCOUNTS),  # mostly one account, so that sells find shares
        st.sampled_from(SYMBOLS[:1] * 2 + SYMBOLS),
        st.sampled_from([True, True, False]),  # sell if the account holds shares
        st.integers(1, 4000),  # quantity in hundredths
        st.integers(100, 20000),  # price in cents
        st.integers(0, 300),  # fees in cents
    ), min_size=1, max_size=40))  # fmt: skip
    held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    day = date(2021, 1, 4)
    history: list[Transaction] = []
    for gap, (account, kind), symbol, sell, hundredths, cents, fee_cents in steps:
        day += timedelta(days=gap)
        quantity = Decimal(hundredths) / 100
        price, fees = Decimal(cents) / 100, Decimal(fee_cents) / 100
        side = Side.BUY
        if sell and held[(account, symbol)] > 0:
            side, quantity = Side.SELL, min(quantity, held[(account, symbol)])
            fees = min(fees, quantity * price)
        held[(account, symbol)] += quantity if side is Side.BUY else -quantity
        history.append(Transaction(day, account, kind, symbol, side, quantity, price, fees))
    return history


def check_conservation(history: list[Transaction], result: Realization) -> None:
    paid = sum((tx.amount for tx in history if tx.side is Side.BUY), Decimal(0))
    open_cost = sum((held.lot.cost_basis for held in result.open_lots), Decimal(0))
    open_adjusted = sum((held.lot.adjusted_basis for held in result.open_lots), Decimal(0))
    realized_cost = sum((row.unadjusted_cost for row in result.realized), Decimal(0))
    realized_basis = sum((row.cost_basis for row in result.realized), Decimal(0))
    disallowed = sum((row.adjustment for row in result.realized), Decimal(0))
    deferred, permanent = result.deferred_total, result.permanently_disallowed_total

    # Every dollar paid is in an open lot or was realized; the basis added to replacements
    # (deferred losses) comes on top, and the losses lost in IRAs are the rest of what was disallowed.
    assert open_cost + realized_cost == paid
    assert open_adjusted + realized_basis == paid + deferred
    assert disallowed == deferred + permanent
    assert open_adjusted + realized_basis - disallowed + permanent == paid
    # Deferred losses are exactly the basis added to replacement lots, held or since sold.
    carried = sum((held.lot.wash_sale_disallowed for held in result.open_lots), Decimal(0)) + sum(
        (row.basis_carried for row in result.realized), Decimal(0)
    )
    assert carried == deferred

    bought: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for tx in history:
        if tx.side is Side.BUY:
            bought[(tx.account_id, tx.symbol)] += tx.quantity
    left: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for held in result.open_lots:
        left[(held.account_id, held.lot.symbol)] += held.lot.shares
        assert held.lot.holding_period_start <= held.lot.acquired_at
        assert held.lot.wash_sale_disallowed == held.lot.adjusted_basis - held.lot.cost_basis
        assert held.account_type.is_taxable or held.lot.wash_sale_disallowed == 0
    for row in result.realized:
        left[(row.account_id, row.symbol)] += row.shares
        assert row.adjustment >= 0
        assert row.adjustment <= max(row.cost_basis - row.proceeds, Decimal(0))
        assert row.account_type.is_taxable or row.adjustment == 0
    assert left == bought


@settings(max_examples=200, deadline=None)
@given(history=histories(), method=st.sampled_from([LotMethod.FIFO, LotMethod.HIFO]))
def test_basis_and_shares_are_conserved_and_deferred_losses_equal_basis_added(
    history: list[Transaction], method: LotMethod
) -> None:
    result = realize(history, lot_method=method, groups=GROUPS)
    check_conservation(history, result)


@settings(max_examples=150, deadline=None)
@given(history=histories(), method=st.sampled_from([LotMethod.FIFO, LotMethod.HIFO]))
def test_the_windowed_engine_agrees_with_the_all_pairs_reference(
    history: list[Transaction], method: LotMethod
) -> None:
    windowed = realize(history, lot_method=method, groups=GROUPS, new_lot_id=counting_ids())
    reference = realize_all_pairs(history, lot_method=method, groups=GROUPS, new_lot_id=counting_ids())
    assert windowed == reference


def counting_ids() -> Callable[[], uuid.UUID]:
    """Lot ids 1, 2, 3...: two replays that open lots in the same order get the same ids."""
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter))
