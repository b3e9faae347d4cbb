"""Events per second from commit to audit row, and the lag, beside a plain Redis Streams loop.

One run, one machine (the producers, the bus and PostgreSQL share the cores: compare the figures
side by side, not with other machines):

- the platform: --producers concurrent writers commit one outbox event per transaction (what every
  state change does) for --seconds; the ``EventBus`` actor on a local Ray relays them to Redis
  Streams and its consumer groups (audit, cache, webhooks, alerts) read them; a watcher polls the
  audit trail every 10 ms and takes, in PostgreSQL, each new row's lag since its event was
  written. The rate counts events from the first commit until the last one is in the audit trail;
  afterwards the trail is checked: one row per event, none twice, and its hash chain intact;
- the baseline: the same number of messages XADDed by as many producers and read by one
  XREADGROUP/XACK consumer in this process, lag taken from a timestamp in each message. It is
  the floor the platform pays on top of: no PostgreSQL, no outbox, no hash chain.

    .venv/bin/python bench/events.py [--seconds 8] [--producers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _support import REDIS_URL, print_figures, temporary_database  # noqa: E402

CATCH_UP_S = 120.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# The platform -------------------------------------------------------------------------------------


async def produce(
    database_url: str, *, seconds: float, producers: int, rate: float | None = None
) -> tuple[int, float]:
    """Commit events for ``seconds``, as fast as ``producers`` writers can or at ``rate`` per second;
    (count, first commit time)."""
    from wealthalloc.config import Settings
    from wealthalloc.storage.outbox import add_event
    from wealthalloc.storage.postgres import async_pool

    settings = Settings(database_url=database_url, database_pool_max=producers + 2)
    pool = async_pool(settings, name="bench-producers")
    await pool.open()
    user = uuid.uuid4()
    portfolio = uuid.uuid4()
    written = 0
    started = time.time()
    deadline = time.monotonic() + seconds

    interval = producers / rate if rate else 0.0

    async def writer(n: int) -> None:
        nonlocal written
        version = 1
        slot = time.monotonic() + (interval * n / producers)
        while time.monotonic() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, slot - time.monotonic()))
                slot += interval
            async with pool.connection() as conn, conn.transaction():
                await add_event(
                    conn,
                    topic="portfolio.updates",
                    event_type="portfolio.updated",
                    user_id=user,
                    aggregate_id=portfolio,
                    payload={"portfolio_id": portfolio, "changed": ["name"], "version": version},
                )
            version += 1
            written += 1

    try:
        await asyncio.gather(*(writer(n) for n in range(producers)))
    finally:
        await pool.close()
    return written, started


async def watch_audit(database_url: str, expected: asyncio.Future[int]) -> tuple[list[float], float]:
    """Poll the audit trail until it holds ``expected`` rows; (lags in ms, time of the last row)."""
    lags: list[float] = []
    seen = 0
    last_at = time.time()
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    cur = await conn.execute("SELECT coalesce(max(sequence), 0) FROM audit_log")
    row = await cur.fetchone()
    last_sequence = int(row[0]) if row else 0  # only this run's rows count
    try:
        while True:
            cur = await conn.execute(
                """SELECT a.sequence, extract(epoch FROM clock_timestamp() - e.created_at) * 1000 AS lag_ms
                   FROM audit_log a JOIN events e ON e.id = a.event_id
                   WHERE a.sequence > %s ORDER BY a.sequence""",
                (last_sequence,),
            )
            rows = await cur.fetchall()
            if rows:
                last_sequence = rows[-1][0]
                lags.extend(float(r[1]) for r in rows)
                seen += len(rows)
                last_at = time.time()
            if expected.done() and seen >= expected.result():
                return lags, last_at
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def bus_idle(database_url: str, timeout_s: float = CATCH_UP_S) -> None:
    """Wait until the outbox is published and every consumer group has caught up."""
    from wealthalloc.events.consumers import group_lags

    client = aioredis.Redis.from_url(REDIS_URL)
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            cur = await conn.execute("SELECT count(*) FROM events WHERE published_at IS NULL")
            row = await cur.fetchone()
            lags = await group_lags(client)
            if row is not None and row[0] == 0 and not any(lags.values()):
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
        await client.aclose()


async def platform_run(
    database_url: str, *, seconds: float, producers: int, rate: float | None = None
) -> dict[str, Any]:
    await bus_idle(database_url)
    expected: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    watcher = asyncio.create_task(watch_audit(database_url, expected))
    written, started = await produce(database_url, seconds=seconds, producers=producers, rate=rate)
    expected.set_result(written)
    lags, finished = await asyncio.wait_for(watcher, timeout=seconds + CATCH_UP_S)
    await bus_idle(database_url)  # the other groups too, before anything is checked
    return {"events": written, "seconds": finished - started, "lags": lags}


def verify(database_url: str, events: int) -> list[str]:
    from wealthalloc.events.audit_chain import verify_chain
    from wealthalloc.storage.audit import iter_chain

    problems = []
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """SELECT count(*), count(DISTINCT a.event_id)
               FROM audit_log a JOIN events e ON e.id = a.event_id"""
        ).fetchone()
        unpublished = conn.execute("SELECT count(*) FROM events WHERE published_at IS NULL").fetchone()
    assert row is not None and unpublished is not None
    if row[0] != events or row[1] != events:
        problems.append(f"{events} events committed, {row[1]} audited ({row[0]} audit rows)")
    if unpublished[0]:
        problems.append(f"{unpublished[0]} events never published")
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        report = verify_chain(iter_chain(conn))
    if not report.intact:
        problems.append(f"audit chain broken: {report.problems[:3]}")
    return problems


# The baseline -------------------------------------------------------------------------------------


async def baseline_run(*, events: int, producers: int, rate: float | None = None) -> dict[str, Any]:
    client = aioredis.Redis.from_url(REDIS_URL)
    stream = f"bench:events:{uuid.uuid4().hex[:8]}"
    await client.xgroup_create(stream, "audit", id="0", mkstream=True)
    lags: list[float] = []
    per_producer = events // producers
    total = per_producer * producers
    started = time.time()

    interval = producers / rate if rate else 0.0

    async def producer(n: int) -> None:
        slot = time.monotonic() + (interval * n / producers)
        for _ in range(per_producer):
            if interval:
                await asyncio.sleep(max(0.0, slot - time.monotonic()))
                slot += interval
            await client.xadd(stream, {"at": repr(time.time()), "payload": '{"changed": ["name"]}'})

    async def consumer() -> float:
        got = 0
        while got < total:
            response = await client.xreadgroup("audit", "c1", {stream: ">"}, count=200, block=1000)
            for _, messages in response or []:
                now = time.time()
                await client.xack(stream, "audit", *[mid for mid, _ in messages])
                lags.extend((now - float(fields[b"at"])) * 1000 for _, fields in messages)
                got += len(messages)
        return time.time()

    try:
        reading = asyncio.create_task(consumer())
        await asyncio.gather(*(producer(n) for n in range(producers)))
        finished = await reading
    finally:
        await client.delete(stream)
        await client.aclose()
    return {"events": total, "seconds": finished - started, "lags": lags}


# The run ------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Prints the platform's events/s and lag, the baseline's beside it, and the check of the "
        "audit trail (exit status 1 when it fails); then, as the last line, one JSON object of the "
        "figures.",
    )
    parser.add_argument("--seconds", type=float, default=8, help="how long the producers write (default 8)")
    parser.add_argument("--producers", type=int, default=16, help="concurrent writers (default 16)")
    parser.add_argument(
        "--rate",
        type=float,
        default=50,
        help="events/s of the second, paced run that measures the lag at a load the bus keeps up with"
        " (default 50)",
    )
    args = parser.parse_args()

    import ray

    from actors.event_bus import EVENT_BUS_NAME, ensure_event_bus
    from wealthalloc.config import Settings

    cleanup = ExitStack()
    database_url = cleanup.enter_context(temporary_database())
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    overrides = {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "log_level": "WARNING",
        "ray_namespace": namespace,
    }
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        bus = ensure_event_bus(Settings(**overrides), overrides)
        ray.get(bus.start.remote())
        platform = asyncio.run(platform_run(database_url, seconds=args.seconds, producers=args.producers))
        paced = asyncio.run(
            platform_run(database_url, seconds=args.seconds, producers=args.producers, rate=args.rate)
        )
        problems = verify(database_url, platform["events"] + paced["events"])
        stats = ray.get(ray.get_actor(EVENT_BUS_NAME, namespace=namespace).stats.remote())
    finally:
        ray.shutdown()
    try:
        plain = asyncio.run(baseline_run(events=platform["events"], producers=args.producers))
        plain_paced = asyncio.run(
            baseline_run(events=paced["events"], producers=args.producers, rate=args.rate)
        )
    finally:
        cleanup.close()

    def line(result: dict[str, Any]) -> str:
        rate = result["events"] / result["seconds"]
        return (
            f"{rate:,.0f} events/s, lag p50 {statistics.median(result['lags']):.1f} ms"
            f" p99 {percentile(result['lags'], 0.99):.1f} ms"
            f" ({result['events']:,} in {result['seconds']:.1f} s)"
        )

    def rate(result: dict[str, Any]) -> float:
        return float(result["events"] / result["seconds"])

    def figures(prefix: str, result: dict[str, Any]) -> dict[str, float]:
        return {
            f"{prefix}events_per_s": rate(result),
            f"{prefix}lag_p50_ms": statistics.median(result["lags"]),
            f"{prefix}lag_p99_ms": percentile(result["lags"], 0.99),
            f"{prefix}events": result["events"],
            f"{prefix}measured_s": result["seconds"],
        }

    who = f"events x{args.producers} producers"
    print(f"{who}, flat out: commit -> outbox -> relay -> stream -> audit row {line(platform)}")
    print(
        f"{who}, flat out: baseline XADD -> XREADGROUP/XACK {line(plain)}"
        f" | platform/baseline {rate(platform) / rate(plain):.2f}x"
    )
    print(f"{who}, paced at {args.rate:.0f}/s: commit -> audit row {line(paced)}")
    print(f"{who}, paced at {args.rate:.0f}/s: baseline XADD -> XREADGROUP/XACK {line(plain_paced)}")
    if problems:
        print("events NOT verified: " + "; ".join(problems), file=sys.stderr)
        return 1
    total = platform["events"] + paced["events"]
    print(
        f"events verified: {total:,} committed = {total:,} audit rows, none twice, chain intact"
        f" (bus: {stats['published']:,} published, {stats['webhooks_queued']:,} seen by webhooks)"
    )
    print_figures(
        {
            "producers": args.producers,
            "paced_rate_per_s": args.rate,
            **figures("", platform),
            **figures("baseline_", plain),
            "ratio": rate(platform) / rate(plain),
            **figures("paced_", paced),
            **figures("paced_baseline_", plain_paced),
            "verified_events": total,
            "bus_published": stats["published"],
            "bus_webhooks_queued": stats["webhooks_queued"],
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
