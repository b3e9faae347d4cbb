"""Lots the platform did not buy, through the API: transfers, gifts and inheritances (IRS Pub 550, 551).

Real PostgreSQL, Redis and Ray. A transfer-in is a purchase on its acquisition date for the
wash-sale rule, in both directions; a gift keeps the donor's basis for a gain and the fair market
value for a loss; an inheritance is long-term however briefly held. Figures are checked to the cent
against the fills.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error

pytestmark = pytest.mark.integration

CENT = D("0.01")


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def commission(quantity: D, price: D) -> D:
    return min(max(quantity * D("0.005"), D("1.00")), quantity * price * D("0.01")).quantize(D("0.0001"))


def market_today(investor: Investor) -> date:
    return date.fromisoformat(data(investor.get("/api/v1/tax-harvesting"))["as_of"])


def import_lot(investor: Investor, portfolio_id: object, key: str | None = None, **body: object) -> Any:
    """Record the lot; a transfer is then confirmed (as a broker sync would) so the tests may sell it."""
    response = investor.post(f"/api/v1/portfolios/{portfolio_id}/lots", body, key or str(uuid.uuid4()))
    if response.status_code == 201 and body.get("acquisition", "transfer") == "transfer":
        investor.confirm_transfers(portfolio_id)
    return response


def sell(investor: Investor, portfolio_id: object, symbol: str, quantity: int) -> D:
    """Sell at the market; the proceeds net of commission."""
    sold = data(investor.trade(portfolio_id, symbol=symbol, side="sell", quantity=str(quantity)), 201)
    assert sold["status"] == "filled"
    bid = D(sold["fills"][0]["price"])
    return quantity * bid - commission(D(quantity), bid)


def last_price(investor: Investor, symbol: str) -> D:
    return D(data(investor.get(f"/api/v1/quotes/{symbol}"))["last"])


def realized_rows(investor: Investor, portfolio_id: object, year: int) -> list[dict[str, Any]]:
    gains = data(investor.get(f"/api/v1/portfolios/{portfolio_id}/realized-gains", params={"year": year}))
    return gains["rows"]  # type: ignore[no-any-return]


# Transfers: purchases for the wash-sale rule ----------------------------------------------------


def test_a_lot_transferred_in_after_a_loss_sale_takes_the_loss_into_its_basis_and_replays_by_key(
    investor: Investor, database_url: str
) -> None:
    taxable = investor.funded("1000.00", name="Brokerage")
    other = investor.portfolio("Old broker's shares")
    data(
        import_lot(
            investor,
            taxable["id"],
            symbol="BBY",
            shares="100",
            cost_basis="12000.00",
            acquired_at="2021-01-04",
        ),
        201,
    )
    proceeds = sell(investor, taxable["id"], "BBY", 100)
    loss = D("12000.00") - proceeds
    today = market_today(investor)

    key = str(uuid.uuid4())
    body = {"symbol": "BBY", "shares": "100", "cost_basis": "8000.00", "acquired_at": today.isoformat()}
    lot = data(import_lot(investor, other["id"], key, **body), 201)
    assert lot["source"] == "transfer_in" and lot["acquisition"] == "transfer"
    assert D(lot["cost_basis"]) == D("8000.00") and D(lot["adjusted_basis"]) == D("8000.00") + loss
    assert D(lot["wash_sale_disallowed"]) == loss
    # The sold shares' holding period (from 2021-01-04) carries over: long-term at once.
    assert lot["holding_period_start"] == "2021-01-04" and lot["term"] == "long"
    assert [part["id"] for part in lot["lots"]] == [lot["id"]]

    assert data(import_lot(investor, other["id"], key, **body), 201) == lot  # replayed, not re-applied
    error(import_lot(investor, other["id"], key, **{**body, "shares": "99"}), 409, "IDEMPOTENCY_KEY_REUSED")
    [listed] = data(investor.get(f"/api/v1/portfolios/{other['id']}/lots"))
    assert listed["id"] == lot["id"] and listed["source"] == "transfer_in"

    [row] = realized_rows(investor, taxable["id"], today.year)
    assert row["adjustment_code"] == "W" and D(row["adjustment"]) == loss.quantize(CENT)
    assert D(row["gain_loss"]) == 0
    with psycopg.connect(database_url) as conn:
        matches = conn.execute(
            "SELECT replacement_lot_id, shares, disallowed, fill_id FROM wash_sales WHERE user_id = %s",
            (investor.id,),
        ).fetchall()
    assert matches == [(uuid.UUID(lot["id"]), D(100), loss, None)]


def test_a_lot_transferred_in_part_replaces_the_loss_and_the_shares_split_off_are_listed(
    investor: Investor,
) -> None:
    taxable = investor.funded("1000.00", name="Brokerage")
    data(
        import_lot(
            investor, taxable["id"], symbol="BBY", shares="40", cost_basis="4800.00", acquired_at="2021-01-04"
        ),
        201,
    )
    loss = D("4800.00") - sell(investor, taxable["id"], "BBY", 40)
    today = market_today(investor)
    lot = data(
        import_lot(
            investor,
            taxable["id"],
            symbol="BBY",
            shares="100",
            cost_basis="5000.00",
            acquired_at=today.isoformat(),
        ),
        201,
    )
    parts = {D(part["shares"]): part for part in lot["lots"]}
    assert sorted(parts) == [D(40), D(60)]
    assert D(parts[D(40)]["adjusted_basis"]) == D("2000.00") + loss and parts[D(40)]["term"] == "long"
    assert D(parts[D(60)]["adjusted_basis"]) == D("3000.00") and parts[D(60)]["term"] == "short"
    assert len(data(investor.get(f"/api/v1/portfolios/{taxable['id']}/lots"))) == 2


def test_a_loss_sale_finds_a_lot_transferred_in_within_the_30_days_before_as_its_replacement(
    investor: Investor,
) -> None:
    taxable = investor.funded("1000.00", name="Brokerage")
    other = investor.portfolio("Second brokerage")
    today = market_today(investor)
    recent = data(
        import_lot(
            investor,
            other["id"],
            symbol="BBY",
            shares="10",
            cost_basis="500.00",
            acquired_at=(today - timedelta(days=10)).isoformat(),
        ),
        201,
    )
    assert recent["wash_sale_disallowed"] == "0.0000"
    data(
        import_lot(
            investor, taxable["id"], symbol="BBY", shares="10", cost_basis="1200.00", acquired_at="2021-01-04"
        ),
        201,
    )
    loss = D("1200.00") - sell(investor, taxable["id"], "BBY", 10)
    [lot] = data(investor.get(f"/api/v1/portfolios/{other['id']}/lots"))
    assert lot["id"] == recent["id"]
    assert D(lot["adjusted_basis"]) == D("500.00") + loss and D(lot["wash_sale_disallowed"]) == loss
    [row] = realized_rows(investor, taxable["id"], today.year)
    assert row["adjustment_code"] == "W" and D(row["adjustment"]) == loss.quantize(CENT)


def test_a_lot_transferred_in_dated_within_30_days_before_a_loss_sale_already_booked_replaces_it(
    investor: Investor,
) -> None:
    taxable = investor.funded("1000.00", name="Brokerage")
    other = investor.portfolio("Second brokerage")
    data(
        import_lot(
            investor, taxable["id"], symbol="BBY", shares="10", cost_basis="1200.00", acquired_at="2021-01-04"
        ),
        201,
    )
    loss = D("1200.00") - sell(investor, taxable["id"], "BBY", 10)
    today = market_today(investor)
    earlier = (today - timedelta(days=10)).isoformat()
    lot = data(
        import_lot(
            investor, other["id"], symbol="BBY", shares="10", cost_basis="500.00", acquired_at=earlier
        ),
        201,
    )
    assert lot["acquired_at"] == earlier and D(lot["adjusted_basis"]) == D("500.00") + loss
    [row] = realized_rows(investor, taxable["id"], today.year)
    assert row["adjustment_code"] == "W" and D(row["adjustment"]) == loss.quantize(CENT)


# Inheritances -----------------------------------------------------------------------------------


def test_an_inherited_lot_has_the_fmv_at_death_and_its_sale_two_days_later_is_long_term(
    investor: Investor,
) -> None:
    estate = investor.funded("1000.00", name="Estate shares")
    today = market_today(investor)
    death = today - timedelta(days=2)
    lot = data(
        import_lot(
            investor,
            estate["id"],
            acquisition="inheritance",
            symbol="KO",
            shares="10",
            fair_market_value="640.00",
            acquired_at=death.isoformat(),
        ),
        201,
    )
    assert (lot["source"], lot["acquisition"], lot["term"]) == ("inherited", "inheritance", "long")
    assert D(lot["cost_basis"]) == D("640.00") and lot["loss_basis"] is None
    [listed] = data(investor.get(f"/api/v1/portfolios/{estate['id']}/lots"))
    assert (listed["source"], listed["term"], listed["holding_period_start"]) == (
        "inherited",
        "long",
        death.isoformat(),
    )

    proceeds = sell(investor, estate["id"], "KO", 10)
    [row] = realized_rows(investor, estate["id"], today.year)
    assert (row["term"], row["acquired"], row["adjustment_code"]) == ("long", death.isoformat(), None)
    assert D(row["cost_basis"]) == D("640.00")
    assert D(row["gain_loss"]) == (proceeds - D("640.00")).quantize(CENT)


def test_an_inheritance_valued_at_the_alternate_date_takes_that_value(investor: Investor) -> None:
    estate = investor.portfolio("Estate")
    lot = data(
        import_lot(
            investor,
            estate["id"],
            acquisition="inheritance",
            symbol="KO",
            shares="10",
            fair_market_value="640.00",
            acquired_at="2022-01-31",
            alternate_valuation_date="2022-07-31",
            alternate_fair_market_value="590.00",
        ),
        201,
    )
    assert D(lot["cost_basis"]) == D("590.00") and lot["acquired_at"] == "2022-01-31"


def test_a_loss_on_inherited_shares_bought_back_within_30_days_leaves_the_replacement_long_term(
    investor: Investor,
) -> None:
    estate = investor.funded("5000.00", name="Estate shares")
    today = market_today(investor)
    worth = str((20 * last_price(investor, "KO")).quantize(CENT))  # twice what 10 shares fetch today
    data(
        import_lot(
            investor,
            estate["id"],
            acquisition="inheritance",
            symbol="KO",
            shares="10",
            fair_market_value=worth,
            acquired_at=(today - timedelta(days=5)).isoformat(),
        ),
        201,
    )
    loss = D(worth) - sell(investor, estate["id"], "KO", 10)
    bought = data(investor.trade(estate["id"], symbol="KO", side="buy", quantity="10"), 201)
    ask = D(bought["fills"][0]["price"])
    [replacement] = data(investor.get(f"/api/v1/portfolios/{estate['id']}/lots"))
    assert (replacement["source"], replacement["term"]) == ("buy", "long")
    assert D(replacement["adjusted_basis"]) == 10 * ask + commission(D(10), ask) + loss
    [row] = realized_rows(investor, estate["id"], today.year)
    assert (row["term"], row["adjustment_code"]) == ("long", "W")


# Gifts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("donor", "fmv", "case"),
    [
        (D("0.5"), D("0.4"), "gain"),  # sold above the donor's basis
        (D("2.0"), D("1.5"), "loss"),  # sold below the FMV at the gift
        (D("2.0"), D("0.5"), "neither"),  # sold between the two
    ],
)
def test_a_gift_sold_realizes_what_the_dual_basis_rule_of_pub_551_says(
    investor: Investor, donor: D, fmv: D, case: str
) -> None:
    gifts = investor.funded("1000.00", name="Gifts")
    today = market_today(investor)
    gift_day = today - timedelta(days=100)
    worth = 10 * last_price(investor, "KO")  # 10 shares, bases as multiples of the value (whole tens)
    donor_basis, fair_value = ((worth * x / 10).quantize(D(1)) * 10 for x in (donor, fmv))
    lot = data(
        import_lot(
            investor,
            gifts["id"],
            acquisition="gift",
            symbol="KO",
            shares="10",
            acquired_at=gift_day.isoformat(),
            donor_cost_basis=str(donor_basis),
            donor_acquired_at="2015-03-02",
            fair_market_value=str(fair_value),
        ),
        201,
    )
    assert (lot["source"], lot["holding_period_start"], lot["term"]) == ("gift", "2015-03-02", "long")
    assert D(lot["cost_basis"]) == donor_basis
    assert lot["loss_basis"] == (None if fair_value >= donor_basis else f"{fair_value:.4f}")

    proceeds = sell(investor, gifts["id"], "KO", 6)  # 6 of the 10 shares
    [row] = realized_rows(investor, gifts["id"], today.year)
    if case == "gain":
        basis, acquired, term = donor_basis * D("0.6"), "2015-03-02", "long"
    elif case == "loss":
        basis, acquired, term = fair_value * D("0.6"), gift_day.isoformat(), "short"
    else:
        basis, acquired, term = proceeds, "2015-03-02", "long"
    assert (row["acquired"], row["term"], row["adjustment_code"]) == (acquired, term, None)
    assert D(row["cost_basis"]) == basis.quantize(CENT, rounding=ROUND_HALF_EVEN)
    assert D(row["gain_loss"]) == (proceeds - basis).quantize(CENT)
    if case == "neither":
        assert D(row["gain_loss"]) == 0
    [rest] = data(investor.get(f"/api/v1/portfolios/{gifts['id']}/lots"))
    assert D(rest["cost_basis"]) == donor_basis * D("0.4")
    if fair_value < donor_basis:  # the rest keeps the rest of the loss basis
        assert D(rest["loss_basis"]) == fair_value * D("0.4")


def test_gift_tax_paid_raises_the_basis_by_the_part_due_to_the_appreciation(investor: Investor) -> None:
    gifts = investor.portfolio("Gifts")
    lot = data(
        import_lot(
            investor,
            gifts["id"],
            acquisition="gift",
            symbol="KO",
            shares="1000",
            acquired_at="2022-06-01",
            donor_cost_basis="20000.00",
            donor_acquired_at="2010-01-04",
            fair_market_value="50000.00",
            gift_tax_paid="9040.00",
            taxable_gift="32000.00",
        ),
        201,
    )
    assert D(lot["cost_basis"]) == D("28475.00") and lot["loss_basis"] is None  # Pub 551's example


def test_a_gift_replays_by_its_key_and_a_different_body_under_it_is_refused(investor: Investor) -> None:
    gifts = investor.portfolio("Gifts")
    key = str(uuid.uuid4())
    body = {
        "acquisition": "gift",
        "symbol": "KO",
        "shares": "10",
        "acquired_at": "2022-05-02",
        "donor_cost_basis": "10000.00",
        "donor_acquired_at": "2015-03-02",
        "fair_market_value": "8000.00",
    }
    first = data(import_lot(investor, gifts["id"], key, **body), 201)
    assert data(import_lot(investor, gifts["id"], key, **body), 201) == first
    error(
        import_lot(investor, gifts["id"], key, **{**body, "fair_market_value": "7000.00"}),
        409,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert [lot["id"] for lot in data(investor.get(f"/api/v1/portfolios/{gifts['id']}/lots"))] == [
        first["id"]
    ]


GIFT = {
    "acquisition": "gift",
    "symbol": "KO",
    "shares": "10",
    "acquired_at": "2022-05-02",
    "donor_cost_basis": "100.00",
    "donor_acquired_at": "2015-03-02",
    "fair_market_value": "80.00",
}
INHERITANCE = {
    "acquisition": "inheritance",
    "symbol": "KO",
    "shares": "10",
    "acquired_at": "2022-01-31",
    "fair_market_value": "640.00",
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GIFT, "donor_cost_basis": None}, "body"),  # missing for the kind
        ({**GIFT, "cost_basis": "100.00"}, "body"),  # a gift's basis is the donor's, not given
        ({**GIFT, "fair_market_value": "-1"}, "body.fair_market_value"),
        ({**GIFT, "donor_acquired_at": "2022-05-03"}, "body.donor_acquired_at"),  # after the gift
        ({**GIFT, "donor_acquired_at": "2999-01-01"}, "body.donor_acquired_at"),  # in the future
        ({**GIFT, "gift_tax_paid": "10.00"}, "body.gift_tax_paid"),  # without the taxable gift
        ({**INHERITANCE, "fair_market_value": None}, "body"),
        ({**INHERITANCE, "donor_cost_basis": "1.00"}, "body"),
        ({**INHERITANCE, "acquired_at": "2999-01-01"}, "body.acquired_at"),
        (
            {**INHERITANCE, "alternate_valuation_date": "2022-08-01", "alternate_fair_market_value": "1.00"},
            "body.alternate_valuation_date",
        ),
        ({**INHERITANCE, "acquisition": "purchase"}, "body.acquisition"),
        ({"symbol": "KO", "shares": "1", "acquired_at": "2020-01-02"}, "body"),  # a transfer needs cost_basis
    ],
)
def test_an_acquisition_with_missing_or_contradicting_figures_is_refused_and_adds_nothing(
    investor: Investor, body: dict[str, Any], field: str
) -> None:
    p = investor.portfolio()
    sent = {name: value for name, value in body.items() if value is not None}
    refused = error(import_lot(investor, p["id"], **sent), 400, "VALIDATION_ERROR")
    assert any(detail["field"] == field for detail in refused["details"]), refused
    assert data(investor.get(f"/api/v1/portfolios/{p['id']}/lots")) == []
