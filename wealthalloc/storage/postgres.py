"""Connection pools for PostgreSQL, the system of record."""

from __future__ import annotations

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from wealthalloc.config import Settings

# A connection that cannot be had in this time is an outage, not a slow query:
# callers answer 503 rather than queueing requests forever.
POOL_TIMEOUT_S = 5.0


def async_pool(settings: Settings, *, name: str = "api") -> AsyncConnectionPool:
    """A pool that is not open yet: open it inside the event loop that will use it."""
    return AsyncConnectionPool(
        settings.database_url,
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        timeout=POOL_TIMEOUT_S,
        name=name,
        open=False,
        kwargs={"application_name": f"wealthalloc-{name}", "connect_timeout": 5, "row_factory": dict_row},
    )


def sync_pool(settings: Settings, *, name: str = "worker") -> ConnectionPool:
    return ConnectionPool(
        settings.database_url,
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        timeout=POOL_TIMEOUT_S,
        name=name,
        open=False,
        kwargs={"application_name": f"wealthalloc-{name}", "connect_timeout": 5, "row_factory": dict_row},
    )
