"""``/health``: real checks of every dependency the API needs to serve money.

Each check runs with a timeout and reports ``healthy`` or ``unhealthy`` with
what it saw. Any unhealthy check turns the answer into a 503 error envelope.

Who sees what: the report names server paths, pool sizes, versions and memory,
which help an attacker as much as an operator. So an anonymous caller (a load
balancer) gets the status only; the whole report, and ``/metrics``, need an
operator: an admin's token, or the ``operations_token`` that Prometheus and
``wealthalloc doctor`` send. ``/health/live`` and ``/health/ready`` are the
orchestrator's probes: the process answers, and it can serve requests.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psutil
import ray
import redis.exceptions
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from actors.directory import GATEWAY_NAME, NotRunning, running
from serve_apps.anomaly import replica_metrics
from serve_apps.api.deps import current_principal
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.resources import Resources
from wealthalloc.config import VERSION
from wealthalloc.domain.sharding import shard_name
from wealthalloc.events.consumers import DEAD_LETTERS
from wealthalloc.events.relay import TOPICS, stream_key
from wealthalloc.logging import get_logger
from wealthalloc.marketdata import MarketDataError
from wealthalloc.ml.registry import ModelRegistry
from wealthalloc.storage.migrate import pending

CHECK_TIMEOUT_S = 2.0

log = get_logger(__name__)

router = APIRouter(tags=["operations"])

Check = Callable[[Resources], Awaitable[dict[str, Any]]]


class CheckFailed(Exception):
    """A check that ran and found a problem; ``details`` go into the report beside the error."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


async def check_database(res: Resources) -> dict[str, Any]:
    assert res.pool is not None
    async with res.pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
        await conn.execute("SELECT 1")
    waiting = await asyncio.to_thread(pending, res.settings.database_url)
    if waiting:
        raise CheckFailed(f"migrations not applied: {', '.join(waiting)}")
    stats = res.pool.get_stats()
    return {"pool_size": stats.get("pool_size"), "pool_available": stats.get("pool_available")}


async def check_redis(res: Resources) -> dict[str, Any]:
    assert res.redis is not None
    await res.redis.ping()
    return {}


async def check_ray(res: Resources) -> dict[str, Any]:
    if not ray.is_initialized():
        raise CheckFailed("this process is not connected to a Ray cluster")
    nodes = await asyncio.to_thread(ray.nodes)
    alive = [n for n in nodes if n.get("Alive")]
    if not alive:
        raise CheckFailed("no alive Ray node")
    return {"alive_nodes": len(alive)}


async def check_broker(res: Resources) -> dict[str, Any]:
    """The gateway actor's own view (breaker state, open orders); a plain app checks prices only."""
    gateway = res.gateway()
    if gateway is not None:
        state: dict[str, Any] = await gateway.health.remote()
        res.metrics.broker_state(state)
        if state["status"] == "down":
            raise CheckFailed(f"broker {state['broker']} is down: {state.get('detail')}")
        return {k: v for k, v in state.items() if k != "status"} | {"state": state["status"]}
    try:
        today = res.clock.today()
        symbols = res.prices.symbols()
    except MarketDataError as exc:
        raise CheckFailed(f"paper broker has no prices: {exc}") from exc
    if not symbols:
        raise CheckFailed(f"paper broker has no prices in {res.settings.prices_dir}")
    return {"broker": "paper", "market_date": today.isoformat(), "symbols": len(symbols)}


async def check_event_bus(res: Resources) -> dict[str, Any]:
    assert res.pool is not None and res.redis is not None
    res.ensure_event_bus()  # a restarted bus actor resumes its loops here
    await res.redis.ping()
    async with res.pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS backlog, min(created_at) AS oldest FROM events WHERE published_at IS NULL"
        )
        row = await cur.fetchone()
    assert row is not None
    oldest = row["oldest"]
    lag = 0.0 if oldest is None else max(0.0, time.time() - oldest.timestamp())
    groups = await group_backlogs(res.redis)
    for group, (undelivered, unacked) in groups.items():
        res.metrics.consumer_backlog(group, undelivered=undelivered, pending=unacked)
    lags = {group: undelivered + unacked for group, (undelivered, unacked) in groups.items()}
    dead = int(await res.redis.xlen(DEAD_LETTERS))
    res.metrics.dead_letters.set(dead)
    return {
        "outbox_backlog": row["backlog"],
        "outbox_lag_seconds": round(lag, 3),
        "consumer_lag": lags,
        "dead_letters": dead,
    }


