"""Durable market orders per second, placed and filled on the paper broker through Serve, the shards
and the broker gateway, beside plain inserts of the same rows into PostgreSQL in the same run.

One run, one machine, one asyncio client (which shares the cores with the servers: compare the
figures side by side, not with other machines):

- POST /api/v1/trades by --investors investors, each with a funded portfolio: a market buy of one
  share of a bundled symbol (the symbols rotate), with a fresh Idempotency-Key each time. An order
  counts only when it answered 201 with status ``filled``, because only then is all of it
  committed: the owning PortfolioShard claims the key, runs the pre-trade checks, records the
  order and its event, places it at the embedded paper venue and applies the fill (fill, lot,
  cash movement, holdings, trade, order update, event), all in one transaction before the
  answer (what does not fill at once rests in the BrokerGateway's paper book);
- POST .../orders:batch: each investor's batches of --batch-size buys, each batch and its orders
  committed in one transaction;
- a rebalancing day: --rebalance cash portfolios with a target allocation, each rebalanced once
  (its plan's buys placed in one transaction with the request); then --rebalance more, each
  investor's rebalanced together in one POST /api/v1/portfolios:rebalance (all their plans'
  orders in one transaction);
- the floor: the same market buys against a route that does everything POST /api/v1/trades does
  around the shard's desk (HTTP, token, rate limit, ownership, body, quote, one Ray call to the
  owning shard with the same arguments, answered at once) and writes nothing (bench/_floor.py),
  so the run says how much of a single order is the order's own work;
- afterwards PostgreSQL is checked, since a fast answer is worth nothing unless it is durable:
  every answered order is there, each one answered filled with exactly one fill, as many filled
  orders and fills as the answers said, and every portfolio's cash equal to its deposit less the
  cost of its fills; the script exits non-zero when any of that fails;
- the baseline: one process with an async psycopg pool and the same number of concurrent
  clients, each transaction inserting the rows one filled order leaves (order, fill, lot, cash
  movement, trade, two events) and updating the portfolio's cash, one statement at a time as the
  shard does. It is the floor under the platform's figure: the same rows without HTTP, Ray hops,
  pre-trade checks, idempotency or the broker.

    .venv/bin/python bench/orders.py [--seconds 8] [--clients 50] [--investors 50] [--rebalance 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _loadgen import Request, Result, market_buy, per_investor, read_response, run  # noqa: E402
from _support import bench_platform, phase, print_figures  # noqa: E402

from wealthalloc.config import Settings  # noqa: E402

DEPOSIT = Decimal("1000000.00")
# A rebalanced book: orders the paper venue fills whole at once (a large one fills over ticks).
BOOK_DEPOSIT = Decimal("20000.00")
# Bundled stocks priced well under the deposit divided by the orders one investor can place in a run.
SYMBOLS = ("KO", "PEP", "JNJ", "PG", "PFE", "MRK", "WMT", "XOM", "BAC", "CVX")
ANSWER_TIMEOUT_S = 60.0
SETTLE_S = 15.0


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


@dataclass
class Ledger:
    """What the platform answered, order by order: what the database is checked against afterwards."""

    filled: set[str] = field(default_factory=set)
    unfilled: dict[str, str] = field(default_factory=dict)  # answered 201, not filled: id -> status
    refused: Counter[str] = field(default_factory=Counter)  # any other answer: "status CODE" -> count

    def record(self, status: int, body: bytes) -> bool:
        """True when this answer is a placed and filled order (the only kind counted)."""
        payload = _json(body)
        data = payload.get("data")
        if status == 201 and isinstance(data, dict) and "id" in data:
            return self._placed(data)
        self._refused(status, payload.get("error"))
        return False

    def record_batch(self, status: int, body: bytes) -> bool:
        """True when this answer is a batch the platform took; each of its orders is recorded."""
        return self._record_plans(status, body, lambda data: [data])

    def record_books(self, status: int, body: bytes) -> bool:
        """True when this answer is a rebalance of several portfolios the platform took; each
        portfolio's orders are recorded."""
        return self._record_plans(status, body, lambda data: data["portfolios"])

    def _record_plans(self, status: int, body: bytes, plans: Callable[[dict[str, Any]], Any]) -> bool:
        """Record the placed and refused orders of each of the answer's ``plans``."""
        payload = _json(body)
        data = payload.get("data")
        if status != 201 or not isinstance(data, dict):
            self._refused(status, payload.get("error"))
            return False
        for plan in plans(data):
            for order in plan["placed"]:
                self._placed(order)
            for refused in plan["refused"]:
                self._refused(refused["error"]["status"], refused["error"])
        return True

    def _placed(self, order: dict[str, Any]) -> bool:
        if order.get("status") == "filled":
            self.filled.add(str(order["id"]))
            return True
        self.unfilled[str(order["id"])] = str(order.get("status"))
        return False

    def _refused(self, status: int, error: object) -> None:
        code = error.get("code") if isinstance(error, dict) else None
        self.refused[f"{status} {code or ''}".strip()] += 1

    @property
    def not_counted(self) -> int:
        return len(self.unfilled) + sum(self.refused.values())


