"""Lots not bought on the platform: the worked examples of IRS Publications 550 and 551.

Each test states an example of the publications (or one built the same way) and checks the
figures the rule gives: basis, holding period, term, and what a sale realizes.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from wealthalloc.domain.acquisitions import (
    InvalidAcquisition,
    basis_for_sale,
    inherited,
    is_purchase,
    received_as_gift,
    tacked_start,
    term_of,
    transferred,
)
from wealthalloc.domain.lots import Lot, Term
from wealthalloc.domain.wash_sale import AccountType, IdentityGroups
from wealthalloc.domain.wash_sale_book import (
    BasisTooSmall,
    HeldLot,
    PendingLoss,
    SaleOutcome,
    SoldShares,
    on_buy,
    on_sale,
)

D = Decimal
TAXABLE = AccountType.TAXABLE
GIFT_DAY = date(2023, 5, 1)
DONOR_BOUGHT = date(2015, 3, 2)


# Gifts ------------------------------------------------------------------------------------------


def test_a_gift_worth_less_than_the_donors_basis_has_two_bases_and_the_donors_holding_period() -> None:
    gift = received_as_gift(
        donor_cost_basis=D(10000),
        donor_acquired_at=DONOR_BOUGHT,
        fair_market_value=D(8000),
        gift_date=GIFT_DAY,
    )
    assert (gift.source, gift.basis, gift.loss_basis) == ("gift", D(10000), D(8000))
    assert (gift.acquired_at, gift.holding_period_start, gift.always_long) == (GIFT_DAY, DONOR_BOUGHT, False)
    assert not is_purchase(gift.source)


@pytest.mark.parametrize(
    ("sold_for", "basis", "gain", "period_from"),
    [
        (D(12000), D(10000), D(2000), DONOR_BOUGHT),  # a gain: the donor's basis, the donor's period
        (D(7000), D(8000), D(-1000), GIFT_DAY),  # a loss: the FMV, from the date of the gift
        (D(9000), D(9000), D(0), DONOR_BOUGHT),  # between the two: neither gain nor loss
        (D(8000), D(8000), D(0), DONOR_BOUGHT),
        (D(10000), D(10000), D(0), DONOR_BOUGHT),
    ],
)
def test_pub_551_gift_sold_above_below_and_between_its_two_bases(
    sold_for: Decimal, basis: Decimal, gain: Decimal, period_from: date
) -> None:
    figured = basis_for_sale(
        amount_realized=sold_for,
        basis=D(10000),
        loss_basis=D(8000),
        holding_period_start=DONOR_BOUGHT,
        acquired_at=GIFT_DAY,
    )
    assert (figured.basis, sold_for - figured.basis, figured.holding_period_start) == (
        basis,
        gain,
        period_from,
    )


def test_a_gift_worth_more_than_the_donors_basis_has_the_donors_basis_for_gain_and_loss() -> None:
    gift = received_as_gift(
        donor_cost_basis=D(4000),
        donor_acquired_at=DONOR_BOUGHT,
        fair_market_value=D(9000),
        gift_date=GIFT_DAY,
    )
    assert (gift.basis, gift.loss_basis) == (D(4000), None)
    at_a_loss = basis_for_sale(
        amount_realized=D(3000),
        basis=gift.basis,
        loss_basis=gift.loss_basis,
        holding_period_start=gift.holding_period_start,
        acquired_at=gift.acquired_at,
    )
    assert (at_a_loss.basis, at_a_loss.holding_period_start) == (D(4000), DONOR_BOUGHT)


def test_pub_551_gift_tax_paid_adds_the_part_due_to_the_appreciation() -> None:
    # FMV 50,000, donor's basis 20,000, gift of 32,000 after the 18,000 exclusion, tax 9,040:
    # 9,040 x 30,000 / 32,000 = 8,475 added, basis 28,475.
    gift = received_as_gift(
        donor_cost_basis=D(20000),
        donor_acquired_at=DONOR_BOUGHT,
        fair_market_value=D(50000),
        gift_date=date(2024, 6, 3),
        gift_tax_paid=D(9040),
        taxable_gift=D(32000),
    )
    assert (gift.basis, gift.loss_basis) == (D(28475), None)


def test_gift_tax_on_a_gift_that_lost_value_adds_nothing() -> None:
    gift = received_as_gift(
        donor_cost_basis=D(10000),
        donor_acquired_at=DONOR_BOUGHT,
        fair_market_value=D(8000),
        gift_date=GIFT_DAY,
        gift_tax_paid=D(500),
        taxable_gift=D(1000),
    )
    assert (gift.basis, gift.loss_basis) == (D(10000), D(8000))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"donor_cost_basis": D(-1)}, "donor_cost_basis"),
        ({"fair_market_value": D("-0.01")}, "fair_market_value"),
        ({"donor_acquired_at": date(2023, 5, 2)}, "donor_acquired_at"),
        ({"gift_tax_paid": D(100)}, "gift_tax_paid"),
        ({"gift_tax_paid": D(100), "taxable_gift": D(0)}, "taxable_gift"),
        ({"gift_tax_paid": D(100), "taxable_gift": D(50), "gift_date": date(1975, 1, 2)}, "gift_tax_paid"),
    ],
)
def test_a_gift_whose_figures_contradict_the_rule_is_refused_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    spec: dict[str, object] = {
        "donor_cost_basis": D(100),
        "donor_acquired_at": date(1970, 1, 2),
        "fair_market_value": D(200),
        "gift_date": GIFT_DAY,
        **changes,
    }
    with pytest.raises(InvalidAcquisition) as refused:
        received_as_gift(**spec)  # type: ignore[arg-type]
    assert refused.value.field == field


# Inheritances -----------------------------------------------------------------------------------


def test_an_inheritance_has_the_fmv_at_death_and_is_long_term_after_two_days() -> None:
    death = date(2024, 1, 10)
    lot = inherited(fair_market_value=D("15250.00"), date_of_death=death)
    assert (lot.source, lot.basis, lot.loss_basis, lot.always_long) == (
        "inherited",
        D("15250.00"),
        None,
        True,
    )
    assert lot.holding_period_start == death and not is_purchase(lot.source)
    assert term_of(holding_period_start=death, always_long=True, sold_on=date(2024, 1, 12)) is Term.LONG
    assert term_of(holding_period_start=death, always_long=False, sold_on=date(2024, 1, 12)) is Term.SHORT


def test_an_inheritance_valued_at_the_alternate_date_takes_that_value() -> None:
    lot = inherited(
        fair_market_value=D(100000),
        date_of_death=date(2024, 1, 31),
        alternate_valuation_date=date(2024, 7, 31),
        alternate_fair_market_value=D(90000),
    )
    assert lot.basis == D(90000) and lot.acquired_at == date(2024, 1, 31)


@pytest.mark.parametrize(
    ("alternate", "value"),
    [
        (date(2024, 8, 1), D(1)),  # more than six months after death
        (date(2024, 1, 31), D(1)),  # not after the death
        (date(2024, 3, 1), None),  # a date without a value
        (date(2024, 3, 1), D(-1)),
    ],
)
def test_an_alternate_valuation_outside_six_months_or_half_given_is_refused(
    alternate: date, value: Decimal | None
) -> None:
    with pytest.raises(InvalidAcquisition):
        inherited(
            fair_market_value=D(100),
            date_of_death=date(2024, 1, 31),
            alternate_valuation_date=alternate,
            alternate_fair_market_value=value,
        )


# Transfers and the wash-sale rule ---------------------------------------------------------------


def test_pub_550_a_transfer_in_ten_days_after_a_loss_sale_takes_the_loss_into_its_basis() -> None:
    # 100 shares bought for 1,000 and sold for 750; 10 days later 100 shares come in, bought for 800
    # elsewhere that day: the 250 loss is disallowed and the new basis is 1,050.
    transfer = transferred(cost_basis=D(800), acquired_at=date(2024, 3, 11))
    assert (transfer.source, transfer.basis, transfer.holding_period_start) == (
        "transfer_in",
        D(800),
        date(2024, 3, 11),
    )
    assert is_purchase(transfer.source)
    loss = PendingLoss(uuid.uuid4(), "XYZ", date(2024, 3, 1), date(2023, 11, 1), D(100), D(250))
    lot_id = uuid.uuid4()
    opened = on_buy(
        account_id="brokerage",
        account_type=TAXABLE,
        symbol="XYZ",
        day=transfer.acquired_at,
        shares=D(100),
        cost=transfer.basis,
        losses=[loss],
        groups=IdentityGroups(),
        lot_id=lot_id,
    )
    [lot] = opened.lots
    assert (lot.lot.id, lot.lot.cost_basis, lot.lot.adjusted_basis) == (lot_id, D(800), D(1050))
    # The sold shares' 121 days (2023-11-01 to 2024-03-01) carry over.
    assert lot.lot.holding_period_start == date(2023, 11, 11)
    [wash] = opened.wash_sales
    assert (wash.sold_lot_id, wash.disallowed, wash.shares) == (loss.ref, D(250), D(100))


def test_a_lot_that_cost_nothing_opens_as_it_is_when_no_loss_waits() -> None:
    opened = on_buy(
        account_id="a",
        account_type=TAXABLE,
        symbol="XYZ",
        day=date(2024, 3, 11),
        shares=D(10),
        cost=D(0),
        losses=[],
        groups=IdentityGroups(),
        lot_id=uuid.uuid4(),
    )
    [lot] = opened.lots
    assert (lot.lot.cost_basis, lot.lot.adjusted_basis, lot.original_shares) == (D(0), D(0), D(10))


def test_a_lot_that_cost_nothing_cannot_take_a_waiting_loss_and_says_so() -> None:
    with pytest.raises(BasisTooSmall):
        on_buy(
            account_id="a",
            account_type=TAXABLE,
            symbol="XYZ",
            day=date(2024, 3, 11),
            shares=D(10),
            cost=D(0),
            losses=[PendingLoss(uuid.uuid4(), "XYZ", date(2024, 3, 1), date(2024, 1, 2), D(10), D(5))],
            groups=IdentityGroups(),
            lot_id=uuid.uuid4(),
        )


# Sales of gifts and inheritances ----------------------------------------------------------------


def gift_lot() -> Lot:
    """100 shares of the Pub 551 gift: donor's basis 10,000."""
    return Lot(uuid.uuid4(), "LAND", D(100), D(10000), D(10000), GIFT_DAY, DONOR_BOUGHT)


