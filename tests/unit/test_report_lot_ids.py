"""The lots a stateless gains report opens get ids that are unique in the report and look like
random UUIDs, without reading the system's random source once per lot."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from wealthalloc.domain.wash_sale import AccountType, Side, Transaction
from wealthalloc.tax.report import report_for, report_lot_ids


def test_ids_are_unique_version_4_uuids_and_differ_between_reports() -> None:
    first, second = report_lot_ids(), report_lot_ids()
    ids = [first() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert {(i.version, i.variant) for i in ids} == {(4, uuid.RFC_4122)}
    assert second() not in set(ids)


def test_a_report_names_the_lots_it_opened_with_distinct_ids() -> None:
    day = date(2024, 3, 4)
    buys = [
        Transaction(day, "brokerage", AccountType.TAXABLE, symbol, Side.BUY, Decimal(5), Decimal(100))
        for symbol in ("VOO", "QQQ", "VTI")
    ]
    realization, _ = report_for(buys)
    assert len({held.lot.id for held in realization.open_lots}) == 3