async def place_orders(
    url: str, people: list[tuple[str, dict[str, str]]], ledger: Ledger, *, seconds: float, clients: int
) -> Result:
    """Each client buys for one investor, one order at a time, until time is up."""
    return await per_investor(
        url,
        people,
        market_buy(SYMBOLS),
        ledger.record,
        seconds=seconds,
        clients=clients,
        answer_timeout_s=ANSWER_TIMEOUT_S,
    )


def batch_of(size: int) -> Any:
    """Request i: a batch of ``size`` market buys of one share, the symbols rotating, under a fresh key."""

    def make(portfolio_id: str, headers: dict[str, str], i: int) -> Request:
        orders = [
            {"symbol": SYMBOLS[(i * size + n) % len(SYMBOLS)], "side": "buy", "quantity": "1"}
            for n in range(size)
        ]
        path = f"/api/v1/portfolios/{portfolio_id}/orders:batch"
        return Request("POST", path, headers, {"orders": orders}, fresh_idempotency_key=True)

    return make


async def place_batches(
    url: str,
    people: list[tuple[str, dict[str, str]]],
    ledger: Ledger,
    *,
    size: int,
    seconds: float,
    clients: int,
) -> tuple[Result, int]:
    """Each client sends batches of ``size`` buys for one investor until time is up; the batches'
    result (latency per batch) and the orders they placed and filled."""
    before = len(ledger.filled)
    result = await per_investor(
        url,
        people,
        batch_of(size),
        ledger.record_batch,
        seconds=seconds,
        clients=clients,
        answer_timeout_s=ANSWER_TIMEOUT_S,
    )
    return result, len(ledger.filled) - before


# A rebalancing day ----------------------------------------------------------------------------------

# Cash into equities across two sectors: a new portfolio's rebalance buys several securities.
TARGET = {
    "asset_class": {"equity": "0.90", "cash": "0.10"},
    "sector": {"Consumer Staples": "0.45", "Health Care": "0.45"},
}


