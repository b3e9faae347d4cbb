"""``PortfolioShard``: the Ray actor that owns the books of the users hashed onto it.

Thin on purpose: it builds a :class:`~wealthalloc.portfolios.service.BookService`
with its own database pool, Redis client and market data, and forwards calls.
Named and detached so every API replica finds the same one; restarted by Ray
when it dies (``max_restarts=-1``), with calls in flight retried on the new
instance (``max_task_retries=-1``) — safe because every change is idempotent
in PostgreSQL. Refusals travel back as plain data (``Outcome``), not as
exceptions wrapped by Ray.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.directory import GATEWAY_NAME, NotRunning, running
from actors.ray_metrics import export_through_ray
from wealthalloc.brokers.paper import commission_model, paper_venue
from wealthalloc.config import Settings
from wealthalloc.domain.sharding import shard_name, shard_of
from wealthalloc.errors import ServiceError
from wealthalloc.linked_accounts import BrokerSnapshot
from wealthalloc.logging import configure_logging, get_logger
from wealthalloc.marketdata import MarketClock, PriceHistory, SecurityReference
from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.ops import tracing
from wealthalloc.ops.tracing import configure_tracing
from wealthalloc.portfolios.harvesting import HarvestDesk
from wealthalloc.portfolios.household_books import forget_locally
from wealthalloc.portfolios.linked_books import LinkedBooks
from wealthalloc.portfolios.market import Market
from wealthalloc.portfolios.quotes import shard_quotes
from wealthalloc.portfolios.service import BookService, Mutation
from wealthalloc.storage.postgres import async_pool
from wealthalloc.storage.redis_client import async_redis
from wealthalloc.tax.harvesting import HarvestPlanner
from wealthalloc.trading.desk import OrderDesk
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket

log = get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    status: int
    data: Any = None
    error: dict[str, Any] | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise ServiceError.from_dict(self.error)
        return self.data


class PortfolioShard:
    def __init__(self, index: int, overrides: Mapping[str, Any]) -> None:
        self.index = index
        self.settings = Settings(**dict(overrides))
        configure_logging(self.settings.log_level, self.settings.log_format)
        configure_tracing(self.settings, "wealthalloc-shard")
        self._service: BookService | None = None
        self._desk: OrderDesk | None = None
        self._harvests: HarvestDesk | None = None
        self._gateway: Any = None
        export_through_ray(ops_metrics.REGISTRY, source=f"shard-{index}", refresh=self._count_books)

    def _count_books(self) -> None:
        ops_metrics.SHARD_BOOKS_CACHED.set(self._service.books_in_memory if self._service else 0)

    async def _svc(self) -> BookService:
        if self._service is None:
            pool = async_pool(self.settings, name=f"shard-{self.index}")
            await pool.open(wait=False)
            prices = PriceHistory(self.settings.prices_dir, recheck_seconds=PRICE_FILES_RECHECK_S)
            market = Market(
                prices,
                MarketClock(prices.trading_days(), pinned=self.settings.market_clock_date),
                SecurityReference(),
            )
            redis = async_redis(self.settings)
            quotes = shard_quotes(
                self.settings,
                redis=redis,
                prices=prices,
                today=market.today,
                live=self._live_quote,
                connected=self._broker_up,
            )
            self._service = BookService(
                pool=pool,
                redis=redis,
                market=market,
                max_books=self.settings.shard_max_books,
                quotes=quotes,
                commit_group=self.settings.shard_commit_group,
            )
            paper = self.settings.broker == "paper"
            venue = paper_venue(self.settings, prices, market.today) if paper else None
            self._desk = OrderDesk(
                self._service,
                broker=self.settings.broker,
                commission=commission_model(self.settings),
                collar=self.settings.order_price_collar,
                fractional_shares=self.settings.broker == "paper",
                submit=self._submit,
                cancel=self._cancel,
                venue=venue,
                rest=self._rest,
                evict=self._evict_elsewhere,
                quotes=quotes,
            )
            self._harvests = HarvestDesk(
                self._service,
                self._desk,
                HarvestPlanner(
                    prices=prices,
                    securities=market.securities,
                    min_loss=self.settings.harvest_min_loss,
                    min_loss_pct=self.settings.harvest_min_loss_pct,
                ),
                commission=commission_model(self.settings),
                collar=self.settings.order_price_collar,
            )
            log.info("portfolio_shard_ready", shard=self.index, pid=os.getpid())
        return self._service

    def _gateway_handle(self) -> Any:
        """The running gateway (found by name, see actors/directory.py). While there is none, a new
        order waits as ``pending`` and the gateway's sweep sends it once the platform restarts it."""
        if self._gateway is None:
            self._gateway = running(GATEWAY_NAME, self.settings.ray_namespace)
        return self._gateway

    async def _live_quote(self, symbol: str) -> Any:
        """The broker gateway's live (IBKR) quote, for the quotes a rebalance or harvest is judged by."""
        return await self._gateway_handle().quote.remote(symbol)

    async def _broker_up(self) -> bool:
        health = await self._gateway_handle().health.remote()
        return bool(health.get("broker") == "ibkr" and health.get("status") != "down")

    async def _submit(self, ticket: Ticket) -> None:
        await self._to_gateway("submit", ticket)

    async def _rest(self, ticket: Ticket) -> None:
        await self._to_gateway("rest", ticket)

    async def _cancel(self, ticket: Ticket) -> None:
        await self._to_gateway("cancel", ticket)

    async def _to_gateway(self, method: str, ticket: Ticket) -> None:
        try:
            with tracing.span(f"gateway {method}", kind=tracing.SpanKind.CLIENT):
                call = traced_call(self._gateway_handle(), method, ticket)
                await asyncio.wait_for(call, HANDOFF_TIMEOUT_S)
        except ray.exceptions.RayActorError:
            # Gone for good (killed without restart): the next call finds or starts its successor.
            self._gateway = None
            raise

    async def _trading(self, call: Callable[[OrderDesk], Awaitable[Any]], status: int = 200) -> Outcome:
        await self._svc()
        desk = self._desk
        assert desk is not None
        return await self._run(lambda _: call(desk), status)

    async def _run(self, call: Callable[[BookService], Awaitable[Any]], status: int = 200) -> Outcome:
        try:
            result = await call(await self._svc())
        except ServiceError as exc:
            return Outcome(status=exc.status, error=exc.as_dict())
        if isinstance(result, tuple):
            return Outcome(status=result[0], data=result[1])
        return Outcome(status=status, data=result)

    # Reads.
    async def portfolios(self, user_id: uuid.UUID) -> Outcome:
        return await self._run(lambda s: s.portfolios(user_id))

    async def snapshot(self, user_id: uuid.UUID, portfolio_id: uuid.UUID | None) -> Outcome:
        return await self._run(lambda s: s.snapshot(user_id, portfolio_id))

    async def lots(self, user_id: uuid.UUID, portfolio_id: uuid.UUID, symbol: str | None) -> Outcome:
        return await self._run(lambda s: s.lots(user_id, portfolio_id, symbol))

    async def dashboard(self, user_id: uuid.UUID) -> Outcome:
        return await self._run(lambda s: s.dashboard(user_id))

    async def allocation(self, user_id: uuid.UUID, portfolio_id: uuid.UUID) -> Outcome:
        return await self._run(lambda s: s.allocation(user_id, portfolio_id))

    async def rebalance(
        self, user_id: uuid.UUID, portfolio_id: uuid.UUID, drift_band: Decimal, whole_shares: bool
    ) -> Outcome:
        """The plan, not placed (``rebalance_now`` places it)."""
        return await self._run(lambda s: s.rebalance(user_id, portfolio_id, drift_band, whole_shares))

    async def performance(
        self,
        user_id: uuid.UUID,
        portfolio_id: uuid.UUID,
        start: date | None,
        end: date | None,
        benchmark: str,
    ) -> Outcome:
        return await self._run(lambda s: s.performance(user_id, portfolio_id, start, end, benchmark))

    # Changes.
    async def create_portfolio(self, m: Mutation, spec: Mapping[str, Any]) -> Outcome:
        return await self._run(lambda s: s.create_portfolio(m, spec))

    async def update_portfolio(
        self, m: Mutation, portfolio_id: uuid.UUID, changes: Mapping[str, Any]
    ) -> Outcome:
        return await self._run(lambda s: s.update_portfolio(m, portfolio_id, changes))

    async def delete_portfolio(self, m: Mutation, portfolio_id: uuid.UUID) -> Outcome:
        return await self._run(lambda s: s.delete_portfolio(m, portfolio_id), status=204)

    async def move_cash(
        self, m: Mutation, portfolio_id: uuid.UUID, amount: Any, description: str | None
    ) -> Outcome:
        return await self._run(lambda s: s.move_cash(m, portfolio_id, amount, description))

    async def import_lot(self, m: Mutation, portfolio_id: uuid.UUID, lot: Mapping[str, Any]) -> Outcome:
        return await self._run(lambda s: s.import_lot(m, portfolio_id, lot))

    # Orders.
    async def place_order(self, m: Mutation, portfolio_id: uuid.UUID, spec: Mapping[str, Any]) -> Outcome:
        return await self._trading(lambda d: d.place(m, portfolio_id, spec))

    async def place_orders(
        self, m: Mutation, portfolio_id: uuid.UUID, specs: Sequence[Mapping[str, Any]]
    ) -> Outcome:
        """A batch of orders in one call: one hop for all of them, each placed on its own."""
        return await self._trading(lambda d: d.place_batch(m, portfolio_id, specs))

    async def rebalance_now(
        self, m: Mutation, portfolio_id: uuid.UUID, drift_band: Any, whole_shares: bool
    ) -> Outcome:
        return await self._trading(lambda d: d.rebalance(m, portfolio_id, drift_band, whole_shares))

    async def rebalance_books(
        self, user_id: uuid.UUID, portfolio_ids: Sequence[uuid.UUID], drift_band: Decimal, whole_shares: bool
    ) -> Outcome:
        """Several portfolios' plans, not placed (``rebalance_books_now`` places them)."""
        return await self._trading(lambda d: d.plans(user_id, portfolio_ids, drift_band, whole_shares))

    async def rebalance_books_now(
        self, m: Mutation, portfolio_ids: Sequence[uuid.UUID], drift_band: Decimal, whole_shares: bool
    ) -> Outcome:
        return await self._trading(lambda d: d.rebalance_books(m, portfolio_ids, drift_band, whole_shares))

    async def execute_harvest(self, m: Mutation, harvest_id: uuid.UUID, replacement_symbol: str) -> Outcome:
        await self._svc()
        harvests = self._harvests
        assert harvests is not None
        return await self._run(lambda _: harvests.execute(m, harvest_id, replacement_symbol))

    async def accept_recommendation(self, m: Mutation, recommendation_id: uuid.UUID) -> Outcome:
        from wealthalloc.portfolios.recommendations import RecommendationDesk

        service = await self._svc()
        assert self._desk is not None
        desk = RecommendationDesk(service, self._desk)
        return await self._run(lambda _: desk.accept(m, recommendation_id))

    async def order(self, user_id: uuid.UUID, order_id: uuid.UUID) -> Outcome:
        return await self._trading(lambda d: d.order(user_id, order_id))

    async def cancel_order(self, m: Mutation, order_id: uuid.UUID) -> Outcome:
        return await self._trading(lambda d: d.cancel(m, order_id))

    async def apply_execution(
        self, user_id: uuid.UUID, execution: Execution, accepted: StatusChange | None = None
    ) -> Outcome:
        return await self._trading(lambda d: d.apply_execution(user_id, execution, accepted))

    async def apply_status(self, user_id: uuid.UUID, change: StatusChange) -> Outcome:
        return await self._trading(lambda d: d.apply_status(user_id, change))

    # Linked accounts (``LinkedBooks``), under the user's lock.
    async def apply_snapshot(
        self, user_id: uuid.UUID, account_id: uuid.UUID, snapshot: BrokerSnapshot
    ) -> Outcome:
        """Reconcile a linked account's portfolio with what its broker holds."""
        return await self._run(lambda s: LinkedBooks(s).apply_snapshot(user_id, account_id, snapshot))

    async def record_failure(self, user_id: uuid.UUID, account_id: uuid.UUID, reason: str) -> Outcome:
        """A linked account's sync that could not reach its broker."""
        return await self._run(lambda s: LinkedBooks(s).record_failure(user_id, account_id, reason))

    async def confirm_lot(
        self, m: Mutation, portfolio_id: uuid.UUID, lot_id: uuid.UUID, reason: str
    ) -> Outcome:
        """An advisor or admin vouches for a transferred lot's basis."""
        return await self._run(lambda s: LinkedBooks(s).confirm_lot(m, portfolio_id, lot_id, reason))

    # Households.
    async def evict_book(self, user_id: uuid.UUID, portfolio_ids: frozenset[uuid.UUID]) -> Outcome:
        """Forget a user's book and drop the snapshots of ``portfolio_ids``: a fill of their spouse, on
        another shard, changed their lots (a wash sale across the household)."""
        return await self._run(lambda s: forget_locally(s, user_id, portfolio_ids))

    async def _evict_elsewhere(self, user_id: uuid.UUID, portfolio_ids: frozenset[uuid.UUID]) -> None:
        index = shard_of(user_id, slot_count=self.settings.slot_count, shard_count=self.settings.shard_count)
        if index == self.index:
            await forget_locally(await self._svc(), user_id, portfolio_ids)
            return
        try:
            peer = running(shard_name(index), self.settings.ray_namespace)
        except NotRunning:
            return  # a shard that is not running holds no book to forget
        (await peer.evict_book.remote(user_id, portfolio_ids)).unwrap()

    # Operations.
    async def traced(self, headers: Mapping[str, str], method: str, *args: Any, **kwargs: Any) -> Outcome:
        """``method`` as a span of the caller's trace (``headers``: its W3C context)."""
        if method.startswith("_") or method in _NOT_TRACED or not hasattr(self, method):
            return Outcome(status=404, error={"status": 404, "code": "NOT_FOUND", "message": f"no {method}"})
        with tracing.continued(headers, f"PortfolioShard.{method}", attributes={"shard": self.index}):
            result: Outcome = await getattr(self, method)(*args, **kwargs)
        return result

    def metrics(self) -> list[Any]:
        """This shard's operations metrics (wealthalloc/ops/metrics.py), for an API replica's /metrics."""
        self._count_books()
        return ops_metrics.snapshot()

    async def stats(self) -> dict[str, Any]:
        service = await self._svc()
        return {"shard": self.index, "pid": os.getpid(), "books_in_memory": service.books_in_memory}

    def pid(self) -> int:
        return os.getpid()