def sell_gift(proceeds: Decimal, held: list[HeldLot] | None = None) -> SaleOutcome:
    """The 100 shares sold on 2024-09-02 for ``proceeds``, FMV basis 8,000."""
    lot = gift_lot()
    return on_sale(
        account_id="a",
        account_type=TAXABLE,
        symbol="LAND",
        day=date(2024, 9, 2),
        sold=[SoldShares(lot, D(100), D(10000), D(10000), proceeds, loss_basis=D(8000))],
        held=held or [],
        groups=IdentityGroups(),
    )


@pytest.mark.parametrize(
    ("proceeds", "basis", "gain", "acquired", "term"),
    [
        (D(12000), D(10000), D(2000), DONOR_BOUGHT, Term.LONG),
        (D(7000), D(8000), D(-1000), GIFT_DAY, Term.LONG),
        (D(9000), D(9000), D(0), DONOR_BOUGHT, Term.LONG),
    ],
)
def test_a_sale_of_a_gift_lot_realizes_what_pub_551_says(
    proceeds: Decimal, basis: Decimal, gain: Decimal, acquired: date, term: Term
) -> None:
    [row] = sell_gift(proceeds).realized
    assert (row.cost_basis, row.gain_loss, row.holding_period_start, row.term) == (
        basis,
        gain,
        acquired,
        term,
    )


