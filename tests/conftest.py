"""Fixtures for every test, in one place.

Unit tests need none of the services. Integration tests get a fresh PostgreSQL
database for the whole test session (created from ``WEALTHALLOC_TEST_DATABASE_ADMIN_URL``
and dropped at the end), a Redis database index of their own that is flushed,
and a real local Ray with the API deployed on Ray Serve.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from wealthalloc.runtime.launcher import free_port

# Fixtures that several integration modules share, kept beside the helpers they use.
pytest_plugins = ["tests.integration.stream_client"]

ADMIN_URL = os.environ.get(
    "WEALTHALLOC_TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BROKER_WEBHOOK_SECRET = "test-broker-webhook-secret-0123456789abcdef"
TEST_REDIS_URL = os.environ.get("WEALTHALLOC_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
# The session's platform (its relay, event bus and stream hubs) runs for the whole session, so it
# gets a database of its own: a test that flushes TEST_REDIS_URL must not see the platform's events
# in its streams, nor take the platform's consumer groups away.
SESSION_REDIS_URL = os.environ.get("WEALTHALLOC_TEST_SESSION_REDIS_URL", "redis://127.0.0.1:6379/14")
OPERATIONS_TOKEN = "test-operations-token-0123456789abcdef"
OPERATOR = {"Authorization": f"Bearer {OPERATIONS_TOKEN}"}


def _database_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def create_database(prefix: str = "wealthalloc_test") -> str:
    """Create an empty database with a unique name and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _database_url(name)


def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database with nothing in it, dropped after the test."""
    url = create_database("wealthalloc_empty")
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with the bundled market data converted to Parquet."""
    from wealthalloc.marketdata import load_bundled_datasets

    path = tmp_path_factory.mktemp("data")
    load_bundled_datasets(path / "prices", progress=False)
    return path


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated database shared by the integration tests of one session."""
    from wealthalloc.storage.migrate import migrate

    url = create_database()
    try:
        migrate(url)
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database index, flushed before and after each test."""
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    try:
        yield TEST_REDIS_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def session_redis_url() -> Iterator[str]:
    """The Redis database of fixtures that live as long as the session, apart from `redis_url`'s."""
    import redis

    assert SESSION_REDIS_URL != TEST_REDIS_URL, "the session's Redis database must differ from the tests'"
    client = redis.Redis.from_url(SESSION_REDIS_URL)
    client.flushdb()
    try:
        yield SESSION_REDIS_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A real local Ray for the session (no dashboard: tests need none and it costs start-up time)."""
    import ray

    from serve_apps.api.proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV

    ray.init(
        address="local",  # a new cluster, never one `make run` left behind
        num_cpus=2,
        include_dashboard=False,
        namespace=f"wealthalloc-test-{uuid.uuid4().hex[:6]}",
        log_to_driver=False,
        # Every 2 s instead of Ray's 10: the metrics tests wait for what processes report to the agent.
        _system_config={"metrics_report_interval_ms": 2000},
        runtime_env={
            "env_vars": {
                "RAY_USAGE_STATS_ENABLED": "0",
                # Serve's HTTP proxy checks a client's X-Request-ID before echoing it, as in production.
                PROXY_CALLBACK_ENV: PROXY_CALLBACK,
            }
        },
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def api_settings(database_url: str, session_redis_url: str, data_dir: Path) -> dict[str, Any]:
    """Settings overrides that point a deployment at the test session's services."""
    return {
        "environment": "test",
        "database_url": database_url,
        "redis_url": session_redis_url,
        "data_dir": str(data_dir),
        "bcrypt_rounds": "4",
        # Tests speak for many clients by setting X-Forwarded-For, as a load balancer would.
        "trusted_proxy_hops": "1",
        "secret_key": "test-secret-key-0123456789abcdef0123456789",
        "log_level": "WARNING",
        # Webhook receivers in tests listen on loopback, which production refuses unless allowed, each
        # on a port picked when its test starts (after this deployment): any port but the platform's.
        "webhook_allowed_hosts": ["127.0.0.1:*"],
        # What Prometheus and `wealthalloc doctor` send for /metrics and /health's details.
        "operations_token": OPERATIONS_TOKEN,
        # The broker's signed order news arrives at /api/v1/webhooks/incoming/broker.
        "webhook_incoming_secrets": {"broker": [BROKER_WEBHOOK_SECRET]},
        # The anomaly detector: no CPU reservation (the test Ray has two, the API replicas take them),
        # a short poll so hot reload shows within a test, a batch wait long enough to merge a burst.
        "anomaly_num_cpus": "0",
        "anomaly_poll_seconds": "1",
        "anomaly_batch_wait_timeout_s": "0.05",
    }


def tiny_model_recipe(seed: int = 0) -> Any:
    """A DefaultModelRecipe small enough to train in seconds: two symbols, 20-day windows, one epoch."""
    from datetime import date

    from training.default_model import DefaultModelRecipe
    from wealthalloc.ml.autoencoder import AutoencoderConfig
    from wealthalloc.ml.features import FeatureSpec, TimeSplit

    return DefaultModelRecipe(
        symbols=("AAPL", "KO"),
        split=TimeSplit(
            train_start=date(2016, 1, 1),
            train_end=date(2018, 12, 31),
            validation_end=date(2019, 12, 31),
            test_end=date(2022, 12, 31),
        ),
        spec=FeatureSpec(window=20),
        config=AutoencoderConfig(
            window=20, units=8, latent=2, dropout=0.0, batch_size=64, epochs=1, patience=1, seed=seed
        ),
        stride=2,
        evaluate=False,
    )


@pytest.fixture(scope="session")
def promoted_model(data_dir: Path) -> str:
    """A tiny anomaly model trained on the bundled prices and promoted in the session's registry.

    Trained before the API is deployed (``api_url`` depends on it), so the
    AnomalyDetector loads it on start and /health's model check is healthy.
    """
    from training.default_model import ensure_default_model
    from wealthalloc.config import Settings
    from wealthalloc.ml.registry import ModelRegistry

    settings = Settings(data_dir=data_dir, model_registry_uri="")
    version = ensure_default_model(settings, progress=False, recipe=tiny_model_recipe())
    promoted = version or ModelRegistry(settings.registry_uri).promoted()
    assert promoted is not None
    return promoted


@pytest.fixture(scope="session")
def api_url(ray_local: None, api_settings: dict[str, str], promoted_model: str) -> str:
    """The API deployed on Ray Serve, as a client reaches it over HTTP."""
    from ray import serve

    from serve_apps.api.deployment import build

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build(dict(api_settings)), name="api", route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}"
    _wait_for(url + "/health")
    return url


def stop_app(app: str, namespace: str | None = None) -> None:
    """Delete a Serve app a test module deployed, and every actor of its own Ray namespace.

    The platform's actors are detached: they outlive the app that started them. Left running, a
    module's shards, gateway and event bus keep polling and sweeping for the rest of the session
    and slow every test after it.
    """
    import ray
    from ray import serve

    serve.delete(app)
    if namespace is None:
        return
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == namespace:
            try:
                ray.kill(ray.get_actor(actor["name"], namespace=namespace), no_restart=True)
            except ValueError:  # gone meanwhile
                pass


def _wait_for(url: str, timeout_s: float = 90) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout_s} s")


@pytest.fixture
def http(api_url: str) -> Iterator[httpx.Client]:  # noqa: F821 - imported lazily
    import httpx

    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture
def unused_port() -> Callable[[], int]:
    """A function that returns a loopback port nothing listens on right now."""
    return free_port
