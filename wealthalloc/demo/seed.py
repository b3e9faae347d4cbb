"""Demo data: three accounts and two funded portfolios valued on real prices.

``make run`` on a fresh machine should open on a book worth looking at: lots at a
gain and at a loss, short- and long-term, so that valuation, the tax-lot views,
harvesting and the advisor's view all have something to show. The book is built
from the bundled price history, not invented:

* every lot's acquisition date is a real trading day and its cost is the real
  close of that day;
* which day is decided by a rule against the data rather than hard-coded, so the
  demo stays sensible wherever the market clock points. A *peak* lot was bought at
  the highest close of its window (a buyer at the top: a loss today), a *trough*
  lot at the lowest close (bought in a dip: a gain today). Windows end at least
  45 days before the clock's today, so no lot is a fresh buy, and short-term
  windows stay inside one year, long-term ones start past it;
* the two lots the demo relies on (a short-term loss in the taxable account for
  harvesting, a long-term gain) fall back to another of the 20 symbols when the
  first choice does not give the intended sign at the clock's date.

The positions arrive as transfers in (``source = 'transfer_in'``) with their
original dates and basis, and the cash as one deposit, so the cash ledger adds
up to ``cash_balance`` without inventing a trade history.

Idempotency: every row has a natural key (lower(email); user and portfolio name;
advisor and client; portfolio and idempotency key) and is inserted with
``ON CONFLICT DO NOTHING``. A portfolio's lots, holdings and deposit are written
only in the transaction that created the portfolio, so a second run, even on
another day with another clock date, adds nothing and changes nothing. All of it
is one transaction: a failed seed leaves no half-built book.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from wealthalloc.logging import get_logger
from wealthalloc.security.passwords import hash_password

if TYPE_CHECKING:
    from wealthalloc.marketdata import MarketClock, PriceHistory

log = get_logger(__name__)

_Conn = psycopg.Connection[tuple[Any, ...]]

MONEY = Decimal("0.0001")
SHARES = Decimal("0.000001")
PRICE = Decimal("0.000001")

# The stock universe of the bundled dataset: the fallback pool for the lots the demo relies on.
UNIVERSE: tuple[str, ...] = (
    "AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO",
    "LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM",
)  # fmt: skip

INVESTOR_EMAIL = "demo@wealthalloc.dev"
INVESTOR_PASSWORD = "Demo-Investor-2026"
ADVISOR_EMAIL = "advisor@wealthalloc.dev"
ADVISOR_PASSWORD = "Demo-Advisor-2026"
ADMIN_EMAIL = "admin@wealthalloc.dev"
ADMIN_PASSWORD = "Demo-Admin-2026"

TAXABLE_NAME = "Taxable Brokerage"
IRA_NAME = "Traditional IRA"
DEPOSIT_KEY = "demo-seed-initial-deposit"

Account = Literal["taxable", "ira"]
Pick = Literal["peak", "trough", "on"]


class SeedError(Exception):
    """The demo data cannot be written as asked; the message is for a person."""


@dataclass(frozen=True)
class LotPlan:
    """How to choose one demo lot from the price history.

    ``window`` is (newest, oldest) in calendar days before the clock's today. ``peak``
    buys at the window's highest close, ``trough`` at its lowest, ``on`` at the last
    close of the window (a plain buy on a date, whatever the market did). With ``guarantee``,
    the first symbol in ``symbols`` (then the rest of the universe) whose lot has the
    intended sign today is used: a loss for a peak, a gain for a trough.
    """

    account: Account
    symbols: tuple[str, ...]
    shares: Decimal
    pick: Pick
    window: tuple[int, int]
    story: str
    guarantee: bool = False


@dataclass(frozen=True)
class DemoLot:
    """A lot as chosen against the data: the real close of ``acquired_at`` is its cost."""

    account: Account
    symbol: str
    shares: Decimal
    acquired_at: date
    price: Decimal
    cost_basis: Decimal
    story: str


# Windows of at most 330 days are short-term, windows from 400 days on long-term.
DEMO_LOT_PLAN: tuple[LotPlan, ...] = (
    LotPlan("taxable", ("AAPL",), Decimal(60), "trough", (1100, 2000),
            "long-term gain: bought in a dip three to five years ago", guarantee=True),
    LotPlan("taxable", ("AAPL",), Decimal(15), "peak", (45, 330),
            "short-term: a second AAPL lot bought at this year's high (FIFO vs HIFO differ)"),
    LotPlan("taxable", ("AMD", "MSFT", "BBY", "GE", "BAC"), Decimal(100), "peak", (45, 330),
            "short-term loss: bought at the top, the harvesting candidate", guarantee=True),
    LotPlan("taxable", ("MSFT",), Decimal(40), "peak", (400, 800),
            "long-term: bought at a high one to two years ago"),
    LotPlan("taxable", ("JPM",), Decimal(50), "trough", (400, 900),
            "long-term: bought in a dip"),
    LotPlan("taxable", ("XOM",), Decimal(80), "trough", (45, 330),
            "short-term: bought at this year's low"),
    LotPlan("ira", ("JNJ",), Decimal(40), "on", (1000, 1010),
            "long-term: a plain buy about 2.7 years ago"),
    LotPlan("ira", ("KO",), Decimal(100), "on", (1800, 1810),
            "long-term: a plain buy about 5 years ago"),
    LotPlan("ira", ("PFE",), Decimal(120), "peak", (60, 330),
            "short-term: bought at this year's high"),
)  # fmt: skip

# Target weights as decimal strings (API.md: no floats for money or weights), fractions of the
# whole portfolio: asset_class sums to 1, sector (GICS) sums to asset_class.equity.
TAXABLE_TARGET: dict[str, dict[str, str]] = {
    "asset_class": {"equity": "0.90", "cash": "0.10"},
    "sector": {
        "Information Technology": "0.30",
        "Health Care": "0.15",
        "Financials": "0.15",
        "Energy": "0.10",
        "Consumer Staples": "0.10",
        "Industrials": "0.05",
        "Consumer Discretionary": "0.05",
    },
}
IRA_TARGET: dict[str, dict[str, str]] = {
    "asset_class": {"equity": "0.95", "cash": "0.05"},
    "sector": {"Health Care": "0.50", "Consumer Staples": "0.45"},
}


@dataclass(frozen=True)
class _PortfolioSpec:
    account: Account
    name: str
    account_type: Literal["taxable", "ira"]
    is_default: bool
    cash: Decimal
    target: dict[str, dict[str, str]]


PORTFOLIOS: tuple[_PortfolioSpec, ...] = (
    _PortfolioSpec("taxable", TAXABLE_NAME, "taxable", True, Decimal("25000.00"), TAXABLE_TARGET),
    _PortfolioSpec("ira", IRA_NAME, "ira", False, Decimal("8000.00"), IRA_TARGET),
)


@dataclass(frozen=True)
class SeedReport:
    """What ``seed_demo`` found and did: rows created and rows already there, by table."""

    created: Mapping[str, int]
    existing: Mapping[str, int]
    investor_id: UUID
    advisor_id: UUID
    admin_id: UUID
    portfolio_ids: Mapping[str, UUID] = field(default_factory=dict)
    clock_date: date | None = None

    @property
    def created_total(self) -> int:
        return sum(self.created.values())


def plan_demo_lots(prices: PriceHistory, today: date) -> list[DemoLot]:
    """Resolve :data:`DEMO_LOT_PLAN` against the price history as of ``today``.

    Pure (no database): the tests and the seed share it. A plan whose window holds no
    data (a clock pinned near the start of the history) is left out.
    """
    lots: list[DemoLot] = []
    for plan in DEMO_LOT_PLAN:
        lot = _resolve(plan, prices, today)
        if lot is None:
            log.warning("demo lot left out: no prices in its window", symbols=plan.symbols, today=today)
            continue
        lots.append(lot)
    return lots


def seed_demo(
    database_url: str,
    *,
    prices: PriceHistory,
    clock: MarketClock,
    bcrypt_rounds: int = 12,
) -> SeedReport:
    """Write the demo investor, advisor and admin and the investor's two portfolios, once.

    Idempotent: a second call creates nothing and reports every row as existing.
    """
    today = clock.today()
    created: dict[str, int] = {}
    existing: dict[str, int] = {}

    def count(table: str, was_created: bool, n: int = 1) -> None:
        target = created if was_created else existing
        target[table] = target.get(table, 0) + n

    with psycopg.connect(database_url) as conn, conn.transaction():
        admin_id, made = _ensure_user(
            conn, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, role="admin",
            full_name="Avery Admin", rounds=bcrypt_rounds,
        )  # fmt: skip
        count("users", made)
        advisor_id, made = _ensure_user(
            conn, email=ADVISOR_EMAIL, password=ADVISOR_PASSWORD, role="advisor",
            full_name="Morgan Advisor", rounds=bcrypt_rounds, investment_experience="advanced",
        )  # fmt: skip
        count("users", made)
        investor_id, made = _ensure_user(
            conn, email=INVESTOR_EMAIL, password=INVESTOR_PASSWORD, role="investor",
            full_name="Dana Demo", rounds=bcrypt_rounds, risk_tolerance="moderate",
            investment_experience="intermediate", filing_status="single",
            federal_rate=Decimal("0.24"), state_rate=Decimal("0.05"),
            short_term_rate=Decimal("0.29"), long_term_rate=Decimal("0.20"),
        )  # fmt: skip
        count("users", made)

        link = conn.execute(
            "INSERT INTO advisor_clients (advisor_id, client_id, granted_by, source)"
            " VALUES (%s, %s, %s, 'admin') ON CONFLICT DO NOTHING RETURNING advisor_id",
            (advisor_id, investor_id, admin_id),
        ).fetchone()
        count("advisor_clients", link is not None)

        lots_by_account: dict[Account, list[DemoLot]] = {}
        planned = plan_demo_lots(prices, today)
        for lot in planned:
            lots_by_account.setdefault(lot.account, []).append(lot)

        portfolio_ids: dict[str, UUID] = {}
        for spec in PORTFOLIOS:
            portfolio_id, made = _ensure_portfolio(conn, investor_id, spec)
            portfolio_ids[spec.name] = portfolio_id
            count("portfolios", made)
            if made:
                for table, n in _fill_portfolio(
                    conn, portfolio_id, spec, lots_by_account.get(spec.account, []), prices, today
                ).items():
                    count(table, True, n)
            else:
                for table, n in _existing_contents(conn, portfolio_id).items():
                    count(table, False, n)

    report = SeedReport(
        created=created,
        existing=existing,
        investor_id=investor_id,
        advisor_id=advisor_id,
        admin_id=admin_id,
        portfolio_ids=portfolio_ids,
        clock_date=today,
    )
    log.info("demo data seeded", created=created, existing=existing, clock_date=today.isoformat())
    return report


def create_admin(
    database_url: str,
    *,
    email: str,
    password: str,
    full_name: str | None = None,
    bcrypt_rounds: int = 12,
) -> UUID:
    """Create an admin account, or return the id of the admin that already has this email.

    An existing account with another role is refused (:class:`SeedError`): making someone
    an admin is a decision to take explicitly, not a side effect of a setup command. An
    existing admin keeps its password.
    """
    with psycopg.connect(database_url) as conn, conn.transaction():
        user_id, _ = _ensure_user(
            conn, email=email, password=password, role="admin", full_name=full_name, rounds=bcrypt_rounds
        )
    return user_id


# --- choosing lots -------------------------------------------------------------------------


def _resolve(plan: LotPlan, prices: PriceHistory, today: date) -> DemoLot | None:
    candidates = plan.symbols
    if plan.guarantee:
        candidates = plan.symbols + tuple(s for s in UNIVERSE if s not in plan.symbols)
    first: DemoLot | None = None
    for symbol in candidates:
        lot = _lot_for(plan, symbol, prices, today)
        if lot is None:
            continue
        if first is None:
            first = lot
        if not plan.guarantee or _has_intended_sign(plan, lot, prices, today):
            return lot
    return first


def _lot_for(plan: LotPlan, symbol: str, prices: PriceHistory, today: date) -> DemoLot | None:
    newest, oldest = plan.window
    start, end = today - timedelta(days=oldest), today - timedelta(days=newest)
    best_day: date | None = None
    best_close = 0.0
    for stamp, value in prices.closes(symbol).dropna().items():
        day = _as_date(stamp)
        if day < start or day > end:
            continue
        close = float(value)
        if plan.pick == "peak":
            better = best_day is None or close > best_close
        elif plan.pick == "trough":
            better = best_day is None or close < best_close
        else:  # "on": the latest close of the window
            better = best_day is None or day > best_day
        if better:
            best_day, best_close = day, close
    if best_day is None:
        return None
    price = prices.close_on(symbol, best_day).quantize(PRICE, rounding=ROUND_HALF_UP)
    shares = plan.shares.quantize(SHARES)
    return DemoLot(
        account=plan.account,
        symbol=symbol,
        shares=shares,
        acquired_at=best_day,
        price=price,
        cost_basis=(shares * price).quantize(MONEY, rounding=ROUND_HALF_UP),
        story=plan.story,
    )


def _has_intended_sign(plan: LotPlan, lot: DemoLot, prices: PriceHistory, today: date) -> bool:
    """A peak lot should be at a loss today, a trough lot at a gain; an "on" lot may be either."""
    value: Decimal = lot.shares * prices.close_on(lot.symbol, today)
    if plan.pick == "peak":
        return value < lot.cost_basis
    if plan.pick == "trough":
        return value > lot.cost_basis
    return True


def _as_date(stamp: object) -> date:
    """A date from whatever the price index holds (Timestamp, datetime or date)."""
    to_date = getattr(stamp, "date", None)
    if callable(to_date):
        result = to_date()
        if isinstance(result, date):
            return result
    if isinstance(stamp, date):
        return stamp
    raise TypeError(f"cannot read a date from {stamp!r}")


# --- writing -------------------------------------------------------------------------------


def _ensure_user(
    conn: _Conn,
    *,
    email: str,
    password: str,
    role: str,
    full_name: str | None,
    rounds: int,
    **profile: object,
) -> tuple[UUID, bool]:
    """Insert the user unless the address exists (any case); refuse an existing one of another role."""
    email = email.strip().lower()
    row = conn.execute("SELECT id, role FROM users WHERE lower(email) = %s", (email,)).fetchone()
    if row is None:
        columns = ["email", "password_hash", "full_name", "role", *profile]
        password_hash = hash_password(password, rounds=rounds)
        values: list[object] = [email, password_hash, full_name, role, *profile.values()]
        placeholders = ", ".join(["%s"] * len(columns))
        inserted = conn.execute(
            sql.SQL("INSERT INTO users ({}) VALUES ({}) ON CONFLICT DO NOTHING RETURNING id").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                sql.SQL(placeholders),
            ),
            values,
        ).fetchone()
        if inserted is not None:
            return UUID(str(inserted[0])), True
        # A concurrent writer inserted the same address between our SELECT and INSERT.
        row = conn.execute("SELECT id, role FROM users WHERE lower(email) = %s", (email,)).fetchone()
        if row is None:
            raise SeedError(f"could not create or find the user {email}")
    user_id, existing_role = UUID(str(row[0])), str(row[1])
    if existing_role != role:
        raise SeedError(
            f"{email} already exists with role {existing_role!r}, not {role!r}; "
            "refusing to change an existing account's role"
        )
    return user_id, False


def _ensure_portfolio(conn: _Conn, user_id: UUID, spec: _PortfolioSpec) -> tuple[UUID, bool]:
    inserted = conn.execute(
        "INSERT INTO portfolios (user_id, name, account_type, is_default, lot_method, target_allocation)"
        " VALUES (%s, %s, %s, %s, 'fifo', %s) ON CONFLICT DO NOTHING RETURNING id",
        (user_id, spec.name, spec.account_type, spec.is_default, Jsonb(spec.target)),
    ).fetchone()
    if inserted is not None:
        return UUID(str(inserted[0])), True
    row = conn.execute(
        "SELECT id FROM portfolios WHERE user_id = %s AND name = %s AND deleted_at IS NULL",
        (user_id, spec.name),
    ).fetchone()
    if row is None:
        raise SeedError(
            f"cannot create the demo portfolio {spec.name!r}: the demo investor already has "
            "another default portfolio"
        )
    return UUID(str(row[0])), False


def _fill_portfolio(
    conn: _Conn,
    portfolio_id: UUID,
    spec: _PortfolioSpec,
    lots: list[DemoLot],
    prices: PriceHistory,
    today: date,
) -> dict[str, int]:
    """Lots, holdings derived from them, the deposit, and the portfolio's cached totals."""
    for lot in lots:
        conn.execute(
            "INSERT INTO lots (portfolio_id, symbol, shares, original_shares, cost_basis, adjusted_basis,"
            " acquired_at, holding_period_start, source)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'transfer_in')",
            (portfolio_id, lot.symbol, lot.shares, lot.shares, lot.cost_basis, lot.cost_basis,
             lot.acquired_at, lot.acquired_at),
        )  # fmt: skip

    positions: dict[str, tuple[Decimal, Decimal]] = {}
    for lot in lots:
        shares, basis = positions.get(lot.symbol, (Decimal(0), Decimal(0)))
        positions[lot.symbol] = (shares + lot.shares, basis + lot.cost_basis)

    total_market = Decimal(0)
    total_gain = Decimal(0)
    for symbol, (shares, basis) in sorted(positions.items()):
        price = prices.close_on(symbol, today).quantize(PRICE, rounding=ROUND_HALF_UP)
        market_value = (shares * price).quantize(MONEY, rounding=ROUND_HALF_UP)
        gain = market_value - basis
        conn.execute(
            "INSERT INTO holdings (portfolio_id, symbol, shares, average_cost, current_price, market_value,"
            " unrealized_gain_loss) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (portfolio_id, symbol, shares, (basis / shares).quantize(PRICE, rounding=ROUND_HALF_UP),
             price, market_value, gain),
        )  # fmt: skip
        total_market += market_value
        total_gain += gain

    cash = spec.cash.quantize(MONEY)
    conn.execute(
        "INSERT INTO cash_movements (portfolio_id, amount, kind, idempotency_key, description, balance_after)"
        " VALUES (%s, %s, 'deposit', %s, 'Initial deposit (demo)', %s) ON CONFLICT DO NOTHING",
        (portfolio_id, cash, DEPOSIT_KEY, cash),
    )
    conn.execute(
        "UPDATE portfolios SET cash_balance = %s, total_value = %s, total_gain_loss = %s,"
        " updated_date = now() WHERE id = %s",
        (cash, cash + total_market, total_gain, portfolio_id),
    )
    return {"lots": len(lots), "holdings": len(positions), "cash_movements": 1}


def _existing_contents(conn: _Conn, portfolio_id: UUID) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in ("lots", "holdings", "cash_movements"):
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE portfolio_id = %s").format(sql.Identifier(table)),
            (portfolio_id,),
        ).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts
