"""The attacks of the accounts review, kept: each is refused with a clear envelope error and changes
nothing else. Tokens forged, unsigned, expired or of a deleted user; refresh tokens reused; brute
force, wrong and replayed TOTP codes and racing guesses against the lockout; injection strings,
oversized bodies, unknown fields and odd Unicode emails; someone else's portfolio or key; over the
rate limit; Redis down at sign-in.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from tests.integration.callers import Person, admin, error_code, login, register, set_role, signed_in
from tests.integration.people import PASSWORD, fresh_ip
from wealthalloc.security import totp

__all__ = ["admin"]  # a fixture, used by name


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


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


def test_wrong_totp_codes_count_towards_the_lockout(http: httpx.Client) -> None:
    person = signed_in(http)
    secret = http.post("/api/v1/auth/mfa/setup", headers=person.headers).json()["data"]["secret"]
    code = totp.code_at(secret, datetime.now(UTC))
    assert (
        http.post("/api/v1/auth/mfa/enable", json={"code": code}, headers=person.headers).status_code == 204
    )
    codes = [login(http, person, totp_code="123456").status_code for _ in range(5)]
    assert codes[-1] == 423 and set(codes[:-1]) == {401}


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


def test_with_redis_down_logins_fail_closed_and_token_holders_keep_working(
    ray_local: None, api_url: str, api_settings: dict[str, str], http: httpx.Client
) -> None:
    from ray import serve

    from serve_apps.api.deployment import compose

    person = signed_in(http)
    broken = {**api_settings, "redis_url": "redis://127.0.0.1:1/0"}
    serve.run(compose(broken, detector=False), name="api-auth-dead-redis", route_prefix="/no-redis")
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