def open_rebalance_books(
    http: httpx.Client, people: list[tuple[str, dict[str, str]]], count: int, name: str = "Target"
) -> list[tuple[str, dict[str, str]]]:
    """``count`` funded cash portfolios with :data:`TARGET`, spread over the investors, named
    ``{name} {n}`` (a name the investor has already answers the portfolio that has it)."""
    books: list[tuple[str, dict[str, str]]] = []
    for n in range(count):
        _, headers = people[n % len(people)]
        created = http.post(
            "/api/v1/portfolios", json={"name": f"{name} {n}", "target_allocation": TARGET}, headers=headers
        )
        if created.status_code != 201:
            raise SystemExit(f"portfolio failed: {created.status_code} {created.text}")
        portfolio_id = created.json()["data"]["id"]
        deposit = http.post(
            f"/api/v1/portfolios/{portfolio_id}/cash",
            json={"amount": str(BOOK_DEPOSIT)},
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        if deposit.status_code != 201:
            raise SystemExit(f"deposit failed: {deposit.status_code} {deposit.text}")
        books.append((portfolio_id, headers))
    return books


Call = tuple[str, dict[str, str], dict[str, Any]]  # path, headers, body


def one_call_a_book(books: list[tuple[str, dict[str, str]]]) -> list[Call]:
    """POST .../rebalance for each book."""
    return [(f"/api/v1/portfolios/{pid}/rebalance", headers, {"dry_run": False}) for pid, headers in books]


def one_call_an_investor(books: list[tuple[str, dict[str, str]]]) -> list[Call]:
    """POST /portfolios:rebalance for each investor, naming all of the investor's books (up to 100)."""
    by_investor: dict[str, tuple[dict[str, str], list[str]]] = {}
    for pid, headers in books:
        by_investor.setdefault(headers["Authorization"], (headers, []))[1].append(pid)
    return [
        ("/api/v1/portfolios:rebalance", headers, {"dry_run": False, "portfolio_ids": ids[i : i + 100]})
        for headers, ids in by_investor.values()
        for i in range(0, len(ids), 100)
    ]


async def rebalance_all(
    url: str, calls: list[Call], record: Callable[[int, bytes], bool], ledger: Ledger, *, clients: int
) -> tuple[Result, int]:
    """Every call made once (each under its own Idempotency-Key), by ``clients`` clients each taking
    the next; the calls' result and the orders filled."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    queue: asyncio.Queue[Call] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)
    latencies: list[float] = []
    failed = 0
    before = len(ledger.filled)

    async def client() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not queue.empty():
                path, headers, body = queue.get_nowait()
                request = Request("POST", path, headers, body, fresh_idempotency_key=True)
                started = time.perf_counter()
                writer.write(request.encode(f"{host}:{port}"))
                await writer.drain()
                status, answer = await asyncio.wait_for(read_response(reader), ANSWER_TIMEOUT_S)
                if record(status, answer):
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    failed += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(clients, len(calls)))))
    result = Result(len(latencies), time.perf_counter() - started, latencies, failed)
    return result, len(ledger.filled) - before


def measure_floor(
    url: str,
    overrides: dict[str, str],
    people: list[tuple[str, dict[str, str]]],
    *,
    seconds: float,
    clients: int,
) -> Result:
    """The same market buys against the floor route (bench/_floor.py): the API redeployed with it,
    one second of warm-up, then ``seconds`` measured. Nothing is written."""
    import _floor
    import ray.cloudpickle
    from ray import serve

    ray.cloudpickle.register_pickle_by_value(_floor)  # type: ignore[no-untyped-call]
    settings = {k: v for k, v in overrides.items() if k != "num_replicas"}
    ingress: Any = _floor.FloorIngress  # @serve.deployment turns the class into a Deployment
    serve.run(ingress.bind(settings), name="api", route_prefix="/")
    buys = [
        Request(
            "POST",
            _floor.FLOOR_PATH,
            headers,
            {"portfolio_id": pid, "symbol": SYMBOLS[n % len(SYMBOLS)], "side": "buy", "quantity": "1"},
            fresh_idempotency_key=True,
        )
        for n, (pid, headers) in enumerate(people)
    ]
    asyncio.run(run(url, buys, seconds=1, clients=clients))
    phase(f"the floor for {seconds:g} s")
    floor = asyncio.run(run(url, buys, seconds=seconds, clients=clients))
    if floor.errors:
        raise SystemExit(f"{floor.errors} requests to the floor route failed")
    return floor


def stop_platform(namespace: str) -> None:
    """Delete the API app and every actor of the platform's namespace (they are detached)."""
    import ray
    from ray import serve

    serve.delete("api")
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == namespace and not actor["name"].startswith("SERVE_"):
            ray.kill(ray.get_actor(actor["name"], namespace=namespace), no_restart=True)


# Verification ------------------------------------------------------------------------------------


def settle(database_url: str) -> int:
    """Wait (a little) for orders answered before they filled; the number still open after that."""
    deadline = time.monotonic() + SETTLE_S
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM orders WHERE status IN ('pending', 'submitted', 'partially_filled')"
            ).fetchone()
            still_open = int(row[0]) if row else 0
            if not still_open or time.monotonic() > deadline:
                return still_open
            time.sleep(0.5)


