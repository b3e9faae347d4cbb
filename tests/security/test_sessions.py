"""Signing out ends a login's access tokens at once, on every replica, Redis or no Redis.

Review finding: an access token kept working for its whole 30 minutes after the person signed
out. Access tokens now name their session (``sid``, the refresh-token family); signing out, a
password change, an MFA change, a role change and an admin's deletion revoke sessions in
PostgreSQL and move the user's generation in Redis, and an API replica re-checks the session in
PostgreSQL whenever that generation moved or cannot be read. Tokens issued before sessions (no
``sid``) are refused: they would have expired within 30 minutes anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from tests.integration.people import (
    Login,
    Person,
    data,
    error,
    new_person,
    signed_in_long_ago,
    turn_on_mfa,
)

pytestmark = pytest.mark.integration

NEW_PASSWORD = "a brand new passphrase for spring"


@pytest.fixture
def person(http: httpx.Client, database_url: str) -> Person:
    return new_person(http, database_url)


def _me(person: Person, login: Login) -> httpx.Response:
    return person.http.get("/api/v1/me", headers=login.headers)


def _refused_because(response: httpx.Response, reason: str) -> None:
    assert error(response, 401, "UNAUTHORIZED")["details"]["reason"] == reason


# Sign-out ---------------------------------------------------------------------------------------


def test_signing_out_ends_the_access_token_at_once(person: Person) -> None:
    login = person.login()
    assert _me(person, login).status_code == 200  # now cached by the replica

    signed_out = person.http.post("/api/v1/auth/logout", json={"refresh_token": login.refresh_token})

    assert signed_out.status_code == 204
    _refused_because(_me(person, login), "session_ended")


def test_signing_out_ends_only_that_login(person: Person) -> None:
    phone, laptop = person.login(), person.login()
    assert _me(person, phone).status_code == _me(person, laptop).status_code == 200

    person.http.post("/api/v1/auth/logout", json={"refresh_token": phone.refresh_token})

    _refused_because(_me(person, phone), "session_ended")
    assert _me(person, laptop).status_code == 200


def test_a_refresh_keeps_the_session_and_its_sign_in_time_and_sign_out_ends_both_tokens(
    person: Person,
) -> None:
    first = person.login()
    second = person.refresh(first)

    assert second.claims["sid"] == first.claims["sid"]
    assert second.claims["auth_time"] == first.claims["auth_time"]
    assert _me(person, first).status_code == _me(person, second).status_code == 200

    person.http.post("/api/v1/auth/logout", json={"refresh_token": second.refresh_token})

    _refused_because(_me(person, first), "session_ended")
    _refused_because(_me(person, second), "session_ended")


def test_a_reused_refresh_token_ends_the_access_tokens_of_that_login_too(person: Person) -> None:
    stolen = person.login()
    current = person.refresh(stolen)
    assert _me(person, current).status_code == 200

    reuse = person.http.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": stolen.refresh_token},
        headers={"X-Forwarded-For": person.ip},
    )

    error(reuse, 401, "REFRESH_TOKEN_REUSED")
    _refused_because(_me(person, current), "session_ended")


def test_a_token_that_names_no_session_is_refused(person: Person, api_settings: dict[str, str]) -> None:
    # Signed with the real key, as tokens issued before sessions existed were.
    login = person.login()
    claims = {k: v for k, v in login.claims.items() if k not in ("sid", "auth_time")}
    header = jwt.get_unverified_header(login.access_token)
    legacy = jwt.encode(claims, api_settings["secret_key"], algorithm="HS256", headers={"kid": header["kid"]})

    response = person.http.get("/api/v1/me", headers={"Authorization": f"Bearer {legacy}"})

    _refused_because(response, "token_without_session")


# Password change --------------------------------------------------------------------------------


def test_changing_the_password_ends_every_other_login_and_keeps_this_one(person: Person) -> None:
    here, elsewhere = person.login(), person.login()
    assert _me(person, elsewhere).status_code == 200

    changed = person.http.post(
        "/api/v1/auth/password",
        json={"current_password": person.password, "new_password": NEW_PASSWORD},
        headers=here.headers,
    )

    assert changed.status_code == 204, changed.text
    assert _me(person, here).status_code == 200
    _refused_because(_me(person, elsewhere), "session_ended")
    stale_refresh = person.http.post("/api/v1/auth/refresh", json={"refresh_token": elsewhere.refresh_token})
    error(stale_refresh, 401, "INVALID_REFRESH_TOKEN")
    error(person.try_login(), 401, "INVALID_CREDENTIALS")
    person.password = NEW_PASSWORD
    assert person.try_login().status_code == 200


def test_a_password_change_needs_the_current_password_and_a_strong_new_one(person: Person) -> None:
    login = person.login()

    wrong = person.http.post(
        "/api/v1/auth/password",
        json={"current_password": "not my password at all", "new_password": NEW_PASSWORD},
        headers=login.headers,
    )
    weak = person.http.post(
        "/api/v1/auth/password",
        json={"current_password": person.password, "new_password": "passwordpassword"},
        headers=login.headers,
    )

    error(wrong, 401, "INVALID_CREDENTIALS")
    details = error(weak, 400, "WEAK_PASSWORD")["details"]
    assert any("too easy to guess" in d["message"] for d in details)
    assert person.try_login().status_code == 200  # nothing changed


def test_with_mfa_on_a_password_change_needs_the_current_code(person: Person) -> None:
    login = person.login()
    app = turn_on_mfa(person, login)
    body = {"current_password": person.password, "new_password": NEW_PASSWORD}

    error(person.http.post("/api/v1/auth/password", json=body, headers=login.headers), 401, "MFA_REQUIRED")
    bad = person.http.post(
        "/api/v1/auth/password", json={**body, "totp_code": "000000"}, headers=login.headers
    )
    error(bad, 401, "INVALID_MFA_CODE")
    good = person.http.post(
        "/api/v1/auth/password", json={**body, "totp_code": app.code()}, headers=login.headers
    )
    assert good.status_code == 204, good.text


# MFA changes --------------------------------------------------------------------------------------


def test_turning_mfa_on_and_off_ends_the_other_logins(person: Person) -> None:
    here, before = person.login(), person.login()
    app = turn_on_mfa(person, here)

    assert _me(person, here).status_code == 200
    _refused_because(_me(person, before), "session_ended")

    with_code = person.login(totp_code=app.code())
    off = person.http.post(
        "/api/v1/auth/mfa/disable",
        json={"password": person.password, "code": app.code()},
        headers=here.headers,
    )

    assert off.status_code == 204, off.text
    _refused_because(_me(person, with_code), "session_ended")
    assert _me(person, here).status_code == 200
    assert data(_me(person, here))["mfa_enabled"] is False
    assert person.try_login().status_code == 200  # no code needed any more


def test_turning_mfa_off_needs_the_password_and_a_current_code(person: Person) -> None:
    login = person.login()
    app = turn_on_mfa(person, login)

    wrong_password = person.http.post(
        "/api/v1/auth/mfa/disable",
        json={"password": "not my password at all", "code": app.code()},
        headers=login.headers,
    )
    wrong_code = person.http.post(
        "/api/v1/auth/mfa/disable",
        json={"password": person.password, "code": "000000"},
        headers=login.headers,
    )

    error(wrong_password, 401, "INVALID_CREDENTIALS")
    error(wrong_code, 401, "INVALID_MFA_CODE")
    assert data(_me(person, login))["mfa_enabled"] is True


def test_mfa_changes_need_a_recent_sign_in_not_a_refreshed_old_one(person: Person, database_url: str) -> None:
    stale = signed_in_long_ago(person, person.login(), database_url)
    assert _me(person, stale).status_code == 200  # an old login still reads

    response = person.http.post("/api/v1/auth/mfa/setup", headers=stale.headers)

    body = error(response, 401, "REAUTHENTICATION_REQUIRED")
    assert body["details"]["max_age_seconds"] == 600
    assert 'error="insufficient_user_authentication"' in response.headers["www-authenticate"]
    fresh = person.login()
    assert person.http.post("/api/v1/auth/mfa/setup", headers=fresh.headers).status_code == 200


# Admins' changes ---------------------------------------------------------------------------------


def test_a_role_change_ends_the_persons_logins_and_a_tier_change_does_not(
    http: httpx.Client, database_url: str, person: Person
) -> None:
    admin = new_person(http, database_url, role="admin", prefix="admin")
    admin_login, login = admin.login(), person.login()
    assert _me(person, login).status_code == 200

    tier = http.patch(
        f"/api/v1/admin/users/{person.id}", json={"tier": "standard"}, headers=admin_login.headers
    )
    assert tier.status_code == 200
    assert _me(person, login).status_code == 200

    role = http.patch(
        f"/api/v1/admin/users/{person.id}", json={"role": "advisor"}, headers=admin_login.headers
    )
    assert role.status_code == 200
    _refused_because(_me(person, login), "session_ended")
    assert data(_me(person, person.login()))["role"] == "advisor"


# Other replicas ----------------------------------------------------------------------------------


@pytest.fixture
def second_api(ray_local: None, api_url: str, api_settings: dict[str, str]) -> Iterator[str]:
    """Another API app on the same PostgreSQL and Redis: a replica with a principal cache of its own."""
    from ray import serve

    from serve_apps.api.deployment import compose

    serve.run(
        compose(dict(api_settings), detector=False),
        name="api-sessions-second",
        route_prefix="/second-replica",
    )
    try:
        yield f"{api_url}/second-replica"
    finally:
        serve.delete("api-sessions-second")


def test_a_replica_that_cached_a_session_refuses_it_once_signed_out_elsewhere(
    person: Person, second_api: str
) -> None:
    login, other = person.login(), person.login()
    for _ in range(3):  # well inside the second replica's cache now
        assert httpx.get(f"{second_api}/api/v1/me", headers=login.headers, timeout=30).status_code == 200
    assert httpx.get(f"{second_api}/api/v1/me", headers=other.headers, timeout=30).status_code == 200

    person.http.post("/api/v1/auth/logout", json={"refresh_token": login.refresh_token})  # the first app

    _refused_because(httpx.get(f"{second_api}/api/v1/me", headers=login.headers, timeout=30), "session_ended")
    assert httpx.get(f"{second_api}/api/v1/me", headers=other.headers, timeout=30).status_code == 200


# Redis down ---------------------------------------------------------------------------------------


@pytest.fixture
def api_without_redis(ray_local: None, api_url: str, api_settings: dict[str, str]) -> Iterator[str]:
    """A second API app whose Redis never answers: it falls back to local rate-limit buckets."""
    from ray import serve

    from serve_apps.api.deployment import compose

    serve.run(
        compose({**api_settings, "redis_url": "redis://127.0.0.1:1/0"}, detector=False),
        name="api-sessions-dead-redis",
        route_prefix="/sessions-no-redis",
    )
    try:
        yield f"{api_url}/sessions-no-redis"
    finally:
        serve.delete("api-sessions-dead-redis")


def test_with_redis_down_a_signed_out_session_is_still_refused(
    person: Person, api_without_redis: str
) -> None:
    login, other = person.login(), person.login()
    assert httpx.get(f"{api_without_redis}/api/v1/me", headers=login.headers, timeout=30).status_code == 200

    person.http.post("/api/v1/auth/logout", json={"refresh_token": login.refresh_token})

    refused = httpx.get(f"{api_without_redis}/api/v1/me", headers=login.headers, timeout=30)
    _refused_because(refused, "session_ended")
    assert httpx.get(f"{api_without_redis}/api/v1/me", headers=other.headers, timeout=30).status_code == 200


def test_an_expired_access_token_is_refused_even_with_a_live_session(
    person: Person, api_settings: dict[str, str]
) -> None:
    from wealthalloc.security.tokens import KeyRing, issue_access_token

    login = person.login()
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    expired = issue_access_token(
        KeyRing.from_secrets(api_settings["secret_key"]),
        user_id=uuid.UUID(person.id),
        email=person.email,
        role="investor",
        now=long_ago,
        ttl=timedelta(minutes=30),
        session_id=uuid.UUID(login.claims["sid"]),
        authenticated_at=long_ago,
    )

    response = person.http.get("/api/v1/me", headers={"Authorization": f"Bearer {expired.token}"})

    _refused_because(response, "token_expired")
