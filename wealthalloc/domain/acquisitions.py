"""Lots that were not bought on the platform: their basis and holding period by how they came.

IRS Publication 551 ("Basis Other Than Cost") and Publication 550 ("Holding Period") give a
different rule for each way of acquiring shares, and the rule decides the gain, the term and the
wash sales of every later sale, so it is fixed when the lot is recorded:

- a transfer from another broker keeps the basis and date the shares had there; for the
  wash-sale rule it is the purchase it was, on that date;
- a gift takes the donor's adjusted basis, plus the part of the gift tax paid that is due to the
  appreciation (gifts after 1976). When the fair market value (FMV) on the date of the gift is
  below the donor's basis, the lot has two bases: the donor's to figure a gain, the FMV to figure
  a loss, and a sale between the two realizes neither. The holding period includes the donor's
  when the donor's basis is used; it starts on the date of the gift when the FMV figures a loss;
- an inheritance takes the FMV at the date of death (or at the alternate valuation date the
  estate elected), and is long-term however briefly it is held (and so is the replacement of a
  loss on it, whose holding period includes the inherited shares').

A transfer is only what the person says it is until someone can vouch for it, so it is
*pending* (:data:`PENDING`) until a sync of a linked broker account holding the shares, or an
advisor or admin with a reason, confirms it: a pending lot is valued and counts as a purchase
for the wash-sale rule on its date, but it cannot be sold (:func:`sellable`), so its value
can never leave the portfolio as cash.

Gifts and inheritances are not purchases, so they are never the replacement shares of a wash
sale (IRC 1091 speaks of shares "acquired by purchase"); a loss realized on them is washed by a
purchase like any other.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from wealthalloc.domain.lots import Term, term
from wealthalloc.domain.money import money

# Gifts made before 1977 add the gift tax under another rule (capped at the FMV); not supported.
GIFT_TAX_RULE_FROM = date(1977, 1, 1)
# IRC 2032: the alternate valuation date is six months after death (earlier for property the
# estate distributed or sold before it).
ALTERNATE_VALUATION_MONTHS = 6


class Acquisition(enum.StrEnum):
    TRANSFER = "transfer"
    GIFT = "gift"
    INHERITANCE = "inheritance"


# The ``lots.source`` each kind is stored under.
SOURCE = {Acquisition.TRANSFER: "transfer_in", Acquisition.GIFT: "gift", Acquisition.INHERITANCE: "inherited"}
_NOT_PURCHASES = frozenset({"gift", "inherited"})
# Shares that arrived without the portfolio's cash paying for them (an inflow, for performance).
ARRIVED = frozenset(SOURCE.values())


# ``lots.transfer_status`` of a transfer-in: waiting for confirmation, or confirmed (sellable).
PENDING = "pending"
CONFIRMED = "confirmed"


def sellable(lot: Mapping[str, Any]) -> bool:
    """Whether a stored lot (a row with ``transfer_status``) may be sold: not a pending transfer-in."""
    return lot.get("transfer_status") != PENDING


def is_purchase(source: str) -> bool:
    """Whether a lot of this ``lots.source`` can be the replacement shares of a wash sale."""
    return source not in _NOT_PURCHASES


class InvalidAcquisition(ValueError):
    """The figures given for an acquisition contradict its rule; ``field`` names the one to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class AcquiredLot:
    """What a lot is recorded with.

    Attributes
    ----------
    source : str
        The ``lots.source`` value.
    basis : Decimal
        The basis to figure a gain; also the basis for a loss unless ``loss_basis`` is set.
    loss_basis : Decimal, optional
        The lower basis to figure a loss (a gift whose FMV was below the donor's basis).
    acquired_at : date
        When the taxpayer acquired the shares (date of transfer-in purchase, gift, or death).
    holding_period_start : date
        Of the shares when ``basis`` is used (the donor's acquisition date for a gift).
    always_long : bool
        Long-term whatever the holding period (inherited).
    """

    source: str
    basis: Decimal
    loss_basis: Decimal | None
    acquired_at: date
    holding_period_start: date
    always_long: bool = False


@dataclass(frozen=True)
class SaleBasis:
    """The basis and holding-period start a sale of (part of) a lot is figured with."""

    basis: Decimal
    holding_period_start: date


def transferred(*, cost_basis: Decimal, acquired_at: date) -> AcquiredLot:
    """Shares moved in from another broker: the basis and the date they were bought."""
    _not_negative("cost_basis", cost_basis)
    return AcquiredLot(
        source=SOURCE[Acquisition.TRANSFER],
        basis=cost_basis,
        loss_basis=None,
        acquired_at=acquired_at,
        holding_period_start=acquired_at,
    )


