"""`wealthalloc serve` (what `make run` runs) brings the whole platform up, once, and `stop` takes it down.

Runs on its own ports and data directory so it never touches a platform a
developer has running, and stops only the Ray it started.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.operator import cli


def test_serve_comes_up_healthy_refuses_a_second_start_and_stops(
    platform_env: dict[str, str], data_dir: Path, promoted_model: str
) -> None:
    # The session's promoted model: training the default one is test_training's to prove, and costs
    # half a minute here.
    platform_env["WEALTHALLOC_MODEL_REGISTRY_URI"] = str(data_dir / "models")
    up = cli("serve", env=platform_env)
    assert up.returncode == 0, up.stdout + up.stderr
    api = f"http://127.0.0.1:{platform_env['WEALTHALLOC_HTTP_PORT']}"
    assert api in up.stdout
    assert "demo@wealthalloc.dev" in up.stdout and "Demo-Investor-2026" in up.stdout
    assert f"Model:      {promoted_model} promoted" in up.stdout

    anonymous = httpx.get(f"{api}/health", timeout=10)
    assert anonymous.status_code == 200 and anonymous.json()["data"]["status"] == "healthy"
    assert "checks" not in anonymous.json()["data"]
    token = (Path(platform_env["WEALTHALLOC_DATA_DIR"]) / "operations_token").read_text().strip()
    health = httpx.get(f"{api}/health", timeout=10, headers={"Authorization": f"Bearer {token}"})
    assert health.status_code == 200
    assert all(c["status"] == "healthy" for c in health.json()["data"]["checks"].values())
    _the_haproxy_ingress_answers_in_the_envelope(api, int(platform_env["WEALTHALLOC_HAPROXY_STATS_PORT"]))
    dashboard = httpx.get(f"http://127.0.0.1:{platform_env['WEALTHALLOC_DASHBOARD_PORT']}", timeout=10)
    assert dashboard.status_code == 200

    again = cli("serve", env=platform_env, timeout=60)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: WealthAlloc is already running at {api} (stop it with `make stop`)"
    ]

    down = cli("stop", env=platform_env, timeout=120)
    assert down.returncode == 0, down.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/health", timeout=3)
    import psutil

    stats = int(platform_env["WEALTHALLOC_HAPROXY_STATS_PORT"])
    assert not [
        c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == stats and c.status == "LISTEN"
    ]


def _the_haproxy_ingress_answers_in_the_envelope(api: str, stats_port: int) -> None:
    """Through Serve's HAProxy: a 100 KB header gets the API's 431 envelope with a request id, a
    client's malformed request id is replaced, and the configuration HAProxy runs carries the JSON
    answers for its own errors (wealthalloc/runtime/haproxy_errors.py)."""
    import re

    import psutil

    from wealthalloc.runtime.haproxy_errors import MARKER

    big = httpx.get(f"{api}/api/v1/market/clock", headers={"X-Padding": "a" * 100_000}, timeout=10)
    assert big.status_code == 431, big.text[:300]
    assert big.headers["content-type"].startswith("application/json")
    assert big.json()["error"]["request_id"] == big.headers["x-request-id"]
    hostile = httpx.get(f"{api}/health/live", headers={"X-Request-ID": "<script>x</script>"}, timeout=10)
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", hostile.headers["x-request-id"])
    assert hostile.json()["meta"]["request_id"] == hostile.headers["x-request-id"]
    (haproxy,) = {
        psutil.Process(c.pid)
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == stats_port and c.status == "LISTEN" and c.pid
    }
    args = haproxy.cmdline()
    assert MARKER in Path(args[args.index("-f") + 1]).read_text()


def test_a_start_up_that_fails_after_ray_started_stops_ray_and_leaves_nothing_running(
    platform_env: dict[str, str], empty_database_url: str
) -> None:
    """A database without the schema (``--skip-setup``) never answers ready: `serve` gives up after
    its health timeout, and then stops the Ray, Serve and HAProxy it had started, so neither the
    ports nor a stale state file stand in the way of the next `make run`."""
    platform_env["WEALTHALLOC_DATABASE_URL"] = empty_database_url
    up = cli("serve", "--skip-setup", "--health-timeout", "3", env=platform_env, timeout=300)

    assert up.returncode == 1, up.stdout + up.stderr
    assert "Ray:        started at" in up.stdout
    assert "Start-up failed: stopping what it started." in up.stdout
    assert "Ray and Serve stopped" in up.stdout
    assert up.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (Path(platform_env["WEALTHALLOC_DATA_DIR"]) / "runtime.json").exists()
    import psutil

    ports = {
        int(platform_env[name])
        for name in ("WEALTHALLOC_HTTP_PORT", "WEALTHALLOC_RAY_PORT", "WEALTHALLOC_HAPROXY_STATS_PORT")
    }
    listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.laddr and c.status == "LISTEN"}
    assert not ports & listening
