"""`wealthalloc tax report --format csv|pdf`: Form 8949 of a history the taxpayer keeps, in their box."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner, Result

from wealthalloc.cli import app

# A 2008 lot sold in 2021 at a loss, bought back in an IRA (code W); a short-term sale in 2022.
HISTORY = """date,account_id,account_type,symbol,side,quantity,price,fees
2008-01-07,brokerage,taxable,JPM,buy,100,50.00,1.00
2021-12-01,brokerage,taxable,JPM,sell,50,20.00,
2021-12-20,ira-1,ira,JPM,buy,25,21.00,
2022-02-01,brokerage,taxable,BAC,buy,100,40.00,
2022-03-01,brokerage,taxable,BAC,sell,100,30.00,
"""


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "trades.csv"
    path.write_text(HISTORY)
    return path


def report(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["tax", "report", *args], env={"WEALTHALLOC_DATA_DIR": str(data_dir)})


def test_csv_goes_to_stdout_in_the_box_the_taxpayer_chooses(data_dir: Path, history: Path) -> None:
    result = report(
        data_dir,
        "--transactions",
        str(history),
        "--format",
        "csv",
        "--year",
        "2021",
        "--box-basis",
        "no-1099b",
    )
    assert result.exit_code == 0, result.output
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(line["box"], line["line"]) for line in lines] == [("F", "row"), ("F", "total")]
    row = lines[0]
    assert (row["(a) description"], row["(b) date acquired"], row["(c) date sold"]) == (
        "50 JPM",
        "2008-01-07",
        "2021-12-01",
    )
    assert row["(f) code"] == "W"


def test_csv_and_pdf_totals_match_the_json_report(data_dir: Path, history: Path, tmp_path: Path) -> None:
    as_json = report(data_dir, "--transactions", str(history), "--format", "json", "--year", "2022")
    [totals] = json.loads(as_json.stdout)["totals"]
    out = tmp_path / "form.csv"
    result = report(data_dir, "--transactions", str(history), "--format", "csv", "--output", str(out))
    assert result.exit_code == 0, result.output
    lines = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {line["tax_year"] for line in lines} == {"2022"}  # the last year with a sale, by default
    [total] = [line for line in lines if line["line"] == "total"]
    assert (total["box"], total["(h) gain or loss"]) == ("A", totals["short"])

    pdf = tmp_path / "form.pdf"
    result = report(
        data_dir,
        "--transactions",
        str(history),
        "--format",
        "pdf",
        "--year",
        "2022",
        "--output",
        str(pdf),
        "--taxpayer",
        "Ann Example",
    )
    assert result.exit_code == 0, result.output
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "Ann Example" in text and "Form 8949" in text and "Schedule D summary" in text
    loss = f"({-float(totals['short']):,.2f})"
    assert text.count(loss) >= 3  # the row, the box A total, Schedule D lines 1b and 7


def test_pdf_needs_an_output_file_and_says_so_in_one_line(data_dir: Path, history: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEALTHALLOC_")}
    env["WEALTHALLOC_DATA_DIR"] = str(data_dir)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wealthalloc.cli",
            "tax",
            "report",
            "--transactions",
            str(history),
            "--format",
            "pdf",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: --format pdf needs --output PATH"]
    assert "Traceback" not in result.stderr
