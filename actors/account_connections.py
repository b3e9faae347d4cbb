"""``AccountConnections``: the Ray actor that holds one IB Gateway connection per linked IBKR account.

A linked account is read, never traded: its connection is an
:class:`~wealthalloc.brokers.ibkr.IbkrBroker` of one client id bound to that
account (``ib_account``), so it has the gateway code's reconnect with backoff,
heartbeat and circuit breaker, and no order ever goes through it (its sink hears
nothing; it has no tickets to reconcile). The pool is keyed by linked account:
client ids come from ``linked_ib_client_id`` onward, and when
``linked_max_connections`` are open the least recently used one is closed.

A connection that is down fails only its own account's sync (the account shows
``error`` with the reason); every other account keeps syncing on its own socket.

A sync reads the broker's positions and cash here and hands them to the shard that
owns the user (``PortfolioShard.apply_snapshot``), which reconciles them with the book
under the user's lock. Every linked account also syncs by itself every
``linked_sync_hours`` (a loop started with the actor, at most
:data:`SYNC_CONCURRENCY` accounts at a time).

The account number exists in clear only in this process's memory, decrypted from
the database when a connection opens; it is never logged or sent anywhere but
to the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import ray

from actors.lifecycle import start_when_constructed
from actors.portfolio_shard import Outcome, PortfolioShard
from actors.shard_router import ShardRouter
from wealthalloc.brokers.base import BrokerUnavailable
from wealthalloc.brokers.ib_client import LIBRARIES
from wealthalloc.config import Settings
from wealthalloc.errors import ServiceError
from wealthalloc.linked_accounts import BrokerPosition, BrokerSnapshot, mask
from wealthalloc.logging import configure_logging, get_logger
from wealthalloc.security.encryption import EncryptionUnavailable, UndecryptableError, key_ring
from wealthalloc.storage import linked_accounts as linked
from wealthalloc.storage.postgres import AsyncPool, async_pool
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket

log = get_logger(__name__)

ACCOUNT_CONNECTIONS_NAME = "account-connections"
SYNC_CONCURRENCY = 4
SCHEDULE_POLL_S = 60.0


class _Redacted(logging.Filter):
    """Masks the account numbers this process knows in every plain log record it writes.

    The IB client libraries log what the gateway sends (positions, portfolio updates) with the
    account in it; this process is the only one that opens linked accounts' connections, so it is
    where the numbers are taken out, whatever a library decides to log.
    """

    def __init__(self) -> None:
        super().__init__()
        self.numbers: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.numbers and isinstance(record.msg, str):
            text = record.getMessage()
            for number in self.numbers:
                text = text.replace(number, mask(number))
            record.msg, record.args = text, ()
        return True


class _Deaf:
    """The sink of a read-only connection: a linked account places no orders, so it hears of none."""

    async def execution(self, ticket: Ticket, execution: Execution) -> None:
        return None

    async def status_change(self, ticket: Ticket, change: StatusChange) -> None:
        return None


async def _no_tickets() -> Sequence[Ticket]:
    return ()


def connection_overrides(settings: Settings) -> dict[str, Any]:
    """What the actor is built with: the shards' settings plus the key ring (which shards never get)."""
    return {
        **ShardRouter(settings).overrides,
        "linked_account_keys": {k: v.get_secret_value() for k, v in settings.linked_account_keys.items()},
        "linked_account_index_key": settings.linked_account_index_key.get_secret_value(),
    }


