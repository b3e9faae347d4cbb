"""One vocabulary of order statuses: the enum, the table's constraint, the open-orders index, the
API's filter and the brokers' status changes all name the same statuses."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from serve_apps.api.routes.trades import OrderStatus as ApiStatusFilter
from wealthalloc.trading.status import FINAL_STATUSES, OPEN_STATUSES, OrderStatus
from wealthalloc.trading.tickets import StatusChange

CORE = Path(__file__).resolve().parents[2] / "wealthalloc/storage/migrations/0001_core.sql"


def quoted(sql: str) -> set[str]:
    return set(re.findall(r"'(\w+)'", sql))


def test_the_orders_table_allows_exactly_the_enums_statuses() -> None:
    check = re.search(r"CHECK \(status IN \((.*?)\)\)", CORE.read_text(), re.S)
    assert check is not None
    assert quoted(check.group(1)) == {s.value for s in OrderStatus}


def test_the_open_orders_index_covers_exactly_the_open_statuses() -> None:
    index = re.search(r"idx_orders_open ON orders .*?WHERE status IN \((.*?)\);", CORE.read_text(), re.S)
    assert index is not None
    assert quoted(index.group(1)) == {s.value for s in OPEN_STATUSES}


def test_every_status_is_open_or_final_and_compares_as_its_text() -> None:
    assert set(OPEN_STATUSES) | set(FINAL_STATUSES) == set(OrderStatus)
    assert not set(OPEN_STATUSES) & set(FINAL_STATUSES)
    assert OrderStatus.PARTIALLY_FILLED.is_open and not OrderStatus.FILLED.is_open
    assert "submitted" in OPEN_STATUSES and OrderStatus("cancelled") == "cancelled"


def test_the_api_filters_by_every_status_and_by_open() -> None:
    assert set(typing.get_args(ApiStatusFilter)) == {s.value for s in OrderStatus} | {"open"}


def test_a_broker_status_change_names_a_status_of_the_enum() -> None:
    hints = typing.get_type_hints(StatusChange)
    assert set(typing.get_args(hints["status"])) <= {s.value for s in OrderStatus}
