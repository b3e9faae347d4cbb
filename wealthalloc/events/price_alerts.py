"""Prices on the bus and the alerts they fire.

:class:`DailyPricePublisher` announces each trading day's closes once, as a
``prices.updated`` event, when the market clock reaches the day (an IBKR
price feed would write the same event for its quotes). :class:`PriceAlertEvaluator`
is the ``alerts`` consumer group on that topic: for each price it fires the
armed alerts whose level is reached, each in one transaction with the
``price_alert.triggered`` event that tells the user (audit trail, webhooks).
Both are safe to repeat: the day's mark and the alert's ``triggered_at`` are
written only where absent, so a redelivered event or a second publisher
changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from wealthalloc.domain.price_alerts import reached
from wealthalloc.events.consumers import StreamConsumer
from wealthalloc.events.relay import Event
from wealthalloc.logging import get_logger
from wealthalloc.storage import alerts as store
from wealthalloc.storage.outbox import add_event
from wealthalloc.storage.postgres import AsyncPool

log = get_logger(__name__)

TOPIC = "prices.updated"
TRIGGERED = "price_alert.triggered"


class DailyPricePublisher:
    """Publishes the closes of the market clock's today once per trading day."""

    def __init__(
        self, *, pool: AsyncPool, today: Callable[[], date], closes: Callable[[date], Mapping[str, Decimal]]
    ) -> None:
        self._pool = pool
        self._today = today
        self._closes = closes
        self._published: date | None = None

    async def publish_once(self) -> int:
        """1 when this call announced a new day, else 0 (the day was announced already)."""
        day = self._today()
        if day == self._published:
            return 0
        prices = dict(self._closes(day))
        async with self._pool.connection() as conn, conn.transaction():
            fresh = await store.claim_price_mark(conn, day, len(prices))
            if fresh and prices:
                await add_event(
                    conn,
                    topic=TOPIC,
                    event_type=TOPIC,
                    user_id=None,
                    aggregate_id=None,
                    payload={"symbols": sorted(prices), "as_of": day, "prices": prices},
                )
        self._published = day
        if fresh:
            log.info("prices_published", as_of=str(day), symbols=len(prices))
        return int(fresh)


class PriceAlertEvaluator(StreamConsumer):
    """The ``alerts`` group: fires armed alerts whose level a published price reached."""

    group = "alerts"

    def __init__(self, *, pool: AsyncPool, **kwargs: Any) -> None:
        kwargs.setdefault("topics", (TOPIC,))
        super().__init__(**kwargs)
        self._pool = pool
        self.fired = 0

    async def handle(self, events: list[Event]) -> None:
        for event in sorted(events, key=lambda e: e.sequence):
            if event.type != TOPIC:
                continue  # this group's own triggered events travel on the same topic
            prices = {str(k): Decimal(str(v)) for k, v in dict(event.payload.get("prices") or {}).items()}
            if prices:
                self.fired += await self.evaluate(prices, as_of=str(event.payload.get("as_of", "")))

    async def evaluate(self, prices: Mapping[str, Decimal], *, as_of: str) -> int:
        """Fire every armed alert ``prices`` reaches; the number fired."""
        fired = 0
        async with self._pool.connection() as conn, conn.transaction():
            for alert in await store.armed_for(conn, prices):
                price = prices[alert["symbol"]]
                if not reached(alert["direction"], alert["level"], price):
                    continue
                if not await store.mark_triggered(conn, alert["id"], price=price, as_of=as_of):
                    continue
                await add_event(
                    conn,
                    topic=TOPIC,
                    event_type=TRIGGERED,
                    user_id=alert["user_id"],
                    aggregate_id=alert["id"],
                    payload={
                        "alert_id": alert["id"],
                        "symbol": alert["symbol"],
                        "direction": alert["direction"],
                        "level": alert["level"],
                        "price": price,
                        "as_of": as_of,
                        "note": alert["note"],
                    },
                )
                fired += 1
        if fired:
            log.info("price_alerts_fired", count=fired, as_of=as_of)
        return fired
