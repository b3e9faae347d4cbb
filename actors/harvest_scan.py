"""The daily harvest scan, a Ray job: every user's harvesting opportunities refreshed and announced.

Run it once a market day (cron, a Kubernetes CronJob, or by hand)::

    ray job submit --working-dir . -- python -m actors.harvest_scan [--day 2022-11-25] [--batch-size 500]
    wealthalloc tax scan [--day ...] [--batch-size ...] [--no-ray]

The driver pages through the users by id (keyset pagination, so users signing
up meanwhile shift nothing) and hands each page to a Ray task; at most
``max_in_flight`` pages are scanned at once, which bounds both the cluster
share the scan takes and the database connections it opens (one small pool
per task). A task builds its own harvest planner (prices and the similarity
engine of the day, computed once per task) and refreshes each user of its
page in one transaction of its own: the user's opportunities
(``tax_harvests`` rows with stable ids) and the ``tax_harvests.identified``
event of each position identified for the first time, through the outbox.

Idempotent per user per day: the transaction first claims the (user, day) row
of ``harvest_scans``, so a rerun of the same day, a retried task or two
drivers started by mistake skip the users already done. A task that dies
mid-page loses nothing acknowledged: the users it committed stay claimed, Ray
retries the task, and the rest are scanned then.

The scan reads and writes PostgreSQL only; it does not go through the
portfolio shards, because it changes no book (lots, cash, orders): an
opportunity is advice, and executing one goes through the owning shard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import ray

from wealthalloc.config import Settings
from wealthalloc.logging import configure_logging, get_logger
from wealthalloc.marketdata import MarketClock, PriceHistory, SecurityReference
from wealthalloc.storage import tax as tax_store
from wealthalloc.storage.postgres import async_pool
from wealthalloc.tax.harvesting import HarvestPlanner, refresh_user

log = get_logger(__name__)

# Settings a scan task must not receive: it signs nothing.
_PRIVATE = {"secret_key", "jwt_previous_keys"}


@dataclass(frozen=True)
class BatchResult:
    """What one page of users gave: scanned now, skipped (already scanned that day, or gone)."""

    users: int
    scanned: int
    skipped: int
    opportunities: int
    events: int
    expired: int


@dataclass(frozen=True)
class ScanReport:
    """The whole run, summed over its pages."""

    day: date
    batches: int
    users: int
    scanned: int
    skipped: int
    opportunities: int
    events: int
    expired: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out


async def scan_users(settings: Settings, user_ids: Sequence[uuid.UUID], day: date) -> BatchResult:
    """Refresh the opportunities of ``user_ids`` for ``day``, each user in a transaction of its own."""
    planner = HarvestPlanner(
        prices=PriceHistory(settings.prices_dir),
        securities=SecurityReference(),
        min_loss=settings.harvest_min_loss,
        min_loss_pct=settings.harvest_min_loss_pct,
    )
    pool = async_pool(settings, name="harvest-scan")
    await pool.open()
    scanned = skipped = opportunities = events = expired = 0
    try:
        for user_id in user_ids:
            result = await refresh_user(pool, planner, user_id, day, daily_scan=True)
            if result is None:
                skipped += 1
                continue
            scanned += 1
            opportunities += len(result.opportunities)
            events += result.new
            expired += result.expired
    finally:
        await pool.close()
    return BatchResult(
        users=len(user_ids),
        scanned=scanned,
        skipped=skipped,
        opportunities=opportunities,
        events=events,
        expired=expired,
    )


def _scan_batch(overrides: dict[str, Any], user_ids: list[str], day: str) -> BatchResult:
    settings = Settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    return asyncio.run(scan_users(settings, [uuid.UUID(u) for u in user_ids], date.fromisoformat(day)))


# max_retries: a task killed mid-page is run again; the users it committed are skipped then.
scan_batch = ray.remote(max_retries=3)(_scan_batch)


async def _user_pages(settings: Settings, batch_size: int) -> list[list[uuid.UUID]]:
    pool = async_pool(settings, name="harvest-scan-driver")
    await pool.open()
    pages: list[list[uuid.UUID]] = []
    try:
        after: uuid.UUID | None = None
        while True:
            async with pool.connection() as conn:
                page = await tax_store.user_ids_after(conn, after, batch_size)
            if not page:
                return pages
            pages.append(page)
            after = page[-1]
    finally:
        await pool.close()


def market_today(settings: Settings) -> date:
    """The market day the platform lives on (the clock the shards and the API use)."""
    prices = PriceHistory(settings.prices_dir)
    return MarketClock(prices.trading_days(), pinned=settings.market_clock_date).today()


def run(
    settings: Settings,
    *,
    day: date | None = None,
    batch_size: int = 500,
    max_in_flight: int = 4,
    use_ray: bool = True,
    task_cpus: float = 1.0,
) -> ScanReport:
    """Scan every user for ``day`` (the market's today by default) and sum what the pages did.

    Parameters
    ----------
    settings : Settings
        Database, data directory and the harvesting thresholds.
    day : date, optional
        The market day to scan for.
    batch_size : int
        Users per Ray task.
    max_in_flight : int
        Pages scanned at once.
    use_ray : bool
        Run the pages as Ray tasks on the cluster this process is connected to (``ray.init``
        first); without it, run them one after the other in this process.
    task_cpus : float
        CPUs a task asks Ray for.
    """
    started = time.monotonic()
    day = day or market_today(settings)
    pages = asyncio.run(_user_pages(settings, batch_size))
    results: list[BatchResult] = []
    if use_ray:
        overrides = settings.model_dump(mode="json", exclude=_PRIVATE)
        remote = scan_batch.options(num_cpus=task_cpus)
        waiting: list[Any] = []
        for page in pages:
            if len(waiting) >= max_in_flight:
                done, waiting = ray.wait(waiting, num_returns=1)
                results.extend(ray.get(done))
            waiting.append(remote.remote(overrides, [str(u) for u in page], day.isoformat()))
        results.extend(ray.get(waiting))
    else:
        for page in pages:
            results.append(asyncio.run(scan_users(settings, page, day)))
    report = ScanReport(
        day=day,
        batches=len(pages),
        users=sum(r.users for r in results),
        scanned=sum(r.scanned for r in results),
        skipped=sum(r.skipped for r in results),
        opportunities=sum(r.opportunities for r in results),
        events=sum(r.events for r in results),
        expired=sum(r.expired for r in results),
        seconds=round(time.monotonic() - started, 3),
    )
    log.info("harvest_scan_done", **report.as_dict())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m actors.harvest_scan", description="The daily tax-loss harvesting scan over all users."
    )
    parser.add_argument("--day", type=date.fromisoformat, help="Market day to scan for (default: today's).")
    parser.add_argument("--batch-size", type=int, default=500, help="Users per Ray task.")
    parser.add_argument("--max-in-flight", type=int, default=4, help="Ray tasks running at once.")
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)."
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.max_in_flight < 1:
        parser.error("--batch-size and --max-in-flight must be at least 1")
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if not ray.is_initialized():
        ray.init(address=args.address, namespace=settings.ray_namespace, log_to_driver=False)
    report = run(settings, day=args.day, batch_size=args.batch_size, max_in_flight=args.max_in_flight)
    print(json.dumps(report.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
