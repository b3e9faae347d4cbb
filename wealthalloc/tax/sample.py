"""The sample Form 8949 in ``docs/``: made from a demo-like history, so the docs show what a user gets.

Run ``python -m wealthalloc.tax.sample`` (or ``--out DIR``) to make
``sample-form-8949.pdf``, ``sample-form-8949.csv`` and
``sample-schedule-d.csv`` again. No database and no market data are needed:
the history below is fixed, and the output is the same on every run but for
the PDF's creation date.
"""

from __future__ import annotations

import argparse
import datetime as dt
from decimal import Decimal
from pathlib import Path

from wealthalloc.domain.gains_report import CapitalLossCarryforward, FilingStatus
from wealthalloc.domain.tax_forms import (
    box_totals,
    boxed_rows,
    inherited_lots,
    reporting_of_lots,
    schedule_d,
)
from wealthalloc.tax.form_csv import form_8949_csv, schedule_d_csv
from wealthalloc.tax.form_pdf import form_8949_pdf
from wealthalloc.tax.report import report_for
from wealthalloc.tax.transactions_csv import parse_transactions_csv

YEAR = 2022
TAXPAYER = "Dana Demo"

# Dana's brokerage: positions brought in from another broker (AAPL in 2009: noncovered), JNJ inherited in
# 2019 (column (b) reads INHERITED), trades made here, a loss on BBY bought back within 30 days (a wash
# sale, code W), and an IRA that is never reported.
HISTORY = """date,account_id,account_type,symbol,side,quantity,price,fees
2009-03-16,brokerage,taxable,AAPL,buy,40,3.80,
2015-06-01,brokerage,taxable,JPM,buy,60,68.00,
2019-08-20,brokerage,taxable,JNJ,buy,20,140.00,
2021-03-01,brokerage,taxable,MSFT,buy,15,232.00,1.00
2021-11-01,brokerage,taxable,BBY,buy,30,120.00,1.00
2022-01-18,brokerage,taxable,AMD,buy,25,130.00,1.00
2022-03-14,brokerage,taxable,BBY,sell,30,93.50,1.00
2022-04-04,brokerage,taxable,BBY,buy,10,95.00,1.00
2022-05-10,brokerage,taxable,AMD,sell,25,94.00,1.00
2022-08-15,brokerage,taxable,AAPL,sell,40,172.00,1.00
2022-06-21,brokerage,taxable,JNJ,sell,20,158.00,1.00
2022-09-12,brokerage,taxable,JPM,sell,60,112.00,1.00
2022-11-07,brokerage,taxable,MSFT,sell,15,228.00,1.00
2022-02-01,ira-1,ira,KO,buy,50,60.00,
2022-10-03,ira-1,ira,KO,sell,50,55.00,
"""
TRANSFERRED_IN = frozenset({"AAPL", "JPM"})
"""Lots that came from another broker; the rest were bought on the platform (or inherited)."""
INHERITED_SYMBOLS = frozenset({"JNJ"})
"""Lots received from an estate: the buy's date is the date of death, its price the value then."""
CARRIED_IN = CapitalLossCarryforward(short=Decimal("1200.00"))
"""A short-term loss carried over from 2021, from Dana's return of that year."""


def write_samples(out: Path) -> list[Path]:
    """Write the sample files into ``out`` and return their paths."""
    history = parse_transactions_csv(HISTORY, today=dt.date(YEAR + 1, 1, 1), sort=True)
    realization, report = report_for(
        history, year=YEAR, filing_status=FilingStatus.SINGLE, prior_carryforward=CARRIED_IN
    )
    sources = {item.lot_id: "transfer_in" for item in realization.realized if item.symbol in TRANSFERRED_IN}
    sources |= {item.lot_id: "inherited" for item in realization.realized if item.symbol in INHERITED_SYMBOLS}
    rows = boxed_rows(
        realization.realized,
        year=YEAR,
        reporting=reporting_of_lots(sources),
        inherited=inherited_lots(sources),
    )
    [totals] = report.totals
    schedule = schedule_d(box_totals(rows), totals)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        out / "sample-form-8949.pdf": form_8949_pdf(rows, year=YEAR, taxpayer=TAXPAYER, schedule=schedule),
        out / "sample-form-8949.csv": form_8949_csv(rows, year=YEAR).encode(),
        out / "sample-schedule-d.csv": schedule_d_csv(schedule).encode(),
    }
    for path, content in written.items():
        path.write_bytes(content)
    return list(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs"), help="Directory to write into (docs/).")
    for path in write_samples(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
