"""What one API replica holds open: database pool, Redis client, metrics, market data.

Built once per replica in the app's lifespan and reached by routes through the
typed dependencies in ``deps.py``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from actors.shard_router import ShardRouter
from serve_apps.api.metrics import ApiMetrics
from wealthalloc.accounts.service import AccountService
from wealthalloc.brokers.base import Quote
from wealthalloc.config import Settings
from wealthalloc.events.fanout import StreamHub
from wealthalloc.logging import get_logger
from wealthalloc.marketdata import MarketClock, PriceHistory, SecurityReference
from wealthalloc.marketdata.providers import QuoteSource
from wealthalloc.marketdata.quotes import QuoteCache
from wealthalloc.security.access import Principal
from wealthalloc.security.tokens import KeyRing
from wealthalloc.storage.postgres import AsyncPool, async_pool
from wealthalloc.storage.rate_limiter import LocalRateLimiter, RateLimiter
from wealthalloc.storage.redis_client import async_redis

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

log = get_logger(__name__)

PRINCIPAL_CACHE_SECONDS = 30.0
MAX_PRINCIPALS_CACHED = 50_000


@dataclass(frozen=True)
class CachedPrincipal:
    principal: Principal
    generation: str
    loaded_at: float


@dataclass
class Resources:
    settings: Settings
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    started_at: float = field(default_factory=time.time)
    pool: AsyncPool | None = None
    redis: aioredis.Redis | None = None
    limiter: RateLimiter | None = None
    local_limiter: LocalRateLimiter = field(default_factory=LocalRateLimiter)
    _accounts: AccountService | None = None
    _shards: ShardRouter | None = None
    # Which user owns a portfolio never changes: remembered per replica, bounded.
    portfolio_owners: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    # Who is behind each session (login) seen lately, with the user's generation when it was read.
    principals: dict[uuid.UUID, CachedPrincipal] = field(default_factory=dict)
    # The AnomalyDetector deployment (a DeploymentHandle), set by the Serve ingress; None in a plain app.
    anomaly: DeploymentHandle[Any] | None = None
    # The one reader of the event streams for this replica's WebSockets (started by the first one).
    _hub: StreamHub | None = None

    async def open(self) -> None:
        self.pool = async_pool(self.settings)
        # wait=False: the replica starts even while the database is down, and
        # /health says so instead of the replica crash-looping.
        await self.pool.open(wait=False)
        self.redis = async_redis(self.settings)
        self.limiter = RateLimiter(self.redis)
        self._accounts = AccountService(
            settings=self.settings, pool=self.pool, limiter=self.limiter, keys=signing_keys(self.settings)
        )
        self.ensure_event_bus()
        try:  # created now, it has connected its broker before the first order arrives
            self.gateway()
        except Exception as exc:  # orders wait as pending and are swept once it is up
            log.warning("broker_gateway_unavailable", error=str(exc))
        self.start_shards()
        self.ensure_account_connections()

    def ensure_account_connections(self) -> None:
        """Start the linked accounts' connections actor (and its daily syncs) when the key ring is set."""
        import ray

        if not ray.is_initialized() or not self.settings.linked_account_keys:
            return
        from actors.account_connections import connections_handle

        try:
            connections_handle(self.settings)
        except Exception as exc:  # linked accounts then start it on their first sync
            log.warning("account_connections_unavailable", error=str(exc))

    def ensure_event_bus(self) -> None:
        """Start the cluster's outbox relay and consumers if they are not running (idempotent)."""
        import ray

        if not ray.is_initialized():
            return  # a plain ASGI app (tests, benches): no cluster to run it on
        from actors.event_bus import ensure_event_bus

        try:
            ensure_event_bus(self.settings, self.shards.overrides)
        except Exception as exc:  # the API serves without it; /health reports the growing backlog
            log.warning("event_bus_unavailable", error=str(exc))

    def start_shards(self) -> None:
        """Create the portfolio shard actors now (without waiting for them), so they are up by the
        time the readiness probe asks for them and the first user's call does not start one."""
        import ray

        if not ray.is_initialized():
            return
        try:
            for index in range(self.settings.shard_count):
                self.shards.handle_for_index(index)
        except Exception as exc:  # the readiness probe reports them; the first call retries
            log.warning("portfolio_shards_unavailable", error=str(exc))

    def remember(self, principal: Principal, generation: str | None) -> None:
        """Cache who is behind a session, only when the user's generation is known (Redis answered)
        and was read before PostgreSQL was: a change made in between then shows as a new generation."""
        if principal.session_id is None:
            return
        if generation is None:
            self.principals.pop(principal.session_id, None)
            return
        if len(self.principals) >= MAX_PRINCIPALS_CACHED:
            self.principals.clear()
        self.principals[principal.session_id] = CachedPrincipal(principal, generation, time.monotonic())

    @property
    def shards(self) -> ShardRouter:
        if self._shards is None:
            self._shards = ShardRouter(self.settings)
        return self._shards

    @property
    def accounts(self) -> AccountService:
        assert self._accounts is not None, "Resources.open() has not run"
        return self._accounts

    def stream_hub(self) -> StreamHub:
        """This replica's stream reader, on a Redis client of its own: a blocking XREAD must not
        hold one of the request path's connections or run into its one-second socket timeout."""
        if self._hub is None:
            block_ms = 1000
            self._hub = StreamHub(
                redis=async_redis(self.settings, socket_timeout=block_ms / 1000 + 5),
                block_ms=block_ms,
                check_interval_s=self.settings.stream_auth_check_seconds,
            )
        return self._hub

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
        # The market-data chain's pooled HTTP client: its sockets close with the replica.
        source = self.__dict__.pop("quote_source", None)
        if source is not None:
            await source.aclose()
        if self.pool is not None:
            await self.pool.close()
        if self.redis is not None:
            await self.redis.aclose()

    @cached_property
    def prices(self) -> PriceHistory:
        return PriceHistory(self.settings.prices_dir)

    @cached_property
    def clock(self) -> MarketClock:
        return MarketClock(self.prices.trading_days(), pinned=self.settings.market_clock_date)

    @cached_property
    def securities(self) -> SecurityReference:
        return SecurityReference()

    def gateway(self) -> Any:
        """The cluster's broker gateway actor (created on first use); None outside a cluster."""
        import ray

        if not ray.is_initialized():
            return None
        from actors.broker_gateway import gateway_handle

        return gateway_handle(self.settings, self.shards.overrides)

    @cached_property
    def quotes(self) -> QuoteCache:
        return QuoteCache(
            self.redis,
            self.quote_source,
            ttl_seconds=self.settings.quote_cache_seconds,
            stale_after_s=self.settings.market_data_stale_seconds,
        )

    @cached_property
    def quote_source(self) -> QuoteSource:
        """The quote behind the Redis cache (one per replica: its provider chain pools connections)."""

        async def live(symbol: str) -> Quote:
            gateway = self.gateway()
            if gateway is None:
                raise RuntimeError("no broker gateway outside a cluster")
            quote: Quote = await gateway.quote.remote(symbol)
            return quote

        async def connected() -> bool:
            gateway = self.gateway()
            if gateway is None:  # a plain app outside a cluster has no gateway to ask
                return False
            health = await gateway.health.remote()
            return bool(health.get("broker") == "ibkr" and health.get("status") != "down")

        return QuoteSource(
            self.settings,
            redis=self.redis,
            prices=self.prices,
            today=lambda: self.clock.today(),
            live=live,
            connected=connected,
        )


def signing_keys(settings: Settings) -> KeyRing:
    secret = settings.secret_key.get_secret_value()
    if not secret:
        if settings.environment == "production":
            raise RuntimeError("WEALTHALLOC_SECRET_KEY must be set in production")
        # Tokens then die with this replica; `wealthalloc serve` always passes a persistent key.
        log.warning("secret_key_missing_using_ephemeral_key")
        secret = secrets.token_urlsafe(48)
    previous = {kid: value.get_secret_value() for kid, value in settings.jwt_previous_keys.items()}
    return KeyRing.from_secrets(secret, previous)
