"""Connection pools for PostgreSQL, the system of record."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from wealthalloc.config import Settings

# A connection that cannot be had in this time is an outage, not a slow query:
# callers answer 503 rather than queueing requests forever.
POOL_TIMEOUT_S = 5.0

AsyncPool = AsyncConnectionPool[AsyncConnection[DictRow]]
SyncPool = ConnectionPool[Connection[DictRow]]


def async_pool(settings: Settings, *, name: str = "api") -> AsyncPool:
    """A pool that is not open yet: open it inside the event loop that will use it."""
    kwargs: dict[str, Any] = _connection_kwargs(name)
    return AsyncConnectionPool(
        settings.database_url,
        connection_class=AsyncConnection[DictRow],
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        timeout=POOL_TIMEOUT_S,
        name=name,
        open=False,
        kwargs=kwargs,
    )


def sync_pool(settings: Settings, *, name: str = "worker") -> SyncPool:
    kwargs: dict[str, Any] = _connection_kwargs(name)
    return ConnectionPool(
        settings.database_url,
        connection_class=Connection[DictRow],
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        timeout=POOL_TIMEOUT_S,
        name=name,
        open=False,
        kwargs=kwargs,
    )


def _connection_kwargs(name: str) -> dict[str, Any]:
    return {"application_name": f"wealthalloc-{name}", "connect_timeout": 5, "row_factory": dict_row}
