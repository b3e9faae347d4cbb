"""The order of record: what the table holds, as the desk decides with it, a broker sees it and the API
shows it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal as D

from tests.orders import working
from wealthalloc.trading.order import COLUMNS, Order
from wealthalloc.trading.status import OrderStatus
from wealthalloc.trading.tickets import Execution


def test_an_order_read_from_the_table_has_its_status_and_named_lots_typed() -> None:
    lot = uuid.uuid4()
    row = {name: getattr(working(), name) for name in COLUMNS} | {
        "status": "partially_filled",
        "side": "sell",
        "lot_method": "specific",
        "lot_ids": json.dumps([str(lot)]),  # the JSONB column as text, or a list as psycopg reads it
    }

    order = Order.from_row(row)

    assert order.status is OrderStatus.PARTIALLY_FILLED and order.is_open
    assert order.lot_ids == (lot,)
    assert Order.from_row(row | {"lot_ids": [str(lot)]}) == order
    assert Order.from_row(row | {"status": "filled"}).is_open is False


def test_the_api_shows_every_column_what_remains_and_the_fills_all_as_json_text() -> None:
    fill = {
        "id": uuid.UUID(int=9),
        "quantity": D("1.5"),
        "price": D("190.10"),
        "executed_at": datetime(2026, 1, 5, tzinfo=UTC),
    }
    order = working(quantity=D("4"), filled_quantity=D("1.5"), market_date=date(2026, 1, 5), lot_ids=None)

    shown = order.described([fill])

    assert set(shown) == set(COLUMNS) | {"remaining_quantity", "fills"}
    assert shown["remaining_quantity"] == "2.5"
    assert (shown["status"], shown["quantity"], shown["market_date"]) == ("submitted", "4", "2026-01-05")
    assert shown["limit_price"] is None and shown["lot_ids"] is None
    assert shown["fills"] == [
        {
            "id": str(uuid.UUID(int=9)),
            "quantity": "1.5",
            "price": "190.10",
            "executed_at": "2026-01-05T00:00:00+00:00",
        }
    ]
    assert json.loads(json.dumps(shown)) == shown
    assert order.described(None)["fills"] is None  # a list of orders does not read their fills


def test_a_fill_is_decided_on_the_order_as_it_stands() -> None:
    order = working(quantity=D(4), filled_quantity=D(1), average_fill_price=D(100), reserved_cash=D("303.00"))
    execution = Execution("f-1", order.id, D(1), D(104), D(1), datetime.now(UTC))

    applied = order.filled_by(execution)

    assert (applied.filled, applied.average, applied.status) == (D(2), D(102), OrderStatus.PARTIALLY_FILLED)
    assert applied.reserved == D("202.00")  # two of the three shares left still reserved
    assert applied.cash == D(-105)


def test_a_broker_sees_the_order_as_a_ticket_and_its_acceptance_keeps_a_known_broker_id() -> None:
    order = working(status="pending", side="sell", quantity=D(3), price_cap=None, broker_order_id="B-1")

    ticket = order.ticket()

    assert (ticket.order_id, ticket.side, ticket.quantity, ticket.broker_order_id) == (
        order.id,
        "sell",
        D(3),
        "B-1",
    )
    assert ticket.created_at == order.created_date
    assert order.with_status(OrderStatus.SUBMITTED).broker_order_id == "B-1"
    assert order.with_status(OrderStatus.SUBMITTED, "B-2").broker_order_id == "B-2"
    assert order.light() == {"id": str(order.id), "status": "pending", "filled_quantity": "0"}
