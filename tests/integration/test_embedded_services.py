"""With nothing configured answering, `make run` brings its own PostgreSQL and Redis."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis

from wealthalloc.runtime import services


def test_a_reachable_configured_server_is_used_as_it_is(tmp_path: Path) -> None:
    resolved = services.resolve_redis("redis://127.0.0.1:6379/13", tmp_path, allow_embedded=True)
    assert resolved == services.ResolvedService(url="redis://127.0.0.1:6379/13", embedded=False)
    assert not (tmp_path / "redis").exists()


def test_an_unreachable_server_without_embedding_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(services.ServiceError, match="does not answer"):
        services.resolve_postgres("postgresql://postgres@127.0.0.1:1/x", tmp_path, allow_embedded=False)


def test_embedded_redis_starts_under_the_data_dir_and_stops(tmp_path: Path) -> None:
    resolved = services.resolve_redis("redis://127.0.0.1:1/0", tmp_path, allow_embedded=True)
    try:
        assert resolved.embedded and resolved.url.startswith("unix://")
        client = redis.Redis.from_url(resolved.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
        again = services.embedded_redis(tmp_path)
        assert again.url == resolved.url  # a second start finds the running one
    finally:
        assert services.stop_embedded_redis(tmp_path)
    assert services.redis_problem(resolved.url) is not None


def test_embedded_postgres_starts_under_the_data_dir_and_stops(tmp_path: Path) -> None:
    from wealthalloc.storage.migrate import ensure_database, migrate

    resolved = services.resolve_postgres(
        "postgresql://postgres@127.0.0.1:1/wealthalloc", tmp_path, allow_embedded=True
    )
    try:
        assert resolved.embedded
        assert (tmp_path / "postgres" / "PG_VERSION").exists()
        ensure_database(resolved.url)
        report = migrate(resolved.url)
        assert report.applied
        with psycopg.connect(resolved.url) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(report.applied),)
    finally:
        assert services.stop_embedded_postgres(tmp_path)
    assert services.postgres_problem(resolved.url) is not None
