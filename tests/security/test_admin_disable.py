"""An admin suspends an account and reinstates it later, and nothing of the account is lost.

Review finding: logout, password and MFA changes revoked a login's access tokens at once, but an
operator could only *delete* a user; a suspected compromise or a compliance hold needs a
suspension that can be lifted. ``POST /admin/users/{id}/disable`` (with a reason) ends every
login of the user at once, refuses their API keys and refresh tokens and refuses new sign-ins
with ``403 ACCOUNT_DISABLED``, only once the password is right, so the answer does not tell a
guesser that the account exists or is suspended. ``POST /admin/users/{id}/enable`` lifts it: the
person signs in again and their keys work again. Portfolios, orders and data are untouched.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

from tests.integration.people import Login, Person, data, error, new_person

pytestmark = pytest.mark.integration

REASON = "suspected compromise: ticket SEC-1042"


@pytest.fixture
def admin(http: httpx.Client, database_url: str) -> Person:
    return new_person(http, database_url, role="admin", prefix="disable-admin")


@pytest.fixture
def admin_login(admin: Person) -> Login:
    return admin.login()


@pytest.fixture
def person(http: httpx.Client, database_url: str) -> Person:
    return new_person(http, database_url, prefix="disable-target")


def _disable(
    http: httpx.Client, admin_login: Login, user_id: str, reason: str | None = REASON
) -> httpx.Response:
    body = {} if reason is None else {"reason": reason}
    return http.post(f"/api/v1/admin/users/{user_id}/disable", json=body, headers=admin_login.headers)


def _enable(
    http: httpx.Client, admin_login: Login, user_id: str, reason: str | None = None
) -> httpx.Response:
    body = {} if reason is None else {"reason": reason}
    return http.post(f"/api/v1/admin/users/{user_id}/enable", json=body, headers=admin_login.headers)


def _me(http: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return http.get("/api/v1/me", headers=headers)


def _refused_because(response: httpx.Response, reason: str) -> None:
    assert error(response, 401, "UNAUTHORIZED")["details"]["reason"] == reason


def _key_headers(person: Person, key: str) -> dict[str, str]:
    return {"X-API-Key": key, "X-Forwarded-For": person.ip}


# What disabling ends -------------------------------------------------------------------------------


def test_disabling_ends_every_live_access_token_of_the_user_at_once(
    http: httpx.Client, admin_login: Login, person: Person
) -> None:
    phone, laptop = person.login(), person.login()
    assert _me(http, phone.headers).status_code == _me(http, laptop.headers).status_code == 200  # cached

    disabled = data(_disable(http, admin_login, person.id))

    assert disabled["id"] == person.id
    assert disabled["disabled_at"] is not None and disabled["disabled_reason"] == REASON
    _refused_because(_me(http, phone.headers), "session_ended")
    _refused_because(_me(http, laptop.headers), "session_ended")


def test_a_disabled_users_api_key_is_refused_and_works_again_after_enable(
    http: httpx.Client, admin_login: Login, person: Person
) -> None:
    login = person.login()
    key = data(http.post("/api/v1/api-keys", json={"name": "bot"}, headers=login.headers), 201)["key"]
    assert _me(http, _key_headers(person, key)).status_code == 200

    data(_disable(http, admin_login, person.id))
    _refused_because(_me(http, _key_headers(person, key)), "account_disabled")

    data(_enable(http, admin_login, person.id))
    assert data(_me(http, _key_headers(person, key)))["id"] == person.id


def test_a_disabled_users_refresh_token_is_refused(
    http: httpx.Client, admin_login: Login, person: Person
) -> None:
    login = person.login()

    data(_disable(http, admin_login, person.id))
    refreshed = http.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": login.refresh_token},
        headers={"X-Forwarded-For": person.ip},
    )

    error(refreshed, 401, "INVALID_REFRESH_TOKEN")


def test_signing_in_while_disabled_says_so_only_after_the_right_password(
    http: httpx.Client, admin_login: Login, person: Person
) -> None:
    data(_disable(http, admin_login, person.id))

    right = person.try_login()
    wrong = http.post(
        "/api/v1/auth/login",
        json={"email": person.email, "password": "not the password at all"},
        headers={"X-Forwarded-For": person.ip},
    )

    error(right, 403, "ACCOUNT_DISABLED")
    assert REASON not in right.text  # the operator's reason is theirs, not the account holder's
    assert "access_token" not in right.text
    error(wrong, 401, "INVALID_CREDENTIALS")


def test_wrong_passwords_on_a_disabled_account_count_towards_the_lockout(
    http: httpx.Client, admin_login: Login, person: Person
) -> None:
    data(_disable(http, admin_login, person.id))

    codes = [
        http.post(
            "/api/v1/auth/login",
            json={"email": person.email, "password": f"wrong guess number {i}"},
            headers={"X-Forwarded-For": person.ip},
        ).status_code
        for i in range(5)
    ]

    assert codes == [401, 401, 401, 401, 423]


def test_after_enable_the_person_signs_in_again_but_old_logins_stay_ended(
    http: httpx.Client, admin_login: Login, person: Person
) -> None:
    before = person.login()
    data(_disable(http, admin_login, person.id))

    enabled = data(_enable(http, admin_login, person.id, reason="cleared by the fraud team"))
    after = person.login()

    assert enabled["disabled_at"] is None and enabled["disabled_reason"] is None
    assert data(_me(http, after.headers))["id"] == person.id
    _refused_because(_me(http, before.headers), "session_ended")


def test_the_users_portfolios_and_open_orders_are_untouched(
    http: httpx.Client, admin_login: Login, person: Person
) -> None:
    login = person.login()
    portfolio = data(http.post("/api/v1/portfolios", json={"name": "Main"}, headers=login.headers), 201)
    deposit = http.post(
        f"/api/v1/portfolios/{portfolio['id']}/cash",
        json={"amount": "5000.00"},
        headers={**login.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert deposit.status_code == 201, deposit.text
    order = data(
        http.post(
            "/api/v1/trades",
            json={
                "portfolio_id": portfolio["id"],
                "symbol": "KO",
                "side": "buy",
                "quantity": "1",
                "order_type": "limit",
                "limit_price": "1.00",
                "time_in_force": "gtc",
            },
            headers={**login.headers, "Idempotency-Key": str(uuid.uuid4())},
        ),
        201,
    )

    data(_disable(http, admin_login, person.id))
    as_admin = data(http.get(f"/api/v1/trades/{order['id']}", headers=admin_login.headers))
    data(_enable(http, admin_login, person.id))
    again = person.login()

    assert as_admin["status"] == order["status"]
    assert data(http.get(f"/api/v1/trades/{order['id']}", headers=again.headers))["status"] == order["status"]
    book = data(http.get(f"/api/v1/portfolios/{portfolio['id']}", headers=again.headers))
    assert Decimal(book["cash_balance"]) == Decimal("5000")


# Who may disable whom ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["investor", "advisor"])
def test_only_an_admin_disables_or_enables_anyone(
    http: httpx.Client, database_url: str, admin_login: Login, person: Person, role: str
) -> None:
    caller = new_person(http, database_url, role=role, prefix=f"disable-{role}").login()

    error(_disable(http, caller, person.id), 403, "FORBIDDEN")
    data(_disable(http, admin_login, person.id))
    error(_enable(http, caller, person.id), 403, "FORBIDDEN")

    error(person.try_login(), 403, "ACCOUNT_DISABLED")  # still disabled


def test_an_admin_cannot_disable_themself(http: httpx.Client, admin: Person, admin_login: Login) -> None:
    error(_disable(http, admin_login, admin.id), 409, "CONFLICT")

    assert _me(http, admin_login.headers).status_code == 200


def test_disabling_needs_a_reason_of_at_most_500_characters(
    http: httpx.Client, admin_login: Login, person: Person
) -> None:
    error(_disable(http, admin_login, person.id, reason=None), 400, "VALIDATION_ERROR")
    error(_disable(http, admin_login, person.id, reason=""), 400, "VALIDATION_ERROR")
    error(_disable(http, admin_login, person.id, reason="x" * 501), 400, "VALIDATION_ERROR")

    assert person.try_login().status_code == 200  # none of those disabled anyone


def test_disabling_or_enabling_an_unknown_user_is_not_found(http: httpx.Client, admin_login: Login) -> None:
    disabled = error(_disable(http, admin_login, str(uuid.uuid4())), 404, "NOT_FOUND")
    enabled = error(_enable(http, admin_login, str(uuid.uuid4())), 404, "NOT_FOUND")

    assert disabled["message"] == enabled["message"] == "No such user."  # the routes exist


# What operators see --------------------------------------------------------------------------------


def test_the_admin_listing_shows_when_and_why_a_user_was_disabled(
    http: httpx.Client, admin_login: Login, person: Person
) -> None:
    def listed() -> dict[str, object]:
        # The page that starts right at the person's address: a prefix of it sorts just before it.
        page = data(
            http.get(
                "/api/v1/admin/users",
                params={"limit": 1, "after": person.email[:-1]},
                headers=admin_login.headers,
            )
        )
        assert page[0]["id"] == person.id
        return page[0]  # type: ignore[no-any-return]

    assert listed()["disabled_at"] is None and listed()["disabled_reason"] is None
    data(_disable(http, admin_login, person.id))

    row = listed()

    assert row["disabled_at"] is not None and row["disabled_reason"] == REASON


def test_the_audit_trail_has_the_disable_and_the_enable_with_their_reasons(
    http: httpx.Client, admin: Person, admin_login: Login, person: Person
) -> None:
    data(_disable(http, admin_login, person.id))
    data(_enable(http, admin_login, person.id, reason="cleared by the fraud team"))

    def entries(action: str) -> list[dict[str, object]]:
        rows = data(
            http.get(
                "/api/v1/admin/audit",
                params={"actor_id": admin.id, "action": action},
                headers=admin_login.headers,
            )
        )
        return [row for row in rows if row["subject"] == f"user:{person.id}"]

    disabled, enabled = entries("admin.user_disabled"), entries("admin.user_enabled")

    assert len(disabled) == 1 and disabled[0]["details"]["reason"] == REASON  # type: ignore[index]
    assert len(enabled) == 1 and enabled[0]["details"]["reason"] == "cleared by the fraud team"  # type: ignore[index]
