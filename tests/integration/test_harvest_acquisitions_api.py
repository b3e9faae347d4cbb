"""Harvesting, through the API, of lots the platform did not buy and of a joint-filing household.

Real PostgreSQL, Redis and Ray. A gift's harvestable loss is measured from its loss basis (the value at
the gift, IRS Pub 551), and a gift priced between its two bases is no opportunity; an inherited lot's
loss is long-term however briefly held; receiving a gift or an inheritance is no purchase for the
wash-sale blockers (IRC 1091), a transfer-in is one on its date. A household member's estimated saving
is figured on the joint return: both spouses' gains of the year, both carryovers, one 3,000 limit.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D
from typing import Any

import httpx
import pytest

from tests.integration.people import Investor, data
from tests.integration.test_households_api import link
from tests.integration.test_tax_api import close_of, commission, market_today, set_tax_profile, transfer_in
from tests.integration.test_tax_years_api import put_year

pytestmark = pytest.mark.integration

SHORT_RATE, LONG_RATE = D("0.35"), D("0.15")


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


@pytest.fixture
def alice(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


@pytest.fixture
def bob(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def money(value: D) -> D:
    return value.quantize(D("0.0001"), rounding=ROUND_HALF_EVEN)


def cents(value: D) -> D:
    return value.quantize(D("0.01"), rounding=ROUND_HALF_EVEN)


def import_lot(investor: Investor, portfolio_id: object, **body: object) -> dict[str, Any]:
    response = investor.post(f"/api/v1/portfolios/{portfolio_id}/lots", body, str(uuid.uuid4()))
    return data(response, 201)  # type: ignore[no-any-return]


def opportunities(investor: Investor) -> list[dict[str, Any]]:
    return data(investor.get("/api/v1/tax-harvesting"))["opportunities"]  # type: ignore[no-any-return]


def by_portfolio(investor: Investor) -> dict[object, dict[str, Any]]:
    return {item["portfolio_id"]: item for item in opportunities(investor)}


# Gifts: the loss basis --------------------------------------------------------------------------


def test_a_gift_below_its_loss_basis_harvests_the_loss_from_the_value_at_the_gift_short_term(
    investor: Investor, database_url: str
) -> None:
    set_tax_profile(database_url, investor.id, "single", str(SHORT_RATE), str(LONG_RATE))
    gifts = investor.portfolio("Gifts")
    today = market_today(investor)
    worth = 100 * close_of(investor, "KO")
    # Pub 551's example scaled to today's price: donor's basis 10,000, FMV 8,000 at the gift, 7,000 now.
    donor_basis, fair_value = (cents(worth * x / 7) for x in (10, 8))
    lot = import_lot(
        investor,
        gifts["id"],
        acquisition="gift",
        symbol="KO",
        shares="100",
        acquired_at=(today - timedelta(days=100)).isoformat(),
        donor_cost_basis=str(donor_basis),
        donor_acquired_at="2015-03-02",
        fair_market_value=str(fair_value),
    )

    [opportunity] = opportunities(investor)
    loss = fair_value - worth  # 1,000 of the example, not the 3,000 below the donor's basis
    assert D(opportunity["loss_amount"]) == loss and D(opportunity["cost_basis"]) == fair_value
    # The loss is figured from the FMV, so the holding period starts at the gift: 100 days, short.
    assert opportunity["term"] == "short" and D(opportunity["short_loss"]) == loss
    assert D(opportunity["estimated_tax_savings"]) == money(min(loss, D(3000)) * SHORT_RATE)
    [shown] = opportunity["lots"]
    assert shown["lot_id"] == lot["id"] and shown["term"] == "short" and D(shown["loss"]) == loss
    assert D(shown["cost_basis"]) == donor_basis and D(shown["loss_basis"]) == fair_value
    assert opportunity["blocked"] is False  # the gift, received 100 days ago, blocks nothing anyway
    assert D(data(investor.get("/api/v1/dashboard"))["harvestable_loss_total"]) == loss


def test_a_gift_priced_between_its_two_bases_is_no_opportunity(investor: Investor) -> None:
    gifts = investor.portfolio("Gifts")
    today = market_today(investor)
    worth = 100 * close_of(investor, "KO")
    # The example at 9,000: above the FMV at the gift (8,000), below the donor's basis (10,000).
    donor_basis, fair_value = (cents(worth * x / 9) for x in (10, 8))
    import_lot(
        investor,
        gifts["id"],
        acquisition="gift",
        symbol="KO",
        shares="100",
        acquired_at=(today - timedelta(days=100)).isoformat(),
        donor_cost_basis=str(donor_basis),
        donor_acquired_at="2015-03-02",
        fair_market_value=str(fair_value),
    )
    assert opportunities(investor) == []
    assert D(data(investor.get("/api/v1/dashboard"))["harvestable_loss_total"]) == 0


# Inheritances and what blocks -------------------------------------------------------------------


def test_an_inherited_lot_held_ten_days_harvests_a_long_term_loss(
    investor: Investor, database_url: str
) -> None:
    set_tax_profile(database_url, investor.id, "single", str(SHORT_RATE), str(LONG_RATE))
    estate = investor.portfolio("Estate shares")
    today = market_today(investor)
    worth = 10 * close_of(investor, "AMD")
    fair_value = cents(2 * worth)
    import_lot(
        investor,
        estate["id"],
        acquisition="inheritance",
        symbol="AMD",
        shares="10",
        fair_market_value=str(fair_value),
        acquired_at=(today - timedelta(days=10)).isoformat(),
    )
    [opportunity] = opportunities(investor)
    loss = fair_value - worth
    assert D(opportunity["loss_amount"]) == loss
    assert opportunity["term"] == "long" and opportunity["lots"][0]["term"] == "long"
    assert (D(opportunity["long_loss"]), D(opportunity["short_loss"])) == (loss, D(0))
    assert D(opportunity["estimated_tax_savings"]) == money(min(loss, D(3000)) * SHORT_RATE)
    assert opportunity["blocked"] is False  # inherited ten days ago: not a purchase


def test_gifts_and_inheritances_received_block_no_harvest_and_a_recent_transfer_in_blocks_them_all(
    investor: Investor,
) -> None:
    brokerage, estate, gifts = (investor.portfolio(name) for name in ("Brokerage", "Estate", "Gifts"))
    today = market_today(investor)
    worth = 10 * close_of(investor, "AMD")
    transfer_in(investor, brokerage["id"], "AMD", "50", "6000.00", "2021-06-01")
    import_lot(
        investor,
        estate["id"],
        acquisition="inheritance",
        symbol="AMD",
        shares="10",
        fair_market_value=str(cents(2 * worth)),
        acquired_at=(today - timedelta(days=3)).isoformat(),
    )
    import_lot(
        investor,
        gifts["id"],
        acquisition="gift",
        symbol="AMD",
        shares="10",
        acquired_at=(today - timedelta(days=5)).isoformat(),
        donor_cost_basis=str(cents(3 * worth)),
        donor_acquired_at="2019-05-01",
        fair_market_value=str(cents(2 * worth)),
    )
    found = by_portfolio(investor)
    assert set(found) == {brokerage["id"], estate["id"], gifts["id"]}
    assert all(item["wash_sale_blockers"] == [] and not item["blocked"] for item in found.values())
    # From the loss basis (twice the value), not the donor's basis (three times).
    assert D(found[gifts["id"]]["loss_amount"]) == cents(2 * worth) - worth
    assert found[gifts["id"]]["term"] == "short" and found[estate["id"]]["term"] == "long"

    moved = investor.portfolio("Moved in")
    bought_on = today - timedelta(days=5)
    transfer_in(investor, moved["id"], "AMD", "1", str(close_of(investor, "AMD")), bought_on.isoformat())
    blocked = by_portfolio(investor)
    assert set(blocked) == set(found)
    for item in blocked.values():
        [blocker] = item["wash_sale_blockers"]
        assert (blocker["kind"], blocker["portfolio_id"], blocker["on"]) == (
            "recent_buy",
            moved["id"],
            bought_on.isoformat(),
        )
        assert item["blocked"] is True


# A household: the joint return ------------------------------------------------------------------


def joint_saving(long_gain: D, long_loss: D) -> D:
    """What a long-term loss saves against a long-term gain, the rest deducted up to 3,000."""
    if long_loss <= long_gain:
        return money(long_loss * LONG_RATE)
    return money(long_gain * LONG_RATE + min(long_loss - long_gain, D(3000)) * SHORT_RATE)


def test_a_household_member_s_saving_counts_the_spouse_s_gains_and_carryover_on_the_joint_return(
    alice: Investor, bob: Investor, database_url: str
) -> None:
    for person in (alice, bob):
        set_tax_profile(database_url, person.id, "single", str(SHORT_RATE), str(LONG_RATE))
    hers, his = alice.funded("10000.00", "Brokerage"), bob.funded("10000.00", "Brokerage")
    transfer_in(alice, hers["id"], "AMD", "50", "6000.00", "2021-06-01")
    loss = D("6000.00") - 50 * close_of(alice, "AMD")
    # Bob realizes a long-term gain of about 2,000 this year.
    basis = 100 * close_of(bob, "KO") - 2000
    transfer_in(bob, his["id"], "KO", "100", f"{basis:.2f}", "2020-01-02")
    sold = data(bob.trade(his["id"], symbol="KO", side="sell", quantity="100"), 201)
    bid = D(sold["fills"][0]["price"])
    gain = 100 * bid - commission(D(100), bid) - basis

    [alone] = opportunities(alice)
    assert alone["term"] == "long" and D(alone["loss_amount"]) == loss
    assert D(alone["estimated_tax_savings"]) == money(min(loss, D(3000)) * SHORT_RATE)  # her own return

    link(alice, bob)
    [joint] = opportunities(alice)
    assert joint["id"] == alone["id"] and D(joint["loss_amount"]) == loss
    # The joint return has Bob's long-term gain: her loss offsets it at 15% before reaching income.
    assert D(joint["estimated_tax_savings"]) == joint_saving(gain, loss)
    assert D(joint["estimated_tax_savings"]) < D(alone["estimated_tax_savings"])

    # Bob's carryover of 10,000 into this year is the couple's: it uses the gain and the whole
    # 3,000 limit, so harvesting saves nothing more this year.
    data(put_year(bob, market_today(alice).year, "10000", "0"))
    [carried] = opportunities(alice)
    assert carried["id"] == alone["id"] and D(carried["estimated_tax_savings"]) == 0

    assert alice.delete("/api/v1/me/household").status_code == 204
    [after] = opportunities(alice)
    assert D(after["estimated_tax_savings"]) == D(alone["estimated_tax_savings"])  # her own again
