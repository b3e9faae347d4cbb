"""Accounts and security through the HTTP API on Ray Serve, with real PostgreSQL and Redis.

Each test makes its own people (unique emails) and speaks from its own client
address (X-Forwarded-For, trusted one hop as behind a load balancer), so the
per-address sign-in budget of one test never touches another's.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from wealthalloc.security import totp

PASSWORD = "correct horse battery staple"


def fresh_ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


@dataclass
class Person:
    id: str
    email: str
    password: str
    ip: str
    access_token: str = ""
    refresh_token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}", "X-Forwarded-For": self.ip}


def register(http: httpx.Client, *, prefix: str = "investor", password: str = PASSWORD) -> Person:
    ip = fresh_ip()
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    response = http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, "full_name": "Test Person"},
        headers={"X-Forwarded-For": ip},
    )
    assert response.status_code == 201, response.text
    return Person(id=response.json()["data"]["id"], email=email, password=password, ip=ip)


def login(http: httpx.Client, person: Person, **extra: str) -> httpx.Response:
    response = http.post(
        "/api/v1/auth/login",
        json={"email": person.email, "password": person.password, **extra},
        headers={"X-Forwarded-For": person.ip},
    )
    if response.status_code == 200:
        tokens = response.json()["data"]
        person.access_token, person.refresh_token = tokens["access_token"], tokens["refresh_token"]
    return response


def signed_in(http: httpx.Client, prefix: str = "investor") -> Person:
    person = register(http, prefix=prefix)
    assert login(http, person).status_code == 200
    return person


def set_role(database_url: str, person: Person, role: str, tier: str = "standard") -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE users SET role = %s, tier = %s WHERE id = %s", (role, tier, person.id))


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


@pytest.fixture
def admin(http: httpx.Client, database_url: str) -> Person:
    person = register(http, prefix="admin")
    set_role(database_url, person, "admin")
    assert login(http, person).status_code == 200
    return person


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


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "zero\u200bwidth@example.com",
        "rtl\u202eoverride@example.com",
        "control\x07char@example.com",
        "a@b",
        "x" * 400 + "@example.com",
    ],
)
def test_odd_emails_are_refused_and_create_nothing(http: httpx.Client, database_url: str, email: str) -> None:
    response = http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD},
        headers={"X-Forwarded-For": fresh_ip()},
    )
    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE email = %s", (email,)).fetchone() == (0,)


def test_fullwidth_unicode_email_is_the_same_account_as_its_ascii_form(http: httpx.Client) -> None:
    person = register(http)
    local, _, domain = person.email.partition("@")
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "a" <= c <= "z" else c for c in local) + "@" + domain
    again = http.post(
        "/api/v1/auth/register",
        json={"email": fullwidth, "password": PASSWORD},
        headers={"X-Forwarded-For": person.ip},
    )
    assert again.status_code == 201 and again.json()["data"]["email"] == person.email
    assert again.json()["data"]["id"] != person.id


def test_unknown_fields_wrong_types_and_bad_json_are_refused(http: httpx.Client) -> None:
    ip = {"X-Forwarded-For": fresh_ip()}
    extra = http.post(
        "/api/v1/auth/register",
        json={"email": "x@example.com", "password": PASSWORD, "role": "admin"},
        headers=ip,
    )
    assert extra.status_code == 400 and error_code(extra) == "VALIDATION_ERROR"
    wrong = http.post("/api/v1/auth/login", json={"email": ["a"], "password": 5}, headers=ip)
    assert wrong.status_code == 400 and error_code(wrong) == "VALIDATION_ERROR"
    bad = http.post(
        "/api/v1/auth/login",
        content=b'{"email": "a@b.c", ',
        headers={**ip, "content-type": "application/json"},
    )
    assert bad.status_code == 400 and error_code(bad) == "MALFORMED_JSON"


def test_an_oversized_body_is_refused_before_it_is_read(http: httpx.Client) -> None:
    response = http.post(
        "/api/v1/auth/register",
        content=json.dumps({"email": "big@example.com", "password": "p" * 2_000_000}).encode(),
        headers={"content-type": "application/json", "X-Forwarded-For": fresh_ip()},
    )
    assert response.status_code == 413 and error_code(response) == "PAYLOAD_TOO_LARGE"


SQL_INJECTION = "'; DROP TABLE users; --"


def test_sql_injection_strings_are_only_ever_data(http: httpx.Client, database_url: str) -> None:
    ip = {"X-Forwarded-For": fresh_ip()}
    as_email = http.post(
        "/api/v1/auth/login", json={"email": SQL_INJECTION, "password": SQL_INJECTION}, headers=ip
    )
    assert as_email.status_code == 401 and error_code(as_email) == "INVALID_CREDENTIALS"
    person = signed_in(http)
    renamed = http.patch("/api/v1/me", json={"full_name": SQL_INJECTION}, headers=person.headers)
    assert renamed.status_code == 200 and renamed.json()["data"]["full_name"] == SQL_INJECTION
    key = http.post("/api/v1/api-keys", json={"name": SQL_INJECTION}, headers=person.headers)
    assert key.status_code == 201 and key.json()["data"]["name"] == SQL_INJECTION
    link = http.post("/api/v1/advisor/clients", json={"advisor_email": SQL_INJECTION}, headers=person.headers)
    assert link.status_code == 404
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] >= 1  # type: ignore[index]


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


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(http: httpx.Client) -> None:
    person = register(http)
    wrong = http.post(
        "/api/v1/auth/login",
        json={"email": person.email, "password": "not the password"},
        headers={"X-Forwarded-For": person.ip},
    )
    unknown = http.post(
        "/api/v1/auth/login",
        json={"email": "nobody@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": person.ip},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


def test_requests_without_or_with_bad_credentials_are_401(http: httpx.Client) -> None:
    assert error_code(http.get("/api/v1/me")) == "UNAUTHORIZED"
    for header in ("Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "Bearer " + "a" * 5000):
        response = http.get("/api/v1/me", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers.get("www-authenticate") == "Bearer"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_forged_and_alg_none_tokens_are_refused(http: httpx.Client) -> None:
    person = signed_in(http)
    header_b64, payload_b64, signature = person.access_token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))

    as_admin = _b64({**payload, "role": "admin"})
    tampered = f"{header_b64}.{as_admin}.{signature}"
    alg_none = f"{_b64({**header, 'alg': 'none'})}.{as_admin}."
    import jwt as pyjwt

    other_key = pyjwt.encode(
        {**payload, "role": "admin"}, "x" * 48, algorithm="HS256", headers={"kid": header["kid"]}
    )
    for token, reason in [
        (tampered, "token_signature"),
        (alg_none, "token_algorithm"),
        (other_key, "token_signature"),
    ]:
        response = http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert response.json()["error"]["details"]["reason"] == reason


def test_an_expired_token_is_refused(http: httpx.Client, api_settings: dict[str, str]) -> None:
    from wealthalloc.security.tokens import KeyRing, issue_access_token

    person = register(http)
    ring = KeyRing.from_secrets(api_settings["secret_key"])
    expired = issue_access_token(
        ring,
        user_id=uuid.UUID(person.id),
        email=person.email,
        role="investor",
        now=datetime(2020, 1, 1, tzinfo=UTC),
        ttl=__import__("datetime").timedelta(minutes=30),
        session_id=uuid.uuid4(),
        authenticated_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    response = http.get("/api/v1/me", headers={"Authorization": f"Bearer {expired.token}"})
    assert response.status_code == 401 and response.json()["error"]["details"]["reason"] == "token_expired"


def test_refresh_rotates_and_a_reused_refresh_token_ends_the_whole_login(http: httpx.Client) -> None:
    person = signed_in(http)
    first = person.refresh_token
    rotated = http.post(
        "/api/v1/auth/refresh", json={"refresh_token": first}, headers={"X-Forwarded-For": person.ip}
    )
    assert rotated.status_code == 200
    second = rotated.json()["data"]["refresh_token"]
    assert second != first
    assert (
        http.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {rotated.json()['data']['access_token']}"}
        ).status_code
        == 200
    )

    reuse = http.post(
        "/api/v1/auth/refresh", json={"refresh_token": first}, headers={"X-Forwarded-For": person.ip}
    )
    assert reuse.status_code == 401 and error_code(reuse) == "REFRESH_TOKEN_REUSED"
    # The thief's copy and the legitimate newer token are both dead now.
    after = http.post(
        "/api/v1/auth/refresh", json={"refresh_token": second}, headers={"X-Forwarded-For": person.ip}
    )
    assert after.status_code == 401 and error_code(after) == "INVALID_REFRESH_TOKEN"


def test_logout_revokes_the_refresh_token_and_is_idempotent(http: httpx.Client) -> None:
    person = signed_in(http)
    body = {"refresh_token": person.refresh_token}
    assert http.post("/api/v1/auth/logout", json=body).status_code == 204
    assert http.post("/api/v1/auth/logout", json=body).status_code == 204
    again = http.post("/api/v1/auth/refresh", json=body, headers={"X-Forwarded-For": person.ip})
    assert again.status_code == 401


def test_a_deleted_users_tokens_and_keys_stop_working_at_once(http: httpx.Client, admin: Person) -> None:
    person = signed_in(http)
    key = http.post("/api/v1/api-keys", json={"name": "bot"}, headers=person.headers).json()["data"]["key"]
    deleted = http.delete(f"/api/v1/admin/users/{person.id}", headers=admin.headers)
    assert deleted.status_code == 204
    assert http.get("/api/v1/me", headers=person.headers).status_code == 401
    assert http.get("/api/v1/me", headers={"X-API-Key": key}).status_code == 401
    refreshed = http.post("/api/v1/auth/refresh", json={"refresh_token": person.refresh_token})
    assert refreshed.status_code == 401
    assert login(http, person).status_code == 401


# Lockout and sign-in limits ----------------------------------------------------------------------


def test_five_failed_logins_lock_the_account_with_when_it_ends(http: httpx.Client, database_url: str) -> None:
    person = register(http)
    wrong = Person(id=person.id, email=person.email, password="wrong password 1", ip=person.ip)
    codes = [login(http, wrong).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 401, 423]
    locked = login(http, person)  # even the right password now
    assert locked.status_code == 423 and error_code(locked) == "ACCOUNT_LOCKED"
    until = datetime.fromisoformat(locked.json()["error"]["details"]["locked_until"])
    assert until > datetime.now(UTC)
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60 + 1
    with psycopg.connect(database_url) as conn:
        actions = [
            row[0]
            for row in conn.execute(
                "SELECT action FROM audit_log WHERE actor_id = %s ORDER BY sequence", (person.id,)
            ).fetchall()
        ]
    assert actions.count("auth.login_failed") == 5
    assert actions.count("auth.account_locked") == 1


def test_concurrent_wrong_logins_get_at_most_five_password_checks(
    http: httpx.Client, database_url: str
) -> None:
    person = register(http)
    wrong = Person(id=person.id, email=person.email, password="guess guess guess", ip=person.ip)
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(lambda _: login(http, wrong).status_code, range(20)))
    assert codes.count(401) <= 4
    assert codes.count(423) >= 16
    with psycopg.connect(database_url) as conn:
        failed, locks = conn.execute(
            """SELECT count(*) FILTER (WHERE action = 'auth.login_failed'),
                      count(*) FILTER (WHERE action = 'auth.account_locked')
               FROM audit_log WHERE actor_id = %s""",
            (person.id,),
        ).fetchone()  # type: ignore[misc]
    assert failed == 5 and locks == 1


def test_a_correct_password_resets_the_failure_count(http: httpx.Client) -> None:
    person = register(http)
    wrong = Person(id=person.id, email=person.email, password="wrong password 1", ip=person.ip)
    for _ in range(4):
        assert login(http, wrong).status_code == 401
    assert login(http, person).status_code == 200
    for _ in range(4):
        assert login(http, wrong).status_code == 401
    assert login(http, person).status_code == 200


def test_many_people_behind_one_address_are_not_locked_out_by_one_persons_typos(http: httpx.Client) -> None:
    office = fresh_ip()
    clumsy = register(http)
    clumsy.ip = office
    wrong = Person(id=clumsy.id, email=clumsy.email, password="typo typo typo", ip=office)
    for _ in range(5):
        login(http, wrong)
    colleague = register(http)
    colleague.ip = office
    assert login(http, colleague).status_code == 200


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


def test_wrong_totp_codes_count_towards_the_lockout(http: httpx.Client) -> None:
    person = signed_in(http)
    secret = http.post("/api/v1/auth/mfa/setup", headers=person.headers).json()["data"]["secret"]
    code = totp.code_at(secret, datetime.now(UTC))
    assert (
        http.post("/api/v1/auth/mfa/enable", json={"code": code}, headers=person.headers).status_code == 204
    )
    codes = [login(http, person, totp_code="123456").status_code for _ in range(5)]
    assert codes[-1] == 423 and set(codes[:-1]) == {401}


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


def test_forged_and_unknown_api_keys_are_refused(http: httpx.Client) -> None:
    for key in ("wak_00000000_" + "A" * 43, "not-a-key", "wak_short", SQL_INJECTION):
        assert http.get("/api/v1/me", headers={"X-API-Key": key}).status_code == 401


def test_scopes_beyond_ones_role_cannot_be_granted(http: httpx.Client) -> None:
    person = signed_in(http)
    response = http.post("/api/v1/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=person.headers)
    assert response.status_code == 403 and error_code(response) == "SCOPE_NOT_ALLOWED"
    unknown = http.post("/api/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=person.headers)
    assert unknown.status_code == 400


def test_someone_elses_api_key_cannot_be_revoked(http: httpx.Client) -> None:
    owner, other = signed_in(http), signed_in(http)
    key_id = http.post("/api/v1/api-keys", json={"name": "k"}, headers=owner.headers).json()["data"]["id"]
    assert http.delete(f"/api/v1/api-keys/{key_id}", headers=other.headers).status_code == 404


# Rate limits -------------------------------------------------------------------------------------


def test_past_60_requests_a_minute_the_answer_is_429_with_retry_after(http: httpx.Client) -> None:
    import time

    person = signed_in(http)
    started = time.monotonic()
    responses = [http.get("/api/v1/me", headers=person.headers) for _ in range(75)]
    elapsed = time.monotonic() - started
    allowed = [r for r in responses if r.status_code == 200]
    # A full bucket of 60, plus what refilled (one a second) while the requests were made.
    assert all(r.status_code == 200 for r in responses[:60])
    assert len(allowed) <= 60 + int(elapsed) + 1
    limited = next(r for r in responses if r.status_code != 200)
    assert limited.status_code == 429 and error_code(limited) == "RATE_LIMITED"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-limit"] == "60"


def test_premium_users_get_120_a_minute(http: httpx.Client, database_url: str) -> None:
    person = register(http)
    set_role(database_url, person, "investor", tier="premium")
    login(http, person)
    assert http.get("/api/v1/me", headers=person.headers).headers["x-ratelimit-limit"] == "120"


# Roles and advisors ------------------------------------------------------------------------------


@pytest.fixture
def portfolio_of(database_url: str) -> Iterator[object]:
    def make(person: Person) -> str:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "INSERT INTO portfolios (user_id, name, is_default) VALUES (%s, 'Main', true) RETURNING id",
                (person.id,),
            ).fetchone()
        assert row is not None
        return str(row[0])

    yield make


def test_an_investor_gets_404_for_someone_elses_portfolio(http: httpx.Client, portfolio_of) -> None:  # type: ignore[no-untyped-def]
    owner, stranger = signed_in(http), signed_in(http)
    portfolio_id = portfolio_of(owner)
    assert http.get(f"/api/v1/portfolios/{portfolio_id}", headers=owner.headers).status_code == 200
    response = http.get(f"/api/v1/portfolios/{portfolio_id}", headers=stranger.headers)
    assert response.status_code == 404 and error_code(response) == "NOT_FOUND"
    patch = http.patch(f"/api/v1/portfolios/{portfolio_id}", json={"name": "mine"}, headers=stranger.headers)
    assert patch.status_code == 404
    unknown = http.get(f"/api/v1/portfolios/{uuid.uuid4()}", headers=owner.headers)
    assert unknown.status_code == 404
    assert http.get(f"/api/v1/portfolios?user_id={owner.id}", headers=stranger.headers).status_code == 404


def test_a_linked_advisor_reads_but_cannot_write_and_unlinked_ones_see_nothing(
    http: httpx.Client,
    database_url: str,
    admin: Person,
    portfolio_of,  # type: ignore[no-untyped-def]
) -> None:
    client = signed_in(http)
    portfolio_id = portfolio_of(client)
    advisor = register(http, prefix="advisor")
    set_role(database_url, advisor, "advisor")
    login(http, advisor)
    other_advisor = register(http, prefix="advisor")
    set_role(database_url, other_advisor, "advisor")
    login(http, other_advisor)

    assert http.get(f"/api/v1/portfolios/{portfolio_id}", headers=advisor.headers).status_code == 404
    # The investor consents to the advisor.
    consent = http.post(
        "/api/v1/advisor/clients", json={"advisor_email": advisor.email}, headers=client.headers
    )
    assert consent.status_code == 201 and consent.json()["data"]["source"] == "client_consent"
    read = http.get(f"/api/v1/portfolios/{portfolio_id}", headers=advisor.headers)
    assert read.status_code == 200 and read.json()["data"]["id"] == portfolio_id
    listed = http.get(f"/api/v1/portfolios?user_id={client.id}", headers=advisor.headers)
    assert [p["id"] for p in listed.json()["data"]] == [portfolio_id]
    write = http.patch(
        f"/api/v1/portfolios/{portfolio_id}", json={"name": "advised"}, headers=advisor.headers
    )
    assert write.status_code == 403 and error_code(write) == "FORBIDDEN"
    assert http.get(f"/api/v1/portfolios/{portfolio_id}", headers=other_advisor.headers).status_code == 404

    # An admin links the other advisor; an admin reads and writes everything.
    linked = http.post(
        "/api/v1/advisor/clients",
        json={"advisor_email": other_advisor.email, "client_email": client.email},
        headers=admin.headers,
    )
    assert linked.status_code == 201 and linked.json()["data"]["source"] == "admin"
    assert http.get(f"/api/v1/portfolios/{portfolio_id}", headers=other_advisor.headers).status_code == 200
    renamed = http.patch(f"/api/v1/portfolios/{portfolio_id}", json={"name": "Family"}, headers=admin.headers)
    assert renamed.status_code == 200 and renamed.json()["data"]["name"] == "Family"

    # The investor withdraws consent.
    gone = http.delete(f"/api/v1/advisor/clients/{advisor.id}/{client.id}", headers=client.headers)
    assert gone.status_code == 204
    assert http.get(f"/api/v1/portfolios/{portfolio_id}", headers=advisor.headers).status_code == 404


def test_only_admins_reach_user_management_and_the_audit_trail(http: httpx.Client, admin: Person) -> None:
    person = signed_in(http)
    assert http.get("/api/v1/me", headers=person.headers).headers["x-ratelimit-limit"] == "60"
    assert http.get("/api/v1/admin/audit", headers=person.headers).status_code == 403
    assert http.delete(f"/api/v1/admin/users/{admin.id}", headers=person.headers).status_code == 403
    trail = http.get("/api/v1/admin/audit?limit=50", headers=admin.headers)
    assert trail.status_code == 200
    actions = {row["action"] for row in trail.json()["data"]}
    assert {"auth.register", "auth.login"} <= actions
    promoted = http.patch(f"/api/v1/admin/users/{person.id}", json={"tier": "premium"}, headers=admin.headers)
    assert promoted.status_code == 200 and promoted.json()["data"]["tier"] == "premium"
    # Replicas cache who a user is; the change still shows on the very next request.
    assert http.get("/api/v1/me", headers=person.headers).headers["x-ratelimit-limit"] == "120"


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


# Redis down --------------------------------------------------------------------------------------


def test_with_redis_down_logins_fail_closed_and_token_holders_keep_working(
    ray_local: None, api_url: str, api_settings: dict[str, str], http: httpx.Client
) -> None:
    from ray import serve

    from serve_apps.api.deployment import build

    person = signed_in(http)
    broken = {**api_settings, "redis_url": "redis://127.0.0.1:1/0"}
    serve.run(build(broken), name="api-auth-dead-redis", route_prefix="/no-redis")
    try:
        base = f"{api_url}/no-redis"
        refused = httpx.post(
            f"{base}/api/v1/auth/login", json={"email": person.email, "password": person.password}, timeout=30
        )
        assert refused.status_code == 503 and error_code(refused) == "SERVICE_UNAVAILABLE"
        me = httpx.get(f"{base}/api/v1/me", headers=person.headers, timeout=30)
        assert me.status_code == 200
        assert me.headers["x-ratelimit-limit"] == "60"
    finally:
        serve.delete("api-auth-dead-redis")
