"""A portfolio valued at one day's closes: holdings derived from lots, totals, weights, risk score.

Holdings are never stored as the truth: they are the sum of open lots, so a
holding's shares and average cost can never disagree with the lots a tax
report is built from. The ``holdings`` table is a materialised view of this.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from wealthalloc.domain.lots import Lot
from wealthalloc.domain.money import money, price, weight

# Annualised volatility that scores 100: a portfolio as volatile as a single speculative stock.
RISK_SCORE_FULL_SCALE_VOLATILITY = 0.50


@dataclass(frozen=True)
class SecurityInfo:
    sector: str
    asset_class: str


@dataclass(frozen=True)
class Holding:
    symbol: str
    shares: Decimal
    cost_basis: Decimal
    average_cost: Decimal
    current_price: Decimal
    previous_close: Decimal
    market_value: Decimal
    unrealized_gain_loss: Decimal
    unrealized_gain_loss_pct: Decimal | None
    day_change: Decimal
    weight: Decimal
    sector: str
    asset_class: str
    lots: int


@dataclass(frozen=True)
class Valuation:
    as_of: date
    cash_balance: Decimal
    invested_value: Decimal
    total_value: Decimal
    total_cost_basis: Decimal
    total_gain_loss: Decimal
    day_change: Decimal
    holdings: list[Holding]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def value_lots(
    lots: Sequence[Lot],
    cash: Decimal,
    *,
    as_of: date,
    closes: Mapping[str, Decimal],
    previous_closes: Mapping[str, Decimal],
    info: Callable[[str], SecurityInfo],
) -> Valuation:
    """Value open lots and cash at ``closes``; ``previous_closes`` give the day's change."""
    shares: dict[str, Decimal] = defaultdict(Decimal)
    basis: dict[str, Decimal] = defaultdict(Decimal)
    counts: dict[str, int] = defaultdict(int)
    for lot in lots:
        if lot.shares > 0:
            shares[lot.symbol] += lot.shares
            basis[lot.symbol] += lot.adjusted_basis
            counts[lot.symbol] += 1
    rows: list[tuple[str, Decimal, Decimal, Decimal, Decimal]] = []
    for symbol in sorted(shares):
        close = price(closes[symbol])
        prev = price(previous_closes.get(symbol, close))
        value = money(shares[symbol] * close)
        rows.append((symbol, close, prev, value, money(shares[symbol] * (close - prev))))
    invested = sum((row[3] for row in rows), Decimal(0))
    total = money(cash + invested)
    holdings = []
    for symbol, close, prev, value, change in rows:
        cost = money(basis[symbol])
        gain = value - cost
        security = info(symbol)
        holdings.append(
            Holding(
                symbol=symbol,
                shares=shares[symbol],
                cost_basis=cost,
                average_cost=price(cost / shares[symbol]),
                current_price=close,
                previous_close=prev,
                market_value=value,
                unrealized_gain_loss=gain,
                unrealized_gain_loss_pct=weight(gain / cost) if cost else None,
                day_change=change,
                weight=weight(value / total) if total else Decimal(0),
                sector=security.sector,
                asset_class=security.asset_class,
                lots=counts[symbol],
            )
        )
    return Valuation(
        as_of=as_of,
        cash_balance=money(cash),
        invested_value=invested,
        total_value=total,
        total_cost_basis=sum((h.cost_basis for h in holdings), Decimal(0)),
        total_gain_loss=sum((h.unrealized_gain_loss for h in holdings), Decimal(0)),
        day_change=sum((h.day_change for h in holdings), Decimal(0)),
        holdings=holdings,
    )


def risk_score(annualised_volatility: float) -> Decimal:
    """0 for cash, 100 at (or above) the volatility of a speculative single stock, linear between."""
    if not math.isfinite(annualised_volatility) or annualised_volatility <= 0:
        return Decimal("0.00")
    score = min(100.0, annualised_volatility / RISK_SCORE_FULL_SCALE_VOLATILITY * 100.0)
    return Decimal(str(round(score, 2))).quantize(Decimal("0.01"))
