"""After the chaos: every acknowledged write found exactly once, and the money, events and audit whole.

The judgement of the writes is pure (``judge``) so its rules are tested on their own; ``read_stored``
and the other checks read PostgreSQL, Redis and the API once the platform has settled.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import httpx
import psycopg
import redis
from psycopg.rows import dict_row

from wealthalloc.chaos.workload import Ack
from wealthalloc.events.audit_chain import verify_chain
from wealthalloc.events.relay import TOPICS, stream_key
from wealthalloc.storage.audit import iter_chain
from wealthalloc.storage.ledger_check import check_ledger


@dataclass(frozen=True)
class Stored:
    """What PostgreSQL holds for the acknowledged writes."""

    cash: Mapping[tuple[str, str], int]  # (portfolio, key) -> rows with that key
    orders: Mapping[tuple[str, str], tuple[str, ...]]  # (user, key) -> the ids of orders with that key
    statuses: Mapping[str, str]  # order id -> status
    sessions: frozenset[str]
    overfilled: tuple[str, ...]  # orders whose fills add up to more than the order


@dataclass(frozen=True)
class Judgement:
    lost: tuple[str, ...]
    doubled: tuple[str, ...]


def judge(acks: Iterable[Ack], stored: Stored) -> Judgement:
    """Each acknowledged write must be stored once, as the answer said: a missing one is lost, a second
    row (or a second fill beyond the order) is doubled."""
    lost: list[str] = []
    doubled: list[str] = [f"order {order} filled beyond its quantity" for order in stored.overfilled]
    for ack in acks:
        what = f"{ack.kind} {ack.key}"
        if ack.kind in ("deposit", "withdrawal"):
            rows = stored.cash.get((ack.portfolio_id, ack.key), 0)
            if rows == 0:
                lost.append(what)
            elif rows > 1:
                doubled.append(f"{what} stored {rows} times")
        elif ack.kind == "order":
            ids = stored.orders.get((ack.user_id, ack.key), ())
            if not ids:
                lost.append(what)
            elif len(ids) > 1:
                doubled.append(f"{what} stored {len(ids)} times")
            elif ids[0] != ack.ref:
                lost.append(f"{what}: answered as order {ack.ref}, stored as {ids[0]}")
        elif ack.kind == "cancel":
            status = stored.statuses.get(ack.ref)
            if status != "cancelled":
                lost.append(f"cancel of order {ack.ref}: the order is {status or 'missing'}")
        elif ack.kind == "sign_in" and ack.key not in stored.sessions:
            lost.append(f"sign_in session {ack.key}")
    return Judgement(tuple(lost), tuple(doubled))


def read_stored(database_url: str, acks: Sequence[Ack]) -> Stored:
    cash_keys = [a.key for a in acks if a.kind in ("deposit", "withdrawal")]
    order_keys = [a.key for a in acks if a.kind == "order"]
    users = sorted({a.user_id for a in acks})
    with psycopg.connect(database_url) as conn:
        cash = {
            (str(portfolio), key): count
            for portfolio, key, count in conn.execute(
                "SELECT portfolio_id, idempotency_key, count(*) FROM cash_movements"
                " WHERE idempotency_key = ANY(%s) GROUP BY portfolio_id, idempotency_key",
                (cash_keys,),
            )
        }
        orders: dict[tuple[str, str], tuple[str, ...]] = {}
        statuses: dict[str, str] = {}
        for user, key, order, status in conn.execute(
            "SELECT user_id, idempotency_key, id, status FROM orders WHERE user_id = ANY(%s::uuid[])",
            (users,),
        ):
            statuses[str(order)] = status
            if key in order_keys:
                orders[(str(user), key)] = (*orders.get((str(user), key), ()), str(order))
        sessions = frozenset(
            str(row[0])
            for row in conn.execute("SELECT id FROM sessions WHERE user_id = ANY(%s::uuid[])", (users,))
        )
        overfilled = tuple(
            str(row[0])
            for row in conn.execute(
                "SELECT o.id FROM orders o JOIN fills f ON f.order_id = o.id"
                " WHERE o.user_id = ANY(%s::uuid[])"
                " GROUP BY o.id, o.quantity HAVING sum(f.quantity) > o.quantity",
                (users,),
            )
        )
    return Stored(cash, orders, statuses, sessions, overfilled)


@dataclass(frozen=True)
class Settled:
    """Whether every event of the run reached Redis and every consumer group, and how long it took."""

    problems: tuple[str, ...]
    seconds: float


def wait_for_events(
    database_url: str, redis_url: str, users: Sequence[str], *, since_ms: int, timeout_s: float = 120
) -> Settled:
    """Wait until the outbox has published every event of ``users`` and every consumer group has handled
    every message, then check that each of those events is on its topic's stream."""
    started = time.monotonic()
    client = redis.Redis.from_url(redis_url)
    try:
        problems: tuple[str, ...] = ()
        while True:
            problems = _event_problems(database_url, client, users, since_ms)
            if not problems or time.monotonic() - started > timeout_s:
                return Settled(problems, time.monotonic() - started)
            time.sleep(1)
    finally:
        client.close()


