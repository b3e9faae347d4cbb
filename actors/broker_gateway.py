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
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from actors.directory import GATEWAY_NAME
from actors.lifecycle import ON_THE_HEAD_NODE, start_when_constructed
from actors.portfolio_shard import PortfolioShard
from actors.ray_metrics import export_through_ray
from actors.shard_router import ShardRouter
from wealthalloc.brokers import incoming
from wealthalloc.brokers.base import Broker, BrokerUnavailable, OrderRejected, Quote
from wealthalloc.brokers.paper import PaperBroker, closing_quotes, paper_venue
from wealthalloc.config import Settings
from wealthalloc.errors import ServiceError
from wealthalloc.logging import configure_logging, get_logger
from wealthalloc.marketdata import MarketClock, PriceHistory
from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.ops import tracing
from wealthalloc.ops.tracing import configure_tracing
from wealthalloc.storage import orders as order_store
from wealthalloc.storage import webhooks as inbox
from wealthalloc.storage.postgres import AsyncPool, async_pool
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket

log = get_logger(__name__)

SWEEP_AFTER_S = 3.0
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
        self._router = ShardRouter(self.settings)
        self._sink = ShardSink(self._router)
        self._pool: AsyncPool | None = None
        self._broker: Broker | None = None
        self._prices: PriceHistory | None = None
        self._clock: MarketClock | None = None
        self._in_flight: set[Any] = set()
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._last_tick = 0.0
        self._adopted = False
        self._counts = {"submitted": 0, "rested": 0, "rejected": 0, "swept": 0, "fills": 0, "incoming": 0}
        self._inbox_lock = asyncio.Lock()
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
            self._pool = async_pool(settings, name="broker-gateway")
            await self._pool.open(wait=False)
            self._prices = PriceHistory(settings.prices_dir)
            self._clock = MarketClock(self._prices.trading_days(), pinned=settings.market_clock_date)
            self._broker = self._make_broker()
            await self._broker.start()
            await self._adopt_working_orders()
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

    def _make_broker(self) -> Broker:
        if self.settings.broker == "ibkr":
            from wealthalloc.brokers.ibkr import IbkrBroker

            return IbkrBroker(self.settings, self._sink, self._working_tickets)
        assert self._prices is not None
        return PaperBroker(sink=self._sink, venue=paper_venue(self.settings, self._prices, self._today))

    async def _working_tickets(self) -> Sequence[Ticket]:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            rows = await order_store.working_orders(conn, self.settings.broker)
        return [Ticket.from_row(r) for r in rows]

    async def _adopt_working_orders(self) -> None:
        """Take back the orders of record the broker holds, and settle what happened while away."""
        assert self._broker is not None
        tickets = await self._working_tickets()
        found = await self._broker.reconcile(tickets)
        by_id = {t.order_id: t for t in tickets}
        for execution in found.executions:
            if execution.order_id in by_id:
                await self._sink.execution(by_id[execution.order_id], execution)
        for change in found.status_changes:
            if change.order_id in by_id:
                await self._sink.status_change(by_id[change.order_id], change)
        log.info("gateway_adopted_orders", orders=len(tickets), executions=len(found.executions))

    async def _tick(self) -> None:
        if not self._adopted and self._broker is not None:
            await self._adopt_working_orders()
            self._adopted = True
        await self._sweep_pending()
        await self.process_incoming()
        if isinstance(self._broker, PaperBroker):
            self._counts["fills"] += await self._broker.tick()
        self._last_tick = time.time()

    async def _sweep_pending(self) -> None:
        """Send orders recorded while the gateway was away or the hand-off failed; on paper, also take
        the orders a shard placed at the venue whose hand-off to this book never arrived."""
        assert self._pool is not None
        async with self._pool.connection() as conn:
            rows = await order_store.pending_orders(
                conn, broker=self.settings.broker, older_than_s=SWEEP_AFTER_S
            )
            working = (
                await order_store.working_orders(conn, "paper", older_than_s=SWEEP_AFTER_S)
                if isinstance(self._broker, PaperBroker)
                else []
            )
        if working and isinstance(self._broker, PaperBroker):
            self._counts["swept"] += self._broker.adopt(
                [Ticket.from_row(r) for r in working if r["id"] not in self._in_flight]
            )
        for row in rows:
            if row["id"] in self._in_flight:
                continue
            self._counts["swept"] += 1
            await self.submit(Ticket.from_row(row))

    async def process_incoming(self) -> int:
        """Apply the broker's webhooks received and not yet handled; the number handled.

        Each message goes to the owning shard like a fill seen on the session (by ``fill_id``, so
        once), then its receipt is marked with the outcome. A shard that is away leaves the
        receipt for the next tick; a message the shard refuses is marked with the refusal.
        """
        await self.start()
        if self._pool is None:
            return 0
        handled = 0
        async with self._inbox_lock, self._pool.connection() as conn, conn.transaction():
            waiting: set[Any] = set()  # orders with a message left for later: their next ones wait too
            for receipt in await inbox.unprocessed_receipts(conn, incoming.SOURCE):
                order_id = receipt["payload"].get("order_id")
                if order_id in waiting:
                    continue
                outcome = await self._apply_message(receipt["payload"])
                if outcome is None:
                    waiting.add(order_id)  # its shard is away: try again next tick, in order
                    continue
                await inbox.mark_processed(conn, incoming.SOURCE, receipt["delivery_id"], outcome)
                handled += 1
        self._counts["incoming"] += handled
        return handled

    async def _apply_message(self, document: Mapping[str, Any]) -> str | None:
        try:
            message = incoming.parse(document)
        except incoming.MalformedMessage as exc:
            return f"refused: {exc}"
        assert self._pool is not None
        async with self._pool.connection() as conn:
            row = await order_store.order(conn, message.order_id)
        if row is None:
            log.warning("incoming_for_unknown_order", order_id=str(message.order_id), message=message.id)
            return "refused: no such order"
        ticket = Ticket.from_row(row)
        try:
            if isinstance(message, incoming.ExecutionMessage):
                await self._sink.execution(ticket, message.news())
            else:
                await self._sink.status_change(ticket, message.news())
        except ServiceError as exc:
            return f"refused: {exc.code}: {exc}"
        except Exception as exc:
            log.warning("incoming_not_applied", message=message.id, error=repr(exc))
            return None
        return "applied"

    # Orders --------------------------------------------------------------------------------------

    async def submit(self, ticket: Ticket) -> None:
        """Send an order and record that the broker has it; a paper order gets its first chance to fill."""
        await self.start()
        if self._broker is None:
            raise BrokerUnavailable("the broker gateway could not start its broker")
        if ticket.order_id in self._in_flight:
            return
        self._in_flight.add(ticket.order_id)
        try:
            try:
                broker_order_id = await self._broker.place(ticket)
            except OrderRejected as exc:
                self._counts["rejected"] += 1
                await self._sink.status_change(
                    ticket, StatusChange(ticket.order_id, "rejected", None, exc.reason)
                )
                return
            except BrokerUnavailable as exc:
                log.warning("order_not_sent", order_id=str(ticket.order_id), error=str(exc))
                return  # stays pending; the sweep tries again
            self._counts["submitted"] += 1
            accepted = StatusChange(ticket.order_id, "submitted", broker_order_id)
            if isinstance(self._broker, PaperBroker):
                # A marketable paper order fills now: its acceptance rides with the first fill
                # (one shard call, one transaction); a resting one is told of it on its own.
                self._sink.hold_acceptance(ticket, accepted)
                try:
                    self._counts["fills"] += await self._broker.step(ticket.order_id)
                finally:
                    await self._sink.release_acceptance(ticket)
            else:
                await self._sink.status_change(ticket, accepted)
        finally:
            self._in_flight.discard(ticket.order_id)

    async def rest(self, ticket: Ticket) -> None:
        """Take an order a shard placed at the embedded paper venue, and filled there as far as the
        market allowed, into the paper book: it is stepped from the next tick on."""
        await self.start()
        if not isinstance(self._broker, PaperBroker):
            raise BrokerUnavailable(f"the {self.settings.broker} broker does not take paper orders")
        try:
            await self._broker.place(ticket)
        except OrderRejected as exc:  # the market went away between the shard's quote and now
            self._counts["rejected"] += 1
            change = StatusChange(ticket.order_id, "rejected", None, exc.reason)
            await self._sink.status_change(ticket, change)
            return
        self._counts["rested"] += 1

    async def cancel(self, ticket: Ticket) -> None:
        await self.start()
        if self._broker is None:
            raise BrokerUnavailable("the broker gateway could not start its broker")
        while ticket.order_id in self._in_flight:  # let a send in progress finish first
            await asyncio.sleep(0.01)
        if ticket.broker_order_id is None and ticket.order_id not in self._in_flight:
            fresh = await self._fresh(ticket)
            if fresh is None or fresh.broker_order_id is None:
                # Never reached a broker: cancelling is ours alone.
                await self._sink.status_change(
                    ticket, StatusChange(ticket.order_id, "cancelled", None, "cancelled by user")
                )
                return
            ticket = fresh
        await self._broker.cancel(ticket)

    async def _fresh(self, ticket: Ticket) -> Ticket | None:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            row = await order_store.order(conn, ticket.order_id)
        return None if row is None else Ticket.from_row(row)

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
            "counts": dict(self._counts),
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
