"""The local multi-node cluster's pieces that need no Ray: its Serve config, its saved state, its view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wealthalloc.config import Settings
from wealthalloc.runtime.cluster_view import API_REPLICA_CLASS, SHARD_CLASS, ClusterView, Node, Placed
from wealthalloc.runtime.launcher import RuntimeState, WorkerNode, serve_config


def api_ingress(config: dict[str, Any]) -> dict[str, Any]:
    (app,) = config["applications"]
    return next(d for d in app["deployments"] if d["name"] == "ApiIngress")


def test_one_node_deploys_the_serve_config_as_written(tmp_path: Path) -> None:
    ingress = api_ingress(serve_config(Settings(data_dir=tmp_path), {}))
    assert "max_replicas_per_node" not in ingress
    assert ingress["autoscaling_config"]["min_replicas"] == 1


def test_several_nodes_run_an_api_replica_on_each_of_two_nodes_at_least(tmp_path: Path) -> None:
    ingress = api_ingress(serve_config(Settings(data_dir=tmp_path), {}, nodes=3))
    assert ingress["max_replicas_per_node"] == 1
    scaling = ingress["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (2, 2, 3)


def state(workers: tuple[WorkerNode, ...] = ()) -> RuntimeState:
    return RuntimeState(
        database_url="postgresql://x/y",
        redis_url="redis://127.0.0.1:6379/0",
        embedded_postgres=False,
        embedded_redis=False,
        api_url="http://127.0.0.1:8000",
        dashboard_url="http://127.0.0.1:8265",
        ray_address="127.0.0.1:6389",
        ray_pid=10,
        started_at=1.0,
        workers=workers,
    )


def test_the_saved_state_keeps_each_worker_node_so_stop_and_kill_node_find_it(tmp_path: Path) -> None:
    saved = state((WorkerNode(index=1, pid=11, node_manager_port=40001), WorkerNode(2, 12, 40002)))
    saved.save(tmp_path)
    assert RuntimeState.load(tmp_path) == saved


def test_a_state_saved_before_worker_nodes_existed_loads_with_none(tmp_path: Path) -> None:
    fields = json.loads(json.dumps(state().__dict__))
    del fields["workers"]
    (tmp_path / "runtime.json").write_text(json.dumps(fields))
    loaded = RuntimeState.load(tmp_path)
    assert loaded is not None and loaded.workers == ()


def test_the_view_counts_live_shards_and_replicas_per_node_and_finds_a_named_actor() -> None:
    view = ClusterView(
        nodes=(
            Node("h", True, True, 1, 2.0),
            Node("w1", True, False, 2, 2.0),
            Node("w2", False, False, 3, 0.0),
        ),
        actors=(
            Placed(SHARD_CLASS, "portfolio-shard-0", "w1", "ALIVE"),
            Placed(SHARD_CLASS, "portfolio-shard-1", "w1", "ALIVE"),
            Placed(SHARD_CLASS, "portfolio-shard-2", "w2", "RESTARTING"),
            Placed(API_REPLICA_CLASS, "SERVE_REPLICA::api#ApiIngress#a", "h", "ALIVE"),
        ),
    )
    assert [n.node_id for n in view.alive_nodes] == ["h", "w1"]
    assert view.nodes_running(SHARD_CLASS) == {"w1": 2}
    assert view.nodes_running(API_REPLICA_CLASS) == {"h": 1}
    assert view.node_of("portfolio-shard-1") == "w1"
    assert view.node_of("portfolio-shard-2") is None, "a restarting actor has no node yet"
    assert ClusterView.from_json(view.to_json()) == view
