"""Harvesting lots that were not bought: a gift's dual basis, an inheritance's long term, and which
acquisitions are purchases for the wash-sale blockers (IRS Pub 551 and Pub 550, IRC 1091)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

from wealthalloc.domain.harvest import (
    ORDINARY,
    BlockerKind,
    HarvestScanner,
    LotOrigin,
    TaxProfile,
    loss_if_sold,
)
from wealthalloc.domain.lots import Lot, Term
from wealthalloc.domain.wash_sale import AccountLot, AccountType
from wealthalloc.tax.harvesting import lot_origin

D = Decimal
TODAY = date(2022, 11, 15)
PROFILE = TaxProfile(short_rate=D("0.35"), long_rate=D("0.15"))
# As the ``lots`` rows store them. Pub 551's gift: donor's basis 10,000, FMV 8,000 at the gift.
GIFT = lot_origin({"source": "gift", "loss_basis": D("8000"), "always_long": False})
INHERITED = lot_origin({"source": "inherited", "loss_basis": None, "always_long": True})
TRANSFER = lot_origin({"source": "transfer_in", "loss_basis": None, "always_long": False})


def held(
    symbol: str,
    shares: str,
    basis: str,
    acquired: date,
    *,
    holding_from: date | None = None,
    account: str = "brokerage",
) -> AccountLot:
    lot = Lot(
        id=uuid.uuid4(),
        symbol=symbol,
        shares=D(shares),
        cost_basis=D(basis),
        adjusted_basis=D(basis),
        acquired_at=acquired,
        holding_period_start=holding_from or acquired,
    )
    return AccountLot(
        account_id=account, account_type=AccountType.TAXABLE, lot=lot, original_shares=D(shares)
    )


def scanner() -> HarvestScanner:
    return HarvestScanner(min_loss=D("100"), min_loss_pct=D("0.05"))


def gift_lot() -> AccountLot:
    """100 shares given 100 days ago; the donor bought them in 2015 for 10,000."""
    return held("XYZ", "100", "10000", TODAY - timedelta(days=100), holding_from=date(2015, 3, 2))


# --- a gift: the loss is measured from the value at the gift ------------------------------------


def test_a_gift_worth_7000_now_loses_1000_from_its_8000_loss_basis_short_term_from_the_gift() -> None:
    lot = gift_lot()
    sale = loss_if_sold(lot.lot, GIFT, price=D("70"), on=TODAY)
    assert (sale.market_value, sale.basis, sale.loss, sale.term) == (
        D("7000"),
        D("8000"),
        D("1000"),
        Term.SHORT,
    )

    [opportunity] = scanner().scan(
        [lot], prices={"XYZ": D("70")}, today=TODAY, profile=PROFILE, origins={lot.lot.id: GIFT}
    )
    assert (opportunity.loss, opportunity.cost_basis, opportunity.market_value) == (
        D("1000"),
        D("8000"),
        D("7000"),
    )
    assert opportunity.loss_pct == D("0.125")
    assert (opportunity.term, opportunity.short_loss, opportunity.long_loss) == ("short", D("1000"), D("0"))
    assert opportunity.estimated_tax_savings == D("350")  # 1,000 deducted from income at 35%
    # Measured from the donor's 10,000 it would have been a 3,000 long-term loss.
    [as_bought] = scanner().scan([lot], prices={"XYZ": D("70")}, today=TODAY, profile=PROFILE)
    assert as_bought.loss == D("3000") and as_bought.term == "long"


def test_a_gift_priced_between_its_two_bases_has_no_loss_to_harvest() -> None:
    lot = gift_lot()
    sale = loss_if_sold(lot.lot, GIFT, price=D("90"), on=TODAY)  # 9,000: above 8,000, below 10,000
    assert (sale.basis, sale.loss) == (D("9000"), D("0"))
    origins = {lot.lot.id: GIFT}
    for price in ("90", "80", "120"):  # between, at the loss basis, above the donor's basis
        assert (
            scanner().scan([lot], prices={"XYZ": D(price)}, today=TODAY, profile=PROFILE, origins=origins)
            == []
        )


def test_a_gift_with_no_loss_does_not_hide_a_bought_lot_s_loss_behind_it_in_hifo_order() -> None:
    gift = gift_lot()  # 100 a share of donor's basis: first in HIFO order, but nothing to lose at 90
    bought = held("XYZ", "20", "1940", TODAY - timedelta(days=40))  # 97 a share: loses 140 at 90
    [opportunity] = scanner().scan(
        [gift, bought], prices={"XYZ": D("90")}, today=TODAY, profile=PROFILE, origins={gift.lot.id: GIFT}
    )
    assert opportunity.lot_ids == [str(bought.lot.id)] and opportunity.loss == D("140")


def test_a_gift_whose_value_was_above_the_donor_s_basis_loses_from_the_donor_s_basis() -> None:
    lot = held("XYZ", "100", "6000", TODAY - timedelta(days=100), holding_from=date(2015, 3, 2))
    no_loss_basis = LotOrigin(purchase=False)
    sale = loss_if_sold(lot.lot, no_loss_basis, price=D("50"), on=TODAY)
    assert (sale.basis, sale.loss, sale.term) == (D("6000"), D("1000"), Term.LONG)  # the donor's period


# --- an inheritance: long-term however briefly held ---------------------------------------------


def test_an_inherited_lot_held_ten_days_harvests_a_long_term_loss() -> None:
    death = TODAY - timedelta(days=10)
    lot = held("XYZ", "100", "5000", death)  # FMV at death 5,000
    sale = loss_if_sold(lot.lot, INHERITED, price=D("40"), on=TODAY)
    assert (sale.loss, sale.term) == (D("1000"), Term.LONG)
    assert loss_if_sold(lot.lot, ORDINARY, price=D("40"), on=TODAY).term is Term.SHORT

    gains = TaxProfile(
        short_rate=D("0.35"), long_rate=D("0.15"), realized_short=D("5000"), realized_long=D("5000")
    )
    [opportunity] = scanner().scan(
        [lot], prices={"XYZ": D("40")}, today=TODAY, profile=gains, origins={lot.lot.id: INHERITED}
    )
    assert (opportunity.term, opportunity.long_loss, opportunity.short_loss) == ("long", D("1000"), D("0"))
    assert opportunity.estimated_tax_savings == D("150")  # offsets the long-term gain at 15%, not 35%
    assert opportunity.blockers == ()  # inherited 10 days ago: not a purchase, so not its own blocker


# --- which acquisitions block: only purchases ---------------------------------------------------


def test_a_gift_or_an_inheritance_received_in_the_last_30_days_does_not_block_a_harvest() -> None:
    loser = held("XYZ", "10", "1500", date(2022, 1, 3))
    gift = held("XYZ", "5", "600", TODAY - timedelta(days=5), holding_from=date(2015, 3, 2), account="gifts")
    inherited = held("XYZ", "5", "500", TODAY - timedelta(days=3), account="estate")
    small_gift = LotOrigin(purchase=False, loss_basis=D("450"))
    origins = {gift.lot.id: small_gift, inherited.lot.id: INHERITED}
    [opportunity] = scanner().scan(
        [loser, gift, inherited], prices={"XYZ": D("100")}, today=TODAY, profile=PROFILE, origins=origins
    )
    assert opportunity.account_id == "brokerage" and opportunity.blockers == ()


def test_a_transfer_in_counts_as_a_purchase_on_its_acquisition_date() -> None:
    loser = held("XYZ", "10", "1500", date(2022, 1, 3))
    recent = held("XYZ", "5", "450", TODAY - timedelta(days=12), account="moved in")
    earlier = held("XYZ", "5", "450", TODAY - timedelta(days=60), account="moved in too")
    assert TRANSFER == ORDINARY  # a purchase, valued like a buy
    transfers = {recent.lot.id: TRANSFER, earlier.lot.id: TRANSFER}
    [opportunity] = scanner().scan(
        [loser, recent, earlier], prices={"XYZ": D("100")}, today=TODAY, profile=PROFILE, origins=transfers
    )
    [blocker] = opportunity.blockers
    assert (blocker.kind, blocker.account_id, blocker.on) == (
        BlockerKind.RECENT_BUY,
        "moved in",
        TODAY - timedelta(days=12),
    )
