"""Redis restarted mid-stream, with its data (append-only file) or without it: every committed event
still reaches the audit trail, once, and the chain stays intact.

The Redis here is the embedded one `make run` starts (a real redis-server under a temporary
directory), so the test can stop and start it without touching the shared server.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.integration.test_events import _commit_events
from wealthalloc.config import Settings
from wealthalloc.events.audit_chain import verify_chain
from wealthalloc.events.consumers import AuditLogger
from wealthalloc.events.relay import OutboxRelay
from wealthalloc.runtime import services
from wealthalloc.storage.audit import iter_chain
from wealthalloc.storage.migrate import migrate
from wealthalloc.storage.postgres import async_pool
from wealthalloc.storage.redis_client import async_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def events_db(empty_database_url: str) -> str:
    migrate(empty_database_url)
    return empty_database_url


@pytest.fixture
def redis_home(tmp_path: Path) -> Iterator[Path]:
    services.embedded_redis(tmp_path)
    try:
        yield tmp_path
    finally:
        services.stop_embedded_redis(tmp_path)


def restart_redis(home: Path, *, lose_data: bool) -> None:
    assert services.stop_embedded_redis(home)
    url = f"unix://{home / 'redis' / 'redis.sock'}?db=0"
    for _ in range(100):
        if services.redis_problem(url) is not None:
            break
        asyncio.run(asyncio.sleep(0.05))
    if lose_data:
        for entry in (home / "redis").iterdir():
            if entry.name.startswith("appendonly") or entry.suffix == ".rdb":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    services.embedded_redis(home)


async def drain(relay: OutboxRelay, audit: AuditLogger) -> None:
    """What the bus's loops do until nothing is left: recover, publish, consume."""
    while True:
        work = await relay.recover_lost_streams() + await relay.publish_once() + await audit.consume_once()
        if not work:
            return


def run_across_a_restart(database_url: str, home: Path, *, lose_data: bool) -> dict[str, Any]:
    first = _commit_events(database_url, 6)

    async def scenario() -> dict[str, Any]:
        url = f"unix://{home / 'redis' / 'redis.sock'}?db=0"
        settings = Settings(database_url=database_url, redis_url=url)
        pool = async_pool(settings, name="redis-restart-test")
        await pool.open()
        client = async_redis(settings, socket_timeout=5)
        try:
            relay = OutboxRelay(pool=pool, redis=client)
            audit = AuditLogger(pool=pool, redis=client, name="audit-restart")
            await relay.recover_lost_streams()  # a first start: sets the marker, nothing to replay
            assert await relay.publish_once() == 6  # published, not yet read by the audit group
            await asyncio.to_thread(restart_redis, home, lose_data=lose_data)
            second = await asyncio.to_thread(_commit_events, database_url, 4)
            await drain(relay, audit)
            return {"ids": first + second}
        finally:
            await client.aclose()
            await pool.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize("lose_data", [False, True], ids=["redis-kept-its-data", "redis-lost-its-data"])
def test_events_published_before_a_redis_restart_are_all_audited_once(
    events_db: str, redis_home: Path, lose_data: bool
) -> None:
    result = run_across_a_restart(events_db, redis_home, lose_data=lose_data)
    with psycopg.connect(events_db, row_factory=dict_row) as conn:
        audited = [r["event_id"] for r in conn.execute("SELECT event_id FROM audit_log ORDER BY sequence")]
        report = verify_chain(iter_chain(conn))
    assert sorted(audited, key=str) == sorted(result["ids"], key=str)
    assert len(set(audited)) == len(audited) == 10
    assert report.intact, report.problems


def test_a_relay_that_cannot_reach_redis_leaves_its_events_unpublished(
    events_db: str, tmp_path: Path
) -> None:
    _commit_events(events_db, 3)

    async def scenario() -> int:
        settings = Settings(database_url=events_db, redis_url=f"unix://{tmp_path / 'nobody.sock'}?db=0")
        pool = async_pool(settings, name="redis-down-test")
        await pool.open()
        client = async_redis(settings, socket_timeout=1)
        try:
            with pytest.raises(Exception, match="nobody.sock|Connection|connect"):
                await OutboxRelay(pool=pool, redis=client).publish_once()
        finally:
            await client.aclose()
            await pool.close()
        with psycopg.connect(events_db) as conn:
            row = conn.execute("SELECT count(*) FROM events WHERE published_at IS NULL").fetchone()
        assert row is not None
        return int(row[0])

    assert asyncio.run(scenario()) == 3
