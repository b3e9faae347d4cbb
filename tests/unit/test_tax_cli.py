"""`wealthalloc tax report`: a gains report from a CSV, no database, exit code 2 on a bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from wealthalloc.cli import app

HISTORY = """date,account_id,account_type,symbol,side,quantity,price,fees
2020-01-06,brokerage,taxable,JPM,buy,100,50.00,1.00
2021-12-01,brokerage,taxable,JPM,sell,50,20.00,
2021-12-20,ira-1,ira,JPM,buy,25,21.00,
2022-02-01,brokerage,taxable,BAC,buy,100,40.00,
2022-03-01,brokerage,taxable,BAC,sell,100,30.00,
2022-03-15,brokerage,taxable,BAC,buy,50,29.00,
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "trades.csv"
    path.write_text(HISTORY)
    return path


def invoke(runner: CliRunner, data_dir: Path, *args: str) -> Result:
    return runner.invoke(app, ["tax", "report", *args], env={"WEALTHALLOC_DATA_DIR": str(data_dir)})


def test_json_report_of_one_year(runner: CliRunner, data_dir: Path, history: Path) -> None:
    result = runner.invoke(
        app,
        ["tax", "report", "--transactions", str(history), "--year", "2022", "--format", "json"],
        env={"WEALTHALLOC_DATA_DIR": str(data_dir)},
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [row] = report["rows"]
    assert row == {
        "symbol": "BAC",
        "shares": "100",
        "acquired": "2022-02-01",
        "sold": "2022-03-01",
        "proceeds": "3000.00",
        "cost_basis": "4000.00",
        "adjustment_code": "W",
        "adjustment": "500.00",
        "gain_loss": "-500.00",
        "term": "short",
        "account_id": "brokerage",
    }
    [totals] = report["totals"]
    # 2021: JPM lost 1,500.50 on 50 shares; half went to the IRA replacement, for good.
    assert totals["prior_carryforward"] == {"short": "0.00", "long": "0.00"}
    assert (totals["year"], totals["short"], totals["deductible"]) == (2022, "-500.00", "500.00")


def test_table_report_of_every_year_with_hifo_and_a_filing_status(
    runner: CliRunner, data_dir: Path, history: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "tax",
            "report",
            "--transactions",
            str(history),
            "--lot-method",
            "hifo",
            "--filing-status",
            "married_separate",
            "--carryforward-long",
            "2000",
        ],  # fmt: skip
        env={"WEALTHALLOC_DATA_DIR": str(data_dir)},
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "symbol", "shares", "acquired", "sold", "proceeds", "cost_basis", "code", "adjustment", "gain_loss",
        "term", "account_id",
    ]  # fmt: skip
    assert "2021 (married_separate, 1 rows)" in result.stdout
    assert "2022 (married_separate, 1 rows)" in result.stdout
    assert "of which permanently (IRA)  750.25" in result.stdout
    # 2021: long-term loss 750.25 + 2,000 carried in; 1,500 deducted, 1,250.25 carried into 2022.
    assert "carryforward (short, long)    0.00, 1250.25" in result.stdout


def test_a_bad_file_exits_2_with_the_line_number(runner: CliRunner, data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HISTORY + "2022-04-01,brokerage,taxable,BAC,sell,51,30.00,\n")
    result = invoke(runner, data_dir, "--transactions", str(path))
    assert result.exit_code == 2
    assert "line 8: sells 51 BAC but account brokerage holds 50" in result.stderr
    assert result.stdout == ""


def test_symbols_are_checked_against_bundled_prices_when_there_are_any(
    runner: CliRunner, data_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(
        "date,account_id,account_type,symbol,side,quantity,price\n2022-01-03,a,taxable,ZZZZ,buy,1,1\n"
    )
    refused = invoke(runner, data_dir, "--transactions", str(path))
    assert refused.exit_code == 2 and "line 2: unknown symbol ZZZZ" in refused.stderr
    accepted = invoke(runner, tmp_path / "no-data", "--transactions", str(path))
    assert accepted.exit_code == 0 and "no reportable sales" in accepted.stdout


def test_identity_groups_file_and_sorting(runner: CliRunner, data_dir: Path, tmp_path: Path) -> None:
    trades = tmp_path / "trades.csv"
    trades.write_text(
        "date,account_id,account_type,symbol,side,quantity,price\n"
        "2022-03-10,a,taxable,BAC,buy,10,30\n"
        "2022-01-03,a,taxable,JPM,buy,10,150\n"
        "2022-03-01,a,taxable,JPM,sell,10,120\n"
    )
    groups = tmp_path / "groups.csv"
    groups.write_text("group_name,symbol\nbig-banks,JPM\nbig-banks,BAC\n")
    unsorted = invoke(runner, data_dir, "--transactions", str(trades))
    assert unsorted.exit_code == 2 and "line 3" in unsorted.stderr
    result = invoke(
        runner,
        data_dir,
        "--transactions",
        str(trades),
        "--sort",
        "--identity-groups",
        str(groups),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["rows"]
    assert (row["adjustment_code"], row["adjustment"]) == ("W", "300.00")


def test_usage_errors_and_help(runner: CliRunner, data_dir: Path, history: Path, tmp_path: Path) -> None:
    missing = invoke(runner, data_dir, "--transactions", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2
    wrong = invoke(runner, data_dir, "--transactions", str(history), "--lot-method", "specific")
    assert wrong.exit_code == 2
    negative = invoke(runner, data_dir, "--transactions", str(history), "--carryforward-short", "-5")
    assert negative.exit_code == 2 and "positive" in negative.stderr
    helped = runner.invoke(app, ["tax", "report", "--help"])
    assert helped.exit_code == 0
    for option in (
        "--transactions",
        "--lot-method",
        "--year",
        "--filing-status",
        "--format",
        "--identity-groups",
    ):
        assert option in helped.stdout
