"""Portfolio reads through Serve and the shards, beside the same read straight from PostgreSQL;
and committed cash deposits per second with 1, 4 and 16 shards.

One run, one machine, one asyncio client (which shares the cores with the
servers: compare the figures side by side, not with other machines):

- GET /api/v1/portfolios/{id} as 50 investors, each reading their own
  portfolio (valued at the market clock, Redis snapshot cache-aside in front
  of the owning PortfolioShard), beside a route in the same app, with the
  same authentication and rate limit, that selects the portfolio and holdings
  rows from PostgreSQL and returns them unvalued;
- POST /api/v1/portfolios/{id}/cash with a fresh Idempotency-Key each time,
  each one committed (movement, balance, outbox event, key) before it answers,
  with the API redeployed for 1, 4 and 16 shards.

The last line printed is one JSON object of the figures.

    .venv/bin/python bench/portfolio.py [--seconds 8] [--clients 50]
"""

# No ``from __future__ import annotations``: the baseline route below is shipped to the Serve
# replica by value, and FastAPI must find real types on it, not names to resolve in this module.
import argparse
import asyncio
import sys
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _loadgen import Request, run  # noqa: E402
from _support import bench_platform, phase, print_figures  # noqa: E402


def _baseline_router() -> object:
    from fastapi import APIRouter, Request

    from serve_apps.api.deps import CurrentPrincipal
    from serve_apps.api.envelope import success

    router = APIRouter()

    @router.get("/baseline/portfolios/{portfolio_id}", response_model=None)
    async def read(portfolio_id: str, request: Request, principal: CurrentPrincipal):  # type: ignore[no-untyped-def]
        res = request.app.state.resources
        async with res.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM portfolios WHERE id = %s", (portfolio_id,))
            portfolio = await cur.fetchone()
            cur = await conn.execute(
                "SELECT * FROM holdings WHERE portfolio_id = %s ORDER BY symbol", (portfolio_id,)
            )
            holdings = await cur.fetchall()
        return success(request, {**portfolio, "holdings": holdings})

    return router


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()

    from ray import serve

    from wealthalloc.config import Settings

    with bench_platform(args.clients) as platform:
        url, overrides = platform.url, platform.overrides

        @serve.deployment(name="ApiIngress", max_ongoing_requests=200)
        @serve.ingress()
        class BenchIngress:
            """The API app plus the baseline route, so both are measured behind the same ingress."""

            def __init__(self, settings: dict[str, str]) -> None:
                self._settings = Settings(**settings)

            def __serve_build_asgi_app__(self) -> object:
                from serve_apps.api.app import create_app

                return create_app(self._settings, extra_routers=[_baseline_router()], behind_serve=True)

        def deploy(shards: int) -> None:
            serve.run(
                BenchIngress.bind({**overrides, "shard_count": str(shards)}), name="api", route_prefix="/"
            )

        deploy(4)
        people = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for n in range(args.clients):
                headers = platform.login(http, n)
                answer = http.post("/api/v1/portfolios", json={"name": "Main"}, headers=headers)
                if answer.status_code != 201:
                    raise SystemExit(f"investor {n}'s portfolio: HTTP {answer.status_code} {answer.text}")
                pid = answer.json()["data"]["id"]
                http.post(
                    f"/api/v1/portfolios/{pid}/cash",
                    json={"amount": "10000.00"},
                    headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                )
                for symbol, shares in (("AAPL", "10"), ("MSFT", "5"), ("JPM", "7"), ("KO", "20")):
                    http.post(
                        f"/api/v1/portfolios/{pid}/lots",
                        json={
                            "symbol": symbol,
                            "shares": shares,
                            "cost_basis": "1000.00",
                            "acquired_at": "2021-01-04",
                        },
                        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                    )
                people.append((pid, headers))
        reads = [Request("GET", f"/api/v1/portfolios/{pid}", h) for pid, h in people]
        baseline = [Request("GET", f"/baseline/portfolios/{pid}", h) for pid, h in people]
        asyncio.run(
            run(url, reads, seconds=2, clients=args.clients)
        )  # warm-up: books loaded, snapshots cached
        phase(f"reads for {args.seconds:g} s")
        read = asyncio.run(run(url, reads, seconds=args.seconds, clients=args.clients))
        phase(f"baseline reads for {args.seconds:g} s")
        base = asyncio.run(run(url, baseline, seconds=args.seconds, clients=args.clients))
        writes: dict[int, float] = {}
        for shards in (1, 4, 16):
            deploy(shards)
            posts = [
                Request(
                    "POST",
                    f"/api/v1/portfolios/{pid}/cash",
                    h,
                    {"amount": "1.00"},
                    fresh_idempotency_key=True,
                )
                for pid, h in people
            ]
            asyncio.run(run(url, posts, seconds=1, clients=args.clients))
            phase(f"deposits on {shards} shards for {args.seconds:g} s")
            result = asyncio.run(run(url, posts, seconds=args.seconds, clients=args.clients))
            if result.errors:
                raise SystemExit(f"{result.errors} deposits failed with {shards} shards")
            writes[shards] = result.rate
        if read.errors or base.errors:
            raise SystemExit(f"read errors: {read.errors} via shards, {base.errors} baseline")
        print(
            f"portfolio x{args.clients} clients: {read.line('GET via serve+shards')} | "
            f"{base.line('baseline PostgreSQL read')} | cash deposits committed/s: "
            + ", ".join(f"{n} shards {v:,.0f}" for n, v in writes.items())
        )
        figures = {
            "clients": args.clients,
            **read.figures("req", "read_"),
            **base.figures("req", "baseline_read_"),
            "deposits_per_s_by_shards": writes,
        }
    print_figures(figures)  # once Ray is down: its messages as it stops would follow the JSON line


if __name__ == "__main__":
    main()
