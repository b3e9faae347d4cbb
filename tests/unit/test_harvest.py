"""Harvesting: thresholds, HIFO lot choice, the saving estimate and the wash-sale blockers."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from wealthalloc.domain.gains_report import CapitalLossCarryforward, FilingStatus
from wealthalloc.domain.harvest import (
    BlockerKind,
    DividendReinvestment,
    HarvestActivity,
    HarvestScanner,
    OpenBuyOrder,
    TaxProfile,
    capital_gains_tax,
    estimate_tax_savings,
)
from wealthalloc.domain.lots import Lot
from wealthalloc.domain.similarity import SimilarityEngine
from wealthalloc.domain.wash_sale import AccountLot, AccountType, IdentityGroups, Side, Transaction

D = Decimal
TODAY = date(2022, 11, 15)
PROFILE = TaxProfile(short_rate=D("0.35"), long_rate=D("0.15"))


def held(
    symbol: str,
    shares: str,
    basis: str,
    acquired: date,
    *,
    account: str = "brokerage",
    kind: AccountType = AccountType.TAXABLE,
    ref: str | None = None,
) -> AccountLot:
    lot = Lot(
        id=uuid.uuid4(),
        symbol=symbol,
        shares=D(shares),
        cost_basis=D(basis),
        adjusted_basis=D(basis),
        acquired_at=acquired,
        holding_period_start=acquired,
    )
    return AccountLot(
        account_id=account, account_type=kind, lot=lot, original_shares=D(shares), opened_by_ref=ref
    )


def scanner(**overrides: object) -> HarvestScanner:
    options: dict[str, object] = {"min_loss": D("100"), "min_loss_pct": D("0.05")}
    options.update(overrides)
    return HarvestScanner(**options)  # type: ignore[arg-type]


# --- the saving estimate ----------------------------------------------------------------------


def test_a_loss_with_no_gains_saves_the_ordinary_rate_up_to_the_limit() -> None:
    assert estimate_tax_savings(PROFILE, short_loss=D("1000"), long_loss=D("0")) == D("350")
    assert estimate_tax_savings(PROFILE, short_loss=D("10000"), long_loss=D("0")) == D("1050")  # 3,000 x 35%
    separate = TaxProfile(
        short_rate=D("0.35"), long_rate=D("0.15"), filing_status=FilingStatus.MARRIED_SEPARATE
    )
    assert estimate_tax_savings(separate, short_loss=D("10000"), long_loss=D("0")) == D("525")


def test_a_loss_against_realized_gains_saves_the_rate_of_the_gain_it_offsets() -> None:
    long_gains = TaxProfile(short_rate=D("0.35"), long_rate=D("0.15"), realized_long=D("5000"))
    assert estimate_tax_savings(long_gains, short_loss=D("1000"), long_loss=D("0")) == D("150")
    short_gains = TaxProfile(short_rate=D("0.35"), long_rate=D("0.15"), realized_short=D("5000"))
    assert estimate_tax_savings(short_gains, short_loss=D("0"), long_loss=D("1000")) == D("350")
    # 2,000 offsets the long gain (15%), the other 3,000 is deducted from income (35%).
    small_gain = TaxProfile(short_rate=D("0.35"), long_rate=D("0.15"), realized_long=D("2000"))
    assert estimate_tax_savings(small_gain, short_loss=D("6000"), long_loss=D("0")) == D("1350")


def test_a_carryforward_already_using_the_limit_leaves_nothing_to_save_this_year() -> None:
    carried = TaxProfile(
        short_rate=D("0.35"), long_rate=D("0.15"), carryforward=CapitalLossCarryforward(short=D("20000"))
    )
    assert capital_gains_tax(carried) == D("-1050")
    assert estimate_tax_savings(carried, short_loss=D("1000"), long_loss=D("0")) == 0


def test_rates_must_be_fractions() -> None:
    with pytest.raises(ValueError):
        TaxProfile(short_rate=D("35"), long_rate=D("0.15"))


# --- opportunities ----------------------------------------------------------------------------


def test_loss_lots_are_chosen_hifo_and_need_both_thresholds() -> None:
    lots = [
        held("XYZ", "10", "1500", date(2022, 1, 3)),  # 150 a share: loss 500 at 100
        held("XYZ", "10", "1030", date(2022, 2, 1)),  # 103 a share: loss 30, under 5%
        held("XYZ", "10", "800", date(2022, 3, 1)),  # a gain
    ]
    [opportunity] = scanner().scan(lots, prices={"XYZ": D("100")}, today=TODAY, profile=PROFILE)
    assert opportunity.lot_ids == [str(lots[0].lot.id)]
    assert (opportunity.loss, opportunity.shares, opportunity.market_value) == (D("500"), D("10"), D("1000"))
    assert opportunity.loss_pct == D("0.333333")
    assert opportunity.term == "short" and opportunity.short_loss == D("500")
    assert opportunity.estimated_tax_savings == D("175")
    assert opportunity.wash_sale_window_end == TODAY + timedelta(days=30)
    # With no percent threshold the 3% lot comes along; with a $600 minimum nothing qualifies.
    [wider] = scanner(min_loss_pct=D("0")).scan(lots, prices={"XYZ": D("100")}, today=TODAY, profile=PROFILE)
    assert wider.loss == D("530") and len(wider.lots) == 2
    assert scanner(min_loss=D("600")).scan(lots, prices={"XYZ": D("100")}, today=TODAY, profile=PROFILE) == []


def test_ira_positions_and_positions_without_a_price_are_skipped() -> None:
    lots = [
        held("XYZ", "10", "5000", date(2022, 1, 3), account="ira", kind=AccountType.IRA),
        held("ABC", "10", "5000", date(2022, 1, 3)),
    ]
    assert scanner().scan(lots, prices={"XYZ": D("100")}, today=TODAY, profile=PROFILE) == []


def test_mixed_terms_and_ranking_by_saving() -> None:
    lots = [
        held("AAA", "10", "2000", date(2020, 1, 3)),  # long, loss 1,000
        held("AAA", "10", "1500", date(2022, 6, 1)),  # short, loss 500
        held("BBB", "10", "3000", date(2022, 6, 1)),  # short, loss 2,000
    ]
    found = scanner().scan(lots, prices={"AAA": D("100"), "BBB": D("100")}, today=TODAY, profile=PROFILE)
    assert [o.symbol for o in found] == ["BBB", "AAA"]
    aaa = found[1]
    assert aaa.term == "mixed" and (aaa.short_loss, aaa.long_loss) == (D("500"), D("1000"))
    assert [lot.term.value for lot in aaa.lots] == ["long", "short"]  # HIFO: 200 then 150 a share


def test_blockers_are_buys_of_identical_securities_in_any_account_in_the_last_30_days() -> None:
    groups = IdentityGroups({"GOOG": "alphabet", "GOOGL": "alphabet"})
    harvested = held("GOOGL", "10", "1500", date(2022, 1, 3), ref="fill-1")
    lots = [
        harvested,
        held(
            "GOOG", "2", "200", TODAY - timedelta(days=10), account="ira", kind=AccountType.IRA, ref="fill-9"
        ),
    ]
    activity = HarvestActivity(
        recent_buys=[
            Transaction(
                TODAY - timedelta(days=10),
                "ira",
                AccountType.IRA,
                "GOOG",
                Side.BUY,
                D("2"),
                D("100"),
                ref="fill-9",
            ),
            Transaction(
                TODAY - timedelta(days=31),
                "brokerage",
                AccountType.TAXABLE,
                "GOOGL",
                Side.BUY,
                D("1"),
                D("100"),
                ref="fill-5",
            ),
            Transaction(
                TODAY - timedelta(days=3),
                "brokerage",
                AccountType.TAXABLE,
                "MSFT",
                Side.BUY,
                D("1"),
                D("100"),
                ref="fill-6",
            ),
        ],  # fmt: skip
        open_buy_orders=[
            OpenBuyOrder("roth", "GOOG", D("5"), "order-1"),
            OpenBuyOrder("roth", "MSFT", D("5")),
        ],
        dividend_reinvestment=[DividendReinvestment("brokerage", "GOOGL")],
    )
    [opportunity] = scanner(groups=groups).scan(
        lots, prices={"GOOGL": D("100"), "GOOG": D("100")}, today=TODAY, profile=PROFILE, activity=activity
    )
    kinds = [(b.kind, b.symbol, b.account_id) for b in opportunity.blockers]
    assert kinds == [
        (BlockerKind.RECENT_BUY, "GOOG", "ira"),  # the buy, not also its lot
        (BlockerKind.OPEN_BUY_ORDER, "GOOG", "roth"),
        (BlockerKind.DIVIDEND_REINVESTMENT, "GOOGL", "brokerage"),
    ]
    assert opportunity.blocked


def test_the_lots_sold_and_their_own_buys_do_not_block() -> None:
    recent = held("XYZ", "10", "1500", TODAY - timedelta(days=5), ref="fill-1")
    activity = HarvestActivity(
        recent_buys=[
            Transaction(
                recent.lot.acquired_at,
                "brokerage",
                AccountType.TAXABLE,
                "XYZ",
                Side.BUY,
                D("10"),
                D("150"),
                ref="fill-1",
            ),
        ]  # fmt: skip
    )
    [opportunity] = scanner().scan(
        [recent], prices={"XYZ": D("100")}, today=TODAY, profile=PROFILE, activity=activity
    )
    assert opportunity.blockers == ()
    # A gain lot bought last week and kept is a replacement for the loss lot sold.
    kept = held("XYZ", "1", "90", TODAY - timedelta(days=7))
    [opportunity] = scanner().scan(
        [recent, kept], prices={"XYZ": D("100")}, today=TODAY, profile=PROFILE, activity=activity
    )
    assert [b.quantity for b in opportunity.blockers] == [D("1")]


def test_replacements_come_from_the_similarity_engine_and_are_never_identical() -> None:
    days = pd.bdate_range("2021-01-04", periods=400)
    rng = np.random.default_rng(7)
    base = rng.normal(0, 0.01, len(days))
    closes = pd.DataFrame(
        {
            "AAA": 100 * np.cumprod(1 + base),
            "AAB": 100 * np.cumprod(1 + base),  # a share class of AAA
            "CCC": 100 * np.cumprod(1 + base + rng.normal(0, 0.002, len(days))),
            "DDD": 100 * np.cumprod(1 + rng.normal(0, 0.01, len(days))),
        },
        index=days,
    )
    groups = IdentityGroups({"AAA": "a", "AAB": "a"})
    engine = SimilarityEngine(
        closes, {"AAA": "Tech", "AAB": "Tech", "CCC": "Tech", "DDD": "Energy"}, groups=groups
    )
    [opportunity] = scanner(groups=groups, similarity=engine, max_replacements=2).scan(
        [held("AAA", "10", "2000", date(2022, 1, 3))], prices={"AAA": D("100")}, today=TODAY, profile=PROFILE
    )
    assert [c.symbol for c in opportunity.replacements] == ["CCC", "DDD"]
    assert opportunity.replacements[0].similarity > 0.9
    assert all(0 <= c.similarity <= 1 for c in opportunity.replacements)


def test_the_carryforward_into_this_year_starts_from_the_carryover_entered_before_the_platform() -> None:
    from wealthalloc.tax.harvesting import carryforward_into

    # Nothing sold on the platform before 2024: the 9,000 entered into 2023 deducts 3,000 in 2023.
    entered = {2023: CapitalLossCarryforward(short=D("9000"), long=D("1000"))}
    carried = carryforward_into([], year=2024, filing_status=FilingStatus.SINGLE, entered=entered)
    assert carried == CapitalLossCarryforward(short=D("6000"), long=D("1000"))
    assert carryforward_into([], year=2024, filing_status=FilingStatus.SINGLE) == CapitalLossCarryforward()
    # So a harvested loss this year saves nothing: the carryover already uses the whole limit.
    profile = TaxProfile(short_rate=D("0.35"), long_rate=D("0.15"), carryforward=carried)
    assert estimate_tax_savings(profile, short_loss=D("2000"), long_loss=D("0")) == 0
    assert estimate_tax_savings(
        TaxProfile(short_rate=D("0.35"), long_rate=D("0.15")), short_loss=D("2000"), long_loss=D("0")
    ) == D("700")
