"""The faults that chaos injects into a running local cluster, each the way it happens for real.

A node is lost with every process on it (SIGKILL of the raylet's whole tree); an actor crashes (SIGKILL
of the worker process it runs in, which Ray and Serve must notice and replace); Redis restarts (the
embedded server stopped and started again on its append-only file); PostgreSQL drops the platform's
connections (``pg_terminate_backend``, what a failover or a restarted pooler does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import redis

from wealthalloc.config import Settings
from wealthalloc.runtime import launcher, services
from wealthalloc.runtime.cluster_view import API_REPLICA_CLASS, SHARD_CLASS, ClusterView, read_cluster

GATEWAY_ACTOR = "broker-gateway"
EVENT_BUS_ACTOR = "event-bus"


class FaultError(Exception):
    """A fault could not be injected (nothing to kill): the run says so rather than count it."""


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[], str]  # does it; returns what it did, for a person


class Injector:
    """The faults of one running platform, read from what ``wealthalloc serve`` saved."""

    def __init__(self, settings: Settings, state: launcher.RuntimeState) -> None:
        self.settings = settings
        self.state = state
        self.env = launcher.platform_env(settings, state.database_url, state.redis_url)
        # When the last fault struck (monotonic): after finding what to kill, before starting anything
        # in its place, so a recovery is timed from the blow itself.
        self.struck_at = 0.0

    def _strike(self) -> None:
        self.struck_at = time.monotonic()

    def view(self) -> ClusterView:
        return read_cluster(self.state.ray_address, self.settings.ray_namespace, self.env)

    def faults(self) -> tuple[Fault, ...]:
        """Every fault, in the order a run injects them."""
        return (
            Fault("worker node", self.kill_shard_node),
            Fault("api replica", self.kill_api_replica),
            Fault("broker gateway", lambda: self.kill_actor(GATEWAY_ACTOR)),
            Fault("event bus", lambda: self.kill_actor(EVENT_BUS_ACTOR)),
            Fault("redis", self.restart_redis),
            Fault("postgres connections", self.terminate_postgres_backends),
        )

    def kill_shard_node(self) -> str:
        """Kill the live worker node holding the most shards, then start a fresh node in its place (as an
        autoscaler would): the lost node's shards restart wherever Ray finds room."""
        view = self.view()
        shards = view.nodes_running(SHARD_CLASS)
        by_port = {worker.node_manager_port: worker for worker in self.state.workers}
        candidates = [
            (shards[node.node_id], by_port[node.node_manager_port])
            for node in view.alive_nodes
            if node.node_manager_port in by_port and shards[node.node_id]
        ]
        if not candidates:
            raise FaultError("no live worker node holds a shard")
        count, worker = max(candidates, key=lambda pair: pair[0])
        self._strike()
        killed = launcher.kill_worker(worker)
        self.state, fresh = launcher.add_worker(self.settings, self.state, self.env)
        return (
            f"worker node {worker.index} killed ({count} shard(s), {killed} process(es));"
            f" node {fresh.index} started"
        )

    def kill_api_replica(self) -> str:
        replicas = self.view().alive(API_REPLICA_CLASS)
        if len(replicas) < 1 or not replicas[0].pid:
            raise FaultError("no live API replica")
        self._strike()
        _crash(replicas[0].pid)
        victim = replicas[0]
        return f"API replica {victim.name} crashed (pid {victim.pid}); {len(replicas) - 1} left answering"

    def kill_actor(self, name: str) -> str:
        placed = next(
            (a for a in self.view().actors if a.name == name and a.state == "ALIVE" and a.pid), None
        )
        if placed is None:
            raise FaultError(f"no live actor {name}")
        self._strike()
        _crash(placed.pid)
        return f"{name} crashed (pid {placed.pid})"

    def restart_redis(self) -> str:
        """Restart the embedded Redis on its append-only file. A Redis this platform did not start is not
        ours to restart: every client connection is dropped and the server paused for 3 s instead."""
        if self.state.embedded_redis:
            self._strike()
            services.stop_embedded_redis(self.settings.data_dir)
            services.embedded_redis(self.settings.data_dir)
            return "embedded Redis stopped and started again"
        client = redis.Redis.from_url(self.state.redis_url)
        try:
            self._strike()
            client.client_pause(3000, all=True)
            with contextlib.suppress(redis.RedisError):
                client.client_kill_filter(_type="normal", skipme=False)
        finally:
            client.close()
        return "Redis paused 3 s with every connection dropped (an external server is not restarted)"

    def terminate_postgres_backends(self) -> str:
        with psycopg.connect(self.state.database_url, autocommit=True) as conn:
            self._strike()
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            ).fetchone()
        return f"{row[0] if row else 0} PostgreSQL connection(s) terminated"


def _crash(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError as exc:
        raise FaultError(f"process {pid} is gone already") from exc