HANDOFF_TIMEOUT_S = 10.0
# A price file replaced under a running shard is seen within this time (see PriceHistory).
PRICE_FILES_RECHECK_S = 1.0


_NOT_TRACED = {"traced", "metrics", "pid"}


def traced_call(handle: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """``handle.method.remote(*args, **kwargs)``, through the actor's ``traced`` when a span is
    current, so the actor's work joins the caller's trace; the plain call when tracing is off."""
    headers = tracing.carrier()
    if headers is None:
        return getattr(handle, method).remote(*args, **kwargs)
    return handle.traced.remote(headers, method, *args, **kwargs)


SHARD_MEMORY_BYTES = 64 * 1024 * 1024


def shard_homes() -> list[str]:
    """The nodes shards are spread over, in an order every replica agrees on.

    The worker nodes of a cluster, leaving the head to the singletons and Serve's
    controller and proxy; the head itself on one machine. Sorted by id, so two
    replicas creating the same shard at once name the same home.
    """
    alive = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]  # type: ignore[no-untyped-call]
    workers = [n for n in alive if "node:__internal_head__" not in n["Resources"]]
    return sorted(n["NodeID"] for n in workers or alive)


def shard_options(name: str, namespace: str, home: str | None = None) -> dict[str, Any]:
    """How a shard actor is created: detached, restarted forever, and on ``home`` while that node lives.

    The node affinity is soft: a shard whose node is lost restarts on a surviving node and rebuilds
    its books from PostgreSQL there. Round-robin homes spread the shards evenly, where Ray's SPREAD
    (best effort, and blind to actors that reserve no CPU) piled them on one node.
    """
    placement: Any = NodeAffinitySchedulingStrategy(node_id=home, soft=True) if home is not None else "SPREAD"
    return {
        "name": name,
        "namespace": namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": -1,
        # I/O-bound: it waits on PostgreSQL and Redis; a whole CPU each would starve small clusters.
        "num_cpus": 0,
        # Its cached books. An actor that reserves nothing is placed anywhere, whatever its node
        # affinity says; reserving what it holds makes the affinity bind.
        "memory": SHARD_MEMORY_BYTES,
        "max_concurrency": 1000,
        "scheduling_strategy": placement,
    }


RemoteShard = ray.remote(PortfolioShard)
