"""``EventBus``: the Ray actor that runs the outbox relay and the consumer groups.

One named, detached actor per cluster (``max_restarts=-1``). Its loops are
independent: a failing consumer logs, backs off and retries without stopping
the relay. Everything it does is safe to repeat, so a restart at any moment
loses nothing: unpublished rows stay in the outbox, unacknowledged messages
stay pending for their group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import ray

from actors.lifecycle import ON_THE_HEAD_NODE, start_when_constructed
from wealthalloc.config import Settings
from wealthalloc.events.consumers import AuditLogger, CacheInvalidator
from wealthalloc.events.notifications import NotificationMailer, NotificationWriter, SmtpOptions
from wealthalloc.events.price_alerts import DailyPricePublisher, PriceAlertEvaluator
from wealthalloc.events.relay import OutboxRelay
from wealthalloc.events.webhooks import WebhookDispatcher, WebhookOptions, WebhookSender
from wealthalloc.logging import configure_logging, get_logger
from wealthalloc.marketdata import MarketClock, MarketDataError, PriceHistory
from wealthalloc.storage.postgres import async_pool
from wealthalloc.storage.redis_client import async_redis

log = get_logger(__name__)

EVENT_BUS_NAME = "event-bus"
IDLE_SLEEP_S = 0.05
PRICE_CHECK_S = 30.0
REDIS_CHECK_S = 1.0
ERROR_BACKOFF_S = 2.0


class EventBus:
    def __init__(self, overrides: Mapping[str, Any]) -> None:
        self.settings = Settings(**dict(overrides))
        configure_logging(self.settings.log_level, self.settings.log_format)
        self._tasks: list[asyncio.Task[None]] = []
        self._counts = {
            "published": 0,
            "audited": 0,
            "invalidated": 0,
            "webhooks_queued": 0,
            "webhooks_sent": 0,
            "prices_published": 0,
            "alerts_checked": 0,
            "replayed": 0,
            "notified": 0,
            "mailed": 0,
        }
        start_when_constructed()

    async def start(self) -> bool:
        if self._tasks:
            return False
        pool = async_pool(self.settings, name="event-bus")
        await pool.open(wait=False)
        # Reads block on the streams: give the consumers a client with a longer timeout than the API's.
        redis = async_redis(self.settings, socket_timeout=10.0)
        relay = OutboxRelay.from_settings(self.settings, pool=pool, redis=redis)
        audit = AuditLogger(pool=pool, redis=redis, name="audit-1")
        cache = CacheInvalidator(redis=redis, name="cache-1")
        hooks = WebhookDispatcher(pool=pool, redis=redis, name="webhooks-1")
        sender = WebhookSender.from_options(pool=pool, options=WebhookOptions.from_settings(self.settings))
        alerts = PriceAlertEvaluator(pool=pool, redis=redis, name="alerts-1")
        linger = self.settings.event_linger_ms / 1000
        self._tasks = [
            asyncio.create_task(
                self._loop("published", relay.publish_once, sleep_when_idle=True, linger_s=linger)
            ),
            asyncio.create_task(self._loop("audited", audit.consume_once, linger_s=linger)),
            asyncio.create_task(self._loop("invalidated", cache.consume_once, linger_s=linger)),
            asyncio.create_task(self._loop("webhooks_queued", hooks.consume_once, linger_s=linger)),
            asyncio.create_task(self._loop("webhooks_sent", sender.send_due, sleep_when_idle=True)),
            asyncio.create_task(self._loop("alerts_checked", alerts.consume_once, linger_s=linger)),
            asyncio.create_task(
                self._loop("replayed", relay.recover_lost_streams, idle_sleep_s=REDIS_CHECK_S)
            ),
        ]
        notices = NotificationWriter(pool=pool, redis=redis, name="notifications-1")
        self._tasks.append(asyncio.create_task(self._loop("notified", notices.consume_once, linger_s=linger)))
        smtp = SmtpOptions.from_settings(self.settings)
        if smtp.enabled:  # without an SMTP server the e-mails wait in the queue (and age out)
            mailer = NotificationMailer(pool=pool, options=smtp)
            self._tasks.append(
                asyncio.create_task(self._loop("mailed", mailer.send_due, sleep_when_idle=True))
            )
        publisher = self._price_publisher(pool)
        if publisher is not None:
            self._tasks.append(
                asyncio.create_task(
                    self._loop("prices_published", publisher.publish_once, idle_sleep_s=PRICE_CHECK_S)
                )
            )
        log.info("event_bus_started")
        return True

    def _price_publisher(self, pool: Any) -> DailyPricePublisher | None:
        """Announces each trading day's closes; None without market data (nothing to announce)."""
        try:
            prices = PriceHistory(self.settings.prices_dir)
            clock = MarketClock(prices.trading_days(), pinned=self.settings.market_clock_date)
        except MarketDataError as exc:
            log.warning("price_publisher_disabled", error=str(exc))
            return None

        def closes(day: Any) -> dict[str, Any]:
            found = {}
            for symbol in prices.symbols():
                try:
                    found[symbol] = prices.close_on(symbol, day)
                except MarketDataError:
                    continue  # no close that day (listed later, delisted)
            return found

        return DailyPricePublisher(pool=pool, today=clock.today, closes=closes)

    async def _loop(
        self,
        name: str,
        step: Callable[[], Awaitable[int]],
        *,
        sleep_when_idle: bool = False,
        idle_sleep_s: float | None = None,
        linger_s: float = 0.0,
    ) -> None:
        """Run ``step`` for ever; a step that found work waits ``linger_s`` before the next.

        Under a steady flow a consumer's blocking read returns as soon as one event arrives, so
        without the wait each event would cost every loop its own read, handling, commit and
        acknowledgement. Waiting a few milliseconds lets events gather: one of each for a batch.
        """
        while True:
            try:
                done = await step()
                self._counts[name] += done
                if idle_sleep_s is not None:
                    await asyncio.sleep(idle_sleep_s)
                elif done and linger_s:
                    await asyncio.sleep(linger_s)
                elif not done and sleep_when_idle:
                    await asyncio.sleep(IDLE_SLEEP_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dead Redis or database: wait and try again
                log.warning("event_bus_step_failed", step=name, error=str(exc))
                await asyncio.sleep(ERROR_BACKOFF_S)

    async def stats(self) -> dict[str, int]:
        return dict(self._counts)


RemoteEventBus = ray.remote(EventBus)


def ensure_event_bus(settings: Settings, overrides: Mapping[str, Any]) -> Any:
    """The cluster's event bus, created and started when it is not running yet."""
    handle: Any = RemoteEventBus.options(
        name=EVENT_BUS_NAME,
        namespace=settings.ray_namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        num_cpus=0,
        resources=ON_THE_HEAD_NODE,
        max_concurrency=100,
    ).remote(overrides)
    handle.start.remote()
    return handle
