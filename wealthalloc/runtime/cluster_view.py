"""What runs where on a Ray cluster: its nodes and the platform's live actors on each.

Read by a short-lived driver process (``python -m wealthalloc.runtime.cluster_view``)
so that ``wealthalloc serve`` and ``wealthalloc cluster status`` never become
Ray drivers themselves: a driver holds the cluster's attention (and a worker's
memory) until it exits, and the CLI's environment need not be Ray's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

# The platform's actors as the cluster names their classes; Serve's replicas are "ServeReplica:<app>:<name>".
SHARD_CLASS = "PortfolioShard"
API_REPLICA_CLASS = "ServeReplica:api:ApiIngress"


@dataclass(frozen=True)
class Node:
    node_id: str
    alive: bool
    is_head: bool
    node_manager_port: int
    cpus: float


@dataclass(frozen=True)
class Placed:
    """One live (or restarting) actor and the node it runs on."""

    class_name: str
    name: str
    node_id: str
    state: str
    pid: int = 0  # the worker process it runs in (0 while it has none)


@dataclass(frozen=True)
class ClusterView:
    nodes: tuple[Node, ...]
    actors: tuple[Placed, ...]

    @property
    def alive_nodes(self) -> tuple[Node, ...]:
        return tuple(node for node in self.nodes if node.alive)

    def nodes_running(self, class_name: str) -> Counter[str]:
        """How many ``class_name`` actors each node holds, by node id (alive actors only)."""
        return Counter(a.node_id for a in self.actors if a.class_name == class_name and a.state == "ALIVE")

    def node_of(self, actor_name: str) -> str | None:
        return next((a.node_id for a in self.actors if a.name == actor_name and a.state == "ALIVE"), None)

    def alive(self, class_name: str) -> tuple[Placed, ...]:
        """The live ``class_name`` actors."""
        return tuple(a for a in self.actors if a.class_name == class_name and a.state == "ALIVE")

    def to_json(self) -> str:
        return json.dumps(
            {"nodes": [asdict(n) for n in self.nodes], "actors": [asdict(a) for a in self.actors]}
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterView:
        raw = json.loads(text)
        return cls(
            nodes=tuple(Node(**node) for node in raw["nodes"]),
            actors=tuple(Placed(**actor) for actor in raw["actors"]),
        )


def _read(address: str, namespace: str) -> ClusterView:
    """Connect as a driver, read the node table and the actor table, disconnect."""
    import ray
    from ray.util.state import list_actors

    ray.init(address=address, namespace=namespace, logging_level=logging.ERROR, log_to_driver=False)
    try:
        nodes = tuple(
            Node(
                node_id=node["NodeID"],
                alive=bool(node["Alive"]),
                is_head="node:__internal_head__" in node.get("Resources", {}),
                node_manager_port=int(node["NodeManagerPort"]),
                cpus=float(node.get("Resources", {}).get("CPU", 0.0)),
            )
            for node in ray.nodes()  # type: ignore[no-untyped-call]
        )
        actors = tuple(
            Placed(
                class_name=actor.class_name or "",
                name=actor.name or "",
                node_id=actor.node_id or "",
                state=actor.state,
                pid=int(actor.pid or 0),
            )
            for actor in list_actors(limit=10_000, raise_on_missing_output=False)
            if actor.state != "DEAD"
        )
    finally:
        ray.shutdown()
    return ClusterView(nodes=nodes, actors=actors)


def read_cluster(address: str, namespace: str, env: dict[str, str], *, timeout_s: float = 60) -> ClusterView:
    """The cluster's view, read by a driver in a process of its own (see the module's docstring)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wealthalloc.runtime.cluster_view",
            "--address",
            address,
            "--namespace",
            namespace,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(
            lines[-1] if lines else f"reading the cluster failed with exit {result.returncode}"
        )
    return ClusterView.from_json(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the Ray cluster's nodes and live actors as JSON.")
    parser.add_argument("--address", required=True, help="the head's GCS address, host:port")
    parser.add_argument("--namespace", default="wealthalloc")
    args: Any = parser.parse_args(argv)
    print(_read(args.address, args.namespace).to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
