"""Price alerts end to end: set through the API, fired once by the event bus's ``alerts`` group when
a published price reaches the level, and told to the user by a signed webhook and the audit trail."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.people import Investor
from tests.integration.prices import publish, some_future_day
from tests.integration.test_webhooks_api import Receiver, receiver, wait_until  # noqa: F401 - fixture
from wealthalloc.config import Settings
from wealthalloc.events.price_alerts import PriceAlertEvaluator
from wealthalloc.storage.postgres import async_pool

pytestmark = pytest.mark.integration


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


@pytest.fixture
def aapl_last(investor: Investor) -> Iterator[D]:
    yield D(investor.get("/api/v1/quotes/AAPL").json()["data"]["last"])


def test_an_alert_fires_once_when_a_published_price_reaches_it_and_the_user_hears_by_webhook(
    investor: Investor,
    receiver: Receiver,  # noqa: F811 - the fixture imported above
    aapl_last: D,
    database_url: str,
) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/alerts"
    hook = investor.post("/api/v1/webhooks", {"url": url, "events": ["price_alert.triggered"]})
    assert hook.status_code == 201
    level = (aapl_last * D("1.10")).quantize(D("0.01"))
    created = investor.post(
        "/api/v1/alerts", {"symbol": "aapl", "direction": "above", "level": str(level), "note": "trim"}
    )
    assert created.status_code == 201, created.text
    alert = created.json()["data"]
    assert alert["status"] == "armed" and alert["symbol"] == "AAPL"
    assert D(alert["reference_price"]) == aapl_last
    other = investor.post(
        "/api/v1/alerts", {"symbol": "AAPL", "direction": "below", "level": str(aapl_last / 2)}
    ).json()["data"]

    day = some_future_day()
    assert publish(database_url, {"AAPL": level - D("0.01"), "KO": D("60")}, day) == 1  # once per day
    time.sleep(1.0)
    assert investor.get("/api/v1/alerts?status=triggered").json()["data"] == []  # not reached yet

    assert publish(database_url, {"AAPL": level + D("2.50")}, day + timedelta(days=1)) == 1
    assert wait_until(lambda: investor.get("/api/v1/alerts?status=triggered").json()["data"]), "never fired"
    fired = investor.get("/api/v1/alerts?status=triggered").json()["data"]
    assert [a["id"] for a in fired] == [alert["id"]]
    assert D(fired[0]["triggered_price"]) == level + D("2.50")
    assert fired[0]["triggered_as_of"] == str(day + timedelta(days=1))
    armed = investor.get("/api/v1/alerts?status=armed").json()["data"]
    assert [a["id"] for a in armed] == [other["id"]]

    assert wait_until(lambda: len(receiver.received) >= 1), "no webhook arrived"
    publish(database_url, {"AAPL": level + D("9")}, day + timedelta(days=2))  # past the level again
    time.sleep(1.5)
    assert len(receiver.received) == 1, "an alert fires once"
    body = receiver.received[0][1]
    assert b'"price_alert.triggered"' in body and alert["id"].encode() in body and b'"trim"' in body

    # The same price event handled again (a redelivery) fires nothing more.
    async def redeliver() -> int:
        pool = async_pool(Settings(database_url=database_url), name="test-alerts")
        await pool.open()
        try:
            evaluator = PriceAlertEvaluator(pool=pool, redis=None, name="test")  # type: ignore[arg-type]
            return await evaluator.evaluate({"AAPL": level + D("2.50")}, as_of=str(day))
        finally:
            await pool.close()

    assert asyncio.run(redeliver()) == 0
    with psycopg.connect(database_url) as conn:
        audited = conn.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'price_alert.triggered' AND subject LIKE %s",
            (f"%{alert['id']}",),
        ).fetchone()
    assert audited is not None and audited[0] == 1


def test_bad_alerts_are_refused_and_nothing_is_kept(investor: Investor, aapl_last: D) -> None:
    def refused(body: dict[str, Any]) -> str:
        answer = investor.post("/api/v1/alerts", body)
        assert answer.status_code in (400, 422), answer.text
        return str(answer.json()["error"]["code"])

    reached = "ALERT_ALREADY_REACHED"
    assert refused({"symbol": "AAPL", "direction": "above", "level": str(aapl_last)}) == reached
    assert refused({"symbol": "AAPL", "direction": "below", "level": str(aapl_last + 1)}) == reached
    assert refused({"symbol": "NOPE", "direction": "above", "level": "10"}) == "UNKNOWN_SYMBOL"
    assert refused({"symbol": "AAPL", "direction": "above", "level": "-5"}) == "VALIDATION_ERROR"
    assert refused({"symbol": "AAPL", "direction": "above", "level": 1e9}) == "VALIDATION_ERROR"  # a float
    assert refused({"symbol": "AAPL", "direction": "sideways", "level": "10"}) == "VALIDATION_ERROR"
    assert refused({"symbol": "AAPL", "direction": "above", "level": "1.123456789"}) == "VALIDATION_ERROR"
    assert investor.get("/api/v1/alerts").json()["data"] == []


def test_someone_elses_alert_is_404_and_deleting_ones_own_disarms_it(
    investor: Investor, http: httpx.Client, database_url: str, aapl_last: D
) -> None:
    mine = investor.post(
        "/api/v1/alerts", {"symbol": "AAPL", "direction": "above", "level": str(aapl_last + 50)}
    ).json()["data"]
    stranger = Investor(http, database_url)
    assert stranger.delete(f"/api/v1/alerts/{mine['id']}").status_code == 404
    assert stranger.get("/api/v1/alerts").json()["data"] == []
    assert investor.delete(f"/api/v1/alerts/{uuid.uuid4()}").status_code == 404
    assert investor.delete(f"/api/v1/alerts/{mine['id']}").status_code == 204
    assert investor.get("/api/v1/alerts").json()["data"] == []
