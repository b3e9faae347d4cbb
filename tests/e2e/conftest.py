"""A platform of its own for each end-to-end test: started through the CLI, on its own ports and data
directory, so it never touches a platform a developer has running and stops only the Ray it started."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.operator import cli


@pytest.fixture
def platform_env(
    tmp_path: Path, database_url: str, session_redis_url: str, unused_port: Callable[[], int]
) -> Iterator[dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WEALTHALLOC_", "RAY_"))}
    env = {
        **base,
        "WEALTHALLOC_DATA_DIR": str(tmp_path),
        "WEALTHALLOC_DATABASE_URL": database_url,
        "WEALTHALLOC_REDIS_URL": session_redis_url,
        "WEALTHALLOC_HTTP_PORT": str(unused_port()),
        "WEALTHALLOC_DASHBOARD_PORT": str(unused_port()),
        "WEALTHALLOC_RAY_PORT": str(unused_port()),
        "WEALTHALLOC_HAPROXY_STATS_PORT": str(unused_port()),
        "WEALTHALLOC_HAPROXY_METRICS_PORT": str(unused_port()),
        "WEALTHALLOC_BCRYPT_ROUNDS": "4",
    }
    yield env
    cli("stop", env=env, timeout=120)


def serve_cluster(platform_env: dict[str, str], data_dir: Path, **extra: str) -> dict[str, str]:
    """Start the head and two worker nodes on the session's migrated database, prices and promoted
    model (``extra`` overrides settings); the environment the CLI needs to reach them."""
    home = Path(platform_env["WEALTHALLOC_DATA_DIR"])
    (home / "prices").symlink_to(data_dir / "prices")
    env = {**platform_env, "WEALTHALLOC_MODEL_REGISTRY_URI": str(data_dir / "models"), **extra}
    up = cli("serve", "--workers", "2", "--skip-setup", env=env)
    if up.returncode != 0:
        cli("stop", env=env, timeout=120)  # what did start must not slow the tests after this one
    assert up.returncode == 0, up.stdout + up.stderr
    assert "head and 2 worker node(s)" in up.stdout
    return env
