"""`wealthalloc chaos` on a three-node cluster with an embedded Redis it can restart: every fault is
injected, nothing acknowledged is lost or doubled, and `cluster add-node` grows the cluster after."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import serve_cluster
from tests.e2e.operator import cli
from wealthalloc.runtime.cluster_view import ClusterView

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAST_LINE = re.compile(r"chaos: (\d+) operations, 0 lost, 0 doubled, 6 kills, recovery p99 [\d.]+ s")


def test_chaos_under_load_loses_nothing_doubles_nothing_and_the_cluster_grows_back(
    platform_env: dict[str, str], data_dir: Path, promoted_model: str
) -> None:
    home = Path(platform_env["WEALTHALLOC_DATA_DIR"])
    env = serve_cluster(platform_env, data_dir, WEALTHALLOC_REDIS_URL=f"unix://{home}/redis/redis.sock?db=0")

    run = cli("chaos", "--investors", "4", "--warmup", "3", "--gap", "2", env=env, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert LAST_LINE.fullmatch(lines[-1]), lines[-1]
    report = json.loads((home / "chaos-report.json").read_text())
    assert [f["name"] for f in report["faults"] if f["injected"]] == [
        "worker node",
        "api replica",
        "broker gateway",
        "event bus",
        "redis",
        "postgres connections",
    ]
    assert "embedded Redis stopped and started again" in next(
        f["detail"] for f in report["faults"] if f["name"] == "redis"
    )
    assert report["acknowledged"] > 20 and not report["unanswered"]
    assert all(len(f["recovery_s"]) == 4 for f in report["faults"])

    # The lost node was replaced during the run; one more joins on request.
    def alive() -> int:
        status = cli("cluster", "status", "--json", env=env, timeout=60)
        return len(ClusterView.from_json(status.stdout.strip().splitlines()[-1]).alive_nodes)

    assert alive() == 3
    grown = cli("cluster", "add-node", env=env, timeout=180)
    assert grown.returncode == 0, grown.stderr
    assert "worker node 4 joined: 4 live node(s)" in grown.stdout
    assert alive() == 4
