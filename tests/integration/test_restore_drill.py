"""The restore drill: what a disaster-recovery runbook promises, done end to end.

An investor registers, deposits and buys through the API; the operator backs
up, restores into a fresh database and a fresh Redis, and starts the platform
on them. The restored platform must show the same balances, lots and orders,
and the audit chain must verify with the same hashes. The drill's timing is
printed, because "how long does a restore take" is what an operator needs to
know before the day it matters.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import _wait_for, create_database, drop_database, free_port, stop_app
from tests.integration.people import PASSWORD, Investor, data
from tests.integration.test_cli import run_cli

# Half a minute, most of it a second platform starting on the restored database: `make test-all`
# runs it; `make test` keeps tests/integration/test_backup.py, which restores rows and registry.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def fresh_redis() -> Iterator[str]:
    """An empty Redis of its own, as after losing the cache in a disaster."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def restored_url() -> Iterator[str]:
    """The name of a database that does not exist yet; the restore creates it."""
    url = create_database("wealthalloc_drill")
    drop_database(url)
    try:
        yield url
    finally:
        drop_database(url)


def _login(http: httpx.Client, email: str, ip: str) -> dict[str, str]:
    response = http.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, headers={"X-Forwarded-For": ip}
    )
    tokens = data(response)
    return {"Authorization": f"Bearer {tokens['access_token']}", "X-Forwarded-For": ip}


def _books(http: httpx.Client, headers: dict[str, str], portfolio_id: str) -> dict[str, Any]:
    """What an investor sees of their money: the portfolio (cash, holdings), lots and orders."""
    return {
        "portfolio": data(http.get(f"/api/v1/portfolios/{portfolio_id}", headers=headers)),
        "lots": data(http.get(f"/api/v1/portfolios/{portfolio_id}/lots", headers=headers)),
        "orders": data(http.get("/api/v1/trades", headers=headers)),
    }


def _audit_rows(url: str, actor_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT sequence, action, subject, prev_hash, hash FROM audit_log WHERE actor_id = %s"
            " ORDER BY sequence",
            (actor_id,),
        ).fetchall()


def _settled_audit_rows(url: str, actor_id: str) -> list[tuple[Any, ...]]:
    """The actor's audit entries once the consumer that writes them has caught up (no change for 2 s)."""
    deadline = time.monotonic() + 60
    rows, stable_since = _audit_rows(url, actor_id), time.monotonic()
    while time.monotonic() - stable_since < 2:
        assert time.monotonic() < deadline, "the audit trail never settled"
        time.sleep(0.25)
        latest = _audit_rows(url, actor_id)
        if latest != rows:
            rows, stable_since = latest, time.monotonic()
    assert rows, "the investor's actions left no audit entries"
    return rows


def _cli_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "WEALTHALLOC_DATABASE_URL": database_url,
        "WEALTHALLOC_DATA_DIR": str(data_dir),
        "WEALTHALLOC_EMBEDDED_SERVICES": "false",
    }


def test_a_restored_backup_serves_the_same_balances_lots_orders_and_audit_chain(
    api_url: str,
    api_settings: dict[str, Any],
    database_url: str,
    data_dir: Path,
    fresh_redis: str,
    restored_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ray import serve

    from serve_apps.api.deployment import build

    with httpx.Client(base_url=api_url, timeout=30) as http:
        investor = Investor(http, database_url)
        p = investor.funded("25000.00")
        bought = investor.trade(p["id"], symbol="AAPL", side="buy", quantity="12")
        assert bought.status_code == 201 and data(bought, 201)["status"] == "filled", bought.text
        assert investor.trade(p["id"], symbol="KO", side="buy", quantity="30").status_code == 201
        before = _books(http, investor.headers, str(p["id"]))
    assert len(before["lots"]) == 2 and len(before["orders"]) == 2
    audit_before = _settled_audit_rows(database_url, investor.id)

    timings: dict[str, float] = {}
    started = time.perf_counter()
    backups = tmp_path / "backups"
    source = _cli_env(database_url, data_dir)
    created = run_cli("backup", "create", "--dir", str(backups), env=source)
    assert created.returncode == 0, created.stderr
    timings["backup"] = time.perf_counter() - started

    mark = time.perf_counter()
    verified = run_cli("backup", "verify", "latest", "--dir", str(backups), env=source)
    assert verified.returncode == 0, verified.stderr
    registry = tmp_path / "restored-models"
    restored = run_cli(
        "backup", "restore", "latest", "--dir", str(backups),
        "--database-url", restored_url, "--registry-dir", str(registry), env=source,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "wealthalloc migrate" not in restored.stdout  # the schema came back current
    audit = run_cli("audit", "verify", env=_cli_env(restored_url, data_dir))
    assert audit.returncode == 0 and "audit chain intact" in audit.stdout, audit.stderr
    # The same entries with the same hashes (a consumer may have appended more before the dump).
    assert _audit_rows(restored_url, investor.id)[: len(audit_before)] == audit_before
    timings["verify_restore_audit"] = time.perf_counter() - mark

    mark = time.perf_counter()
    namespace = f"drill-{uuid.uuid4().hex[:6]}"
    overrides = {
        **api_settings,
        "database_url": restored_url,
        "redis_url": fresh_redis,
        "model_registry_uri": str(registry),
        "ray_namespace": namespace,
        "num_replicas": 1,
    }
    serve.run(build(overrides), name="api-drill", route_prefix="/drill", blocking=False)
    try:
        base = f"{api_url}/drill"
        _wait_for(base + "/health")
        with httpx.Client(base_url=base, timeout=30) as http:
            deadline = time.monotonic() + 90
            while http.get("/health").status_code != 200:
                assert time.monotonic() < deadline, http.get("/health").text
                time.sleep(0.5)
            timings["platform_start"] = time.perf_counter() - mark
            mark = time.perf_counter()
            headers = _login(http, investor.email, investor.ip)
            after = _books(http, headers, str(p["id"]))
        timings["compare"] = time.perf_counter() - mark
    finally:
        stop_app("api-drill", namespace)

    assert after["portfolio"]["cash_balance"] == before["portfolio"]["cash_balance"] != "25000.00"
    assert after["portfolio"] == before["portfolio"]
    assert after["lots"] == before["lots"]
    assert after["orders"] == before["orders"]
    timings["total"] = time.perf_counter() - started
    with capsys.disabled():
        print(
            "\nrestore drill: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in timings.items())
        )
