"""The broker's order news by signed webhook: verified, refused when forged or replayed, and applied
through the owning shard once, however often the same fill is reported."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import BROKER_WEBHOOK_SECRET
from tests.integration.people import Investor
from tests.integration.test_webhooks_api import wait_until
from wealthalloc.events.signing import SIGNATURE_HEADER, sign

pytestmark = pytest.mark.integration

INCOMING = "/api/v1/webhooks/incoming/broker"


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def send(
    http: httpx.Client, message: dict[str, Any], *, secret: str = BROKER_WEBHOOK_SECRET, age_s: int = 0
) -> httpx.Response:
    body = json.dumps(message).encode()
    signature = sign(secret, body, int(time.time()) - age_s)
    return http.post(
        INCOMING, content=body, headers={SIGNATURE_HEADER: signature, "Content-Type": "application/json"}
    )


def resting_buy(investor: Investor) -> dict[str, Any]:
    """A GTC limit buy far under the market: the paper broker leaves it working."""
    p = investor.funded("50000.00")
    placed = investor.trade(
        p["id"],
        symbol="KO",
        side="buy",
        quantity="20",
        order_type="limit",
        limit_price="1.00",
        time_in_force="gtc",
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()["data"]
    assert order["status"] in ("submitted", "pending")
    return order


def receipts(database_url: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT delivery_id, outcome FROM incoming_webhook_receipts
               WHERE source = 'broker' ORDER BY received_at"""
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_a_fill_reported_by_webhook_fills_the_order_once_even_when_reported_again(
    investor: Investor, http: httpx.Client, database_url: str
) -> None:
    order = resting_buy(investor)
    fill = {
        "type": "execution",
        "order_id": order["id"],
        "fill_id": f"ext:{uuid.uuid4().hex[:8]}",
        "quantity": "20",
        "price": "1.00",
        "commission": "1.00",
        "executed_at": datetime.now(UTC).isoformat(),
    }
    first = send(http, {"id": "m-" + uuid.uuid4().hex, **fill})
    assert first.status_code == 202, first.text
    assert wait_until(
        lambda: investor.get(f"/api/v1/trades/{order['id']}").json()["data"]["status"] == "filled"
    )
    # The same fill reported again under a new message id (the broker retried) changes nothing.
    again_id = "m-" + uuid.uuid4().hex
    assert send(http, {"id": again_id, **fill}).status_code == 202
    assert wait_until(lambda: dict(receipts(database_url)).get(again_id) is not None)
    detail = investor.get(f"/api/v1/trades/{order['id']}").json()["data"]
    assert [D(f["quantity"]) for f in detail["fills"]] == [D("20")]
    lots = investor.get(f"/api/v1/portfolios/{detail['portfolio_id']}/lots").json()["data"]
    assert [(lot["symbol"], D(lot["shares"])) for lot in lots] == [("KO", D("20"))]
    cash = investor.get(f"/api/v1/portfolios/{detail['portfolio_id']}").json()["data"]["cash_balance"]
    assert D(cash) == D("50000.00") - D("20.00") - D("1.00")


def test_a_cancel_reported_by_webhook_closes_the_order_and_releases_its_reserve(
    investor: Investor, http: httpx.Client
) -> None:
    order = resting_buy(investor)
    news = {"type": "order_status", "order_id": order["id"], "status": "cancelled", "reason": "venue cancel"}
    assert send(http, {"id": "m-" + uuid.uuid4().hex, **news}).status_code == 202
    assert wait_until(
        lambda: investor.get(f"/api/v1/trades/{order['id']}").json()["data"]["status"] == "cancelled"
    )


def test_forged_stale_replayed_and_malformed_messages_are_refused_and_change_nothing(
    investor: Investor, http: httpx.Client, database_url: str
) -> None:
    order = resting_buy(investor)
    fill = {
        "id": "m-" + uuid.uuid4().hex,
        "type": "execution",
        "order_id": order["id"],
        "fill_id": "ext:forged",
        "quantity": "20",
        "price": "1.00",
        "executed_at": datetime.now(UTC).isoformat(),
    }
    before = receipts(database_url)
    forged = send(http, fill, secret="not-the-shared-secret-at-all-0123456789")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "INVALID_SIGNATURE"
    stale = send(http, fill, age_s=301)
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "WEBHOOK_REPLAYED"
    unsigned = http.post(INCOMING, content=json.dumps(fill).encode())
    assert unsigned.status_code == 401
    for broken in (
        {**fill, "quantity": "-5"},
        {**fill, "type": "teleport"},
        {**fill, "order_id": "not-a-uuid"},
        {key: value for key, value in fill.items() if key != "fill_id"},
    ):
        answer = send(http, broken)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR", broken
    assert receipts(database_url) == before
    time.sleep(1.0)
    assert investor.get(f"/api/v1/trades/{order['id']}").json()["data"]["status"] == order["status"]

    unknown = {**fill, "id": "m-" + uuid.uuid4().hex, "order_id": str(uuid.uuid4())}
    assert send(http, unknown).status_code == 202
    assert wait_until(lambda: dict(receipts(database_url)).get(unknown["id"]) == "refused: no such order")
    assert send(http, unknown).json()["error"]["code"] == "WEBHOOK_REPLAYED"
    assert http.post("/api/v1/webhooks/incoming/nobody", content=b"{}").status_code == 404
