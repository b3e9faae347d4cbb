"""The tax engine: the harvest scan per 1,000 users with 50 lots each, and the gains report for
100,000 transactions, each beside the all-pairs wash-sale reference run in the same process.

One run, one process, no database. Trade histories are made up from the bundled real closes
(buys and sells on real trading days at that day's close), replayed by the wash-sale engine
(:func:`realize`, a 30-day window per identity group) and by the quadratic reference
(:func:`realize_all_pairs`, every lot and loss scanned for every trade), and both results are
checked to be equal:

- harvest: per user, three accounts (taxable, IRA, Roth IRA), a history that leaves about 50
  open lots, replayed, then scanned for opportunities (HIFO lots, thresholds, tax saving,
  blockers from the last 30 days of buys, replacements from the similarity engine); best of two
  alternating runs of each engine, since the figures sit side by side on a machine that may be busy;
- gains report: one taxpayer's 100,000 trades over the bundled history, replayed, then Form 8949
  rows and yearly totals with the carryforward. All-pairs grows as n^2, so the reference runs on
  the longest prefix of the history (doubling from 2,000) that fits its time budget, and both
  engines are shown on that prefix;
- growth: the windowed report on the first 20,000, 50,000 and 100,000 trades of that history (best
  of two runs each), with the time per 1,000 trades, which stays flat when the work is O(n log n);
- engines: the gains report by the replay ``realize`` runs (the mypyc build when ``make install``
  compiled it) beside the same report by the Python replay, results checked equal.

The last line printed is one JSON object of the figures.

    .venv/bin/python bench/tax.py [--users 1000] [--transactions 100000] [--reference-seconds 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wealthalloc.domain import wash_sale_replay  # noqa: E402
from wealthalloc.domain.gains_report import gains_report  # noqa: E402
from wealthalloc.domain.harvest import HarvestActivity, HarvestScanner, Opportunity, TaxProfile  # noqa: E402
from wealthalloc.domain.lots import LotMethod  # noqa: E402
from wealthalloc.domain.similarity import SimilarityEngine  # noqa: E402
from wealthalloc.domain.wash_sale import (  # noqa: E402
    ENGINE,
    AccountType,
    IdentityGroups,
    Realization,
    Side,
    Transaction,
    realize,
    realize_all_pairs,
)
from wealthalloc.marketdata import PriceHistory, SecurityReference, load_bundled_datasets  # noqa: E402
from wealthalloc.tax.report import gc_paused  # noqa: E402

ACCOUNTS = (("taxable", AccountType.TAXABLE), ("ira", AccountType.IRA), ("roth", AccountType.ROTH_IRA))
Replay = Callable[..., Realization]


class Market:
    """Real closes of the tradable bundled symbols, as Decimal cents, by trading day."""

    def __init__(self, prices: PriceHistory, reference: SecurityReference) -> None:
        symbols = [s.symbol for s in reference if s.asset_class != "index" and s.symbol in prices]
        frame = prices.frame(symbols)
        self.frame = frame
        self.days: list[date] = [stamp.date() for stamp in frame.index]
        self.symbols = symbols
        self._values = frame.to_numpy()

    def close(self, day_index: int, symbol_index: int) -> Decimal | None:
        value = self._values[day_index, symbol_index]
        return None if np.isnan(value) else Decimal(f"{value:.2f}")


def history(
    market: Market,
    rng: random.Random,
    *,
    trades: int,
    first_day: int,
    symbols: list[int],
    sell_share: float,
    accounts: tuple[tuple[str, AccountType], ...] = ACCOUNTS,
    prefix: str = "",
) -> list[Transaction]:
    """Valid trades on random trading days from ``first_day`` on: sells never exceed holdings."""
    days = sorted(rng.randrange(first_day, len(market.days)) for _ in range(trades))
    held: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    out: list[Transaction] = []
    for day in days:
        account, kind = accounts[0] if rng.random() < 0.6 else rng.choice(accounts)
        priced = [symbol for symbol in symbols if market.close(day, symbol) is not None]
        symbol = rng.choice(priced or symbols)
        price = market.close(day, symbol) or Decimal("1.00")
        owned = held[(account, symbol)]
        if owned > 0 and rng.random() < sell_share:
            quantity = min(owned, Decimal(rng.randint(1, 60)))
            side = Side.SELL
        else:
            quantity, side = Decimal(rng.randint(1, 60)), Side.BUY
        held[(account, symbol)] += quantity if side is Side.BUY else -quantity
        out.append(
            Transaction(
                date=market.days[day],
                account_id=prefix + account,
                account_type=kind,
                symbol=market.symbols[symbol],
                side=side,
                quantity=quantity,
                price=price,
                fees=Decimal("1.00") if kind is AccountType.TAXABLE else Decimal(0),
                ref=f"{prefix}{len(out)}",
            )
        )
    return out


def counting_ids() -> Callable[[], uuid.UUID]:
    """Lot ids 1, 2, 3...: the two engines open lots in the same order, so equal results get equal ids."""
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter))


def scan_users(
    replay: Replay,
    users: list[list[Transaction]],
    scanner: HarvestScanner,
    prices: dict[str, Decimal],
    today: date,
    profile: TaxProfile,
) -> tuple[float, list[list[Opportunity]], int, float]:
    """Replay and scan every user: seconds, opportunities, open lots, seconds spent scanning."""
    started = time.perf_counter()
    found: list[list[Opportunity]] = []
    lots = 0
    scanning = 0.0
    recent = today - timedelta(days=30)
    for trades in users:
        result = replay(trades, lot_method=LotMethod.HIFO, new_lot_id=counting_ids())
        lots += len(result.open_lots)
        activity = HarvestActivity(recent_buys=[tx for tx in trades if tx.date >= recent])
        scan_started = time.perf_counter()
        found.append(
            scanner.scan(result.open_lots, prices=prices, today=today, profile=profile, activity=activity)
        )
        scanning += time.perf_counter() - scan_started
    return time.perf_counter() - started, found, lots, scanning


def timed(replay: Replay, trades: list[Transaction]) -> tuple[float, Realization]:
    """The report as the API and the command line build it (``report_for``: collector paused)."""
    started = time.perf_counter()
    with gc_paused():
        result = replay(trades, lot_method=LotMethod.FIFO, new_lot_id=counting_ids())
        gains_report(result.realized)
    return time.perf_counter() - started, result


def python_realize(
    trades: list[Transaction], *, lot_method: LotMethod, new_lot_id: Callable[[], uuid.UUID]
) -> Realization:
    """The Python replay, whichever engine :func:`realize` runs."""
    return wash_sale_replay.realize(
        trades, lot_method=lot_method, groups=IdentityGroups(), opening_lots=(), new_lot_id=new_lot_id
    )


def growth(trades: list[Transaction], sizes: tuple[int, ...]) -> dict[int, float]:
    """Seconds of the windowed report on the first ``n`` trades, for each ``n`` (best of two runs)."""
    return {n: min(timed(realize, trades[:n])[0] for _ in range(2)) for n in sizes if n <= len(trades)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument(
        "--reference-seconds", type=float, default=20, help="Time budget of one all-pairs run."
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    data_dir = Path(tempfile.mkdtemp(prefix="wealthalloc-bench-tax-"))
    load_bundled_datasets(data_dir / "prices", progress=False)
    reference = SecurityReference()
    market = Market(PriceHistory(data_dir / "prices"), reference)
    last = len(market.days) - 1
    today = market.days[last]

    # --- harvest: 1,000 users x ~50 open lots -------------------------------------------------
    started = time.perf_counter()
    similarity = SimilarityEngine(
        market.frame,
        {s.symbol: s.sector for s in reference},
        universe=market.symbols,
    )
    build_s = time.perf_counter() - started
    scanner = HarvestScanner(
        min_loss=Decimal("100"), min_loss_pct=Decimal("0.05"), groups=IdentityGroups(), similarity=similarity
    )
    prices = {symbol: market.close(last, i) or Decimal(1) for i, symbol in enumerate(market.symbols)}
    profile = TaxProfile(short_rate=Decimal("0.35"), long_rate=Decimal("0.15"), realized_long=Decimal("4000"))
    users = [
        history(
            market,
            rng,
            trades=70,
            first_day=last - 500,
            symbols=rng.sample(range(len(market.symbols)), 10),
            sell_share=0.25,
            prefix=f"u{n}-",
        )
        for n in range(args.users)
    ]
    # Twice each, alternating; the best of two counts.
    window_s = pairs_s = scan_s = float("inf")
    for _ in range(2):
        seconds, window_found, lots, scanning = scan_users(realize, users, scanner, prices, today, profile)
        window_s, scan_s = min(window_s, seconds), min(scan_s, scanning)
        seconds, pairs_found, _, _ = scan_users(realize_all_pairs, users, scanner, prices, today, profile)
        pairs_s = min(pairs_s, seconds)
    if window_found != pairs_found:
        raise SystemExit("harvest: the windowed engine and the all-pairs reference disagree")
    per_1000 = 1000 / args.users
    opportunities = sum(len(found) for found in window_found)
    figures: dict[str, object] = {
        "harvest_replay_scan_s_per_1000_users": round(window_s * per_1000, 3),
        "harvest_all_pairs_s_per_1000_users": round(pairs_s * per_1000, 3),
    }
    print(
        f"harvest scan per 1,000 users x {lots / args.users:.1f} open lots"
        f" ({sum(len(u) for u in users) / args.users:.0f} trades each,"
        f" {opportunities * per_1000:,.0f} opportunities): replay + scan {window_s * per_1000:.2f} s"
        f" ({window_s / args.users * 1000:.2f} ms/user, of which scan {scan_s * per_1000:.2f} s)"
        f" | all-pairs reference replay + scan {pairs_s * per_1000:.2f} s ({pairs_s / window_s:.1f}x)"
        f" | results equal | similarity matrix {build_s * 1000:.0f} ms once"
    )

    # --- gains report: 100,000 transactions ---------------------------------------------------
    def taxpayer(trades: int) -> list[Transaction]:
        return history(
            market,
            random.Random(args.seed + 1),
            trades=trades,
            first_day=last - 4500,
            symbols=list(range(len(market.symbols))),
            sell_share=0.45,
        )

    big = taxpayer(args.transactions)
    window_s, result = timed(realize, big)
    washes = len(result.wash_sales)
    figures.update(
        gains_report_transactions=len(big), gains_report_wash_sales=washes, gains_report_s=round(window_s, 3)
    )
    # The reference on prefixes of the same history (each a valid history), doubling the size
    # while a run stays under a quarter of its budget.
    n = min(2000, len(big))
    while True:
        pairs_s, reference_result = timed(realize_all_pairs, big[:n])
        if n == len(big) or pairs_s * 4 > args.reference_seconds:
            break
        n = min(len(big), n * 2)
    if n == len(big):
        if reference_result != result:
            raise SystemExit("gains report: the windowed engine and the all-pairs reference disagree")
        print(
            f"gains report {len(big):,} transactions ({washes:,} wash sales): window {window_s:.2f} s"
            f" | all-pairs reference {pairs_s:.2f} s ({pairs_s / window_s:.1f}x) | results equal"
        )
        figures.update(
            all_pairs_transactions=n, all_pairs_s=round(pairs_s, 3), window_on_those_s=round(window_s, 3)
        )
    else:
        small_window_s, small_result = timed(realize, big[:n])
        if small_result != reference_result:
            raise SystemExit("gains report: the windowed engine and the all-pairs reference disagree")
        estimate = pairs_s * (len(big) / n) ** 2
        print(
            f"gains report {len(big):,} transactions ({washes:,} wash sales): window {window_s:.2f} s"
            f" | all-pairs not run at {len(big):,} (about {_duration(estimate)} by n^2);"
            f" both on its first {n:,} transactions: window {small_window_s:.2f} s,"
            f" all-pairs {pairs_s:.2f} s ({pairs_s / small_window_s:.1f}x) | results equal"
        )
        figures.update(
            all_pairs_transactions=n,
            all_pairs_s=round(pairs_s, 3),
            window_on_those_s=round(small_window_s, 3),
            all_pairs_estimate_s=round(estimate, 1),
        )

    sizes = growth(big, (20_000, 50_000, 100_000))
    print(
        "gains report growth (windowed, best of 2): "
        + " | ".join(
            f"{n:,} transactions {s:.2f} s ({s / n * 1000 * 1000:.1f} ms per 1,000)" for n, s in sizes.items()
        )
    )
    figures["gains_report_growth_s"] = {str(n): round(s, 3) for n, s in sizes.items()}

    # --- engines: the replay realize runs beside the Python replay, best of two alternating runs ----
    engine_s = python_s = float("inf")
    for _ in range(2):
        seconds, engine_result = timed(realize, big)
        engine_s = min(engine_s, seconds)
        seconds, python_result = timed(python_realize, big)
        python_s = min(python_s, seconds)
    if engine_result != python_result:
        raise SystemExit("gains report: the native and the Python replay disagree")
    print(
        f"gains report {len(big):,} transactions by engine (best of 2): {ENGINE} {engine_s:.2f} s"
        f" | Python replay {python_s:.2f} s ({python_s / engine_s:.2f}x) | results equal"
    )
    figures.update(
        engine=ENGINE, gains_report_engine_s=round(engine_s, 3), gains_report_python_s=round(python_s, 3)
    )
    print(json.dumps(figures))


def _duration(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} min"


if __name__ == "__main__":
    main()
