"""The demo book: three accounts and two portfolios built from real closes, written once.

The seed runs into a database of its own (created with ``ensure_database`` and
migrated), so these tests can count every row without other tests' data in the
way. Prices are the bundled dataset of the ``data_dir`` fixture; the market clock
is fixed to 2026-11-25, which it maps onto a trading day of the data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from wealthalloc.demo.seed import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ADVISOR_EMAIL,
    ADVISOR_PASSWORD,
    INVESTOR_EMAIL,
    INVESTOR_PASSWORD,
    SeedError,
    SeedReport,
    create_admin,
    plan_demo_lots,
    seed_demo,
)
from wealthalloc.marketdata import MarketClock, PriceHistory
from wealthalloc.security.passwords import verify_password
from wealthalloc.storage.migrate import ensure_database, migrate

pytestmark = pytest.mark.integration

FAST = 4  # bcrypt cost for tests
WALL_CLOCK_TODAY = date(2026, 11, 25)
MONEY = Decimal("0.0001")
SEEDED_TABLES = ("users", "advisor_clients", "portfolios", "lots", "holdings", "cash_movements")


@dataclass(frozen=True)
class Seeded:
    url: str
    first: SeedReport
    second: SeedReport
    today: date
    counts_after_second: dict[str, int]


@pytest.fixture(scope="module")
def prices(data_dir: Path) -> PriceHistory:
    return PriceHistory(data_dir / "prices")


@pytest.fixture(scope="module")
def clock(prices: PriceHistory) -> MarketClock:
    return MarketClock(prices.trading_days(), today=lambda: WALL_CLOCK_TODAY)


@pytest.fixture(scope="module")
def seeded(database_url: str, prices: PriceHistory, clock: MarketClock) -> Iterator[Seeded]:
    """A database of its own, seeded twice."""
    params = conninfo_to_dict(database_url)
    name = f"wealthalloc_demo_{uuid.uuid4().hex[:10]}"
    url = make_conninfo("", **{**params, "dbname": name})
    assert ensure_database(url)
    try:
        migrate(url)
        first = seed_demo(url, prices=prices, clock=clock, bcrypt_rounds=FAST)
        second = seed_demo(url, prices=prices, clock=clock, bcrypt_rounds=FAST)
        counts = {table: _count(url, table) for table in SEEDED_TABLES}
        yield Seeded(url=url, first=first, second=second, today=clock.today(), counts_after_second=counts)
    finally:
        with psycopg.connect(make_conninfo("", **{**params, "dbname": "postgres"}), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query.encode(), params).fetchall()


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row[0])


def _investor_lots(seeded: Seeded) -> list[dict[str, Any]]:
    return _rows(
        seeded.url,
        "SELECT l.*, p.account_type FROM lots l JOIN portfolios p ON p.id = l.portfolio_id"
        " WHERE p.user_id = %s ORDER BY p.name, l.symbol, l.acquired_at",
        (seeded.first.investor_id,),
    )


def _gain(lot: dict[str, Any], prices: PriceHistory, today: date) -> Decimal:
    shares: Decimal = lot["shares"]
    cost_basis: Decimal = lot["cost_basis"]
    return shares * prices.close_on(lot["symbol"], today) - cost_basis


def _is_long_term(acquired: date, today: date) -> bool:
    """Held more than one year: sold after the anniversary of the acquisition day."""
    try:
        anniversary = acquired.replace(year=acquired.year + 1)
    except ValueError:  # 29 February
        anniversary = date(acquired.year + 1, 3, 1)
    return today > anniversary


# --- idempotency ---------------------------------------------------------------------------


def test_the_first_seed_creates_the_demo_book(seeded: Seeded) -> None:
    created = seeded.first.created

    assert created["users"] == 3
    assert created["portfolios"] == 2
    assert created["advisor_clients"] == 1
    assert created["cash_movements"] == 2
    assert created["lots"] >= 6
    assert seeded.first.existing == {}


def test_seeding_again_creates_nothing_and_finds_everything(seeded: Seeded) -> None:
    assert seeded.second.created_total == 0
    assert seeded.second.existing == seeded.first.created
    assert seeded.second.investor_id == seeded.first.investor_id
    assert seeded.second.portfolio_ids == seeded.first.portfolio_ids
    assert seeded.counts_after_second == {table: seeded.first.created[table] for table in SEEDED_TABLES}


def test_seeding_on_another_day_still_adds_nothing(seeded: Seeded, prices: PriceHistory) -> None:
    later = MarketClock(prices.trading_days(), today=lambda: date(2027, 3, 15))

    report = seed_demo(seeded.url, prices=prices, clock=later, bcrypt_rounds=FAST)

    assert report.created_total == 0


# --- the accounts --------------------------------------------------------------------------


def test_the_three_demo_accounts_have_their_roles_and_passwords(seeded: Seeded) -> None:
    users = {row["email"]: row for row in _rows(seeded.url, "SELECT email, role, password_hash FROM users")}

    assert users[INVESTOR_EMAIL]["role"] == "investor"
    assert users[ADVISOR_EMAIL]["role"] == "advisor"
    assert users[ADMIN_EMAIL]["role"] == "admin"
    assert verify_password(INVESTOR_PASSWORD, users[INVESTOR_EMAIL]["password_hash"])
    assert verify_password(ADVISOR_PASSWORD, users[ADVISOR_EMAIL]["password_hash"])
    assert verify_password(ADMIN_PASSWORD, users[ADMIN_EMAIL]["password_hash"])
    assert not verify_password(ADMIN_PASSWORD, users[INVESTOR_EMAIL]["password_hash"])


def test_the_investor_has_a_moderate_risk_profile_and_a_tax_profile(seeded: Seeded) -> None:
    [investor] = _rows(seeded.url, "SELECT * FROM users WHERE email = %s", (INVESTOR_EMAIL,))

    assert investor["full_name"]
    assert investor["risk_tolerance"] == "moderate"
    assert investor["filing_status"] == "single"
    assert investor["federal_rate"] == Decimal("0.24")
    assert investor["state_rate"] == Decimal("0.05")
    assert investor["short_term_rate"] == Decimal("0.29")
    assert investor["long_term_rate"] == Decimal("0.20")


def test_the_advisor_is_linked_to_the_investor_by_the_admin(seeded: Seeded) -> None:
    links = _rows(seeded.url, "SELECT advisor_id, client_id, granted_by, source FROM advisor_clients")

    assert links == [
        {
            "advisor_id": seeded.first.advisor_id,
            "client_id": seeded.first.investor_id,
            "granted_by": seeded.first.admin_id,
            "source": "admin",
        }
    ]


def test_the_investor_has_a_default_taxable_portfolio_and_an_ira(seeded: Seeded) -> None:
    portfolios = {
        row["name"]: row
        for row in _rows(
            seeded.url, "SELECT * FROM portfolios WHERE user_id = %s", (seeded.first.investor_id,)
        )
    }

    taxable, ira = portfolios["Taxable Brokerage"], portfolios["Traditional IRA"]
    assert (taxable["account_type"], taxable["is_default"], taxable["lot_method"]) == (
        "taxable",
        True,
        "fifo",
    )
    assert (ira["account_type"], ira["is_default"]) == ("ira", False)
    assert taxable["cash_balance"] == Decimal("25000.0000")
    assert ira["cash_balance"] > 0
    assert set(taxable["target_allocation"]) == {"asset_class", "sector"}
    weights = taxable["target_allocation"]["asset_class"].values()
    assert sum(Decimal(w) for w in weights) == 1


# --- the lots, on real prices --------------------------------------------------------------


def test_every_lot_cost_is_the_real_close_of_its_acquisition_day(
    seeded: Seeded, prices: PriceHistory
) -> None:
    trading_days = set(prices.trading_days())
    for lot in _investor_lots(seeded):
        close = prices.close_on(lot["symbol"], lot["acquired_at"])
        assert lot["acquired_at"] in trading_days
        assert lot["cost_basis"] == (lot["shares"] * close).quantize(MONEY, rounding=ROUND_HALF_UP)
        assert lot["adjusted_basis"] == lot["cost_basis"]
        assert lot["shares"] == lot["original_shares"] > 0
        assert lot["holding_period_start"] == lot["acquired_at"] <= seeded.today
        assert lot["source"] == "transfer_in"


def test_some_lots_are_at_a_gain_and_some_at_a_loss_at_the_clocks_today(
    seeded: Seeded, prices: PriceHistory
) -> None:
    lots = _investor_lots(seeded)
    gains = [_gain(lot, prices, seeded.today) for lot in lots]
    taxable_losses = [
        lot for lot in lots if lot["account_type"] == "taxable" and _gain(lot, prices, seeded.today) < 0
    ]

    assert any(g > 0 for g in gains)
    assert any(g < 0 for g in gains)
    assert taxable_losses, "the taxable account needs a loss lot for tax-loss harvesting"


def test_there_are_short_term_and_long_term_lots(seeded: Seeded) -> None:
    terms = {_is_long_term(lot["holding_period_start"], seeded.today) for lot in _investor_lots(seeded)}

    assert terms == {True, False}


def test_holdings_are_the_sum_of_the_lots_valued_at_the_clocks_today(
    seeded: Seeded, prices: PriceHistory
) -> None:
    lots = _investor_lots(seeded)
    holdings = _rows(
        seeded.url,
        "SELECT h.* FROM holdings h JOIN portfolios p ON p.id = h.portfolio_id WHERE p.user_id = %s",
        (seeded.first.investor_id,),
    )

    assert {(h["portfolio_id"], h["symbol"]) for h in holdings} == {
        (x["portfolio_id"], x["symbol"]) for x in lots
    }
    for holding in holdings:
        mine = [
            x
            for x in lots
            if (x["portfolio_id"], x["symbol"]) == (holding["portfolio_id"], holding["symbol"])
        ]
        shares = sum(x["shares"] for x in mine)
        basis = sum(x["cost_basis"] for x in mine)
        price = prices.close_on(holding["symbol"], seeded.today)
        assert holding["shares"] == shares
        assert abs(holding["average_cost"] - basis / shares) < Decimal("0.000001")
        assert holding["current_price"] == price
        assert holding["market_value"] == (shares * price).quantize(MONEY, rounding=ROUND_HALF_UP)
        assert holding["unrealized_gain_loss"] == holding["market_value"] - basis


def test_portfolio_totals_and_the_cash_ledger_add_up(seeded: Seeded) -> None:
    for portfolio_id in seeded.first.portfolio_ids.values():
        [portfolio] = _rows(seeded.url, "SELECT * FROM portfolios WHERE id = %s", (portfolio_id,))
        holdings = _rows(seeded.url, "SELECT * FROM holdings WHERE portfolio_id = %s", (portfolio_id,))
        movements = _rows(seeded.url, "SELECT * FROM cash_movements WHERE portfolio_id = %s", (portfolio_id,))

        assert [m["kind"] for m in movements] == ["deposit"]
        assert (
            sum(m["amount"] for m in movements) == portfolio["cash_balance"] == movements[-1]["balance_after"]
        )
        assert portfolio["total_value"] == portfolio["cash_balance"] + sum(
            h["market_value"] for h in holdings
        )
        assert portfolio["total_gain_loss"] == sum(h["unrealized_gain_loss"] for h in holdings)


@pytest.mark.parametrize(
    "today",
    [
        date(1997, 10, 27),  # a crash day
        date(2000, 3, 24),  # the top of the dot-com bubble
        date(2008, 10, 10),  # the bottom of a crash
        date(2013, 5, 15),
        date(2017, 12, 29),  # a year of steady highs
        date(2020, 3, 23),  # the COVID low
        date(2021, 12, 31),
        date(2022, 12, 28),  # the last day of the data
    ],
)
def test_the_lot_plan_gives_gains_losses_and_both_terms_wherever_the_clock_points(
    prices: PriceHistory, today: date
) -> None:
    lots = plan_demo_lots(prices, today)
    gains = [lot.shares * prices.close_on(lot.symbol, today) - lot.cost_basis for lot in lots]
    taxable = [g for lot, g in zip(lots, gains, strict=True) if lot.account == "taxable"]

    assert any(g > 0 for g in gains)
    assert any(g < 0 for g in taxable)
    assert {_is_long_term(lot.acquired_at, today) for lot in lots} == {True, False}
    assert all(lot.acquired_at <= today for lot in lots)


# --- create_admin --------------------------------------------------------------------------


def test_create_admin_makes_an_admin_once(seeded: Seeded) -> None:
    email = f"ops-{uuid.uuid4().hex[:6]}@example.com"

    first = create_admin(seeded.url, email=email, password="An-Admin-Password", bcrypt_rounds=FAST)
    again = create_admin(seeded.url, email=email.upper(), password="another password", bcrypt_rounds=FAST)

    assert again == first
    [row] = _rows(seeded.url, "SELECT role, password_hash FROM users WHERE id = %s", (first,))
    assert row["role"] == "admin"
    assert verify_password("An-Admin-Password", row["password_hash"])  # the second call changed nothing


@pytest.mark.parametrize("email", [INVESTOR_EMAIL, ADVISOR_EMAIL.upper()])
def test_create_admin_refuses_to_promote_an_existing_account(seeded: Seeded, email: str) -> None:
    with pytest.raises(SeedError, match="refusing to change an existing account's role"):
        create_admin(seeded.url, email=email, password="whatever-it-is", bcrypt_rounds=FAST)

    [row] = _rows(seeded.url, "SELECT role FROM users WHERE lower(email) = lower(%s)", (email,))
    assert row["role"] != "admin"