def test_a_gift_sold_at_a_loss_within_a_year_of_the_gift_is_short_term_from_the_gift() -> None:
    lot = gift_lot()
    outcome = on_sale(
        account_id="a",
        account_type=TAXABLE,
        symbol="LAND",
        day=date(2023, 9, 1),
        sold=[SoldShares(lot, D(100), D(10000), D(10000), D(7000), loss_basis=D(8000))],
        held=[],
        groups=IdentityGroups(),
    )
    [row] = outcome.realized
    assert (row.gain_loss, row.term) == (D(-1000), Term.SHORT)


def test_a_gift_s_loss_figured_from_the_fmv_is_washed_by_a_purchase_in_the_window() -> None:
    bought = Lot(uuid.uuid4(), "LAND", D(100), D(6900), D(6900), date(2024, 8, 20), date(2024, 8, 20))
    outcome = sell_gift(D(7000), [HeldLot("b", TAXABLE, bought, D(100))])
    [row] = outcome.realized
    assert (row.cost_basis, row.adjustment, row.gain_loss) == (D(8000), D(1000), D(0))
    [changed] = outcome.lots
    assert changed.lot.adjusted_basis == D(7900) and changed.lot.holding_period_start < GIFT_DAY


def test_an_inherited_lot_sold_two_days_after_death_is_long_term() -> None:
    death = date(2024, 9, 1)
    lot = Lot(uuid.uuid4(), "IBM", D(10), D(1500), D(1500), death, death)
    outcome = on_sale(
        account_id="a",
        account_type=TAXABLE,
        symbol="IBM",
        day=date(2024, 9, 3),
        sold=[SoldShares(lot, D(10), D(1500), D(1500), D(1600), always_long=True)],
        held=[],
        groups=IdentityGroups(),
    )
    [row] = outcome.realized
    assert (row.gain_loss, row.term, row.holding_period_start) == (D(100), Term.LONG, death)


