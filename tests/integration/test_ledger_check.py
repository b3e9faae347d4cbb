"""The ledger check: money moved through the API adds up, and each kind of damage is named."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration.people import Investor
from wealthalloc.storage.ledger_check import check_ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def trader(http: httpx.Client, database_url: str) -> tuple[Investor, str]:
    """An investor who deposited, bought, sold part and withdrew: every kind of ledger row."""
    investor = Investor(http, database_url)
    portfolio = investor.funded("10000.00")
    bought = investor.trade(portfolio["id"], symbol="KO", side="buy", quantity="10")
    assert bought.status_code == 201 and bought.json()["data"]["status"] == "filled", bought.text
    sold = investor.trade(portfolio["id"], symbol="KO", side="sell", quantity="4")
    assert sold.status_code == 201 and sold.json()["data"]["status"] == "filled", sold.text
    assert investor.deposit(portfolio["id"], "-100.00").status_code == 201
    return investor, str(portfolio["id"])


def test_what_the_api_wrote_adds_up(trader: tuple[Investor, str], database_url: str) -> None:
    investor, _ = trader
    report = check_ledger(database_url, [uuid.UUID(investor.id)])
    assert report.portfolios == 1
    assert report.balanced, report.discrepancies


def test_the_fills_of_one_batch_leave_the_cash_at_their_last_movement(
    http: httpx.Client, database_url: str
) -> None:
    """A batch's fills share a transaction and its start time: the last movement is the last written."""
    investor = Investor(http, database_url)
    portfolio = investor.funded("10000.00")
    orders = [{"symbol": s, "side": "buy", "quantity": "1"} for s in ("KO", "PG", "JNJ", "KO", "MSFT", "PG")]
    answer = investor.post(
        f"/api/v1/portfolios/{portfolio['id']}/orders:batch", {"orders": orders}, str(uuid.uuid4())
    )
    assert answer.status_code == 201 and len(answer.json()["data"]["placed"]) == 6, answer.text
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT balance_after FROM cash_movements WHERE portfolio_id = %s ORDER BY seq",
            (portfolio["id"],),
        ).fetchall()
        cash = conn.execute(
            "SELECT cash_balance FROM portfolios WHERE id = %s", (portfolio["id"],)
        ).fetchone()
    assert len(rows) == 7 and sorted((r[0] for r in rows), reverse=True) == [r[0] for r in rows]
    assert cash is not None and rows[-1][0] == cash[0]
    report = check_ledger(database_url, [uuid.UUID(investor.id)])
    assert report.balanced, report.discrepancies


def test_each_kind_of_damage_is_named_with_its_portfolio(
    trader: tuple[Investor, str], database_url: str, tmp_path: Path
) -> None:
    investor, portfolio_id = trader
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE portfolios SET cash_balance = cash_balance + 1 WHERE id = %s", (portfolio_id,))
        conn.execute(  # a fill's cash applied a second time
            """INSERT INTO cash_movements (portfolio_id, amount, kind, reference_id, balance_after)
               SELECT portfolio_id, amount, kind, reference_id, balance_after FROM cash_movements
               WHERE portfolio_id = %s AND kind = 'trade' ORDER BY created_at LIMIT 1""",
            (portfolio_id,),
        )
        conn.execute("UPDATE holdings SET shares = shares + 1 WHERE portfolio_id = %s", (portfolio_id,))
    report = check_ledger(database_url, [uuid.UUID(investor.id)])
    found = {d.check for d in report.discrepancies}
    assert found == {
        "cash_is_the_sum_of_movements",
        "cash_is_the_last_balance_after",
        "each_fill_moves_cash_once",
        "holdings_are_the_open_lots",
    }
    assert all(str(d.portfolio_id) == portfolio_id for d in report.discrepancies)
    doubled = next(d for d in report.discrepancies if d.check == "each_fill_moves_cash_once")
    assert "moved cash 2 time(s)" in doubled.detail

    env = {**os.environ, "WEALTHALLOC_DATABASE_URL": database_url, "WEALTHALLOC_DATA_DIR": str(tmp_path)}
    cli = subprocess.run(
        [sys.executable, "-m", "wealthalloc.cli", "ledger", "check", "--user", investor.id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 1
    assert "the ledger does not add up: 4 discrepancy(ies) in 1 portfolio(s)" in cli.stderr
    assert "holdings_are_the_open_lots" in cli.stderr
