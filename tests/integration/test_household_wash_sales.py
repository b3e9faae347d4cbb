"""Wash sales across a joint-filing household, through the API on Serve, the shards and the paper broker.

IRS Publication 550, "Wash Sales": "If you sell stock and your spouse ... buys substantially
identical stock, you also have a wash sale." Real PostgreSQL, Redis and Ray; figures to the cent
from the fills. The two spouses are usually on different shards: the spouse's lots, cached
book and snapshot must show a wash sale the other's fill made as soon as that fill is answered.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal as D

import httpx
import pytest

from tests.integration.people import Investor, data, error
from tests.integration.test_households_api import link
from tests.integration.test_tax_api import CENT, close_of, commission, market_today, transfer_in

pytestmark = pytest.mark.integration


@pytest.fixture
def alice(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


@pytest.fixture
def bob(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def lots(investor: Investor, portfolio: dict[str, object]) -> list[dict[str, str]]:
    return data(investor.get(f"/api/v1/portfolios/{portfolio['id']}/lots"))  # type: ignore[no-any-return]


def realized_rows(investor: Investor, portfolio: dict[str, object]) -> list[dict[str, str]]:
    return data(investor.get(f"/api/v1/portfolios/{portfolio['id']}/realized-gains"))["rows"]  # type: ignore[no-any-return]


def sell_all(investor: Investor, portfolio: dict[str, object], symbol: str, shares: int) -> D:
    """Sell ``shares`` and return the proceeds net of commission."""
    sold = data(investor.trade(portfolio["id"], symbol=symbol, side="sell", quantity=str(shares)), 201)
    assert sold["status"] == "filled"
    bid = D(sold["fills"][0]["price"])
    return shares * bid - commission(D(shares), bid)


def buy(investor: Investor, portfolio: dict[str, object], symbol: str, shares: int) -> D:
    """Buy ``shares`` and return their cost with commission."""
    bought = data(investor.trade(portfolio["id"], symbol=symbol, side="buy", quantity=str(shares)), 201)
    assert bought["status"] == "filled"
    ask = D(bought["fills"][0]["price"])
    return shares * ask + commission(D(shares), ask)


def test_a_loss_sale_then_the_spouse_s_purchase_defers_the_loss_into_the_spouse_s_lot(
    alice: Investor, bob: Investor
) -> None:
    # The worked example: Alice's 100 shares cost 1,000 more than they sell for; Bob buys 100 after.
    link(alice, bob)
    hers, his = alice.funded("20000.00", "Brokerage"), bob.funded("20000.00", "Brokerage")
    basis = 100 * close_of(alice, "BBY") + 1000
    transfer_in(alice, hers["id"], "BBY", "100", f"{basis:.2f}", "2021-01-04")
    loss = basis - sell_all(alice, hers, "BBY", 100)
    today = market_today(alice)

    cost = buy(bob, his, "BBY", 100)
    [replacement] = lots(bob, his)
    assert D(replacement["cost_basis"]) == cost
    assert D(replacement["wash_sale_disallowed"]) == loss
    assert D(replacement["adjusted_basis"]) == cost + loss
    # Alice's holding period carries over to Bob's shares: they are long-term already.
    held_days = (today - date(2021, 1, 4)).days
    assert replacement["holding_period_start"] == (today - timedelta(days=held_days)).isoformat()
    assert replacement["term"] == "long"

    [row] = realized_rows(alice, hers)
    assert row["adjustment_code"] == "W" and D(row["adjustment"]) == loss.quantize(CENT)
    assert D(row["gain_loss"]) == 0


def test_a_spouse_s_purchase_ten_days_before_the_loss_sale_takes_the_loss_and_shows_it_at_once(
    alice: Investor, bob: Investor
) -> None:
    link(alice, bob)
    hers, his = alice.funded("20000.00", "Brokerage"), bob.funded("20000.00", "Brokerage")
    today = market_today(alice)
    bought_on = today - timedelta(days=10)
    his_cost = D("1000.00")
    transfer_in(bob, his["id"], "BBY", "10", f"{his_cost}", bought_on.isoformat())
    # Bob's book and snapshot are cached before Alice sells (his shard holds them, Redis too).
    [before] = lots(bob, his)
    assert D(before["wash_sale_disallowed"]) == 0
    cached = data(bob.get(f"/api/v1/portfolios/{his['id']}"))

    basis = 10 * close_of(alice, "BBY") + 100
    transfer_in(alice, hers["id"], "BBY", "10", f"{basis:.2f}", "2021-01-04")
    loss = basis - sell_all(alice, hers, "BBY", 10)

    [after] = lots(bob, his)
    assert D(after["adjusted_basis"]) == his_cost + loss and D(after["wash_sale_disallowed"]) == loss
    assert after["holding_period_start"] == (bought_on - (today - date(2021, 1, 4))).isoformat()
    assert after["term"] == "long"
    shown = data(bob.get(f"/api/v1/portfolios/{his['id']}"))
    assert D(shown["total_gain_loss"]) == D(cached["total_gain_loss"]) - loss.quantize(CENT)
    [row] = realized_rows(alice, hers)
    assert row["adjustment_code"] == "W" and D(row["adjustment"]) == loss.quantize(CENT)


def test_after_leaving_the_household_the_former_spouse_s_purchase_is_no_wash_sale(
    alice: Investor, bob: Investor
) -> None:
    link(alice, bob)
    assert bob.delete("/api/v1/me/household").status_code == 204
    hers, his = alice.funded("20000.00", "Brokerage"), bob.funded("20000.00", "Brokerage")
    basis = 10 * close_of(alice, "BBY") + 100
    transfer_in(alice, hers["id"], "BBY", "10", f"{basis:.2f}", "2021-01-04")
    sell_all(alice, hers, "BBY", 10)
    cost = buy(bob, his, "BBY", 10)
    [lot] = lots(bob, his)
    assert D(lot["adjusted_basis"]) == cost and D(lot["wash_sale_disallowed"]) == 0
    [row] = realized_rows(alice, hers)
    assert row["adjustment_code"] is None and D(row["gain_loss"]) < 0


def test_the_spouse_may_not_buy_back_during_a_harvest_s_window_until_the_household_ends(
    alice: Investor, bob: Investor
) -> None:
    link(alice, bob)
    hers, his = alice.funded("10000.00", "Brokerage"), bob.funded("10000.00", "Brokerage")
    transfer_in(alice, hers["id"], "AMD", "50", "6000.00", "2021-06-01")
    [opportunity] = data(alice.get("/api/v1/tax-harvesting"))["opportunities"]
    assert opportunity["blocked"] is False
    replacement = opportunity["replacement_candidates"][0]["symbol"]
    path = f"/api/v1/tax-harvesting/{opportunity['id']}/execute"
    done = data(alice.post(path, {"replacement_symbol": replacement}, str(uuid.uuid4())), 201)
    window_end = date.fromisoformat(done["wash_sale_window_end"])

    refused = error(bob.trade(his["id"], symbol="AMD", side="buy", quantity="1"), 400, "WASH_SALE_BLOCKED")
    assert refused["details"]["harvest_id"] == opportunity["id"]
    assert refused["details"]["wash_sale_window_end"] == window_end.isoformat()
    assert lots(bob, his) == []

    assert alice.delete("/api/v1/me/household").status_code == 204
    assert data(bob.trade(his["id"], symbol="AMD", side="buy", quantity="1"), 201)["status"] == "filled"


def test_harvesting_counts_the_spouse_s_recent_purchase_as_a_blocker(alice: Investor, bob: Investor) -> None:
    hers, his = alice.funded("10000.00", "Brokerage"), bob.funded("10000.00", "Brokerage")
    transfer_in(alice, hers["id"], "AMD", "50", "6000.00", "2021-06-01")
    buy(bob, his, "AMD", 2)
    [alone] = data(alice.get("/api/v1/tax-harvesting"))["opportunities"]
    assert alone["blocked"] is False  # not linked: Bob's purchase is his own

    link(alice, bob)
    [opportunity] = data(alice.get("/api/v1/tax-harvesting"))["opportunities"]
    assert opportunity["id"] == alone["id"] and opportunity["blocked"] is True
    [blocker] = opportunity["wash_sale_blockers"]
    assert (blocker["kind"], blocker["portfolio_id"], blocker["symbol"]) == ("recent_buy", his["id"], "AMD")
    replacement = opportunity["replacement_candidates"][0]["symbol"]
    path = f"/api/v1/tax-harvesting/{opportunity['id']}/execute"
    error(alice.post(path, {"replacement_symbol": replacement}, str(uuid.uuid4())), 409, "WASH_SALE_RISK")


def test_spouses_trading_the_same_security_at_the_same_time_defer_every_loss_exactly_once(
    alice: Investor, bob: Investor
) -> None:
    # Alice sells five loss lots while Bob buys five times: whichever fill comes first, each sold
    # share finds one replacement share, and every deferred loss lands in one of Bob's lots.
    link(alice, bob)
    hers, his = alice.funded("20000.00", "Brokerage"), bob.funded("20000.00", "Brokerage")
    basis = 10 * close_of(alice, "BBY") + 50
    for _ in range(5):
        transfer_in(alice, hers["id"], "BBY", "10", f"{basis:.2f}", "2021-01-04")

    def sell() -> httpx.Response:
        return alice.trade(hers["id"], symbol="BBY", side="sell", quantity="10")

    def buy_ten() -> httpx.Response:
        return bob.trade(his["id"], symbol="BBY", side="buy", quantity="10")

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda call: call(), [sell, buy_ten] * 5))
    assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers if a.status_code != 201]
    assert {data(a, 201)["status"] for a in answers} == {"filled"}

    rows = realized_rows(alice, hers)
    loss = sum((D(r["cost_basis"]) - D(r["proceeds"]) for r in rows), D(0))
    assert len(rows) == 5 and {r["adjustment_code"] for r in rows} == {"W"}
    assert sum((D(r["adjustment"]) for r in rows), D(0)) == loss
    deferred = sum((D(lot["wash_sale_disallowed"]) for lot in lots(bob, his)), D(0))
    assert sum((D(lot["shares"]) for lot in lots(bob, his)), D(0)) == 50
    assert deferred.quantize(CENT) == loss.quantize(CENT)