async def group_backlogs(client: Any, topics: Sequence[str] = TOPICS) -> dict[str, tuple[int, int]]:
    """Per consumer group, summed over the streams: entries not yet delivered to it (XINFO GROUPS
    ``lag``) and entries delivered but not acknowledged (``pending``)."""
    backlogs: dict[str, tuple[int, int]] = {}
    for topic in topics:
        try:
            groups = await client.xinfo_groups(stream_key(topic))
        except redis.exceptions.ResponseError:
            continue  # no such stream yet
        for group in groups:
            name = group["name"].decode() if isinstance(group["name"], bytes) else str(group["name"])
            undelivered, unacked = backlogs.get(name, (0, 0))
            backlogs[name] = (
                undelivered + int(group.get("lag") or 0),
                unacked + int(group.get("pending") or 0),
            )
    return backlogs


async def check_model(res: Resources) -> dict[str, Any]:
    """Healthy only when a version is promoted and the AnomalyDetector deployment serves that version.

    Reports the version loaded and the last load failure, so a promotion that
    did not take (a damaged file) is visible while the previous version keeps
    serving. The detector polls the registry, so just after a promotion this
    says "not loaded yet" for up to ``anomaly_poll_seconds`` plus the load time.
    """
    registry = ModelRegistry(res.settings.registry_uri)
    promoted = await asyncio.to_thread(registry.promoted)
    detail: dict[str, Any] = {"registry": registry.uri, "promoted_version": promoted}
    if res.anomaly is None:
        raise CheckFailed("this API runs without the anomaly detector deployment", detail)
    status: dict[str, Any] = await res.anomaly.status.remote()
    loaded = status["loaded_version"]
    failure = status["load_failure"]
    detail |= {"loaded_version": loaded, "load_failure": failure, "batching": status["batching"]}
    if status["model"] is not None:
        detail |= {"loaded_at": status["model"]["loaded_at"], "threshold": status["model"]["threshold"]}
    if promoted is None:
        raise CheckFailed(f"no model version is promoted in {registry.uri}", detail)
    if loaded != promoted:
        serving = f"still serving {loaded}" if loaded else "no model is served"
        if failure and failure["version"] == promoted:
            raise CheckFailed(
                f"promoted version {promoted} failed to load ({failure['error']}); {serving}", detail
            )
        raise CheckFailed(f"promoted version {promoted} is not loaded yet; {serving}", detail)
    return detail


async def check_model_loaded(res: Resources) -> dict[str, Any]:
    """Readiness: the detector answers and has done its first load of the promoted version.

    A load that failed counts as done: the replica then serves everything but the anomaly scores,
    and ``/health`` names the failure; keeping every replica out of rotation would not fix it.
    A plain app (no detector deployment) has no model to wait for.
    """
    if res.anomaly is None:
        return {"model": "none in this app"}
    status: dict[str, Any] = await res.anomaly.status.remote()
    loaded, failure = status["loaded_version"], status["load_failure"]
    if loaded is None and failure is None and status.get("promoted_version") is not None:
        raise CheckFailed(f"model {status['promoted_version']} is still loading")
    return {"loaded_version": loaded}


async def check_shards(res: Resources) -> dict[str, Any]:
    """Readiness: every portfolio shard actor answers (each is created here when missing)."""
    if not ray.is_initialized():
        return {"shards": "none outside a cluster"}
    count = res.settings.shard_count
    await asyncio.gather(*(res.shards.handle_for_index(i).pid.remote() for i in range(count)))
    return {"shards": count}


