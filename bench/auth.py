"""Sign-in and authenticated reads, each beside the same handler without authentication.

Prints one line with four figures from the same run on the same app (uvicorn,
one process, real PostgreSQL and Redis):

- logins/s through POST /api/v1/auth/login (bcrypt at 12 rounds, the lockout
  counter, the per-address bucket, the audit row, the token pair), beside a
  handler that finds the user by email and returns, with no password check;
- GET /api/v1/me req/s with a bearer token (JWT check, user lookup, Redis
  token bucket), beside the same profile read for a fixed user, no auth.

The last line printed is one JSON object of the figures.

Logins are bcrypt-bound by design: 12 rounds cost a quarter of a second of one
core, which is what makes a stolen hash slow to crack.

    .venv/bin/python bench/auth.py [--seconds 8] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _loadgen import Request, run  # noqa: E402
from _support import REDIS_URL, free_port, print_figures, temporary_database  # noqa: E402

EMAIL = "bench-investor@example.com"
PASSWORD = "a long bench passphrase 2026"

SERVER = """
import sys, uuid, uvicorn
sys.path.insert(0, sys.argv[1])
from fastapi import APIRouter, Request
from serve_apps.api.app import create_app
from serve_apps.api.envelope import success
from wealthalloc.config import Settings
from wealthalloc.security.access import Principal, Role
from wealthalloc.storage import accounts as store

settings = Settings(
    database_url=sys.argv[2], redis_url=sys.argv[3], log_level="WARNING", secret_key="b" * 48,
    rate_limit_standard=10**9, login_ip_per_minute=10**9, bcrypt_rounds=12,
)
baseline = APIRouter()

@baseline.post("/baseline/login")
async def login(request: Request):
    body = await request.json()
    res = request.app.state.resources
    async with res.pool.connection() as conn:
        user = await store.user_by_email(conn, body["email"])
    return success(request, {"id": user["id"]})

@baseline.get("/baseline/me")
async def me(request: Request):
    res = request.app.state.resources
    principal = Principal(user_id=uuid.UUID(sys.argv[5]), email="", role=Role.INVESTOR, tier="standard")
    return success(request, await res.accounts.me(principal))

uvicorn.run(create_app(settings, extra_routers=[baseline]), host="127.0.0.1", port=int(sys.argv[4]),
            log_level="warning")
"""


def _rate(url: str, requests: list[Request], seconds: float, clients: int) -> float:
    result = asyncio.run(run(url, requests, seconds=seconds, clients=clients))
    if result.errors:
        raise SystemExit(f"{result.errors} requests to {requests[0].path} failed")
    return result.rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()

    from wealthalloc.security.passwords import hash_password

    with temporary_database() as database_url:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "INSERT INTO users (email, password_hash) VALUES (%s, %s) RETURNING id",
                (EMAIL, hash_password(PASSWORD, rounds=12)),
            ).fetchone()
        assert row is not None
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(ROOT), database_url, REDIS_URL, str(port), str(row[0])]
        )
        try:
            _measure(f"http://127.0.0.1:{port}", args.seconds, args.clients)
        finally:
            server.terminate()
            server.wait(10)


def _measure(url: str, seconds: float, clients: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/health", timeout=5)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise SystemExit("the bench server did not start") from None
            time.sleep(0.3)
    body = {"email": EMAIL, "password": PASSWORD}
    token = httpx.post(url + "/api/v1/auth/login", json=body, timeout=30).json()["data"]["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    me_requests = [Request("GET", "/api/v1/me", bearer)]
    _rate(url, me_requests, 1, clients)  # warm-up
    login_clients = min(clients, 4)
    logins = _rate(url, [Request("POST", "/api/v1/auth/login", {}, body)], seconds, login_clients)
    base_logins = _rate(url, [Request("POST", "/baseline/login", {}, body)], seconds, login_clients)
    me = _rate(url, me_requests, seconds, clients)
    base_me = _rate(url, [Request("GET", "/baseline/me", {})], seconds, clients)
    print(
        f"auth: login {logins:,.1f}/s (bcrypt 12 rounds) vs no-auth lookup {base_logins:,.0f}/s | "
        f"GET /me authenticated {me:,.0f} req/s vs no auth {base_me:,.0f} req/s "
        f"({me / base_me:.0%}) x{clients} clients"
    )
    print_figures(
        {
            "clients": clients,
            "login_clients": login_clients,
            "logins_per_s": logins,
            "baseline_logins_per_s": base_logins,
            "me_req_per_s": me,
            "baseline_me_req_per_s": base_me,
            "me_ratio": me / base_me,
        }
    )


if __name__ == "__main__":
    main()
