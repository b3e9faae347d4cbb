"""Connection pools for PostgreSQL, the system of record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection, AsyncCursor, Connection, sql
from psycopg.abc import Params, Query
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from wealthalloc.config import Settings
from wealthalloc.ops import tracing

# A connection that cannot be had in this time is an outage, not a slow query:
# callers answer 503 rather than queueing requests forever.
POOL_TIMEOUT_S = 5.0

AsyncPool = AsyncConnectionPool[AsyncConnection[DictRow]]
SyncPool = ConnectionPool[Connection[DictRow]]


def async_pool(settings: Settings, *, name: str = "api") -> AsyncPool:
    """A pool that is not open yet: open it inside the event loop that will use it."""
    kwargs: dict[str, Any] = _connection_kwargs(name)
    if tracing.enabled():  # built only when tracing runs: otherwise psycopg's own cursor, at no cost
        kwargs["cursor_factory"] = TracedCursor
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


@asynccontextmanager
async def reading(pool: AsyncPool) -> AsyncIterator[AsyncConnection[DictRow]]:
    """A pooled connection for reads outside any transaction, in autocommit.

    A pooled connection begins a transaction at its first statement and the pool commits it on
    return; in pipeline mode the ``BEGIN`` also waits for a sync of its own, so reads sent in one
    round trip (:func:`~wealthalloc.storage.books.rows_together`) took three. They lose nothing
    outside a transaction: at PostgreSQL's default isolation each statement takes its own snapshot
    in one too.
    """
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            if not conn.closed:
                await conn.set_autocommit(False)


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


class TracedCursor(AsyncCursor[DictRow]):
    """Each statement as a client span under whatever span is current (a shard call, a request)."""

    async def execute(self, query: Query, params: Params | None = None, **kwargs: Any) -> TracedCursor:
        name, attributes = _statement_span(query, self)
        with tracing.span(name, kind=tracing.SpanKind.CLIENT, attributes=attributes):
            await super().execute(query, params, **kwargs)  # type: ignore[arg-type]  # a t-string too
        return self

    async def executemany(self, query: Query, params_seq: Any, **kwargs: Any) -> None:
        name, attributes = _statement_span(query, self)
        with tracing.span(name, kind=tracing.SpanKind.CLIENT, attributes=attributes):
            await super().executemany(query, params_seq, **kwargs)


def _statement_span(query: Query, cursor: AsyncCursor[DictRow]) -> tuple[str, dict[str, str]]:
    if isinstance(query, sql.Composable):
        text = query.as_string(cursor.connection)
    else:
        text = query.decode() if isinstance(query, bytes) else str(query)
    verb = text.lstrip().split(None, 1)[0].upper() if text.strip() else "SQL"
    attributes = {"db.system": "postgresql", "db.operation.name": verb, "db.query.text": text[:1000]}
    return f"postgresql {verb}", attributes