DRAIN_LIMIT_S = 180.0


def drained(database_url: str, redis_url: str) -> float:
    """Wait until the event bus has caught up (every event published, every consumer group's lag
    and pending list empty); the seconds that took, so a phase starts on a quiet platform, as the
    baseline does, and the run shows how far the event bus fell behind the answers."""
    import redis

    from wealthalloc.events.relay import TOPICS, stream_key

    started = time.monotonic()
    client = redis.Redis.from_url(redis_url)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while time.monotonic() - started < DRAIN_LIMIT_S:
                row = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM events WHERE published_at IS NULL)"
                ).fetchone()
                behind = bool(row and row[0])
                for topic in TOPICS:
                    if behind:
                        break
                    try:
                        groups: Any = client.xinfo_groups(stream_key(topic))
                    except redis.exceptions.ResponseError:
                        continue  # no such stream yet
                    behind = any(int(g.get("lag") or 0) or int(g.get("pending") or 0) for g in groups)
                if not behind:
                    break
                time.sleep(0.2)
    finally:
        client.close()
    return time.monotonic() - started


def verify(database_url: str, ledger: Ledger, portfolios: dict[str, Decimal]) -> tuple[list[str], int]:
    """Every way the database disagrees with the answers (empty when it agrees), and the number of
    orders answered unfilled that filled afterwards (the gateway's tick can finish what an answer
    left open; they are verified, not counted)."""
    from wealthalloc.domain.money import money

    problems: list[str] = []
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        orders = conn.execute(
            """SELECT o.id::text AS id, o.status, count(f.id) AS fills
               FROM orders o LEFT JOIN fills f ON f.order_id = o.id GROUP BY o.id"""
        ).fetchall()
        by_id = {r["id"]: r for r in orders}
        answered = ledger.filled | set(ledger.unfilled)
        if set(by_id) != answered:
            problems.append(
                f"{len(answered - set(by_id))} answered orders missing from PostgreSQL, "
                f"{len(set(by_id) - answered)} orders there that were never answered"
            )
        lost = [i for i in ledger.filled if i not in by_id or by_id[i]["status"] != "filled"]
        if lost:
            problems.append(f"{len(lost)} orders answered filled are not filled in PostgreSQL")
        twice = [r["id"] for r in orders if r["fills"] > 1]
        if twice:
            problems.append(f"{len(twice)} orders have more than one fill")
        filled = sum(1 for r in orders if r["status"] == "filled")
        late = sum(1 for i in ledger.unfilled if i in by_id and by_id[i]["status"] == "filled")
        counts = conn.execute(
            """SELECT (SELECT count(*) FROM fills) AS fills,
                      (SELECT count(*) FROM lots WHERE opened_by_fill_id IS NOT NULL) AS lots,
                      (SELECT count(*) FROM cash_movements WHERE kind = 'trade') AS movements,
                      (SELECT count(*) FROM trades) AS trades,
                      (SELECT count(*) FROM events WHERE event_type = 'trades.executed') AS executed"""
        ).fetchone()
        assert counts is not None
        expected = len(ledger.filled) + late
        if not (filled == expected == counts["fills"]):
            problems.append(
                f"{filled} filled orders and {counts['fills']} fills in PostgreSQL, "
                f"{len(ledger.filled)} answered filled (+{late} filled after answering)"
            )
        for table in ("lots", "movements", "trades", "executed"):
            if counts[table] != counts["fills"]:
                problems.append(f"{counts[table]} {table} rows for {counts['fills']} fills")
        cost: dict[str, Decimal] = {p: Decimal(0) for p in portfolios}
        for row in conn.execute(
            """SELECT o.portfolio_id::text AS portfolio_id, f.quantity, f.price, f.commission
               FROM fills f JOIN orders o ON o.id = f.order_id"""
        ):
            cost[row["portfolio_id"]] += money(row["quantity"] * row["price"]) + row["commission"]
        balances = {
            r["id"]: r["cash_balance"]
            for r in conn.execute("SELECT id::text AS id, cash_balance FROM portfolios")
        }
        wrong = [p for p, deposit in portfolios.items() if balances.get(p) != deposit - cost[p]]
        if wrong:
            p = wrong[0]
            problems.append(
                f"cash differs from deposit less fills on {len(wrong)} portfolios "
                f"(e.g. {balances.get(p)} != {portfolios[p]} - {cost[p]})"
            )
    return problems, late


