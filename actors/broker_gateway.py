"""``BrokerGateway``: the one Ray actor that talks to the broker, and routes what it hears back.

It owns the broker connection (the paper broker by default, Interactive
Brokers when configured), sends the orders the shards hand it, and delivers
every fill and status change to the shard that owns the order's user, which
applies it exactly once. PostgreSQL is its memory: at start it takes back the
open orders of record (and, for IBKR, reconciles them against the venue),
and its sweep sends any order that was recorded while it was away. It can
therefore die at any moment between placing and filling; its successor
finds the order open and picks it up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

import ray

from actors.directory import GATEWAY_NAME
from actors.lifecycle import ON_THE_HEAD_NODE, start_when_constructed
from actors.portfolio_shard import PortfolioShard
from actors.ray_metrics import export_through_ray
from actors.shard_router import ShardRouter
from wealthalloc.brokers.base import Broker, BrokerUnavailable, Quote
from wealthalloc.brokers.paper import PaperBroker, closing_quotes, paper_venue
from wealthalloc.config import Settings
from wealthalloc.logging import configure_logging, get_logger
from wealthalloc.marketdata import MarketClock, PriceHistory
from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.ops import tracing
from wealthalloc.ops.tracing import configure_tracing
from wealthalloc.storage.postgres import AsyncPool, async_pool
from wealthalloc.trading.dispatch import OrderDispatch, working_tickets
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket

log = get_logger(__name__)

HEALTH_WAIT_S = 3.0


class ShardSink:
    """Delivers the broker's news to the owning shard; raises when the shard refused or is away,
    so the broker does not count it as delivered and says it again."""

    def __init__(self, router: ShardRouter) -> None:
        self._router = router
        self.delivered = 0
        self._acceptances: dict[Any, StatusChange] = {}

    def hold_acceptance(self, ticket: Ticket, change: StatusChange) -> None:
        """Send the broker's acceptance with the order's first fill, if one comes right away."""
        self._acceptances[ticket.order_id] = change

    async def release_acceptance(self, ticket: Ticket) -> None:
        """Deliver an acceptance no fill carried (the order rests at the broker)."""
        change = self._acceptances.pop(ticket.order_id, None)
        if change is not None:
            await self.status_change(ticket, change)

    async def execution(self, ticket: Ticket, execution: Execution) -> None:
        accepted = self._acceptances.get(ticket.order_id)
        await self._router.call(
            ticket.user_id, PortfolioShard.apply_execution, ticket.user_id, execution, accepted
        )
        self._acceptances.pop(ticket.order_id, None)
        self.delivered += 1

    async def status_change(self, ticket: Ticket, change: StatusChange) -> None:
        await self._router.call(ticket.user_id, PortfolioShard.apply_status, ticket.user_id, change)


class BrokerGateway:
    def __init__(self, overrides: Mapping[str, Any]) -> None:
        self.settings = Settings(**dict(overrides))
        configure_logging(self.settings.log_level, self.settings.log_format)
        configure_tracing(self.settings, "wealthalloc-broker-gateway")
        export_through_ray(ops_metrics.REGISTRY, source="broker-gateway")
        self._sink = ShardSink(ShardRouter(self.settings))
        self._pool: AsyncPool | None = None
        self._broker: Broker | None = None
        self._dispatch: OrderDispatch | None = None
        self._prices: PriceHistory | None = None
        self._clock: MarketClock | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._last_tick = 0.0
        self._adopted = False
        start_when_constructed()

    # Life ----------------------------------------------------------------------------------------

    async def start(self) -> bool:
        """Idempotent; every call into the gateway runs it, so an instance Ray restarted after a crash
        (which runs ``__init__`` only) starts at its first call."""
        if self._task is not None:
            await self._started.wait()
            return False
        self._task = asyncio.create_task(self._run())
        await self._started.wait()
        return True

    async def _run(self) -> None:
        settings = self.settings
        try:
            pool = self._pool = async_pool(settings, name="broker-gateway")
            await pool.open(wait=False)
            self._prices = PriceHistory(settings.prices_dir)
            self._clock = MarketClock(self._prices.trading_days(), pinned=settings.market_clock_date)
            self._broker = self._make_broker(pool)
            self._dispatch = OrderDispatch(
                pool=pool, broker=self._broker, broker_name=settings.broker, sink=self._sink
            )
            await self._broker.start()
            await self._dispatch.adopt_working_orders()
            self._adopted = True
        except Exception as exc:  # answer calls anyway (as unavailable); the tick loop retries adoption
            log.error("gateway_start_incomplete", error=repr(exc))
        finally:
            self._started.set()
        log.info("broker_gateway_started", broker=self.settings.broker)
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or a shard is away: keep ticking
                log.warning("gateway_tick_failed", error=repr(exc))
            await asyncio.sleep(settings.broker_tick_seconds)

    def _make_broker(self, pool: AsyncPool) -> Broker:
        if self.settings.broker == "ibkr":
            from wealthalloc.brokers.ibkr import IbkrBroker

            return IbkrBroker(self.settings, self._sink, partial(working_tickets, pool, self.settings.broker))
        assert self._prices is not None
        return PaperBroker(sink=self._sink, venue=paper_venue(self.settings, self._prices, self._today))

    async def _tick(self) -> None:
        if self._dispatch is None:
            return
        if not self._adopted:
            await self._dispatch.adopt_working_orders()
            self._adopted = True
        await self._dispatch.tick()
        self._last_tick = time.time()

    async def _started_dispatch(self) -> OrderDispatch:
        await self.start()
        if self._dispatch is None:
            raise BrokerUnavailable("the broker gateway could not start its broker")
        return self._dispatch

    # Orders --------------------------------------------------------------------------------------

    async def submit(self, ticket: Ticket) -> None:
        await (await self._started_dispatch()).submit(ticket)

    async def rest(self, ticket: Ticket) -> None:
        await (await self._started_dispatch()).rest(ticket)

    async def cancel(self, ticket: Ticket) -> None:
        await (await self._started_dispatch()).cancel(ticket)

    async def process_incoming(self) -> int:
        """Apply the broker's webhooks received and not yet handled; the number handled."""
        await self.start()
        return 0 if self._dispatch is None else await self._dispatch.process_incoming()

    # Market data ---------------------------------------------------------------------------------

    def _today(self) -> Any:
        assert self._clock is not None
        return self._clock.today()

    def _paper_quote(self, symbol: str) -> Quote:
        assert self._prices is not None
        return closing_quotes(self._prices, self._today, self.settings.paper_spread_bps)(symbol)

    async def quote(self, symbol: str) -> Quote:
        await self.start()
        broker: Any = self._broker
        if hasattr(broker, "quote"):
            raw = await broker.quote(symbol)
            return Quote(
                symbol=symbol,
                bid=raw["bid"],
                ask=raw["ask"],
                last=raw["last"],
                timestamp=raw["timestamp"],
                source="ibkr",
            )
        return self._paper_quote(symbol)

    # Operations ----------------------------------------------------------------------------------

    async def traced(self, headers: Mapping[str, str], method: str, *args: Any) -> Any:
        """An order call (``submit``, ``rest``, ``cancel``) as a span of the shard's trace."""
        if method not in _TRACED:
            raise ValueError(f"{method} is not an order call")
        attributes = {"broker": self.settings.broker}
        with tracing.continued(headers, f"BrokerGateway.{method}", attributes=attributes):
            return await getattr(self, method)(*args)

    def metrics(self) -> list[Any]:
        """This process's operations metrics (its calls into the shards), for an API replica's /metrics."""
        return ops_metrics.snapshot()

    async def health(self) -> dict[str, Any]:
        if self._task is None:
            asyncio.create_task(self.start())
        try:  # a gateway a moment old is connecting its broker: wait a little rather than say so
            await asyncio.wait_for(self._started.wait(), timeout=HEALTH_WAIT_S)
        except TimeoutError:
            pass
        if not self._started.is_set() or self._broker is None:
            return {"status": "degraded", "broker": self.settings.broker, "detail": "starting"}
        state = self._broker.health()
        return {
            "status": state.status,
            "broker": self._broker.name,
            "detail": state.detail,
            "last_tick_age_s": round(time.time() - self._last_tick, 3) if self._last_tick else None,
            "counts": dict(self._dispatch.counts) if self._dispatch else {},
        }


_TRACED = {"submit", "rest", "cancel"}

RemoteBrokerGateway = ray.remote(BrokerGateway)


def gateway_handle(settings: Settings, overrides: Mapping[str, Any]) -> Any:
    """The cluster's broker gateway, created and started when it is not running yet."""
    handle: Any = RemoteBrokerGateway.options(
        name=GATEWAY_NAME,
        namespace=settings.ray_namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        num_cpus=0,
        resources=ON_THE_HEAD_NODE,
        max_concurrency=1000,
    ).remote(overrides)
    handle.start.remote()
    return handle
