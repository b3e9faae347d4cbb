"""The platform on a three-node Ray cluster (`make cluster`): spread over the nodes, and losing a worker
node while money moves loses nothing, doubles nothing, and leaves Serve answering.

The nodes are separate raylets on this machine, started by `wealthalloc serve --workers 2`; losing
one is `wealthalloc cluster kill-node`, a SIGKILL of its raylet and every worker process it owns.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.conftest import serve_cluster
from tests.e2e.operator import cli
from tests.integration.people import Investor
from wealthalloc.config import Settings
from wealthalloc.domain.sharding import shard_name, shard_of
from wealthalloc.runtime.cluster_view import API_REPLICA_CLASS, SHARD_CLASS, ClusterView
from wealthalloc.runtime.launcher import RuntimeState
from wealthalloc.storage.ledger_check import check_ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(platform_env: dict[str, str], data_dir: Path, promoted_model: str) -> Iterator[dict[str, str]]:
    """Head and two worker nodes, serving the session's migrated database and its promoted model."""
    env = serve_cluster(platform_env, data_dir)
    yield env
    down = cli("stop", env=env, timeout=120)
    assert "2 Ray worker node(s) stopped" in down.stdout, down.stdout + down.stderr


def view(env: dict[str, str]) -> ClusterView:
    status = cli("cluster", "status", "--json", env=env, timeout=60)
    assert status.returncode == 0, status.stderr
    return ClusterView.from_json(status.stdout.strip().splitlines()[-1])


def worker_nodes(env: dict[str, str]) -> dict[str, int]:
    """Worker node ids by their number, as `cluster kill-node` takes it."""
    state = RuntimeState.load(Path(env["WEALTHALLOC_DATA_DIR"]))
    assert state is not None
    by_port = {worker.node_manager_port: worker.index for worker in state.workers}
    return {
        n.node_id: by_port[n.node_manager_port] for n in view(env).nodes if n.node_manager_port in by_port
    }


def until(what: str, check: Callable[[], bool], timeout_s: float = 90) -> float:
    """Seconds until ``check()`` holds; fails the test naming ``what`` when it never does."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if check():
                return time.monotonic() - started
        except (httpx.HTTPError, AssertionError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen in {timeout_s:.0f} s")


def test_a_three_node_cluster_spreads_the_platform_and_survives_losing_the_node_of_a_users_shard(
    cluster: dict[str, str], database_url: str
) -> None:
    api = f"http://127.0.0.1:{cluster['WEALTHALLOC_HTTP_PORT']}"
    placed = view(cluster)
    assert len(placed.alive_nodes) == 3
    workers = worker_nodes(cluster)
    shard_nodes = placed.nodes_running(SHARD_CLASS)
    assert sum(shard_nodes.values()) == Settings().shard_count
    assert set(shard_nodes) == set(workers), "the shards are spread over both worker nodes, not the head"
    assert len(placed.nodes_running(API_REPLICA_CLASS)) == 2, "API replicas run on two nodes"
    head = next(node.node_id for node in placed.nodes if node.is_head)
    assert placed.node_of("broker-gateway") == head and placed.node_of("event-bus") == head

    with httpx.Client(base_url=api, timeout=60) as http:
        investor = Investor(http, database_url)
        portfolio = investor.funded("100.00")
        settings = Settings()
        shard = shard_name(
            shard_of(uuid.UUID(investor.id), slot_count=settings.slot_count, shard_count=settings.shard_count)
        )
        doomed = placed.node_of(shard)
        assert doomed in workers

        # Deposits of 1.00 under fresh keys while the node dies; each is retried with its key until
        # the client hears an answer, as a client of a money API must.
        acknowledged: list[tuple[str, Decimal]] = []
        refused: list[str] = []
        stop = threading.Event()

        def depositor() -> None:
            with httpx.Client(base_url=api, timeout=30) as mine:
                while not stop.is_set() and len(acknowledged) < 400:
                    key = str(uuid.uuid4())
                    answer = investor.deposit_until_answered(portfolio["id"], "1.00", key, http=mine)
                    if answer is not None and answer.status_code == 201:
                        acknowledged.append((key, Decimal(answer.json()["data"]["cash_balance"])))
                        time.sleep(0.4)  # under the user's 120 requests a minute
                    elif answer is not None:
                        refused.append(answer.text)

        thread = threading.Thread(target=depositor)
        thread.start()
        until("a first deposit", lambda: len(acknowledged) >= 3, timeout_s=60)
        killed = cli("cluster", "kill-node", str(workers[doomed]), env=cluster, timeout=30)
        assert killed.returncode == 0, killed.stderr
        lost_at = time.monotonic()
        count_at_kill = len(acknowledged)
        recovery = until(
            "a deposit acknowledged after the kill", lambda: len(acknowledged) > count_at_kill + 3
        )
        stop.set()
        thread.join(timeout=120)
        assert not thread.is_alive() and not refused, refused

        # The cluster marks the node dead, and the shard is alive on a surviving node, its books
        # rebuilt from PostgreSQL.
        def shard_moved() -> bool:
            after = view(cluster)
            return len(after.alive_nodes) == 2 and after.node_of(shard) not in (None, doomed)

        moved = until("the shard restarting on a surviving node", shard_moved, timeout_s=120)

        # Every acknowledged deposit is in PostgreSQL exactly once, and the balance counts each once.
        keys = [key for key, _ in acknowledged]
        with psycopg.connect(database_url) as conn:
            stored = conn.execute(
                "SELECT idempotency_key, count(*) FROM cash_movements WHERE portfolio_id = %s"
                " AND idempotency_key = ANY(%s) GROUP BY idempotency_key",
                (portfolio["id"], keys),
            ).fetchall()
        assert len(stored) == len(keys) and all(count == 1 for _, count in stored)
        balance = Decimal(
            investor.get(f"/api/v1/portfolios/{portfolio['id']}").json()["data"]["cash_balance"]
        )
        assert balance == Decimal("100.00") + len(keys)

        ledger = check_ledger(database_url, [uuid.UUID(investor.id)])
        assert ledger.balanced, ledger.discrepancies

        # A retry of an acknowledged key after the recovery answers the same and changes nothing.
        again = investor.deposit(portfolio["id"], "1.00", key=keys[0])
        assert (
            again.status_code == 201 and Decimal(again.json()["data"]["cash_balance"]) == acknowledged[0][1]
        )
        assert (
            Decimal(investor.get(f"/api/v1/portfolios/{portfolio['id']}").json()["data"]["cash_balance"])
            == balance
        )

        # Serve answers ready on the surviving nodes.
        until("readiness", lambda: http.get("/health/ready").status_code == 200, timeout_s=60)
    print(
        json.dumps(
            {
                "deposits_acknowledged": len(keys),
                "acknowledged_before_kill": count_at_kill,
                "seconds_to_first_deposit_after_kill": round(recovery, 2),
                "seconds_until_shard_moved": round(moved, 1),
                "kill_to_checks_s": round(time.monotonic() - lost_at, 1),
            }
        )
    )