def received_as_gift(
    *,
    donor_cost_basis: Decimal,
    donor_acquired_at: date,
    fair_market_value: Decimal,
    gift_date: date,
    gift_tax_paid: Decimal | None = None,
    taxable_gift: Decimal | None = None,
) -> AcquiredLot:
    """A gift (Pub 551, "Property Received as a Gift").

    ``gift_tax_paid`` with ``taxable_gift`` (the amount of the gift for gift tax purposes, after
    the annual exclusion) adds to the donor's basis the part of the tax due to the net increase in
    value: tax x increase / taxable gift, never more than the tax.
    """
    _not_negative("donor_cost_basis", donor_cost_basis)
    _not_negative("fair_market_value", fair_market_value)
    if donor_acquired_at > gift_date:
        raise InvalidAcquisition("donor_acquired_at", "must not be after the date of the gift (acquired_at)")
    basis = donor_cost_basis + _gift_tax_addition(
        donor_cost_basis, fair_market_value, gift_date, gift_tax_paid, taxable_gift
    )
    return AcquiredLot(
        source=SOURCE[Acquisition.GIFT],
        basis=basis,
        loss_basis=fair_market_value if fair_market_value < donor_cost_basis else None,
        acquired_at=gift_date,
        holding_period_start=donor_acquired_at,
    )


def inherited(
    *,
    fair_market_value: Decimal,
    date_of_death: date,
    alternate_valuation_date: date | None = None,
    alternate_fair_market_value: Decimal | None = None,
) -> AcquiredLot:
    """An inheritance (Pub 551, "Inherited Property"): the FMV at death, or at the alternate
    valuation date when the estate elected it; long-term from the day it is received."""
    _not_negative("fair_market_value", fair_market_value)
    basis = fair_market_value
    if (alternate_valuation_date is None) != (alternate_fair_market_value is None):
        raise InvalidAcquisition(
            "alternate_valuation_date",
            "give alternate_valuation_date and alternate_fair_market_value together",
        )
    if alternate_valuation_date is not None and alternate_fair_market_value is not None:
        _not_negative("alternate_fair_market_value", alternate_fair_market_value)
        latest = _months_after(date_of_death, ALTERNATE_VALUATION_MONTHS)
        if not date_of_death < alternate_valuation_date <= latest:
            raise InvalidAcquisition(
                "alternate_valuation_date",
                f"must be after the date of death (acquired_at) and no later than {latest}",
            )
        basis = alternate_fair_market_value
    return AcquiredLot(
        source=SOURCE[Acquisition.INHERITANCE],
        basis=basis,
        loss_basis=None,
        acquired_at=date_of_death,
        holding_period_start=date_of_death,
        always_long=True,
    )


def basis_for_sale(
    *,
    amount_realized: Decimal,
    basis: Decimal,
    loss_basis: Decimal | None,
    holding_period_start: date,
    acquired_at: date,
) -> SaleBasis:
    """The dual-basis rule of a gift at sale time (for any other lot, ``basis`` as it is).

    Above the donor's basis the gain is figured from it, with the donor's holding period; below
    the FMV basis the loss is figured from the FMV, the holding period starting at the gift;
    in between there is neither gain nor loss, which a basis equal to the amount realized states.
    """
    if loss_basis is None or loss_basis >= basis or amount_realized >= basis:
        return SaleBasis(basis, holding_period_start)
    if amount_realized < loss_basis:
        return SaleBasis(loss_basis, acquired_at)
    return SaleBasis(amount_realized, holding_period_start)


def term_of(*, holding_period_start: date, always_long: bool, sold_on: date) -> Term:
    """The term of a lot sold (or valued) on ``sold_on``: an inherited lot is long from the start."""
    return Term.LONG if always_long else term(holding_period_start, sold_on)


def tacked_start(*, holding_period_start: date, always_long: bool, sold_on: date) -> date:
    """The holding-period start a replacement of shares sold on ``sold_on`` tacks on (Pub 550: the
    replacement's period includes the sold shares'). Inherited shares count as held more than a
    year, so their replacement is long-term too: at the latest, a year and a day before the sale."""
    if not always_long:
        return holding_period_start
    day_before = sold_on - timedelta(days=1)
    try:
        year_and_a_day = day_before.replace(year=day_before.year - 1)
    except ValueError:  # the day before is 29 February
        year_and_a_day = date(day_before.year - 1, 2, 28)
    return min(holding_period_start, year_and_a_day)


def _gift_tax_addition(
    donor_basis: Decimal,
    fair_market_value: Decimal,
    gift_date: date,
    gift_tax_paid: Decimal | None,
    taxable_gift: Decimal | None,
) -> Decimal:
    if gift_tax_paid is None and taxable_gift is None:
        return Decimal(0)
    if gift_tax_paid is None or taxable_gift is None:
        raise InvalidAcquisition("gift_tax_paid", "give gift_tax_paid and taxable_gift together")
    _not_negative("gift_tax_paid", gift_tax_paid)
    if taxable_gift <= 0:
        raise InvalidAcquisition("taxable_gift", "must be positive when gift tax was paid")
    if gift_date < GIFT_TAX_RULE_FROM:
        raise InvalidAcquisition("gift_tax_paid", "gift tax on gifts made before 1977 is not supported")
    increase = fair_market_value - donor_basis
    if increase <= 0:
        return Decimal(0)
    return min(money(gift_tax_paid * increase / taxable_gift), gift_tax_paid)


def _not_negative(field: str, amount: Decimal) -> None:
    if amount < 0:
        raise InvalidAcquisition(field, "must not be negative")


def _months_after(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")
