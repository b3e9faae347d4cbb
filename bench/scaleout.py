"""Deposits and orders per second through the HTTP API on a local cluster of 1, 2 and 3 Ray nodes
(the head alone, then with one and two worker nodes), each started by `wealthalloc serve --workers N`
on its own database, data directory and ports, and stopped after its run.

All nodes share this machine's cores, so the figures cannot grow with the nodes: what they show is
what crossing nodes costs (a shard on another raylet than the API replica that calls it, two API
replicas). The 1-node figure is the baseline each ratio is taken against.

For each node count, after a warm-up:

- POST /api/v1/portfolios/{id}/cash of 1.00 with a fresh Idempotency-Key, by --clients investors
  at once (client n for investor n), for --seconds; only 201 answers count;
- POST /api/v1/trades, a market buy of one share (paper broker, filled before the answer), the same
  way; only 201 answers with status ``filled`` count;
- the CPU seconds each kind of process spent per operation (API replicas, shards, Serve's proxy and
  HAProxy, the broker gateway, Ray's own processes, the PostgreSQL backends of this database), read
  from the processes under this cluster's `ray start` sessions and PostgreSQL's pg_stat_activity;
- the resident memory of each shard and API replica after the run.

On the first node count it also counts what PostgreSQL wrote per deposit and per order: commits,
rows inserted, updated and deleted (pg_stat_database and pg_stat_user_tables of the run's own
database, read after the statistics are flushed) and WAL bytes (the server's, so an upper bound when
anything else writes to it).

    .venv/bin/python bench/scaleout.py [--nodes 1,2,3] [--seconds 20] [--clients 32]

Prints a table, then as its last line one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _loadgen import Request, Result, market_buy, per_investor  # noqa: E402
from _support import PASSWORD, free_port, print_figures, temporary_database  # noqa: E402

from tests.e2e.operator import cli  # noqa: E402 - as an operator runs the CLI

REDIS_URL = os.environ.get("WEALTHALLOC_SCALEOUT_REDIS_URL", "redis://127.0.0.1:6379/9")
SYMBOLS = ("KO", "PEP", "JNJ", "PG", "PFE", "MRK", "WMT", "XOM", "BAC", "CVX")
FUNDING = "1000000.00"
ANSWER_TIMEOUT_S = 30.0
START_TIMEOUT_S = 420
STOP_TIMEOUT_S = 120
# PostgreSQL 15 flushes a backend's pending statistics within 10 s of it going idle.
STATS_FLUSH_S = 11.0


# What an operation costs, by kind of process ----------------------------------------------------


def process_kind(title: str) -> str:
    """The kind of a process of the platform, from its title (Ray names its workers ``ray::<what>``)."""
    if "ApiIngress" in title:
        return "api_replica"
    if "PortfolioShard" in title:
        return "shard"
    if "BrokerGateway" in title:
        return "gateway"
    if "ProxyActor" in title or "HAProxy" in title or title.startswith("haproxy") or "/haproxy" in title:
        return "proxy"
    if "AnomalyDetector" in title:
        return "detector"
    if "EventBus" in title:
        return "event_bus"
    return "ray_other"


def per_operation(
    before: Mapping[str, float], after: Mapping[str, float], operations: int
) -> dict[str, float]:
    """``after - before`` for each key that changed, divided by ``operations`` (keys only in ``after``
    start at 0)."""
    if operations <= 0:
        return {}
    spent = {k: (after[k] - before.get(k, 0.0)) / operations for k in sorted(after)}
    return {k: v for k, v in spent.items() if v}


@dataclass
class Processes:
    """The processes of one local cluster: everything under its `ray start` sessions, and HAProxy."""

    roots: tuple[int, ...]
    haproxy_stats_port: int

    def _members(self) -> Iterable[Any]:
        import psutil

        seen: set[int] = set()
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for process in tree:
                if process.pid not in seen:
                    seen.add(process.pid)
                    yield process
        for conn in psutil.net_connections(kind="tcp"):
            port = conn.laddr.port if conn.laddr else None
            if conn.status == psutil.CONN_LISTEN and port == self.haproxy_stats_port and conn.pid:
                if conn.pid not in seen:
                    seen.add(conn.pid)
                    yield psutil.Process(conn.pid)

    def sample(self) -> tuple[dict[str, float], dict[str, list[int]]]:
        """CPU seconds so far by kind (keyed by kind and pid), and resident bytes of each process by kind."""
        import psutil

        cpu: dict[str, float] = {}
        rss: dict[str, list[int]] = {}
        for process in self._members():
            try:
                title = " ".join(process.cmdline()) or process.name()
                times = process.cpu_times()
                resident = process.memory_info().rss
            except psutil.Error:
                continue
            kind = process_kind(title)
            cpu[f"{kind}/{process.pid}"] = times.user + times.system
            rss.setdefault(kind, []).append(resident)
        return cpu, rss


def postgres_cpu(database_url: str) -> dict[str, float]:
    """CPU seconds so far of each PostgreSQL backend connected to this database."""
    import psutil
    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url, autocommit=True) as conn:
        pids = [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
            )
        ]
    cpu: dict[str, float] = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        cpu[f"postgres/{pid}"] = times.user + times.system
    return cpu


def cpu_by_kind(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent between two samples, summed by kind (the part of each key before ``/``)."""
    spent: Counter[str] = Counter()
    for key, seconds in after.items():
        spent[key.partition("/")[0]] += max(0.0, seconds - before.get(key, 0.0))
    return dict(spent)


