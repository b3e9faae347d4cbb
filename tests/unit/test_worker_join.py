"""Joining worker nodes: a worker whose `ray start` dies before its node joins is started again
under its number, a bounded number of times, and a cluster that never fills names who is missing.

The cluster's node table is what the head would report (the real one is read by a driver process,
covered by the e2e cluster tests); the workers are real processes, alive or exited.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_local_cluster import state
from wealthalloc.config import Settings
from wealthalloc.runtime import cluster_view, launcher
from wealthalloc.runtime.cluster_view import ClusterView, Node
from wealthalloc.runtime.launcher import LaunchError, RuntimeState, WorkerNode

HEAD = Node(node_id="head", alive=True, is_head=True, node_manager_port=1000, cpus=2)


def node(port: int) -> Node:
    return Node(node_id=f"n{port}", alive=True, is_head=False, node_manager_port=port, cpus=2)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def running() -> Iterator[int]:
    """The pid of a process that stays up for the test, as a raylet still starting would."""
    process = subprocess.Popen(["sleep", "60"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture
def exited() -> int:
    """The pid of a process that has exited, as a `ray start` that died would have."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


class Head:
    """The head's node table as the test sets it, and the workers the launcher starts again."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, restarted_pid: int, *nodes: Node, restarts_join: bool = True
    ) -> None:
        self.nodes = [HEAD, *nodes]
        self.restarted: list[int] = []
        self.restarted_pid = restarted_pid
        self.restarts_join = restarts_join
        monkeypatch.setattr(cluster_view, "read_cluster", self.read)
        monkeypatch.setattr(launcher, "start_worker", self.start_worker)
        monkeypatch.setattr(launcher.time, "sleep", lambda _s: None)

    def read(self, *_args: object, **_kwargs: object) -> ClusterView:
        return ClusterView(nodes=tuple(self.nodes), actors=())

    def start_worker(self, _settings: Settings, _env: dict[str, str], index: int) -> WorkerNode:
        """A restarted worker, on a port of its own, joins at once (or dies again before it can)."""
        port = 2000 + len(self.restarted)
        self.restarted.append(index)
        if self.restarts_join:
            self.nodes.append(node(port))
        return WorkerNode(index=index, pid=self.restarted_pid, node_manager_port=port)


def test_a_worker_that_died_before_joining_is_started_again_under_its_number(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, running: int, exited: int
) -> None:
    joined, died = WorkerNode(1, running, 1001), WorkerNode(2, exited, 1002)
    head = Head(monkeypatch, running, node(1001))

    joined_state = launcher.join_workers(settings, state((joined, died)), {}, (joined, died), count=3)

    assert head.restarted == [2]
    assert {w.index: w.node_manager_port for w in joined_state.workers} == {1: 1001, 2: 2000}
    saved = RuntimeState.load(settings.data_dir)
    assert saved is not None and saved.workers == joined_state.workers


def test_workers_that_keep_dying_fail_the_start_after_the_restarts_are_spent(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, exited: int
) -> None:
    died = WorkerNode(1, exited, 1001)
    head = Head(monkeypatch, exited, restarts_join=False)

    with pytest.raises(LaunchError, match=r"worker node 1 stopped before joining the cluster"):
        launcher.join_workers(settings, state((died,)), {}, (died,), count=2, restarts=2)
    assert head.restarted == [1, 1]


def test_a_worker_still_starting_is_waited_for_and_named_when_the_time_is_up(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, running: int
) -> None:
    slow = WorkerNode(3, running, 1003)
    head = Head(monkeypatch, running)

    with pytest.raises(LaunchError) as failure:
        launcher.join_workers(settings, state((slow,)), {}, (slow,), count=2, timeout_s=0.2)

    assert head.restarted == []
    assert "the cluster has 1 live node(s) after 0 s, not 2" in str(failure.value)
    assert "worker node 3 (running; see" in str(failure.value)


def test_a_dead_worker_from_before_is_not_started_again(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, running: int, exited: int
) -> None:
    """`cluster add-node` after a lost node: only the new worker is watched, the killed one stays dead."""
    lost, new = WorkerNode(1, exited, 1001), WorkerNode(2, running, 1002)
    head = Head(monkeypatch, running, node(1002))

    joined_state = launcher.join_workers(settings, state((lost, new)), {}, (new,), count=2)

    assert head.restarted == []
    assert joined_state.workers == (lost, new)
