"""The carryover of a joint return: what each spouse entered, added per year and per term."""

from __future__ import annotations

from decimal import Decimal

from wealthalloc.domain.gains_report import CapitalLossCarryforward
from wealthalloc.tax.documents import joint_carryovers

D = Decimal


def carried(short: str = "0", long: str = "0") -> CapitalLossCarryforward:
    return CapitalLossCarryforward(short=D(short), long=D(long))


def test_a_joint_return_carries_over_what_both_spouses_entered_each_year_and_term() -> None:
    hers = {2023: carried("1000.00"), 2024: carried("200.00", "50.00")}
    his = {2024: carried("300.00", "25.50"), 2025: carried(long="10.00")}
    assert joint_carryovers([hers, his]) == {
        2023: carried("1000.00"),
        2024: carried("500.00", "75.50"),
        2025: carried(long="10.00"),
    }


def test_someone_filing_alone_carries_over_what_they_entered() -> None:
    mine = {2024: carried("12.34", "5.00")}
    assert joint_carryovers([mine]) == mine
    assert joint_carryovers([{}, {}]) == {}


def test_the_years_come_in_order_whoever_entered_them() -> None:
    assert list(joint_carryovers([{2025: carried("1")}, {2022: carried("2")}])) == [2022, 2025]