CHECKS: dict[str, Check] = {
    "database": check_database,
    "redis": check_redis,
    "ray": check_ray,
    "broker": check_broker,
    "event_bus": check_event_bus,
    "model": check_model,
}
# Readiness adds what a replica needs before its first request: the model loaded, the shards up.
READINESS: dict[str, Check] = {**CHECKS, "model_loaded": check_model_loaded, "shards": check_shards}
# Without these no request can be served; the others (broker, bus, a model that failed to load)
# degrade some routes only, and a replica that cannot fix them must not leave the rotation.
READY_CHECKS = ("database", "redis", "model_loaded", "shards")


async def _run(name: str, check: Check, res: Resources) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(res), CHECK_TIMEOUT_S)
        result: dict[str, Any] = {"status": "healthy", **detail}
    except TimeoutError:
        result = {"status": "unhealthy", "error": f"no answer within {CHECK_TIMEOUT_S:.0f} s"}
    except CheckFailed as exc:
        result = {"status": "unhealthy", "error": str(exc), **exc.details}
    except Exception as exc:  # a health check reports every failure, whatever its type
        result = {"status": "unhealthy", "error": str(exc) or type(exc).__name__}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    res.metrics.health.labels(name).set(1 if result["status"] == "healthy" else 0)
    return result


async def health_report(res: Resources, names: tuple[str, ...] = tuple(CHECKS)) -> dict[str, Any]:
    results = await asyncio.gather(*(_run(n, READINESS[n], res) for n in names))
    checks = dict(zip(names, results, strict=True))
    failing = [n for n, r in checks.items() if r["status"] != "healthy"]
    process = psutil.Process(os.getpid())
    return {
        "status": "unhealthy" if failing else "healthy",
        "version": VERSION,
        "checks": checks,
        "failing": failing,
        "uptime_seconds": round(time.time() - res.started_at, 1),
        "memory_mb": round(process.memory_info().rss / 2**20, 1),
    }


async def is_operator(request: Request) -> bool:
    """True for the operations token or an admin's credentials; anonymous is False.

    Credentials that are presented but invalid are refused (401) rather than treated as anonymous,
    so a scraper with an expired token learns it instead of reading an empty report.
    """
    res: Resources = request.app.state.resources
    authorization = request.headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        expected = res.settings.operations_token.get_secret_value()
        presented = authorization[7:].strip()
        if expected and hmac.compare_digest(presented.encode(), expected.encode()):
            return True
    elif "x-api-key" not in request.headers:
        return False
    principal = await current_principal(request, res)
    return principal.is_admin


async def require_operator(request: Request) -> None:
    if not await is_operator(request):
        if "authorization" not in request.headers and "x-api-key" not in request.headers:
            await current_principal(request, request.app.state.resources)  # 401: credentials missing
        raise ApiError(403, "FORBIDDEN", "This needs the admin role or the operations token.")


@router.get("/health", summary="Dependency checks; 503 when one fails. The report needs an operator.")
async def health(request: Request) -> JSONResponse:
    res: Resources = request.app.state.resources
    operator = await is_operator(request)
    report = await health_report(res)
    if report["failing"]:
        raise ApiError(
            503,
            "SERVICE_UNAVAILABLE",
            f"Unhealthy: {', '.join(report['failing'])}." if operator else "Unhealthy.",
            details=report if operator else {"status": report["status"], "version": VERSION},
            headers={"Retry-After": "5"},
        )
    return success(request, report if operator else {"status": report["status"], "version": VERSION})


@router.get("/health/live", summary="Liveness: the process answers (no dependency is checked)")
async def live(request: Request) -> JSONResponse:
    return success(request, {"status": "alive"})


