"""The figures the capacity model (docs/capacity.md) is built on that bench/scaleout.py does not give:
what a cached book and a shard cost in memory, and how many reads a shard and an API replica serve
per second of CPU.

One local Ray, one PortfolioShard (so every book lands in it), one API replica, on a throwaway
database holding --books investors, each with one portfolio of --lots open lots:

- memory: the shard's resident and unique memory (RSS, USS) once it is up with no book, then after
  loading the books in steps (``portfolios`` called on the actor itself, which reads a book from
  PostgreSQL on first touch and keeps it); the slope of a least-squares line through the steps is
  the memory per cached book, the intercept the shard's own;
- shard reads per CPU second: ``portfolios`` on cached books, up to 64 calls in flight from this
  process for --seconds, divided by the CPU time the shard's process spent;
- API reads per replica: GET /api/v1/portfolios/{id} by --clients investors through Serve (HAProxy
  ingress, Redis snapshot cache in front of the shard) for --seconds, with the replica's CPU time.

    .venv/bin/python bench/capacity.py [--books 2000] [--lots 5] [--seconds 10] [--clients 32]

Prints one line per figure, then as its last line one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# A Redis database of this bench's own (bench/_support.py reads it on import).
os.environ.setdefault("WEALTHALLOC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")

from _loadgen import Request, run  # noqa: E402
from _support import bench_platform, print_figures  # noqa: E402

SYMBOLS = ("KO", "PEP", "JNJ", "PG", "PFE", "MRK", "WMT", "XOM", "BAC", "CVX")
IN_FLIGHT = 64
STEPS = 5


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Slope and intercept of the least-squares line through the points."""
    n = len(xs)
    if n < 2:
        raise ValueError("a line needs two points at least")
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if not spread:
        raise ValueError("the points share one x")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return slope, mean_y - slope * mean_x


def steps(total: int, count: int = STEPS) -> list[int]:
    """``count`` book counts from 0 to ``total``, evenly spaced and distinct."""
    return sorted({round(total * i / count) for i in range(count + 1)})


def books_of(database_url: str, lots: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """A funded portfolio with ``lots`` open lots for every user; (user id, portfolio id) of each,
    bench user n's at place n."""
    import psycopg

    owners: list[tuple[uuid.UUID, uuid.UUID]] = []
    with psycopg.connect(database_url) as conn:
        # Bench user n is bench-{n}@example.com (bench/_support.py): keep n's place in the list.
        users = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM users ORDER BY split_part(split_part(email, '@', 1), '-', 2)::int"
            )
        ]
        with conn.cursor() as cur:
            for user_id in users:
                cur.execute(
                    "INSERT INTO portfolios (user_id, name, is_default, cash_balance)"
                    " VALUES (%s, 'Main', true, 100000) RETURNING id",
                    (user_id,),
                )
                row = cur.fetchone()
                assert row is not None
                owners.append((user_id, row[0]))
            acquired = date(2021, 3, 1)
            cur.executemany(
                """INSERT INTO lots (portfolio_id, symbol, shares, original_shares, cost_basis,
                                     adjusted_basis, acquired_at, holding_period_start)
                   VALUES (%s, %s, 10, 10, 1000, 1000, %s, %s)""",
                [
                    (portfolio_id, SYMBOLS[i % len(SYMBOLS)], acquired, acquired)
                    for _, portfolio_id in owners
                    for i in range(lots)
                ],
            )
    return owners