class AccountConnections:
    def __init__(self, overrides: Mapping[str, Any]) -> None:
        self._overrides = dict(overrides)
        self.settings = Settings(**self._overrides)
        configure_logging(self.settings.log_level, self.settings.log_format)
        self._redacted = _Redacted()
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._redacted)
        for library in LIBRARIES:  # what the gateway sent, message by message: not worth keeping
            logging.getLogger(library).setLevel(logging.WARNING)
        self._router = ShardRouter(self.settings)
        self._pool: AsyncPool | None = None
        self._connections: OrderedDict[uuid.UUID, Any] = OrderedDict()  # IbkrBroker, newest use last
        self._client_ids: dict[uuid.UUID, int] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._syncs = {"ok": 0, "failed": 0}
        start_when_constructed()

    # Life ----------------------------------------------------------------------------------------

    async def start(self) -> bool:
        """Idempotent: open the pool and start the daily schedule (also after Ray restarts the actor)."""
        if self._task is not None:
            await self._started.wait()
            return False
        self._pool = async_pool(self.settings, name="account-connections")
        await self._pool.open(wait=False)
        self._task = asyncio.create_task(self._schedule(), name="linked-account-schedule")
        self._started.set()
        log.info("account_connections_started")
        return True

    async def _schedule(self) -> None:
        """Sync every linked IBKR account whose last sync is older than ``linked_sync_hours``."""
        every_s = self.settings.linked_sync_hours * 3600
        while True:
            await asyncio.sleep(min(SCHEDULE_POLL_S, every_s))
            try:
                await self._sync_due(every_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again at the next poll
                log.warning("linked_schedule_failed", error=repr(exc))

    async def _sync_due(self, every_s: float) -> None:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            rows = await linked.syncable(conn, "ibkr")
        now = time.time()
        # A new link syncs when it is made: it is due a period after that, like any other.
        due = [r for r in rows if now - (r["last_synced_at"] or r["created_date"]).timestamp() >= every_s]
        gate = asyncio.Semaphore(SYNC_CONCURRENCY)

        async def one(account_id: uuid.UUID) -> None:
            async with gate:
                await self.sync(account_id)

        await asyncio.gather(*(one(r["id"]) for r in due))

    # Syncing -------------------------------------------------------------------------------------

    async def sync(self, account_id: uuid.UUID) -> Outcome:
        """Read the account at the broker and reconcile its portfolio; the shard's outcome (a broker
        that cannot be reached is recorded on the account and answered as ``status: error``)."""
        await self.start()
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            try:
                account, number = await self._account(account_id)
            except ServiceError as exc:
                return Outcome(status=exc.status, error=exc.as_dict())
            user_id = account["user_id"]
            try:
                broker = await self._connection(account_id, number)
                held, cash = await asyncio.wait_for(
                    broker.holdings(), self.settings.ib_request_timeout_seconds * 2
                )
            except (BrokerUnavailable, TimeoutError, ConnectionError, OSError) as exc:
                self._syncs["failed"] += 1
                reason = _reason(exc)
                log.warning("linked_sync_failed", linked_account_id=str(account_id), reason=reason)
                return await self._router.outcome(
                    user_id, PortfolioShard.record_failure, user_id, account_id, reason
                )
            snapshot = BrokerSnapshot(
                positions=tuple(
                    BrokerPosition(symbol, quantity, (quantity * cost).quantize(Decimal("0.0001")))
                    for symbol, (quantity, cost) in sorted(held.items())
                ),
                cash=cash,
                verified=True,
            )
            self._syncs["ok"] += 1
            return await self._router.outcome(
                user_id, PortfolioShard.apply_snapshot, user_id, account_id, snapshot
            )

    async def _account(self, account_id: uuid.UUID) -> tuple[dict[str, Any], str]:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            account = await linked.account(conn, account_id)
            sealed = await linked.sealed_number(conn, account_id)
        if account is None or sealed is None or account["provider"] != "ibkr":
            raise ServiceError(404, "NOT_FOUND", "No such linked IBKR account.")
        if account["unlinked_at"] is not None:
            raise ServiceError(409, "UNLINKED", "This account was unlinked; it no longer syncs.")
        try:
            number = key_ring(self.settings).decrypt(sealed, owner=account["user_id"])
        except (EncryptionUnavailable, UndecryptableError) as exc:
            log.error("linked_account_undecryptable", linked_account_id=str(account_id), key_id=sealed.key_id)
            raise ServiceError(
                500, "ACCOUNT_NUMBER_UNREADABLE", "The account number cannot be decrypted with the keys set."
            ) from exc
        return account, number

    async def _connection(self, account_id: uuid.UUID, number: str) -> Any:
        """The account's connection, opened on first use (the pool's oldest closed when it is full)."""
        from wealthalloc.brokers.ibkr import IbkrBroker

        broker = self._connections.get(account_id)
        if broker is not None:
            self._connections.move_to_end(account_id)
            return broker
        while len(self._connections) >= self.settings.linked_max_connections:
            oldest = next(iter(self._connections))
            await self.forget(oldest)
        used = set(self._client_ids.values())
        client_id = next(i for i in range(self.settings.linked_ib_client_id, 1 << 31) if i not in used)
        self._redacted.numbers.add(number)
        settings = Settings(
            **{**self._overrides, "ib_account": number, "ib_client_id": client_id, "ib_pool_size": 1}
        )
        broker = IbkrBroker(settings, _Deaf(), _no_tickets)
        self._connections[account_id] = broker
        self._client_ids[account_id] = client_id
        await broker.start()
        log.info("linked_connection_opened", linked_account_id=str(account_id), client_id=client_id)
        return broker

    async def forget(self, account_id: uuid.UUID) -> bool:
        """Close the account's connection (unlinked, or the pool needs the room); whether one was open."""
        broker = self._connections.pop(account_id, None)
        self._client_ids.pop(account_id, None)
        if broker is None:
            return False
        await broker.close()
        log.info("linked_connection_closed", linked_account_id=str(account_id))
        return True

    # Operations ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Each open connection's health by linked account id (no account numbers), and sync counts."""
        return {
            "connections": {
                str(account_id): {
                    "client_id": self._client_ids.get(account_id),
                    "status": broker.health().status,
                }
                for account_id, broker in self._connections.items()
            },
            "syncs": dict(self._syncs),
        }


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, BrokerUnavailable) else f"{type(exc).__name__}: {text}"


RemoteAccountConnections = ray.remote(AccountConnections)


def connections_handle(settings: Settings) -> Any:
    """The cluster's linked-account connections actor, created and started when it is not running."""
    handle: Any = RemoteAccountConnections.options(
        name=ACCOUNT_CONNECTIONS_NAME,
        namespace=settings.ray_namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        num_cpus=0,
        max_concurrency=1000,
    ).remote(connection_overrides(settings))
    return handle
