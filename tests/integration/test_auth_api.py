"""Accounts and security through the HTTP API on Ray Serve, with real PostgreSQL and Redis.

Each test makes its own people (unique emails) and speaks from its own client
address (X-Forwarded-For, trusted one hop as behind a load balancer), so the
per-address sign-in budget of one test never touches another's.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from tests.integration.callers import Person, admin, error_code, login, register, set_role, signed_in
from tests.integration.people import PASSWORD, fresh_ip
from wealthalloc.security import totp

__all__ = ["admin"]  # a fixture, used by name


# Registration ------------------------------------------------------------------------------------


def test_registering_returns_the_user_without_any_secret(http: httpx.Client) -> None:
    email = f"New.Person-{uuid.uuid4().hex[:8]}@Example.COM"
    response = http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "risk_tolerance": "aggressive"},
        headers={"X-Forwarded-For": fresh_ip()},
    )
    assert response.status_code == 201, response.text
    user = response.json()["data"]
    assert user["role"] == "investor" and user["tier"] == "standard"
    assert user["risk_profile"]["risk_tolerance"] == "aggressive"
    assert user["email"].endswith("@example.com")  # the domain is normalised
    text = response.text
    assert "password" not in text and "$2b$" not in text and "mfa_secret" not in text


def test_an_address_registers_once_whatever_its_case(http: httpx.Client, database_url: str) -> None:
    person = register(http)
    again = http.post(
        "/api/v1/auth/register",
        json={"email": person.email.upper(), "password": PASSWORD},
        headers={"X-Forwarded-For": person.ip},
    )
    # Answered like a new account (tests/security/test_registration.py), and nothing is created.
    assert again.status_code == 201 and again.json()["data"]["id"] != person.id
    with psycopg.connect(database_url) as conn:
        count = conn.execute("SELECT count(*) FROM users WHERE lower(email) = lower(%s)", (person.email,))
        assert count.fetchone() == (1,)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!", "at least 10"),
        ("password123", "well-known"),
        ("Qwerty123!", "well-known"),
        ("aaaaaaaaaaaaaaaa", "different characters"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(http: httpx.Client, password: str, reason: str) -> None:
    response = http.post(
        "/api/v1/auth/register",
        json={"email": f"weak-{uuid.uuid4().hex[:8]}@example.com", "password": password},
        headers={"X-Forwarded-For": fresh_ip()},
    )
    assert response.status_code == 400 and error_code(response) == "WEAK_PASSWORD"
    assert any(reason in d["message"] for d in response.json()["error"]["details"])


def test_a_password_containing_the_email_is_refused(http: httpx.Client) -> None:
    local = f"margaret{uuid.uuid4().hex[:6]}"
    response = http.post(
        "/api/v1/auth/register",
        json={"email": f"{local}@example.com", "password": f"{local}-secure-2026"},
        headers={"X-Forwarded-For": fresh_ip()},
    )
    assert response.status_code == 400 and error_code(response) == "WEAK_PASSWORD"


# Sign-in and tokens ------------------------------------------------------------------------------


def test_login_returns_a_bearer_pair_and_me_answers_with_rate_limit_headers(http: httpx.Client) -> None:
    person = register(http)
    response = login(http, person)
    assert response.status_code == 200, response.text
    tokens = response.json()["data"]
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 1800
    claims = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[1] + "=="))
    assert {"sub", "email", "role", "exp", "iat", "jti", "sid", "auth_time"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 1800 and claims["sub"] == person.id
    me = http.get("/api/v1/me", headers=person.headers)
    assert me.status_code == 200
    assert me.json()["data"]["email"] == person.email
    assert me.headers["x-ratelimit-limit"] == "60"
    assert int(me.headers["x-ratelimit-remaining"]) <= 59
    assert int(me.headers["x-ratelimit-reset"]) >= int(datetime.now(UTC).timestamp())


def test_logout_revokes_the_refresh_token_and_is_idempotent(http: httpx.Client) -> None:
    person = signed_in(http)
    body = {"refresh_token": person.refresh_token}
    assert http.post("/api/v1/auth/logout", json=body).status_code == 204
    assert http.post("/api/v1/auth/logout", json=body).status_code == 204
    again = http.post("/api/v1/auth/refresh", json=body, headers={"X-Forwarded-For": person.ip})
    assert again.status_code == 401


# Lockout and sign-in limits ----------------------------------------------------------------------


def test_a_correct_password_resets_the_failure_count(http: httpx.Client) -> None:
    person = register(http)
    wrong = Person(id=person.id, email=person.email, password="wrong password 1", ip=person.ip)
    for _ in range(4):
        assert login(http, wrong).status_code == 401
    assert login(http, person).status_code == 200
    for _ in range(4):
        assert login(http, wrong).status_code == 401
    assert login(http, person).status_code == 200


# MFA ---------------------------------------------------------------------------------------------


def test_mfa_setup_enable_then_login_needs_a_fresh_code(http: httpx.Client) -> None:
    person = signed_in(http)
    setup = http.post("/api/v1/auth/mfa/setup", headers=person.headers)
    assert setup.status_code == 200
    secret = setup.json()["data"]["secret"]
    assert setup.json()["data"]["otpauth_uri"].startswith("otpauth://totp/")

    assert (
        http.post("/api/v1/auth/mfa/enable", json={"code": "000000"}, headers=person.headers).status_code
        == 400
    )
    now = datetime.now(UTC)
    enable_code = totp.code_at(secret, now)
    assert (
        http.post("/api/v1/auth/mfa/enable", json={"code": enable_code}, headers=person.headers).status_code
        == 204
    )

    missing = login(http, person)
    assert missing.status_code == 401 and error_code(missing) == "MFA_REQUIRED"
    # The code that enabled MFA is spent; the next step's code (accepted for clock drift) works once.
    replay = login(http, person, totp_code=enable_code)
    assert replay.status_code == 401 and error_code(replay) == "INVALID_MFA_CODE"
    next_code = totp.code_at(secret, datetime.fromtimestamp(now.timestamp() + 30, UTC))
    assert login(http, person, totp_code=next_code).status_code == 200
    again = login(http, person, totp_code=next_code)
    assert again.status_code == 401 and error_code(again) == "INVALID_MFA_CODE"


# Profile -----------------------------------------------------------------------------------------


def test_patch_me_sets_the_risk_and_tax_profile_as_decimal_strings(http: httpx.Client) -> None:
    person = signed_in(http)
    response = http.patch(
        "/api/v1/me",
        json={
            "risk_tolerance": "conservative",
            "investment_experience": "advanced",
            "tax_profile": {
                "filing_status": "married_joint",
                "federal_rate": "0.32",
                "short_term_rate": "0.37",
            },
            "state_rate": "0.0930",
        },
        headers=person.headers,
    )
    assert response.status_code == 200, response.text
    user = response.json()["data"]
    assert user["risk_profile"] == {"risk_tolerance": "conservative", "investment_experience": "advanced"}
    assert user["tax_profile"]["filing_status"] == "married_joint"
    assert user["tax_profile"]["federal_rate"] == "0.32000"
    assert user["tax_profile"]["state_rate"] == "0.09300"


@pytest.mark.parametrize(
    "body",
    [
        {"federal_rate": "1.5"},
        {"federal_rate": "-0.1"},
        {"federal_rate": "abc"},
        {"federal_rate": "0.123456"},
        {"filing_status": "complicated"},
        {"role": "admin"},
        {"tier": "premium"},
        {"risk_tolerance": None},
    ],
)
def test_patch_me_refuses_bad_values_and_changes_nothing(http: httpx.Client, body: dict[str, object]) -> None:
    person = signed_in(http)
    before = http.get("/api/v1/me", headers=person.headers).json()["data"]
    response = http.patch("/api/v1/me", json=body, headers=person.headers)
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"
    assert http.get("/api/v1/me", headers=person.headers).json()["data"] == before


# API keys ----------------------------------------------------------------------------------------


def test_an_api_key_is_shown_once_works_with_its_own_limit_and_can_be_revoked(http: httpx.Client) -> None:
    person = signed_in(http)
    created = http.post(
        "/api/v1/api-keys", json={"name": "tax export", "scopes": ["read"]}, headers=person.headers
    )
    assert created.status_code == 201
    record = created.json()["data"]
    key = record["key"]
    expires = datetime.fromisoformat(record["expires_at"])
    assert 89 <= (expires - datetime.now(UTC)).days <= 90
    listed = http.get("/api/v1/api-keys", headers=person.headers).json()["data"]
    assert [k["prefix"] for k in listed] == [record["prefix"]]
    assert key not in json.dumps(listed)

    me = http.get("/api/v1/me", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.headers["x-ratelimit-limit"] == "1000"
    # A read-only key may not change the profile or make more keys.
    assert http.patch("/api/v1/me", json={"full_name": "x"}, headers={"X-API-Key": key}).status_code == 403
    assert (
        http.post("/api/v1/api-keys", json={"name": "child"}, headers={"X-API-Key": key}).status_code == 403
    )

    assert http.delete(f"/api/v1/api-keys/{record['id']}", headers=person.headers).status_code == 200
    revoked = http.get("/api/v1/me", headers={"X-API-Key": key})
    assert revoked.status_code == 401 and revoked.json()["error"]["details"]["reason"] == "api_key_revoked"


# Rate limits -------------------------------------------------------------------------------------


def test_premium_users_get_120_a_minute(http: httpx.Client, database_url: str) -> None:
    person = register(http)
    set_role(database_url, person, "investor", tier="premium")
    login(http, person)
    assert http.get("/api/v1/me", headers=person.headers).headers["x-ratelimit-limit"] == "120"


# Audit ------------------------------------------------------------------------------------------


def test_the_audit_chain_verifies_after_all_this(database_url: str, http: httpx.Client) -> None:
    from wealthalloc.events.audit_chain import verify_chain
    from wealthalloc.storage.audit import iter_chain

    signed_in(http)
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        report = verify_chain(iter_chain(conn))
    assert report.intact, report.problems
    assert report.entries >= 2


def test_the_client_address_is_recorded_from_the_trusted_proxy_hop(http: httpx.Client, admin: Person) -> None:
    person = signed_in(http)
    rows = http.get(
        f"/api/v1/admin/audit?actor_id={person.id}&action=auth.login", headers=admin.headers
    ).json()["data"]
    assert rows[0]["ip"] == person.ip
