"""Holdings derived from lots, valued at a day's closes."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from wealthalloc.domain.lots import Lot
from wealthalloc.domain.valuation import SecurityInfo, risk_score, value_lots


def lot(symbol: str, shares: str, basis: str) -> Lot:
    return Lot(
        id=uuid.uuid4(),
        symbol=symbol,
        shares=Decimal(shares),
        cost_basis=Decimal(basis),
        adjusted_basis=Decimal(basis),
        acquired_at=date(2021, 1, 4),
        holding_period_start=date(2021, 1, 4),
    )


def info(symbol: str) -> SecurityInfo:
    return SecurityInfo(
        sector="Information Technology" if symbol == "AAPL" else "Energy", asset_class="equity"
    )


def test_lots_of_one_symbol_become_one_holding_with_their_combined_basis() -> None:
    valuation = value_lots(
        [lot("AAPL", "10", "1000.00"), lot("AAPL", "5", "800.00"), lot("XOM", "20", "1200.00")],
        Decimal("500.00"),
        as_of=date(2022, 11, 25),
        closes={"AAPL": Decimal("148.11"), "XOM": Decimal("111.10")},
        previous_closes={"AAPL": Decimal("151.07"), "XOM": Decimal("110.00")},
        info=info,
    )
    aapl, xom = valuation.holdings
    assert (aapl.symbol, aapl.shares, aapl.cost_basis, aapl.lots) == (
        "AAPL",
        Decimal("15"),
        Decimal("1800.0000"),
        2,
    )
    assert aapl.average_cost == Decimal("120.0000")
    assert aapl.market_value == Decimal("2221.6500")
    assert aapl.unrealized_gain_loss == Decimal("421.6500")
    assert aapl.day_change == Decimal("-44.4000")
    assert xom.market_value == Decimal("2222.0000")
    assert valuation.total_value == Decimal("4943.6500")
    assert valuation.total_gain_loss == Decimal("1443.6500")
    assert aapl.weight + xom.weight + Decimal("500") / valuation.total_value > Decimal("0.99999")


def test_an_empty_portfolio_is_worth_its_cash_and_scores_no_risk() -> None:
    valuation = value_lots([], Decimal("0"), as_of=date(2022, 1, 3), closes={}, previous_closes={}, info=info)
    assert valuation.total_value == 0 and valuation.holdings == []
    assert risk_score(0.0) == Decimal("0.00")
    assert risk_score(float("nan")) == Decimal("0.00")
    assert risk_score(0.25) == Decimal("50.00")
    assert risk_score(2.0) == Decimal("100.00")