def postgres_bytes(database_url: str) -> int:
    """What the users, portfolios and lots tables take on disk, indexes included."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(t)) FROM unnest(ARRAY['users', 'portfolios', 'lots']) AS t"
        ).fetchone()
    return int(row[0]) if row and row[0] else 0


def redis_bytes(redis_url: str, keys: Sequence[str]) -> float:
    """Mean memory of the keys that exist (Redis's MEMORY USAGE), NaN when none does."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        sizes = [client.memory_usage(key) for key in keys]
    finally:
        client.close()
    found = [size for size in sizes if size]
    return sum(found) / len(found) if found else float("nan")


def my_processes(word: str) -> list[Any]:
    """The processes this run's Ray started whose title names ``word``."""
    import psutil

    found = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if word in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def cpu_seconds(processes: Sequence[Any]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


async def shard_reads(shard: Any, users: Sequence[uuid.UUID], *, seconds: float) -> int:
    """``portfolios`` calls answered in ``seconds``, ``IN_FLIGHT`` at a time."""
    deadline = time.perf_counter() + seconds
    done = 0
    rng = random.Random(0)

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await shard.portfolios.remote(rng.choice(users))
            done += 1

    await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    return done


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--books", type=int, default=2000, help="investors, one book each (default 2000)")
    parser.add_argument("--lots", type=int, default=5, help="open lots in each book (default 5)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of each read run (default 10)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent API clients (default 32)")
    args = parser.parse_args(argv)
    if not 10 <= args.books <= 50_000 or not 0 <= args.lots <= 100:
        parser.error("--books in [10, 50000], --lots in [0, 100]")
    if not 0 < args.seconds <= 60 or not 1 <= args.clients <= min(256, args.books):
        parser.error("--seconds in (0, 60], --clients in [1, min(256, --books)]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import httpx
    import ray
    from ray import serve

    from actors.portfolio_shard import RemoteShard, shard_options
    from serve_apps.api.deployment import build
    from wealthalloc.domain.sharding import shard_name
    from wealthalloc.portfolios.service import snapshot_key

    with bench_platform(args.books) as platform:
        overrides = {**platform.overrides, "shard_count": "1", "num_replicas": "1"}
        owners = books_of(platform.database_url, args.lots)
        users = [user_id for user_id, _ in owners]
        stored = postgres_bytes(platform.database_url)
        print(
            f"PostgreSQL: {stored / len(owners):,.0f} bytes per investor (user, portfolio, {args.lots} lots, "
            "with indexes)"
        )
        shard = RemoteShard.options(**shard_options(shard_name(0), overrides["ray_namespace"])).remote(
            0, overrides
        )
        stats = ray.get(shard.stats.remote(), timeout=120)
        import psutil

        shard_process = psutil.Process(stats["pid"])

        # Memory: the shard with no book, then in steps up to every book.
        points: list[tuple[int, int, int]] = []
        loaded = 0
        for target in steps(len(users)):
            if target > loaded:
                ray.get([shard.portfolios.remote(u) for u in users[loaded:target]], timeout=600)
                loaded = target
            in_memory = ray.get(shard.stats.remote(), timeout=60)["books_in_memory"]
            info = shard_process.memory_full_info()
            points.append((in_memory, info.rss, info.uss))
        book_counts = [float(p[0]) for p in points]
        rss_per_book, rss_base = least_squares(book_counts, [float(p[1]) for p in points])
        uss_per_book, uss_base = least_squares(book_counts, [float(p[2]) for p in points])
        # Past the first step: what one more book costs once the code paths a book needs are warm.
        marginal_kib = least_squares(book_counts[1:], [float(p[1]) for p in points[1:]])[0] / 1024
        print(
            f"memory: {rss_per_book / 1024:,.1f} KiB RSS ({uss_per_book / 1024:,.1f} KiB USS) "
            f"per cached book "
            f"of {args.lots} lots; a shard with no book {rss_base / 2**20:,.0f} MiB RSS "
            f"({uss_base / 2**20:,.0f} MiB USS); "
            f"{points[-1][0]:,} books -> {points[-1][1] / 2**20:,.0f} MiB; "
            f"past the first step {marginal_kib:,.1f} KiB RSS per book"
        )

        # Shard reads per CPU second, on cached books.
        before = cpu_seconds([shard_process])
        started = time.perf_counter()
        calls = asyncio.run(shard_reads(shard, users, seconds=args.seconds))
        wall = time.perf_counter() - started
        shard_cpu = cpu_seconds([shard_process]) - before
        shard_rate = calls / wall
        per_core = calls / shard_cpu if shard_cpu else float("nan")
        print(
            f"shard reads: {shard_rate:,.0f} calls/s from {IN_FLIGHT} in flight, "
            f"{shard_cpu / wall:.2f} cores busy -> {per_core:,.0f} calls per CPU second"
        )

        # API reads per replica.
        serve.run(build(overrides), name="api", route_prefix="/")
        people = []
        with httpx.Client(base_url=platform.url, timeout=60) as http:
            for n in range(args.clients):
                headers = platform.login(http, n)
                people.append(Request("GET", f"/api/v1/portfolios/{owners[n][1]}", headers))
                http.get(f"/api/v1/portfolios/{owners[n][1]}", headers=headers).raise_for_status()
        replicas = my_processes("ApiIngress")
        asyncio.run(run(platform.url, people, seconds=2, clients=args.clients))
        before = cpu_seconds(replicas)
        result = asyncio.run(run(platform.url, people, seconds=args.seconds, clients=args.clients))
        replica_cpu = cpu_seconds(replicas) - before
        api_per_core = result.requests / replica_cpu if replica_cpu else float("nan")
        print(
            f"API reads, 1 replica: {result.line('GET portfolio')}, {result.errors} errors, "
            f"replica {replica_cpu / result.seconds:.2f} cores busy -> "
            f"{api_per_core:,.0f} requests per CPU second"
        )
        snapshot_bytes = redis_bytes(
            overrides["redis_url"], [snapshot_key(u, p) for u, p in owners[: args.clients]]
        )
        print(f"Redis: {snapshot_bytes:,.0f} bytes per cached portfolio snapshot")
        serve.delete("api")
        ray.kill(shard, no_restart=True)

    print_figures(
        {
            "books": points[-1][0],
            "lots_per_book": args.lots,
            "memory_steps": {str(b): {"rss_mib": r / 2**20, "uss_mib": u / 2**20} for b, r, u in points},
            "rss_kib_per_book": rss_per_book / 1024,
            "uss_kib_per_book": uss_per_book / 1024,
            "marginal_rss_kib_per_book": marginal_kib,
            "shard_base_rss_mib": rss_base / 2**20,
            "shard_base_uss_mib": uss_base / 2**20,
            "shard_read_calls_per_s": shard_rate,
            "shard_cores_busy": shard_cpu / wall,
            "shard_read_calls_per_cpu_s": per_core,
            **result.figures("reads", "api_"),
            "api_errors": result.errors,
            "postgres_bytes_per_investor": stored / len(owners),
            "redis_snapshot_bytes": snapshot_bytes,
            "api_replica_cores_busy": replica_cpu / result.seconds,
            "api_reads_per_replica_cpu_s": api_per_core,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