@router.get(
    "/health/ready",
    summary="Readiness: PostgreSQL (schema current) and Redis answer, the model is loaded, the shards are up",
)
async def ready(request: Request) -> JSONResponse:
    res: Resources = request.app.state.resources
    report = await health_report(res, READY_CHECKS)
    if report["failing"]:
        # The names of what is missing help whoever reads a probe's log and tell an attacker nothing.
        raise ApiError(
            503,
            "SERVICE_UNAVAILABLE",
            "Not ready.",
            details={"status": "not_ready", "failing": report["failing"]},
            headers={"Retry-After": "5"},
        )
    return success(request, {"status": "ready"})


# /metrics --------------------------------------------------------------------------------------------


async def scrape(res: Resources) -> bytes:
    """One Prometheus scrape: this replica's metrics after running the health checks (so the health,
    broker and lag gauges are this scrape's), the portfolio totals, and the actors' metrics."""
    _, sources, _ = await asyncio.gather(health_report(res), actor_metrics(res), _portfolio_totals(res))
    return res.metrics.render(sources)


async def refresh_gauges(res: Resources) -> None:
    """What a scrape sets besides gathering the actors' figures: the health, broker and consumer-lag
    gauges and the portfolio totals. The copy into Ray's metrics calls it, since no scrape drives it."""
    await asyncio.gather(health_report(res), _portfolio_totals(res))


async def _portfolio_totals(res: Resources) -> None:
    if res.pool is None:
        return
    try:
        async with res.pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n, coalesce(sum(total_value), 0) AS value"
                " FROM portfolios WHERE deleted_at IS NULL"
            )
            row = await cur.fetchone()
    except Exception as exc:  # the database check reports the outage; the gauges keep their last values
        log.debug("portfolio_totals_unavailable", error=str(exc))
        return
    assert row is not None
    res.metrics.portfolios.set(row["n"])
    res.metrics.portfolio_value.set(float(row["value"]))


async def actor_metrics(res: Resources) -> dict[str, list[Any]]:
    """Each running actor's operations metrics, by source (``shard-0``, ``broker-gateway``,
    ``anomaly-<replica>``). Actors are looked up, never created: a shard no user reached yet has
    nothing to say."""
    if not ray.is_initialized():
        return {}
    namespace = res.settings.ray_namespace
    names = {f"shard-{i}": shard_name(i) for i in range(res.settings.shard_count)}
    names["broker-gateway"] = GATEWAY_NAME
    handles = await asyncio.to_thread(_running_actors, names, namespace)
    calls: dict[str, Any] = {source: handle.metrics.remote() for source, handle in handles.items()}
    if res.anomaly is not None:
        calls["anomaly"] = _detector_metrics(res)
    answers = await asyncio.gather(
        *(asyncio.wait_for(_awaited(call), CHECK_TIMEOUT_S) for call in calls.values()),
        return_exceptions=True,
    )
    sources: dict[str, list[Any]] = {}
    for source, answer in zip(calls, answers, strict=True):
        failed = isinstance(answer, BaseException) or (source == "anomaly" and not answer)
        res.metrics.source_up.labels(source).set(0 if failed else 1)
        if isinstance(answer, BaseException):
            continue
        if source == "anomaly":
            sources.update(answer)
        else:
            sources[source] = answer
    return sources


async def _detector_metrics(res: Resources) -> dict[str, list[Any]]:
    """Every detector replica's figures by source: each replica's as it last published them, and the
    one this call reaches as it stands now (serve_apps/anomaly/replica_metrics.py)."""
    assert res.anomaly is not None

    async def board() -> dict[str, list[Any]]:
        return {} if res.redis is None else await replica_metrics.published(res.redis)

    published, reached = await asyncio.gather(
        board(), _awaited(res.anomaly.metrics.remote()), return_exceptions=True
    )
    if isinstance(reached, BaseException) and isinstance(published, BaseException):
        raise reached
    found: dict[str, list[Any]] = {} if isinstance(published, BaseException) else dict(published)
    if not isinstance(reached, BaseException):
        found.update(reached)
    return found


def _running_actors(names: dict[str, str], namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for source, name in names.items():
        try:
            found[source] = running(name, namespace)
        except NotRunning:
            continue
    return found


async def _awaited(call: Any) -> Any:
    return await call
