"""The arithmetic of the capacity benches (bench/scaleout.py, bench/capacity.py) and their arguments."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


scaleout = bench("scaleout")
capacity = bench("capacity")


def test_a_least_squares_line_through_points_on_a_line_is_that_line() -> None:
    slope, intercept = capacity.least_squares([0, 100, 200, 400], [50.0, 250.0, 450.0, 850.0])
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(50.0)


def test_a_line_needs_two_distinct_xs() -> None:
    with pytest.raises(ValueError):
        capacity.least_squares([1.0], [2.0])
    with pytest.raises(ValueError):
        capacity.least_squares([3.0, 3.0], [1.0, 2.0])


def test_the_memory_steps_run_from_no_book_to_every_book_without_repeats() -> None:
    assert capacity.steps(2000) == [0, 400, 800, 1200, 1600, 2000]
    assert capacity.steps(3, count=5) == [0, 1, 2, 3]


def test_processes_are_told_apart_by_their_ray_titles() -> None:
    kind = scaleout.process_kind
    assert kind("ray::ServeReplica:api:ApiIngress") == "api_replica"
    assert kind("ray::PortfolioShard.portfolios") == "shard"
    assert kind("ray::BrokerGateway") == "gateway"
    assert kind("ray::ProxyActor") == "proxy"
    assert kind("ray::HAProxyManager") == "proxy"
    assert kind("/usr/sbin/haproxy -f /tmp/haproxy.cfg") == "proxy"
    assert kind("ray::ServeReplica:api:AnomalyDetector") == "detector"
    assert kind("/venv/bin/raylet --node_manager_port=1") == "ray_other"


def test_cpu_spent_is_summed_by_kind_and_a_new_process_starts_from_zero() -> None:
    before = {"shard/10": 1.0, "shard/11": 2.0, "api_replica/20": 5.0}
    after = {"shard/10": 1.5, "shard/11": 2.25, "api_replica/20": 6.0, "postgres/30": 0.5}
    assert scaleout.cpu_by_kind(before, after) == {"shard": 0.75, "api_replica": 1.0, "postgres": 0.5}


def test_writes_per_operation_leave_out_what_did_not_change() -> None:
    before = {"commits": 100.0, "rows_inserted": 10.0, "inserted.users": 4.0}
    after = {"commits": 400.0, "rows_inserted": 610.0, "inserted.users": 4.0, "inserted.fills": 100.0}
    assert scaleout.per_operation(before, after, 100) == {
        "commits": 3.0,
        "inserted.fills": 1.0,
        "rows_inserted": 6.0,
    }
    assert scaleout.per_operation(before, after, 0) == {}


def test_an_answer_counts_only_when_committed_and_an_order_only_when_filled() -> None:
    counts = scaleout.counts
    assert counts(201, b'{"data": {"cash_balance": "1.00"}}', order=False) is None
    assert counts(201, b'{"data": {"status": "filled"}}', order=True) is None
    assert counts(201, b'{"data": {"status": "submitted"}}', order=True) == "201 submitted"
    assert counts(409, b'{"error": {"code": "QUOTE_STALE"}}', order=True) == "409 QUOTE_STALE"
    assert counts(502, b"<html>", order=False) == "502"


def test_the_benches_take_bounded_arguments() -> None:
    args = scaleout.parse_args(["--nodes", "1,3", "--seconds", "2", "--clients", "4"])
    assert args.node_counts == [1, 3] and args.seconds == 2 and args.clients == 4
    for wrong in (["--nodes", "0"], ["--nodes", "9"], ["--seconds", "0"], ["--seconds", "1000"]):
        with pytest.raises(SystemExit):
            scaleout.parse_args(wrong)
    assert capacity.parse_args(["--books", "10", "--clients", "10"]).books == 10
    for wrong in (["--books", "5"], ["--books", "10", "--clients", "11"], ["--seconds", "0"]):
        with pytest.raises(SystemExit):
            capacity.parse_args(wrong)
