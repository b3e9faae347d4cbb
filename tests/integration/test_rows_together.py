"""Reads sent together (`books.rows_together`): every query is sent before any answer is read.

Inside a transaction in pipeline mode, as a group commit runs its changes, the queries go with
the first read and their answers come back together; a pipeline block of their own would end with
a sync, which waits for the server once more, each time a change reads. Outside a pipeline they
open one and end it, so the connection is as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from psycopg import _pipeline_base

from wealthalloc.config import Settings
from wealthalloc.storage import books
from wealthalloc.storage.postgres import async_pool

pytestmark = pytest.mark.integration

QUERIES: list[books.Query] = [("SELECT %s::int AS n", (n,)) for n in (1, 2, 3)]


def syncs_while(
    database_url: str, monkeypatch: pytest.MonkeyPatch, read: Callable[[Any], Awaitable[Any]]
) -> tuple[int, Any]:
    """What ``read`` returned on a connection whose transaction has begun, and how many pipeline
    syncs it sent (psycopg queues each one through ``_enqueue_sync``)."""
    syncs = 0
    enqueue = _pipeline_base.BasePipeline._enqueue_sync

    def counted(pipeline: Any) -> None:
        nonlocal syncs
        syncs += 1
        enqueue(pipeline)

    async def run() -> Any:
        pool = async_pool(Settings(database_url=database_url), name="rows-together-test")
        await pool.open()
        try:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")  # the transaction begun, as a change's is
                monkeypatch.setattr(_pipeline_base.BasePipeline, "_enqueue_sync", counted)
                return await read(conn)
        finally:
            await pool.close()

    rows = asyncio.run(run())
    return syncs, rows


def test_in_the_callers_pipeline_the_reads_add_no_sync(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def read(conn: Any) -> Any:
        async with conn.pipeline():
            rows = await books.rows_together(conn, *QUERIES)
            cur = await conn.execute("SELECT 4 AS n")  # the pipeline goes on after them
            return [*rows, await cur.fetchall()]

    syncs, rows = syncs_while(database_url, monkeypatch, read)

    assert rows == [[{"n": 1}], [{"n": 2}], [{"n": 3}], [{"n": 4}]]
    assert syncs == 1  # the caller's block ending, none for the reads


def test_outside_a_pipeline_the_reads_open_one_and_end_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def read(conn: Any) -> Any:
        rows = await books.rows_together(conn, *QUERIES)
        in_pipeline = conn.pgconn.pipeline_status
        cur = await conn.execute("SELECT 4 AS n")
        return [*rows, await cur.fetchall()], in_pipeline

    syncs, (rows, in_pipeline) = syncs_while(database_url, monkeypatch, read)

    assert rows == [[{"n": 1}], [{"n": 2}], [{"n": 3}], [{"n": 4}]]
    assert syncs == 1 and in_pipeline == 0  # its own pipeline, ended
