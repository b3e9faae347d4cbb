"""Tax through the API on Serve, the shards and the paper broker: harvests, wash sales, reports, the scan.

Real PostgreSQL, Redis and Ray. Figures are checked to the cent against what the fills and the
user's tax profile say they must be.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from tests.integration.people import Investor, data, error

pytestmark = pytest.mark.integration

CENT = D("0.01")


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def quote(investor: Investor, symbol: str) -> dict[str, Any]:
    return data(investor.get(f"/api/v1/quotes/{symbol}"))  # type: ignore[no-any-return]


def commission(quantity: D, price: D) -> D:
    return min(max(quantity * D("0.005"), D("1.00")), quantity * price * D("0.01")).quantize(D("0.0001"))


def transfer_in(
    investor: Investor, portfolio_id: object, symbol: str, shares: str, basis: str, day: str
) -> str:
    """A lot moved in from another broker, confirmed (by an admin, as a sync would) so it can be sold."""
    lot = {"symbol": symbol, "shares": shares, "cost_basis": basis, "acquired_at": day}
    lot_id: str = data(investor.post(f"/api/v1/portfolios/{portfolio_id}/lots", lot, str(uuid.uuid4())), 201)[
        "id"
    ]
    investor.confirm_transfers(portfolio_id)
    return lot_id


def market_today(investor: Investor) -> date:
    return date.fromisoformat(data(investor.get("/api/v1/tax-harvesting"))["as_of"])


def set_tax_profile(database_url: str, user_id: str, filing_status: str, short: str, long: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE users SET filing_status = %s, short_term_rate = %s, long_term_rate = %s WHERE id = %s",
            (filing_status, short, long, user_id),
        )


def close_of(investor: Investor, symbol: str) -> D:
    return D(quote(investor, symbol)["last"])


# Harvesting end to end --------------------------------------------------------------------------


def test_a_harvest_sells_hifo_loss_lots_buys_a_replacement_once_and_blocks_buying_back(
    investor: Investor, database_url: str
) -> None:
    set_tax_profile(database_url, investor.id, "married_separate", "0.35", "0.15")
    taxable = investor.funded("10000.00", name="Brokerage")
    ira = investor.portfolio("IRA", account_type="ira")
    investor.deposit(ira["id"], "10000.00")
    higher = transfer_in(investor, taxable["id"], "AMD", "50", "6000.00", "2021-06-01")
    high = transfer_in(investor, taxable["id"], "AMD", "50", "5000.00", "2021-03-01")
    transfer_in(investor, taxable["id"], "AMD", "20", "1000.00", "2020-01-02")  # at a gain: kept
    close = close_of(investor, "AMD")

    listed = data(investor.get("/api/v1/tax-harvesting", params={"portfolio_id": taxable["id"]}))
    [opportunity] = listed["opportunities"]
    assert opportunity["symbol"] == "AMD" and opportunity["status"] == "identified"
    assert [lot["lot_id"] for lot in opportunity["lots"]] == [higher, high]  # HIFO: highest basis first
    loss = D("11000.00") - 100 * close
    assert D(opportunity["loss_amount"]) == loss and opportunity["term"] == "long"
    # Married filing separately: at most 1,500 of net loss against income, at the 35% ordinary rate.
    assert D(opportunity["estimated_tax_savings"]) == min(loss, D(1500)) * D("0.35")
    candidates = opportunity["replacement_candidates"]
    assert candidates and all(c["symbol"] != "AMD" and 0 <= c["similarity"] <= 1 for c in candidates)
    assert candidates == sorted(candidates, key=lambda c: -c["similarity"])
    assert opportunity["wash_sale_blockers"] == [] and opportunity["blocked"] is False
    again = data(investor.get("/api/v1/tax-harvesting"))
    assert [o["id"] for o in again["opportunities"]] == [opportunity["id"]]  # a stable id

    path = f"/api/v1/tax-harvesting/{opportunity['id']}/execute"
    replacement = candidates[0]["symbol"]
    error(investor.post(path, {"replacement_symbol": replacement}), 400, "IDEMPOTENCY_KEY_REQUIRED")
    error(
        investor.post(path, {"replacement_symbol": "AMD"}, str(uuid.uuid4())), 400, "SUBSTANTIALLY_IDENTICAL"
    )
    error(investor.post(path, {"replacement_symbol": "ZZZZ"}, str(uuid.uuid4())), 400, "UNKNOWN_SYMBOL")

    key = str(uuid.uuid4())
    done = data(investor.post(path, {"replacement_symbol": replacement}, key), 201)
    today = date.fromisoformat(listed["as_of"])
    window_end = today + timedelta(days=30)
    assert done["refused"] == []
    sell, buy = done["orders"]["sell"], done["orders"]["buy"]
    assert sell["status"] == "filled" and sell["origin"] == "harvest" and sell["quantity"] == "100.000000"
    assert sorted(sell["lot_ids"]) == sorted([higher, high])
    assert buy["status"] == "filled" and buy["symbol"] == replacement and D(buy["quantity"]) > 0
    harvest = done["harvest"]
    assert harvest["status"] == "executed" and harvest["replacement_symbol"] == replacement
    assert done["wash_sale_window_end"] == harvest["wash_sale_window_end"] == window_end.isoformat()
    assert (harvest["sell_order_id"], harvest["buy_order_id"]) == (sell["id"], buy["id"])

    repeated = data(investor.post(path, {"replacement_symbol": replacement}, key), 201)
    assert repeated["harvest"]["id"] == harvest["id"] and repeated["refused"] == []
    assert repeated["wash_sale_window_end"] == done["wash_sale_window_end"]
    for side in ("sell", "buy"):
        again_order, first_order = repeated["orders"][side], done["orders"][side]
        assert (again_order["id"], again_order["status"]) == (first_order["id"], first_order["status"])
    assert len(data(investor.get("/api/v1/trades"))) == 2
    error(
        investor.post(path, {"replacement_symbol": replacement}, str(uuid.uuid4())), 409, "HARVEST_NOT_OPEN"
    )

    lots = data(investor.get(f"/api/v1/portfolios/{taxable['id']}/lots"))
    assert sorted((lot["symbol"], lot["shares"]) for lot in lots) == sorted(
        [("AMD", "20.000000"), (replacement, f"{D(buy['quantity']):.6f}")]
    )
    bid = D(sell["fills"][0]["price"])
    realized = 100 * bid - commission(D(100), bid) - D("11000.00")
    gains = data(
        investor.get(f"/api/v1/portfolios/{taxable['id']}/realized-gains", params={"year": today.year})
    )
    assert len(gains["rows"]) == 2 and {row["adjustment_code"] for row in gains["rows"]} == {None}
    assert {row["term"] for row in gains["rows"]} == {"long"}
    assert gains["totals"]["long"] == str(realized.quantize(CENT)) and realized < 0
    assert gains["deduction_limit"] == "1500.00" and gains["totals"]["deductible"] == "1500.00"
    assert D(gains["totals"]["carryforward"]["long"]) == (-realized - D(1500)).quantize(CENT)

    for where in (ira, taxable):  # buying the original back, in any account, is refused with the date
        refused = error(
            investor.trade(where["id"], symbol="AMD", side="buy", quantity="1"), 400, "WASH_SALE_BLOCKED"
        )
        assert str(window_end + timedelta(days=1)) in refused["message"]
        assert refused["details"]["wash_sale_window_end"] == window_end.isoformat()
    # In a batch too, every buy of it is refused (the window is looked up once), the other placed.
    batch = [{"symbol": s, "side": "buy", "quantity": "1"} for s in ("AMD", "KO", "AMD")]
    answer = data(
        investor.post(f"/api/v1/portfolios/{ira['id']}/orders:batch", {"orders": batch}, str(uuid.uuid4())),
        201,
    )
    assert [(r["index"], r["error"]["code"]) for r in answer["refused"]] == [
        (0, "WASH_SALE_BLOCKED"),
        (2, "WASH_SALE_BLOCKED"),
    ]
    assert [(p["index"], p["symbol"]) for p in answer["placed"]] == [(1, "KO")]
    shown = data(investor.get("/api/v1/tax-harvesting"))
    [made] = shown["harvests"]
    assert made["id"] == opportunity["id"] and made["switch_back"]["available"] is False
    assert made["switch_back"]["available_from"] == (window_end + timedelta(days=1)).isoformat()
    with psycopg.connect(database_url) as conn:
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT event_type FROM events WHERE aggregate_id = %s ORDER BY sequence",
                (opportunity["id"],),
            ).fetchall()
        ]
        assert kinds == ["tax_harvests.identified", "tax_harvests.executed"]
        # The window has passed (as if 31 days went by): switching back is offered, buying is allowed.
        conn.execute(
            "UPDATE tax_harvests SET wash_sale_window_end = %s WHERE id = %s",
            (today - timedelta(days=1), opportunity["id"]),
        )
    later = data(investor.get(f"/api/v1/tax-harvesting/{opportunity['id']}"))
    assert later["switch_back"]["available"] is True
    assert later["switch_back"] | {"message": None} == {
        "available": True,
        "available_from": today.isoformat(),
        "sell": replacement,
        "buy": "AMD",
        "message": None,
    }
    assert investor.trade(ira["id"], symbol="AMD", side="buy", quantity="1").status_code == 201


def test_an_account_reinvesting_the_dividends_blocks_the_harvest_until_reinvestment_stops(
    investor: Investor,
) -> None:
    taxable = investor.funded("10000.00", name="Brokerage")
    roth = investor.portfolio("Roth", account_type="roth_ira")
    transfer_in(investor, taxable["id"], "AMD", "50", "6000.00", "2021-06-01")
    refused = investor.http.patch(
        f"/api/v1/portfolios/{roth['id']}",
        json={"dividend_reinvestment": ["AMD", "NOPE"]},
        headers=investor.headers,
    )
    error(refused, 400, "UNKNOWN_SYMBOL")
    changed = investor.http.patch(
        f"/api/v1/portfolios/{roth['id']}", json={"dividend_reinvestment": ["amd"]}, headers=investor.headers
    )
    assert data(changed)["dividend_reinvestment"] == ["AMD"]

    [opportunity] = data(investor.get("/api/v1/tax-harvesting"))["opportunities"]
    assert opportunity["blocked"] is True
    [blocker] = opportunity["wash_sale_blockers"]
    assert (blocker["kind"], blocker["portfolio_id"], blocker["symbol"]) == (
        "dividend_reinvestment",
        roth["id"],
        "AMD",
    )
    replacement = opportunity["replacement_candidates"][0]["symbol"]
    path = f"/api/v1/tax-harvesting/{opportunity['id']}/execute"
    error(investor.post(path, {"replacement_symbol": replacement}, str(uuid.uuid4())), 409, "WASH_SALE_RISK")
    assert data(investor.get("/api/v1/trades")) == []

    investor.http.patch(
        f"/api/v1/portfolios/{roth['id']}", json={"dividend_reinvestment": []}, headers=investor.headers
    )
    [cleared] = data(investor.get("/api/v1/tax-harvesting"))["opportunities"]
    assert cleared["id"] == opportunity["id"] and cleared["blocked"] is False


# Wash sales in the trading path -----------------------------------------------------------------


def test_a_loss_sale_then_buys_within_30_days_show_a_w_row_and_move_the_loss_into_the_replacement(
    investor: Investor, database_url: str
) -> None:
    taxable = investor.funded("20000.00", name="Brokerage")
    other = investor.funded("20000.00", name="Second brokerage")
    ira = investor.portfolio("IRA", account_type="ira")
    investor.deposit(ira["id"], "20000.00")
    transfer_in(investor, taxable["id"], "BBY", "100", "12000.00", "2021-01-04")
    sold = data(investor.trade(taxable["id"], symbol="BBY", side="sell", quantity="100"), 201)
    assert sold["status"] == "filled"
    bid = D(sold["fills"][0]["price"])
    proceeds = 100 * bid - commission(D(100), bid)
    loss = D("12000.00") - proceeds
    today = market_today(investor)

    bought = data(investor.trade(other["id"], symbol="BBY", side="buy", quantity="40"), 201)
    ask = D(bought["fills"][0]["price"])
    cost = 40 * ask + commission(D(40), ask)
    first_part = (loss * 40 / 100).quantize(D("0.0001"), rounding=ROUND_HALF_EVEN)
    [replacement] = data(investor.get(f"/api/v1/portfolios/{other['id']}/lots"))
    assert D(replacement["cost_basis"]) == cost
    assert D(replacement["adjusted_basis"]) == cost + first_part
    assert D(replacement["wash_sale_disallowed"]) == first_part
    held_days = (today - date(2021, 1, 4)).days
    assert replacement["holding_period_start"] == (today - timedelta(days=held_days)).isoformat()
    assert replacement["term"] == "long"  # the sold lot's holding period carried over

    # The other 60 shares are replaced in an IRA: that part of the loss is lost for good.
    data(investor.trade(ira["id"], symbol="BBY", side="buy", quantity="60"), 201)
    [in_ira] = data(investor.get(f"/api/v1/portfolios/{ira['id']}/lots"))
    assert in_ira["adjusted_basis"] == in_ira["cost_basis"] and D(in_ira["wash_sale_disallowed"]) == 0

    gains = data(
        investor.get(f"/api/v1/portfolios/{taxable['id']}/realized-gains", params={"year": today.year})
    )
    [row] = gains["rows"]
    assert row["symbol"] == "BBY" and row["adjustment_code"] == "W" and row["term"] == "long"
    assert (D(row["proceeds"]), D(row["cost_basis"])) == (proceeds.quantize(CENT), D("12000.00"))
    assert D(row["adjustment"]) == loss.quantize(CENT)  # 40 shares deferred + 60 shares lost
    assert D(row["gain_loss"]) == 0
    assert gains["totals"]["disallowed"] == str(loss.quantize(CENT))
    assert gains["totals"]["permanently_disallowed"] == str((loss - first_part).quantize(CENT))
    assert gains["totals"]["deductible"] == "0.00"
    with psycopg.connect(database_url) as conn:
        matches = conn.execute(
            """SELECT shares, disallowed, permanent FROM wash_sales WHERE user_id = %s ORDER BY created_at""",
            (investor.id,),
        ).fetchall()
    assert matches == [(D(40), first_part, False), (D(60), loss - first_part, True)]


def test_a_sale_at_a_loss_after_a_buy_in_another_account_raises_that_lot_s_basis(investor: Investor) -> None:
    taxable = investor.funded("20000.00", name="Brokerage")
    other = investor.funded("20000.00", name="Second brokerage")
    transfer_in(investor, taxable["id"], "BBY", "10", "1200.00", "2021-01-04")
    bought = data(investor.trade(other["id"], symbol="BBY", side="buy", quantity="10"), 201)
    ask = D(bought["fills"][0]["price"])
    cost = 10 * ask + commission(D(10), ask)
    sold = data(investor.trade(taxable["id"], symbol="BBY", side="sell", quantity="10"), 201)
    bid = D(sold["fills"][0]["price"])
    loss = D("1200.00") - (10 * bid - commission(D(10), bid))
    [lot] = data(investor.get(f"/api/v1/portfolios/{other['id']}/lots"))
    assert D(lot["adjusted_basis"]) == cost + loss and D(lot["wash_sale_disallowed"]) == loss
    [row] = data(investor.get(f"/api/v1/portfolios/{taxable['id']}/realized-gains"))["rows"]
    assert row["adjustment_code"] == "W" and D(row["adjustment"]) == loss.quantize(CENT)


# The stateless gains report ---------------------------------------------------------------------

HISTORY = [
    ("2020-01-06", "brokerage", "taxable", "JPM", "buy", "100", "50.00", "1.00"),
    ("2021-12-01", "brokerage", "taxable", "JPM", "sell", "50", "20.00", ""),
    ("2021-12-20", "ira-1", "ira", "JPM", "buy", "25", "21.00", ""),
    ("2022-02-01", "brokerage", "taxable", "BAC", "buy", "100", "40.00", ""),
    ("2022-03-01", "brokerage", "taxable", "BAC", "sell", "100", "30.00", ""),
    ("2022-03-15", "brokerage", "taxable", "BAC", "buy", "50", "29.00", ""),
]
FIELDS = ("date", "account_id", "account_type", "symbol", "side", "quantity", "price", "fees")


def as_json(rows: list[tuple[str, ...]]) -> list[dict[str, str]]:
    return [{k: v for k, v in zip(FIELDS, row, strict=True) if v} for row in rows]


@pytest.mark.parametrize(("lot_method", "year"), [("fifo", None), ("hifo", 2022)])
def test_the_stateless_gains_report_matches_the_cli_on_the_same_transactions(
    investor: Investor, data_dir: Path, tmp_path: Path, lot_method: str, year: int | None
) -> None:
    from wealthalloc.cli import app

    csv_file = tmp_path / "trades.csv"
    csv_file.write_text(",".join(FIELDS) + "\n" + "\n".join(",".join(row) for row in HISTORY) + "\n")
    args = ["tax", "report", "--transactions", str(csv_file), "--format", "json", "--lot-method", lot_method]
    if year:
        args += ["--year", str(year)]
    result = CliRunner().invoke(app, args, env={"WEALTHALLOC_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = {"transactions": as_json(HISTORY), "lot_method": lot_method}
    if year:
        body["year"] = year
    report = data(investor.post("/api/v1/tax/gains-report", body))
    assert report == json.loads(result.stdout)
    assert any(row["adjustment_code"] == "W" for row in report["rows"])


@pytest.mark.parametrize(
    ("bad", "index", "words"),
    [
        ({"date": "2999-01-05"}, 3, "in the future"),
        ({"symbol": "ZZZZ"}, 3, "unknown symbol"),
        ({"currency": "EUR"}, 3, "only USD"),
        ({"quantity": "150"}, 4, "holds 100"),
        ({"side": "short"}, 3, "buy or sell"),
    ],
)
def test_a_bad_history_is_refused_with_the_index_of_the_row_and_nothing_is_stored(
    investor: Investor, database_url: str, bad: dict[str, str], index: int, words: str
) -> None:
    transactions = as_json(HISTORY)
    transactions[index].update(bad)
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM events").fetchone()
    refused = error(
        investor.post("/api/v1/tax/gains-report", {"transactions": transactions}), 400, "INVALID_TRANSACTIONS"
    )
    assert refused["details"][0]["index"] == index and words in refused["details"][0]["message"]
    assert f"transactions[{index}]" in refused["message"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == before
    as_number = as_json(HISTORY)
    as_number[0]["quantity"] = 100  # type: ignore[assignment]  # a JSON number, not a decimal string
    error(investor.post("/api/v1/tax/gains-report", {"transactions": as_number}), 400, "VALIDATION_ERROR")


# Someone else's ---------------------------------------------------------------------------------


def test_someone_elses_portfolio_and_opportunity_are_404(http: httpx.Client, database_url: str) -> None:
    owner, stranger = Investor(http, database_url), Investor(http, database_url)
    p = owner.funded("1000.00")
    transfer_in(owner, p["id"], "AMD", "10", "1500.00", "2021-06-01")
    [opportunity] = data(owner.get("/api/v1/tax-harvesting"))["opportunities"]
    assert data(stranger.get("/api/v1/tax-harvesting"))["opportunities"] == []
    error(stranger.get("/api/v1/tax-harvesting", params={"portfolio_id": p["id"]}), 404, "NOT_FOUND")
    error(stranger.get(f"/api/v1/portfolios/{p['id']}/realized-gains"), 404, "NOT_FOUND")
    error(stranger.get(f"/api/v1/tax-harvesting/{opportunity['id']}"), 404, "NOT_FOUND")
    path = f"/api/v1/tax-harvesting/{opportunity['id']}/execute"
    error(stranger.post(path, {"replacement_symbol": "MSFT"}, str(uuid.uuid4())), 404, "NOT_FOUND")
    error(
        stranger.post(f"/api/v1/tax-harvesting/{uuid.uuid4()}/execute", {"replacement_symbol": "MSFT"}, "k"),
        404,
        "NOT_FOUND",
    )
    assert data(owner.get(f"/api/v1/tax-harvesting/{opportunity['id']}"))["status"] == "identified"


# The daily scan ---------------------------------------------------------------------------------


def test_the_daily_scan_writes_opportunities_and_their_events_once_a_day(
    investor: Investor, database_url: str, api_settings: dict[str, Any], data_dir: Path
) -> None:
    from actors.harvest_scan import run
    from wealthalloc.cli import app
    from wealthalloc.config import Settings

    p = investor.funded("1000.00")
    transfer_in(investor, p["id"], "AMD", "10", "1500.00", "2021-06-01")
    with psycopg.connect(database_url) as conn:
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]  # type: ignore[index]
    # Three or four pages of users, however many earlier tests made: paging is exercised, and a
    # page's fixed cost is paid a few times rather than once per pair of users.
    first = run(Settings(**api_settings), batch_size=max(1, users // 3), max_in_flight=2, task_cpus=0)
    assert first.scanned >= 1 and first.batches >= min(3, users) and first.events >= 1

    def written() -> tuple[list[Any], list[Any], list[Any]]:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT id, symbol, status FROM tax_harvests WHERE user_id = %s", (investor.id,)
            ).fetchall()
            events = conn.execute(
                "SELECT aggregate_id, payload->>'symbol' FROM events WHERE user_id = %s"
                " AND event_type = 'tax_harvests.identified'",
                (investor.id,),
            ).fetchall()
            scans = conn.execute(
                "SELECT scan_date, opportunities, events FROM harvest_scans WHERE user_id = %s",
                (investor.id,),
            ).fetchall()
        return rows, events, scans

    rows, events, scans = written()
    [(harvest_id, symbol, status)] = rows
    assert (symbol, status) == ("AMD", "identified")
    assert events == [(harvest_id, "AMD")]
    assert [(s[1], s[2]) for s in scans] == [(1, 1)] and scans[0][0] == first.day

    # The same day again, from the command line this time: every user is skipped, nothing is written.
    env = {
        "WEALTHALLOC_DATABASE_URL": database_url,
        "WEALTHALLOC_DATA_DIR": str(data_dir),
    }
    result = CliRunner().invoke(app, ["tax", "scan", "--no-ray", "--batch-size", "50"], env=env)
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout.strip().splitlines()[-1])
    assert again["scanned"] == 0 and again["skipped"] == again["users"] >= 1 and again["events"] == 0
    assert written() == (rows, events, scans)
    [shown] = data(investor.get("/api/v1/tax-harvesting"))["opportunities"]
    assert shown["id"] == str(harvest_id)