# Baseline ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    """One symbol's fill as the paper broker made it in this run, so the baseline writes the same values."""

    symbol: str
    price: Decimal
    commission: Decimal
    market_date: date


def fills_made(database_url: str) -> list[Fill]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            """SELECT DISTINCT ON (o.symbol) o.symbol, f.price, f.commission, o.market_date
               FROM fills f JOIN orders o ON o.id = f.order_id ORDER BY o.symbol, f.executed_at"""
        ).fetchall()
    return [Fill(r["symbol"], r["price"], r["commission"], r["market_date"]) for r in rows]


async def write_filled_order(
    conn: psycopg.AsyncConnection[Any], portfolio_id: str, user_id: str, fill: Fill
) -> None:
    """The rows one filled market buy of one share leaves, one statement at a time as the shard
    writes them (ids it needs later come back with RETURNING)."""
    order_id = uuid.uuid4()
    one = Decimal(1)
    await conn.execute(
        """INSERT INTO orders (id, portfolio_id, user_id, idempotency_key, request_hash, symbol, side,
                               quantity, order_type, time_in_force, status, filled_quantity,
                               average_fill_price, reserved_cash, broker, broker_order_id, market_date,
                               origin, submitted_at)
           VALUES (%s, %s, %s, %s, %s, %s, 'buy', %s, 'market', 'day', 'filled', %s, %s, 0, 'paper', %s,
                   %s, 'api', now())""",
        (
            order_id,
            portfolio_id,
            user_id,
            str(uuid.uuid4()),
            "0" * 64,
            fill.symbol,
            one,
            one,
            fill.price,
            f"paper-{order_id}",
            fill.market_date,
        ),
    )
    placed = {"order_id": order_id, "portfolio_id": portfolio_id, "symbol": fill.symbol, "side": "buy"}
    await conn.execute(
        """INSERT INTO events (topic, event_type, user_id, aggregate_id, payload)
           VALUES ('trades.executed', 'trades.order_placed', %s, %s, %s) RETURNING id""",
        (user_id, order_id, json.dumps({**placed, "quantity": "1", "order_type": "market"}, default=str)),
    )
    cur = await conn.execute(
        """INSERT INTO fills (order_id, fill_id, quantity, price, commission, executed_at)
           VALUES (%s, %s, %s, %s, %s, now()) RETURNING id""",
        (order_id, f"paper:{order_id}:0", one, fill.price, fill.commission),
    )
    fill_row = await cur.fetchone()
    assert fill_row is not None
    cost = fill.price + fill.commission
    await conn.execute(
        """INSERT INTO lots (portfolio_id, symbol, shares, original_shares, cost_basis, adjusted_basis,
                             acquired_at, holding_period_start, source, opened_by_fill_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'buy', %s) RETURNING id""",
        (portfolio_id, fill.symbol, one, one, cost, cost, fill.market_date, fill.market_date, fill_row[0]),
    )
    cur = await conn.execute(
        """UPDATE portfolios SET cash_balance = cash_balance - %s, version = version + 1, updated_date = now()
           WHERE id = %s RETURNING cash_balance""",
        (cost, portfolio_id),
    )
    balance = await cur.fetchone()
    assert balance is not None
    await conn.execute(
        """INSERT INTO cash_movements (portfolio_id, amount, kind, reference_id, description, balance_after)
           VALUES (%s, %s, 'trade', %s, %s, %s) RETURNING id""",
        (portfolio_id, -cost, fill_row[0], f"buy 1 {fill.symbol} @ {fill.price}", balance[0]),
    )
    cur = await conn.execute(
        """INSERT INTO trades (portfolio_id, order_id, symbol, side, shares, price, total_amount, commission,
                               status, ibkr_order_id)
           VALUES (%s, %s, %s, 'buy', %s, %s, %s, %s, 'executed', %s) RETURNING id""",
        (
            portfolio_id,
            order_id,
            fill.symbol,
            one,
            fill.price,
            fill.price,
            fill.commission,
            f"paper-{order_id}",
        ),
    )
    trade = await cur.fetchone()
    assert trade is not None
    executed = {
        **placed,
        "trade_id": trade[0],
        "quantity": "1",
        "price": fill.price,
        "cash_balance": balance[0],
    }
    await conn.execute(
        """INSERT INTO events (topic, event_type, user_id, aggregate_id, payload)
           VALUES ('trades.executed', 'trades.executed', %s, %s, %s) RETURNING id""",
        (user_id, order_id, json.dumps(executed, default=str)),
    )


