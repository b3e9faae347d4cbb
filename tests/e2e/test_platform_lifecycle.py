"""`wealthalloc serve` (what `make run` runs) brings the whole platform up, once, and `stop` takes it down.

Runs on its own ports and data directory so it never touches a platform a
developer has running, and stops only the Ray it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest


def _cli(*args: str, env: dict[str, str], timeout: int = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wealthalloc.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env["WEALTHALLOC_DATA_DIR"],
    )


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
    _cli("stop", env=env, timeout=120)


def test_serve_comes_up_healthy_refuses_a_second_start_and_stops(platform_env: dict[str, str]) -> None:
    up = _cli("serve", env=platform_env)
    assert up.returncode == 0, up.stdout + up.stderr
    api = f"http://127.0.0.1:{platform_env['WEALTHALLOC_HTTP_PORT']}"
    assert api in up.stdout
    assert "demo@wealthalloc.dev" in up.stdout and "Demo-Investor-2026" in up.stdout

    health = httpx.get(f"{api}/health", timeout=10)
    assert health.status_code == 200
    assert all(c["status"] == "healthy" for c in health.json()["data"]["checks"].values())
    dashboard = httpx.get(f"http://127.0.0.1:{platform_env['WEALTHALLOC_DASHBOARD_PORT']}", timeout=10)
    assert dashboard.status_code == 200

    again = _cli("serve", env=platform_env, timeout=60)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: WealthAlloc is already running at {api} (stop it with `make stop`)"
    ]

    down = _cli("stop", env=platform_env, timeout=120)
    assert down.returncode == 0, down.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/health", timeout=3)
    import psutil

    stats = int(platform_env["WEALTHALLOC_HAPROXY_STATS_PORT"])
    assert not [
        c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == stats and c.status == "LISTEN"
    ]