def _event_problems(
    database_url: str, client: redis.Redis, users: Sequence[str], since_ms: int
) -> tuple[str, ...]:
    with psycopg.connect(database_url) as conn:
        events = conn.execute(
            "SELECT id, topic, published_at IS NOT NULL FROM events WHERE user_id = ANY(%s::uuid[])",
            (list(users),),
        ).fetchall()
    problems = [f"{sum(1 for *_, published in events if not published)} event(s) not published"]
    if problems[0].startswith("0 "):
        problems = []
    on_streams: set[str] = set()
    for topic in TOPICS:
        for _entry_id, fields in client.xrange(stream_key(topic), min=f"{since_ms}-0") or ():
            on_streams.add(_text((fields or {}).get(b"event_id", b"")))
    missing = [str(event) for event, topic, published in events if published and str(event) not in on_streams]
    if missing:
        problems.append(f"{len(missing)} published event(s) missing from their stream, e.g. {missing[0]}")
    for topic in TOPICS:
        try:
            groups = client.xinfo_groups(stream_key(topic))
        except redis.ResponseError:
            continue
        for group in groups:
            behind = int(group.get("lag") or 0) + int(group.get("pending") or 0)
            if behind:
                problems.append(f"consumer group {_text(group['name'])} is {behind} behind on {topic}")
    return tuple(problems)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def audit_problems(database_url: str) -> tuple[int, tuple[str, ...]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        report = verify_chain(iter_chain(conn))
    return report.entries, tuple(report.problems)


def ledger_problems(database_url: str, users: Sequence[str]) -> tuple[str, ...]:
    report = check_ledger(database_url, [uuid.UUID(user) for user in users])
    return tuple(str(d) for d in report.discrepancies)


def api_problems(
    api_url: str, investors: Sequence[tuple[str, dict[str, str]]], database_url: str, acks: Sequence[Ack]
) -> tuple[str, ...]:
    """The API tells the same story as PostgreSQL: each investor's cash as stored, and each acknowledged
    order listed once."""
    problems: list[str] = []
    orders_by_portfolio: dict[str, list[str]] = {}
    for ack in acks:
        if ack.kind == "order":
            orders_by_portfolio.setdefault(ack.portfolio_id, []).append(ack.ref)
    with httpx.Client(base_url=api_url, timeout=30) as http, psycopg.connect(database_url) as conn:
        for portfolio, headers in investors:
            answer = http.get(f"/api/v1/portfolios/{portfolio}", headers=headers)
            if answer.status_code != 200:
                problems.append(f"portfolio {portfolio}: GET answered {answer.status_code}")
                continue
            row = conn.execute("SELECT cash_balance FROM portfolios WHERE id = %s", (portfolio,)).fetchone()
            shown = answer.json()["data"]["cash_balance"]
            if row is None or str(row[0]) != str(shown) and float(row[0]) != float(shown):
                problems.append(
                    f"portfolio {portfolio}: the API shows cash {shown}, PostgreSQL {row and row[0]}"
                )
            listed = _listed_orders(http, portfolio, headers)
            for order in orders_by_portfolio.get(portfolio, []):
                if listed.count(order) != 1:
                    problems.append(f"order {order} listed {listed.count(order)} times by GET /trades")
    return tuple(problems)


def _listed_orders(http: httpx.Client, portfolio: str, headers: dict[str, str]) -> list[str]:
    """Every order ``GET /trades`` lists for the portfolio, following ``links.next`` page by page."""
    ids: list[str] = []
    url: str | None = f"/api/v1/trades?portfolio_id={portfolio}&limit=100"
    for _page in range(1000):
        if url is None:
            break
        body = http.get(url, headers=headers).json()
        ids.extend(order["id"] for order in body["data"])
        url = (body.get("links") or {}).get("next")
    return ids


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary_line(operations: int, lost: int, doubled: int, kills: int, recovery_p99_s: float) -> str:
    return (
        f"chaos: {operations} operations, {lost} lost, {doubled} doubled, {kills} kills,"
        f" recovery p99 {recovery_p99_s:.1f} s"
    )