def test_a_transfer_in_dated_ten_days_before_a_loss_sale_already_booked_replaces_that_loss() -> None:
    # The same 250 loss, sold on 03-11; the 800 lot comes in afterwards, bought on 03-01.
    loss = PendingLoss(uuid.uuid4(), "XYZ", date(2024, 3, 11), date(2023, 11, 1), D(100), D(250))
    opened = on_buy(
        account_id="brokerage",
        account_type=TAXABLE,
        symbol="XYZ",
        day=date(2024, 3, 1),
        shares=D(100),
        cost=D(800),
        losses=[loss],
        groups=IdentityGroups(),
        lot_id=uuid.uuid4(),
    )
    [lot] = opened.lots
    assert (lot.lot.cost_basis, lot.lot.adjusted_basis, lot.lot.acquired_at) == (
        D(800),
        D(1050),
        date(2024, 3, 1),
    )
    [wash] = opened.wash_sales
    assert (wash.sold_lot_id, wash.disallowed) == (loss.ref, D(250))


def test_a_loss_more_than_30_days_after_the_transfer_in_is_not_replaced_by_it() -> None:
    opened = on_buy(
        account_id="brokerage",
        account_type=TAXABLE,
        symbol="XYZ",
        day=date(2024, 3, 1),
        shares=D(100),
        cost=D(800),
        losses=[PendingLoss(uuid.uuid4(), "XYZ", date(2024, 4, 1), date(2023, 11, 1), D(100), D(250))],
        groups=IdentityGroups(),
        lot_id=uuid.uuid4(),
    )
    assert opened.wash_sales == () and opened.lots[0].lot.adjusted_basis == D(800)


def test_inherited_shares_count_as_held_over_a_year_for_what_a_replacement_tacks_on() -> None:
    death = date(2024, 8, 20)
    assert tacked_start(holding_period_start=death, always_long=True, sold_on=date(2024, 9, 3)) == date(
        2023, 9, 2
    )
    assert tacked_start(holding_period_start=death, always_long=False, sold_on=date(2024, 9, 3)) == death
    assert tacked_start(
        holding_period_start=date(2001, 1, 2), always_long=True, sold_on=date(2024, 9, 3)
    ) == (date(2001, 1, 2))
    assert tacked_start(holding_period_start=death, always_long=True, sold_on=date(2024, 3, 1)) == date(
        2023, 2, 28
    )


def test_a_loss_on_inherited_shares_makes_its_replacement_long_term_too() -> None:
    death, sold_on = date(2024, 8, 20), date(2024, 9, 3)
    inherited_lot = Lot(uuid.uuid4(), "IBM", D(10), D(1500), D(1500), death, death)
    bought = Lot(uuid.uuid4(), "IBM", D(10), D(1300), D(1300), date(2024, 8, 30), date(2024, 8, 30))
    outcome = on_sale(
        account_id="a",
        account_type=TAXABLE,
        symbol="IBM",
        day=sold_on,
        sold=[SoldShares(inherited_lot, D(10), D(1500), D(1500), D(1400), always_long=True)],
        held=[HeldLot("b", TAXABLE, bought, D(10))],
        groups=IdentityGroups(),
    )
    [row] = outcome.realized
    assert (row.holding_period_start, row.term, row.adjustment) == (death, Term.LONG, D(100))
    [replacement] = outcome.lots
    assert replacement.lot.adjusted_basis == D(1400)
    assert term_of(
        holding_period_start=replacement.lot.holding_period_start, always_long=False, sold_on=sold_on
    ) is (Term.LONG)
