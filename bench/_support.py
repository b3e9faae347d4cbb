"""What the benchmarks share besides load: free ports, a throwaway migrated database, a platform."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wealthalloc.runtime.launcher import free_port

if TYPE_CHECKING:
    import httpx

ADMIN_URL = os.environ.get(
    "WEALTHALLOC_TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("WEALTHALLOC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def print_figures(figures: Mapping[str, object]) -> None:
    """Print the figures as one JSON object, a bench's last line: floats to 3 places, NaN as null."""

    def plain(value: object) -> object:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, float):
            return round(value, 3) if math.isfinite(value) else None
        return value

    print(json.dumps(plain(figures), allow_nan=False), flush=True)


def phase(what: str) -> None:
    """Say on stderr which part of a run is being measured (stdout stays the figures alone)."""
    print(f"measuring {what}", file=sys.stderr, flush=True)


@contextmanager
def temporary_database() -> Iterator[str]:
    """A new database with the schema applied, dropped afterwards whatever happened."""
    import psycopg
    from psycopg import sql

    from wealthalloc.storage.migrate import migrate

    name = f"wealthalloc_bench_{uuid.uuid4().hex[:8]}"

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = ADMIN_URL.rpartition("/")[0] + f"/{name}"
        migrate(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


PASSWORD = "a long bench passphrase 2026"


@dataclass(frozen=True)
class Platform:
    """A local Ray with Serve listening at ``url``, on a throwaway database with ``users`` bench users."""

    url: str
    database_url: str
    overrides: dict[str, str]

    def login(self, http: httpx.Client, n: int) -> dict[str, str]:
        """The Authorization header of bench user ``n``."""
        answer = http.post(
            "/api/v1/auth/login", json={"email": f"bench-{n}@example.com", "password": PASSWORD}
        )
        return {"Authorization": f"Bearer {answer.json()['data']['access_token']}"}


@contextmanager
def bench_platform(users: int) -> Iterator[Platform]:
    """Everything an API benchmark deploys on: market data, a migrated database with premium users,
    settings without rate limits, and Ray with Serve started (the caller deploys the app).

    Serve runs behind HAProxy in throughput mode, as `make run` does.
    """
    from wealthalloc.marketdata import load_bundled_datasets
    from wealthalloc.security.passwords import hash_password

    data_dir = Path(tempfile.mkdtemp(prefix="wealthalloc-bench-"))
    load_bundled_datasets(data_dir / "prices", progress=False)
    os.environ.update(
        RAY_SERVE_ENABLE_HA_PROXY="1",
        RAY_SERVE_THROUGHPUT_OPTIMIZED="1",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_SERVE_HAPROXY_STATS_PORT=str(free_port()),
        RAY_SERVE_HAPROXY_METRICS_PORT=str(free_port()),
    )
    import psycopg
    import ray
    import redis
    from ray import serve

    # Each run has a database of its own; the streams, consumer groups and pending lists an earlier
    # run left in the bench's Redis database belong to a database that is gone.
    with redis.Redis.from_url(REDIS_URL) as client:
        client.flushdb()
    with temporary_database() as database_url:
        password_hash = hash_password(PASSWORD, rounds=4)
        with psycopg.connect(database_url) as conn:
            for n in range(users):
                conn.execute(
                    "INSERT INTO users (email, password_hash, tier) VALUES (%s, %s, 'premium')",
                    (f"bench-{n}@example.com", password_hash),
                )
        overrides = {
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "data_dir": str(data_dir),
            "log_level": "WARNING",
            "secret_key": "b" * 48,
            "rate_limit_premium": str(10**9),
            "login_ip_per_minute": str(10**9),
            "bcrypt_rounds": "4",
            "ray_namespace": f"bench-{uuid.uuid4().hex[:6]}",
        }
        port = free_port()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            yield Platform(url=f"http://127.0.0.1:{port}", database_url=database_url, overrides=overrides)
        finally:
            serve.shutdown()
            ray.shutdown()