def postgres_writes(database_url: str) -> dict[str, float]:
    """This database's commit and row counters, its per-table inserts, and the server's WAL position."""
    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            """SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted,
                      pg_current_wal_lsn() - '0/0'::pg_lsn
               FROM pg_stat_database WHERE datname = %s""",
            (name,),
        ).fetchone()
        assert row is not None
        figures = dict(
            zip(
                ("commits", "rollbacks", "rows_inserted", "rows_updated", "rows_deleted", "wal_bytes"),
                row,
                strict=True,
            )
        )
        for table, inserted, updated in conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables"
        ):
            if inserted:
                figures[f"inserted.{table}"] = inserted
            if updated:
                figures[f"updated.{table}"] = updated
    return {k: float(v) for k, v in figures.items()}


# Load ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    counted: int = 0
    refused: Counter[str] = field(default_factory=Counter)


def deposit_request(portfolio_id: str, headers: dict[str, str], i: int) -> Request:
    return Request(
        "POST",
        f"/api/v1/portfolios/{portfolio_id}/cash",
        headers,
        {"amount": "1.00"},
        fresh_idempotency_key=True,
    )


def counts(status: int, body: bytes, *, order: bool) -> str | None:
    """None when the answer is a committed operation; otherwise what to tally it as."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    data = payload.get("data") if isinstance(payload, dict) else None
    if status == 201 and isinstance(data, dict):
        if not order or data.get("status") == "filled":
            return None
        return f"201 {data.get('status')}"
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else ""
    return f"{status} {code or ''}".strip()


async def drive(
    url: str,
    people: list[tuple[str, dict[str, str]]],
    make: Callable[[str, dict[str, str], int], Request],
    *,
    order: bool,
    seconds: float,
    clients: int,
) -> tuple[Result, Tally]:
    """One operation at a time per client, client n for investor n, until time is up."""
    tally = Tally()

    def counted(status: int, body: bytes) -> bool:
        refused = counts(status, body, order=order)
        if refused is None:
            tally.counted += 1
            return True
        tally.refused[refused] += 1
        return False

    result = await per_investor(
        url, people, make, counted, seconds=seconds, clients=clients, answer_timeout_s=ANSWER_TIMEOUT_S
    )
    return result, tally


# A cluster of its own -----------------------------------------------------------------------------


def shared_assets() -> Path:
    """Market data and a promoted anomaly model every cluster of this run links to."""
    from wealthalloc.marketdata import load_bundled_datasets

    assets = Path(tempfile.mkdtemp(prefix="wealthalloc-scaleout-assets-"))
    load_bundled_datasets(assets / "prices", progress=False)
    models = ROOT / ".data" / "models"
    if (models / "PROMOTED").exists():
        shutil.copytree(models, assets / "models")
    else:
        from datetime import date

        from training.default_model import DefaultModelRecipe, ensure_default_model
        from wealthalloc.config import Settings
        from wealthalloc.ml.autoencoder import AutoencoderConfig
        from wealthalloc.ml.features import FeatureSpec, TimeSplit

        recipe = DefaultModelRecipe(
            symbols=("AAPL", "KO"),
            split=TimeSplit(date(2016, 1, 1), date(2018, 12, 31), date(2019, 12, 31), date(2022, 12, 31)),
            spec=FeatureSpec(window=20),
            config=AutoencoderConfig(
                window=20, units=8, latent=2, dropout=0.0, batch_size=64, epochs=1, patience=1, seed=0
            ),
            stride=2,
            evaluate=False,
        )
        ensure_default_model(Settings(data_dir=assets, model_registry_uri=""), progress=False, recipe=recipe)
    return assets


def seed_investors(database_url: str, count: int) -> None:
    import psycopg

    from wealthalloc.security.passwords import hash_password

    password_hash = hash_password(PASSWORD, rounds=4)
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO users (email, password_hash, tier) VALUES (%s, %s, 'premium')",
                [(f"bench-{n}@example.com", password_hash) for n in range(count)],
            )


@dataclass(frozen=True)
class Cluster:
    url: str
    env: dict[str, str]
    database_url: str
    processes: Processes


@contextmanager
def local_cluster(nodes: int, assets: Path, investors: int):  # type: ignore[no-untyped-def]
    """`wealthalloc serve --workers nodes-1` on a database, data directory and ports of its own;
    stopped (workers, head, HAProxy) and its database dropped afterwards, whatever happened."""
    from wealthalloc.runtime.launcher import RuntimeState

    home = Path(tempfile.mkdtemp(prefix=f"wealthalloc-scaleout-{nodes}n-"))
    (home / "prices").symlink_to(assets / "prices")
    with temporary_database() as database_url:
        seed_investors(database_url, investors)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("WEALTHALLOC_", "RAY_"))}
        env = {
            **base,
            "WEALTHALLOC_DATA_DIR": str(home),
            "WEALTHALLOC_DATABASE_URL": database_url,
            "WEALTHALLOC_REDIS_URL": REDIS_URL,
            "WEALTHALLOC_MODEL_REGISTRY_URI": str(assets / "models"),
            "WEALTHALLOC_HTTP_PORT": str(free_port()),
            "WEALTHALLOC_DASHBOARD_PORT": str(free_port()),
            "WEALTHALLOC_RAY_PORT": str(free_port()),
            "WEALTHALLOC_HAPROXY_STATS_PORT": str(free_port()),
            "WEALTHALLOC_HAPROXY_METRICS_PORT": str(free_port()),
            "WEALTHALLOC_RAY_NAMESPACE": f"scaleout-{uuid.uuid4().hex[:6]}",
            "WEALTHALLOC_BCRYPT_ROUNDS": "4",
            "WEALTHALLOC_LOG_LEVEL": "WARNING",
            "WEALTHALLOC_RATE_LIMIT_PREMIUM": str(10**9),
            "WEALTHALLOC_LOGIN_IP_PER_MINUTE": str(10**9),
        }
        try:
            up = cli("serve", "--workers", str(nodes - 1), "--skip-setup", env=env, timeout=START_TIMEOUT_S)
            if up.returncode != 0:
                raise RuntimeError(f"{nodes}-node cluster did not start: {(up.stdout + up.stderr)[-2000:]}")
            state = RuntimeState.load(home)
            assert state is not None
            processes = Processes(
                roots=(state.ray_pid, *(w.pid for w in state.workers)),
                haproxy_stats_port=int(env["WEALTHALLOC_HAPROXY_STATS_PORT"]),
            )
            url = f"http://127.0.0.1:{env['WEALTHALLOC_HTTP_PORT']}"
            yield Cluster(url=url, env=env, database_url=database_url, processes=processes)
        finally:
            cli("stop", env=env, timeout=STOP_TIMEOUT_S)
            shutil.rmtree(home, ignore_errors=True)


def placement(cluster: Cluster) -> dict[str, Any]:
    """Nodes, and shards and API replicas on each, as `wealthalloc cluster status --json` sees them."""
    try:
        status = cli("cluster", "status", "--json", env=cluster.env, timeout=180)
    except subprocess.TimeoutExpired:
        return {"placement_error": "`cluster status` did not answer in 180 s"}
    if status.returncode != 0 or not status.stdout.strip():
        lines = (status.stderr or status.stdout).strip().splitlines()
        return {"placement_error": lines[-1] if lines else f"exit {status.returncode}"}
    from wealthalloc.runtime.cluster_view import API_REPLICA_CLASS, SHARD_CLASS, ClusterView

    view = ClusterView.from_json(status.stdout.strip().splitlines()[-1])
    return {
        "alive_nodes": len(view.alive_nodes),
        "shards_per_node": sorted(view.nodes_running(SHARD_CLASS).values(), reverse=True),
        "api_replicas_per_node": sorted(view.nodes_running(API_REPLICA_CLASS).values(), reverse=True),
    }


def investors_of(url: str, count: int) -> list[tuple[str, dict[str, str]]]:
    """Each investor signed in, with a portfolio funded once."""
    import httpx

    people = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for n in range(count):
            login = http.post(
                "/api/v1/auth/login", json={"email": f"bench-{n}@example.com", "password": PASSWORD}
            )
            login.raise_for_status()
            headers = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}
            created = http.post("/api/v1/portfolios", json={"name": "Main"}, headers=headers)
            created.raise_for_status()
            portfolio_id = created.json()["data"]["id"]
            funded = http.post(
                f"/api/v1/portfolios/{portfolio_id}/cash",
                json={"amount": FUNDING},
                headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            )
            if funded.status_code != 201:
                raise RuntimeError(f"funding failed: {funded.status_code} {funded.text[:300]}")
            people.append((portfolio_id, headers))
    return people


def measure(
    cluster: Cluster,
    people: list[tuple[str, dict[str, str]]],
    make: Callable[[str, dict[str, str], int], Request],
    *,
    order: bool,
    seconds: float,
    clients: int,
    writes: bool,
) -> dict[str, Any]:
    """One measured phase: rate and latency, CPU seconds per operation by kind, and (``writes``) what
    PostgreSQL wrote per operation."""
    if writes:
        time.sleep(STATS_FLUSH_S)
        pg_before = postgres_writes(cluster.database_url)
    cpu_before = {**cluster.processes.sample()[0], **postgres_cpu(cluster.database_url)}
    result, tally = asyncio.run(
        drive(cluster.url, people, make, order=order, seconds=seconds, clients=clients)
    )
    cpu_after = {**cluster.processes.sample()[0], **postgres_cpu(cluster.database_url)}
    spent = cpu_by_kind(cpu_before, cpu_after)
    figures: dict[str, Any] = {
        **result.figures("ops"),
        "ops": result.requests,
        "refused": dict(tally.refused),
        "cpu_ms_per_op": {k: 1000 * v / result.requests for k, v in sorted(spent.items())}
        if result.requests
        else {},
        "cpu_s_total": sum(spent.values()),
        # The machine's 1-minute load average at the end: other work on it shows here.
        "load_1m": os.getloadavg()[0],
        "seconds": result.seconds,
    }
    if writes:
        time.sleep(STATS_FLUSH_S)
        figures["postgres_per_op"] = per_operation(
            pg_before, postgres_writes(cluster.database_url), result.requests
        )
    return figures


def run_nodes(nodes: int, assets: Path, args: argparse.Namespace, *, writes: bool) -> dict[str, Any]:
    started = time.monotonic()
    with local_cluster(nodes, assets, args.clients) as cluster:
        up_s = time.monotonic() - started
        people = investors_of(cluster.url, args.clients)
        where = placement(cluster)
        asyncio.run(
            drive(
                cluster.url, people, deposit_request, order=False, seconds=args.warmup, clients=args.clients
            )
        )
        buys = market_buy(SYMBOLS)
        asyncio.run(drive(cluster.url, people, buys, order=True, seconds=args.warmup, clients=args.clients))
        deposits = measure(
            cluster,
            people,
            deposit_request,
            order=False,
            seconds=args.seconds,
            clients=args.clients,
            writes=writes,
        )
        orders = measure(
            cluster,
            people,
            buys,
            order=True,
            seconds=args.seconds,
            clients=args.clients,
            writes=writes,
        )
        _, rss = cluster.processes.sample()
    return {
        "nodes": nodes,
        "start_s": up_s,
        **where,
        "deposits": deposits,
        "orders": orders,
        "rss_mib": {kind: [round(b / 2**20, 1) for b in sorted(v)] for kind, v in sorted(rss.items())},
    }


def table(runs: list[dict[str, Any]]) -> list[str]:
    base = runs[0]
    lines = [
        "nodes  shards/node  api/node  deposits/s  p50 ms  p99 ms  ratio  orders/s  p50 ms  p99 ms  ratio",
    ]
    for run in runs:
        d, o = run["deposits"], run["orders"]
        dr = d["ops_per_s"] / base["deposits"]["ops_per_s"] if base["deposits"]["ops_per_s"] else float("nan")
        orr = o["ops_per_s"] / base["orders"]["ops_per_s"] if base["orders"]["ops_per_s"] else float("nan")
        lines.append(
            f"{run['nodes']:>5}  {str(run.get('shards_per_node', '?')):>11}  "
            f"{str(run.get('api_replicas_per_node', '?')):>8}  "
            f"{d['ops_per_s']:>10,.0f}  {d['p50_ms']:>6.1f}  {d['p99_ms']:>6.1f}  {dr:>5.2f}  "
            f"{o['ops_per_s']:>8,.0f}  {o['p50_ms']:>6.1f}  {o['p99_ms']:>6.1f}  {orr:>5.2f}"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure, in order (default 1,2,3)")
    parser.add_argument(
        "--seconds", type=float, default=20, help="seconds of each measured phase (default 20)"
    )
    parser.add_argument("--warmup", type=float, default=3, help="seconds of each warm-up phase (default 3)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent investors (default 32)")
    args = parser.parse_args(argv)
    args.node_counts = [int(n) for n in str(args.nodes).split(",") if n.strip()]
    if not args.node_counts or any(n < 1 or n > 4 for n in args.node_counts):
        parser.error("--nodes takes counts from 1 to 4, e.g. 1,2,3")
    if not 0 < args.seconds <= 120 or not 0 <= args.warmup <= 30 or not 1 <= args.clients <= 256:
        parser.error("--seconds in (0, 120], --warmup in [0, 30], --clients in [1, 256]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    assets = shared_assets()
    runs: list[dict[str, Any]] = []
    try:
        for i, nodes in enumerate(args.node_counts):
            run = run_nodes(nodes, assets, args, writes=i == 0)
            runs.append(run)
            print(
                f"{nodes} node(s): up in {run['start_s']:.0f} s, "
                f"deposits {run['deposits']['ops_per_s']:,.0f}/s, "
                f"orders {run['orders']['ops_per_s']:,.0f}/s",
                flush=True,
            )
    finally:
        shutil.rmtree(assets, ignore_errors=True)
    for line in table(runs):
        print(line)
    base = runs[0]
    print_figures(
        {
            "clients": args.clients,
            "seconds": args.seconds,
            "cores": os.cpu_count(),
            "baseline_nodes": base["nodes"],
            "runs": {str(r["nodes"]): r for r in runs},
            "deposits_ratio": {
                str(r["nodes"]): r["deposits"]["ops_per_s"] / base["deposits"]["ops_per_s"]
                if base["deposits"]["ops_per_s"]
                else float("nan")
                for r in runs
            },
            "orders_ratio": {
                str(r["nodes"]): r["orders"]["ops_per_s"] / base["orders"]["ops_per_s"]
                if base["orders"]["ops_per_s"]
                else float("nan")
                for r in runs
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