async def baseline(
    database_url: str, owners: list[tuple[str, str]], fills: list[Fill], *, seconds: float, clients: int
) -> Result:
    """Row-sets per second with one transaction per filled order, client n on portfolio n as above."""
    from psycopg_pool import AsyncConnectionPool

    latencies: list[float] = []
    async with AsyncConnectionPool(database_url, min_size=clients, max_size=clients, open=False) as pool:
        await pool.wait()
        deadline = time.perf_counter() + seconds

        async def client(n: int) -> None:
            portfolio_id, user_id = owners[n % len(owners)]
            i = n
            while time.perf_counter() < deadline:
                fill = fills[i % len(fills)]
                i += 1
                started = time.perf_counter()
                async with pool.connection() as conn, conn.transaction():
                    await write_filled_order(conn, portfolio_id, user_id, fill)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        return Result(len(latencies), time.perf_counter() - started, latencies, 0)


# The run -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Prints one line per figure: the platform's orders/s, the baseline's row-sets/s with the "
        "ratio, and the durability check (exit status 1 when it fails); then, as the last line, one "
        "JSON object of the figures.",
    )
    parser.add_argument("--seconds", type=float, default=8, help="length of each measured run (default 8)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument(
        "--investors", type=int, default=50, help="investors, one funded portfolio each (default 50)"
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=Settings().shard_count,
        help="PortfolioShard actors (default: the setting, WEALTHALLOC_SHARD_COUNT)",
    )
    parser.add_argument(
        "--warmup", type=float, default=2, help="seconds of orders before measuring (default 2)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=50, help="orders in each POST .../orders:batch (default 50)"
    )
    parser.add_argument(
        "--rebalance",
        type=int,
        default=1000,
        help="cash portfolios with a target allocation rebalanced one a call, and as many again "
        "rebalanced each investor's in one call (default 1000; 0 skips)",
    )
    parser.add_argument(
        "--commit-group",
        type=int,
        default=Settings().shard_commit_group,
        help="most changes a shard commits in one transaction; 1 commits each alone (default: the setting)",
    )
    args = parser.parse_args()

    from ray import serve

    from serve_apps.api.deployment import build

    with bench_platform(args.investors) as platform:
        url, database_url = platform.url, platform.database_url
        overrides = {
            **platform.overrides,
            "shard_count": str(args.shards),
            "num_replicas": "1",
            "shard_commit_group": str(args.commit_group),
        }
        serve.run(build(overrides), name="api", route_prefix="/")

        people: list[tuple[str, dict[str, str]]] = []
        owners: list[tuple[str, str]] = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for n in range(args.investors):
                headers = platform.login(http, n)
                created = http.post("/api/v1/portfolios", json={"name": "Main"}, headers=headers).json()[
                    "data"
                ]
                deposit = http.post(
                    f"/api/v1/portfolios/{created['id']}/cash",
                    json={"amount": str(DEPOSIT)},
                    headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                )
                if deposit.status_code != 201:
                    raise SystemExit(f"deposit failed: {deposit.status_code} {deposit.text}")
                people.append((created["id"], headers))
                owners.append((created["id"], created["user_id"]))
            books = open_rebalance_books(http, people, args.rebalance)
            together = open_rebalance_books(http, people, args.rebalance, "Together")

        ledger = Ledger()
        # Warm-up: shard books, the gateway and its broker, connection pools; its orders are verified too.
        asyncio.run(place_orders(url, people, ledger, seconds=args.warmup, clients=args.clients))
        warm = len(ledger.filled)
        # Each phase starts once the event bus has caught up with the one before; how long that took
        # after each measured phase is a figure of its own.
        quiet = {"warmup": drained(database_url, overrides["redis_url"])}
        phase(f"single orders for {args.seconds:g} s")
        placed = asyncio.run(place_orders(url, people, ledger, seconds=args.seconds, clients=args.clients))
        quiet["single"] = drained(database_url, overrides["redis_url"])
        # Batches: one client per investor at most, so no two batches queue on one user's lock.
        batch_clients = min(args.clients, args.investors)
        phase(f"batches of {args.batch_size} for {args.seconds:g} s")
        batches, batched = asyncio.run(
            place_batches(
                url, people, ledger, size=args.batch_size, seconds=args.seconds, clients=batch_clients
            )
        )
        batched_rate = batched / batches.seconds if batches.seconds else 0.0
        quiet["batches"] = drained(database_url, overrides["redis_url"])
        phase(f"{len(books)} rebalances")
        rebalances, rebalanced = asyncio.run(
            rebalance_all(url, one_call_a_book(books), ledger.record_batch, ledger, clients=args.clients)
        )
        rebalanced_rate = rebalanced / rebalances.seconds if rebalances.seconds else 0.0
        quiet["rebalance"] = drained(database_url, overrides["redis_url"])
        calls = one_call_an_investor(together)
        phase(f"{len(together)} portfolios rebalanced in {len(calls)} calls")
        bulk, bulk_orders = asyncio.run(
            rebalance_all(url, calls, ledger.record_books, ledger, clients=args.clients)
        )
        bulk_rate = bulk_orders / bulk.seconds if bulk.seconds else 0.0
        still_open = settle(database_url)
        quiet["rebalance_together"] = drained(database_url, overrides["redis_url"])
        # Last of the platform's phases: it replaces the API's replica, and writes nothing.
        floor = measure_floor(url, overrides, people, seconds=args.seconds, clients=args.clients)
        deposits = {pid: DEPOSIT for pid, _ in people} | {pid: BOOK_DEPOSIT for pid, _ in books + together}
        problems, late = verify(database_url, ledger, deposits)
        if rebalances.errors:
            problems.append(f"{rebalances.errors} rebalances were not taken")
        if bulk.errors:
            problems.append(f"{bulk.errors} rebalances of several portfolios were not taken")
        if still_open:
            problems.append(f"{still_open} orders still open {SETTLE_S:.0f} s after the run")
        if not ledger.filled:
            problems.append("no order was answered filled")

        # The platform's actors go before the baseline runs: their connections and idle loops are
        # not the baseline's to share.
        stop_platform(overrides["ray_namespace"])
        plain = Result(0, 0.0, [], 0)
        fills = fills_made(database_url)
        if fills:
            phase(f"baseline for {args.seconds:g} s")
            plain = asyncio.run(
                baseline(database_url, owners, fills, seconds=args.seconds, clients=args.clients)
            )
        ratio = placed.rate / plain.rate if plain.rate else float("nan")
        floor_ratio = floor.rate / plain.rate if plain.rate else float("nan")
        refused = ", ".join(f"{n} {k}" for k, n in ledger.refused.most_common()) or "none"
        unfilled = Counter(ledger.unfilled.values())
        print(
            f"orders x{args.clients} clients ({args.investors} investors, {args.shards} shards, paper, "
            f"commit groups of up to {args.commit_group}): "
            f"placed+filled via serve+shard {placed.rate:,.0f} orders/s "
            f"p50 {placed.p50:.1f} ms p99 {placed.p99:.1f} ms "
            f"({placed.requests:,} in {placed.seconds:.1f} s; not counted: "
            f"{sum(unfilled.values())} answered unfilled {dict(unfilled) or ''}, refused {refused})"
        )
        print(
            f"orders in batches of {args.batch_size} x{batch_clients} clients: placed+filled "
            f"{batched_rate:,.0f} orders/s ({batched:,} orders in {batches.requests:,} batches; "
            f"per batch p50 {batches.p50:.1f} ms p99 {batches.p99:.1f} ms)"
        )
        print(
            f"a rebalancing day, {len(books):,} cash portfolios x{args.clients} clients: placed+filled "
            f"{rebalanced_rate:,.0f} orders/s ({rebalanced:,} orders in {rebalances.seconds:.1f} s; "
            f"per rebalance p50 {rebalances.p50:.1f} ms p99 {rebalances.p99:.1f} ms)"
        )
        print(
            f"a rebalancing day, {len(together):,} cash portfolios in {len(calls)} calls (each investor's "
            f"portfolios in one POST /portfolios:rebalance): placed+filled {bulk_rate:,.0f} orders/s "
            f"({bulk_orders:,} orders in {bulk.seconds:.1f} s; per call p50 {bulk.p50:.1f} ms "
            f"p99 {bulk.p99:.1f} ms)"
        )
        print(
            f"orders x{args.clients} clients: baseline PostgreSQL, the same rows in one transaction "
            f"{plain.rate:,.0f} row-sets/s p50 {plain.p50:.1f} ms p99 {plain.p99:.1f} ms "
            f"| platform/baseline {ratio:.2f}x"
        )
        print(
            f"the floor under a single order x{args.clients} clients (everything but the desk: HTTP, "
            f"token, rate limit, ownership, body, quote, one Ray call to the owning shard; nothing "
            f"written): {floor.line('floor')} | floor/baseline {floor_ratio:.2f}x, "
            f"orders/floor {placed.rate / floor.rate if floor.rate else float('nan'):.2f}x"
        )
        caught_up = (f"{seconds:.1f} s after the {name.replace('_', ' ')}" for name, seconds in quiet.items())
        print("the event bus caught up " + ", ".join(caught_up))
        if problems:
            print("orders NOT verified: " + "; ".join(problems), file=sys.stderr)
            return 1
        answered, total = len(ledger.filled), len(ledger.filled) + late
        print(
            f"orders verified: {answered:,} answered filled ({warm:,} in warm-up, +{late} filled after "
            f"answering) = {total:,} filled orders = {total:,} fills in PostgreSQL, none filled twice, "
            f"cash = deposit - fills' cost on {len(deposits)} portfolios"
        )
        # Printed once the platform is down: Ray's messages as it stops would follow the JSON line.
        figures = {
            "clients": args.clients,
            "investors": args.investors,
            "shards": args.shards,
            "commit_group": args.commit_group,
            **placed.figures("orders"),
            "orders": placed.requests,
            "measured_s": placed.seconds,
            "answered_unfilled": sum(unfilled.values()),
            "refused": sum(ledger.refused.values()),
            "batch_size": args.batch_size,
            "batch_orders_per_s": batched_rate,
            "batch_orders": batched,
            "batch_p50_ms": batches.p50,
            "batch_p99_ms": batches.p99,
            "batch_ratio": batched_rate / plain.rate if plain.rate else float("nan"),
            "rebalanced_portfolios": len(books),
            "rebalance_orders_per_s": rebalanced_rate,
            "rebalance_orders": rebalanced,
            "rebalance_p50_ms": rebalances.p50,
            "rebalance_p99_ms": rebalances.p99,
            "rebalanced_together_portfolios": len(together),
            "rebalance_calls_together": len(calls),
            "rebalance_together_orders_per_s": bulk_rate,
            "rebalance_together_orders": bulk_orders,
            "rebalance_together_p50_ms": bulk.p50,
            "rebalance_together_p99_ms": bulk.p99,
            **plain.figures("row_sets", "baseline_"),
            "ratio": ratio,
            **floor.figures("req", "floor_"),
            **{f"events_drained_after_{name}_s": seconds for name, seconds in quiet.items()},
            "floor_ratio": floor_ratio,
            "verified_answered_filled": answered,
            "verified_warmup_filled": warm,
            "verified_filled_after_answering": late,
            "verified_filled_orders": total,
            "verified_portfolios": len(deposits),
        }
    print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
