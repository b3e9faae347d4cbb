"""Registration does not tell anyone whether an address has an account.

Review finding: ``POST /api/v1/auth/register`` answered 409 ``EMAIL_TAKEN`` to anyone, so any
address could be tested. Now a taken address gets the same 201 and the same body shape as a new
one (a stand-in user whose id matches nothing; nothing is created) after the same work (policy,
bcrypt, one insert), and the real owner is told instead: an ``auth.registration_existing_account``
event in the outbox (for the mailer, a later issue) and an audit entry.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.integration.people import PASSWORD, data, fresh_ip, new_person

pytestmark = pytest.mark.integration


def _register(http: httpx.Client, email: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
    return http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, **extra},
        headers={"X-Forwarded-For": fresh_ip()},
    )


def _shape(value: Any) -> Any:
    """The keys and value types of a JSON body, without the values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__


def test_a_taken_address_gets_the_same_answer_as_a_new_one(http: httpx.Client, database_url: str) -> None:
    owner = new_person(http, database_url)
    newcomer = f"new-{uuid.uuid4().hex[:10]}@example.com"

    fresh = _register(http, newcomer, full_name="Sam Smith", risk_tolerance="aggressive")
    taken = _register(http, owner.email.upper(), full_name="Sam Smith", risk_tolerance="aggressive")

    assert fresh.status_code == taken.status_code == 201
    assert set(fresh.json()) == set(taken.json())
    new_user, stand_in = data(fresh, 201), data(taken, 201)
    assert _shape(stand_in) == _shape(new_user)
    same = {k: v for k, v in new_user.items() if k not in ("id", "email", "created_date")}
    assert {k: v for k, v in stand_in.items() if k not in ("id", "email", "created_date")} == same
    # The address as the caller typed it (normalised), as a new account echoes it: never the owner's.
    local, _, _ = owner.email.partition("@")
    assert stand_in["email"] == f"{local.upper()}@example.com"
    assert stand_in["id"] != owner.id
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE id = %s", (stand_in["id"],)).fetchone() == (0,)
        rows = conn.execute("SELECT count(*) FROM users WHERE lower(email) = lower(%s)", (owner.email,))
        assert rows.fetchone() == (1,)


def test_registering_a_taken_address_changes_nothing_of_the_account(
    http: httpx.Client, database_url: str
) -> None:
    owner = new_person(http, database_url)

    _register(http, owner.email, password="an attacker's own passphrase")

    assert owner.try_login().status_code == 200
    intruder = http.post(
        "/api/v1/auth/login",
        json={"email": owner.email, "password": "an attacker's own passphrase"},
        headers={"X-Forwarded-For": fresh_ip()},
    )
    assert intruder.status_code == 401


def test_the_owner_is_told_through_the_outbox_and_the_audit_trail(
    http: httpx.Client, database_url: str
) -> None:
    owner = new_person(http, database_url)
    ip = fresh_ip()

    http.post(
        "/api/v1/auth/register",
        json={"email": owner.email, "password": PASSWORD},
        headers={"X-Forwarded-For": ip},
    )

    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        events = conn.execute(
            "SELECT topic, payload FROM events WHERE event_type = 'auth.registration_existing_account'"
            " AND user_id = %s",
            (owner.id,),
        ).fetchall()
        audit = conn.execute(
            "SELECT ip FROM audit_log WHERE action = 'auth.registration_existing_account' AND subject = %s",
            (f"user:{owner.id}",),
        ).fetchall()
    assert [(e["topic"], e["payload"]["email"], e["payload"]["ip"]) for e in events] == [
        ("accounts.notices", owner.email, ip)
    ]
    assert [str(a["ip"]) for a in audit] == [ip]


def test_a_weak_password_is_refused_the_same_way_for_a_taken_address(
    http: httpx.Client, database_url: str
) -> None:
    owner = new_person(http, database_url)

    taken = _register(http, owner.email, password="passwordpassword")
    fresh = _register(http, f"new-{uuid.uuid4().hex[:10]}@example.com", password="passwordpassword")

    assert taken.status_code == fresh.status_code == 400
    assert taken.json()["error"]["details"] == fresh.json()["error"]["details"]


def test_both_answers_take_as_long_because_both_hash_the_password(
    database_url: str, session_redis_url: str
) -> None:
    """Timed on the account service itself with a real bcrypt cost, where an early exit would show."""
    from wealthalloc.accounts.service import AccountService
    from wealthalloc.config import Settings
    from wealthalloc.security.tokens import KeyRing
    from wealthalloc.storage.postgres import async_pool
    from wealthalloc.storage.rate_limiter import RateLimiter
    from wealthalloc.storage.redis_client import async_redis

    async def timings() -> tuple[list[float], list[float]]:
        settings = Settings(database_url=database_url, redis_url=session_redis_url, bcrypt_rounds=10)
        pool = async_pool(settings, name="registration-timing")
        await pool.open()
        client = async_redis(settings)
        service = AccountService(
            settings=settings, pool=pool, limiter=RateLimiter(client), keys=KeyRing.from_secrets("k" * 40)
        )
        existing = f"timed-{uuid.uuid4().hex[:10]}@example.com"
        new_times: list[float] = []
        taken_times: list[float] = []

        async def timed(email: str) -> float:
            started = time.perf_counter()
            await service.register(
                email=email, password=PASSWORD, full_name=None, risk_tolerance="moderate", ip=fresh_ip()
            )
            return time.perf_counter() - started

        try:
            await timed(existing)
            for _ in range(5):
                new_times.append(await timed(f"timed-{uuid.uuid4().hex[:10]}@example.com"))
                taken_times.append(await timed(existing))
        finally:
            await pool.close()
            await client.aclose()
        return new_times, taken_times

    new_times, taken_times = asyncio.run(timings())

    new, taken = statistics.median(new_times), statistics.median(taken_times)
    assert taken >= 0.7 * new, (new_times, taken_times)
    assert new >= 0.7 * taken, (new_times, taken_times)
