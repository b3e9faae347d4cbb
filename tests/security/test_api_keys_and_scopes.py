"""Who may call what: every route group for a person of each role and for each kind of API key.

Review findings: a ``read`` API key could enrol its own TOTP secret (``/auth/mfa/setup``,
``/auth/mfa/enable``) and lock the owner out of password sign-in; a ``trade`` key could withdraw
cash; a ``read`` key could revoke the owner's other keys; a read-only advisor could write
recommendations (``POST .../recommendations/generate``). The rules, written out in
``docs/security.md``:

- ``read`` keys read, ``trade`` keys also place and cancel orders and deposit (the owner's
  portfolios only);
- what takes money out or hands the account over needs the person (a bearer token): everything
  under ``/auth/``, API keys, webhooks, the profile, advisor links, withdrawals;
- MFA and API-key changes also need a recent sign-in and, with MFA on, the current code.

One cast for the whole module (an investor with a funded portfolio, an advisor linked to them, an
admin, and the investor's ``read`` and ``trade`` keys); each cell is one request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest

from tests.integration.people import (
    PASSWORD,
    Login,
    Person,
    data,
    error,
    fresh_ip,
    new_person,
    signed_in_long_ago,
    turn_on_mfa,
)

pytestmark = pytest.mark.integration

WHO = ("investor", "advisor", "admin", "read_key", "trade_key")


@dataclass
class Cast:
    http: httpx.Client
    investor: Person
    logins: dict[str, Login]
    keys: dict[str, str]
    portfolio_id: str
    ips: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        if who in self.keys:
            return {"X-API-Key": self.keys[who], "X-Forwarded-For": self.investor.ip}
        return self.logins[who].headers

    def call(
        self, who: str, method: str, path: str, json: object = None, key: str | None = None
    ) -> httpx.Response:
        headers = self.headers(who)
        if key is not None:
            headers = {**headers, "Idempotency-Key": key}
        return self.http.request(method, path, json=json, headers=headers)

    def open_order(self) -> str:
        """A buy limit far below the market: it rests, so it can be cancelled."""
        placed = self.call(
            "investor", "POST", "/api/v1/trades", _resting_buy(self.portfolio_id), str(uuid.uuid4())
        )
        return str(data(placed, 201)["id"])


def _resting_buy(portfolio_id: str) -> dict[str, str]:
    return {
        "portfolio_id": portfolio_id,
        "symbol": "KO",
        "side": "buy",
        "quantity": "1",
        "order_type": "limit",
        "limit_price": "1.00",
        "time_in_force": "gtc",
    }


@pytest.fixture(scope="module")
def cast(api_url: str, database_url: str) -> Iterator[Cast]:
    with httpx.Client(base_url=api_url, timeout=60) as http:
        investor = new_person(http, database_url, prefix="matrix-investor")
        advisor = new_person(http, database_url, role="advisor", prefix="matrix-advisor")
        admin = new_person(http, database_url, role="admin", prefix="matrix-admin")
        logins = {"investor": investor.login(), "advisor": advisor.login(), "admin": admin.login()}
        headers = logins["investor"].headers
        keys = {
            f"{scope}_key": data(
                http.post("/api/v1/api-keys", json={"name": scope, "scopes": [scope]}, headers=headers), 201
            )["key"]
            for scope in ("read", "trade")
        }
        linked = http.post("/api/v1/advisor/clients", json={"advisor_email": advisor.email}, headers=headers)
        assert linked.status_code == 201, linked.text
        portfolio = data(http.post("/api/v1/portfolios", json={"name": "Main"}, headers=headers), 201)
        deposit = http.post(
            f"/api/v1/portfolios/{portfolio['id']}/cash",
            json={"amount": "50000.00"},
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert deposit.status_code == 201, deposit.text
        bought = http.post(
            "/api/v1/trades",
            json={"portfolio_id": portfolio["id"], "symbol": "KO", "side": "buy", "quantity": "20"},
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert bought.status_code == 201, bought.text
        yield Cast(http=http, investor=investor, logins=logins, keys=keys, portfolio_id=portfolio["id"])


# The matrix: route group -> (request, expected status for each caller) --------------------------

Request = Callable[[Cast, str], httpx.Response]


def _spare_key_revoked(cast: Cast, who: str) -> httpx.Response:
    """A person revokes a key of their own; a key tries to revoke one of the investor's."""
    owner = "investor" if who in cast.keys else who
    spare = data(cast.call(owner, "POST", "/api/v1/api-keys", {"name": "spare", "scopes": ["read"]}), 201)
    return cast.call(who, "DELETE", f"/api/v1/api-keys/{spare['id']}")


def _webhook(cast: Cast, who: str) -> httpx.Response:
    body = {"url": "http://127.0.0.1:9/hook", "events": ["trades.executed"]}
    return cast.call(who, "POST", "/api/v1/webhooks", body)


def _cash(amount: str) -> Request:
    def move(cast: Cast, who: str) -> httpx.Response:
        path = f"/api/v1/portfolios/{cast.portfolio_id}/cash"
        return cast.call(who, "POST", path, {"amount": amount}, str(uuid.uuid4()))

    return move


def _place(cast: Cast, who: str) -> httpx.Response:
    return cast.call(who, "POST", "/api/v1/trades", _resting_buy(cast.portfolio_id), str(uuid.uuid4()))


def _cancel(cast: Cast, who: str) -> httpx.Response:
    return cast.call(who, "DELETE", f"/api/v1/trades/{cast.open_order()}")


def _spare_user(cast: Cast) -> str:
    """Someone registered for one cell, so a disable there ends nobody else's sessions."""
    registered = cast.http.post(
        "/api/v1/auth/register",
        json={"email": f"matrix-spare-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": fresh_ip()},
    )
    return str(data(registered, 201)["id"])


def _user_disabled(cast: Cast, who: str) -> httpx.Response:
    body = {"reason": "matrix check"}
    return cast.call(who, "POST", f"/api/v1/admin/users/{_spare_user(cast)}/disable", body)


def _user_enabled(cast: Cast, who: str) -> httpx.Response:
    spare = _spare_user(cast)
    disabled = cast.call("admin", "POST", f"/api/v1/admin/users/{spare}/disable", {"reason": "matrix check"})
    assert disabled.status_code == 200, disabled.text
    return cast.call(who, "POST", f"/api/v1/admin/users/{spare}/enable", {})


def _get(path: str) -> Request:
    return lambda cast, who: cast.call(who, "GET", path.format(p=cast.portfolio_id))


def _send(method: str, path: str, body: object = None) -> Request:
    return lambda cast, who: cast.call(who, method, path.format(p=cast.portfolio_id), body)


def _people(status: int, keys: int = 403) -> dict[str, int]:
    return {"investor": status, "advisor": status, "admin": status, "read_key": keys, "trade_key": keys}


def _everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(WHO, status)


def _writers(status: int, *, trade_key: int | None = None) -> dict[str, int]:
    """The investor's own data: the investor and an admin write, the advisor and a read key may not."""
    return {
        "investor": status,
        "advisor": 403,
        "admin": status,
        "read_key": 403,
        "trade_key": status if trade_key is None else trade_key,
    }


NO_REFRESH_TOKEN = {"refresh_token": "wart_none"}
ALERT = {"symbol": "KO", "direction": "above", "level": "9999"}
GENERATE = "/api/v1/portfolios/{p}/recommendations/generate"

MATRIX: dict[str, tuple[Request, dict[str, int]]] = {
    "auth: sign-in routes": (_send("POST", "/api/v1/auth/refresh", NO_REFRESH_TOKEN), _people(401)),
    "auth: MFA setup": (_send("POST", "/api/v1/auth/mfa/setup"), _people(200)),
    "auth: MFA enable": (_send("POST", "/api/v1/auth/mfa/enable", {"code": "000000"}), _people(400)),
    "auth: MFA disable": (_send("POST", "/api/v1/auth/mfa/disable", {}), _people(400)),
    "auth: password change": (_send("POST", "/api/v1/auth/password", {}), _people(400)),
    "me: read": (_get("/api/v1/me"), _everyone(200)),
    "me: change": (_send("PATCH", "/api/v1/me", {"risk_tolerance": "moderate"}), _people(200)),
    "api keys: create": (_send("POST", "/api/v1/api-keys", {"name": "k", "scopes": ["read"]}), _people(201)),
    "api keys: list": (_get("/api/v1/api-keys"), _people(200)),
    "api keys: revoke": (_spare_key_revoked, _people(200)),
    "webhooks: create": (_webhook, {**_people(201), "advisor": 403}),
    "webhooks: list": (_get("/api/v1/webhooks"), _people(200)),
    "advisor links": (_get("/api/v1/advisor/clients"), _people(200)),
    "admin: users": (_get("/api/v1/admin/users?limit=1"), {**_everyone(403), "admin": 200}),
    "admin: disable a user": (_user_disabled, {**_everyone(403), "admin": 200}),
    "admin: enable a user": (_user_enabled, {**_everyone(403), "admin": 200}),
    "portfolios: read": (_get("/api/v1/portfolios/{p}"), _everyone(200)),
    "portfolios: change": (_send("PATCH", "/api/v1/portfolios/{p}", {"name": "Main"}), _writers(200)),
    "cash: deposit": (_cash("10.00"), _writers(201, trade_key=403)),
    "cash: withdraw": (_cash("-1.00"), _writers(201, trade_key=403)),
    "trades: place": (_place, _writers(201)),
    "trades: cancel": (_cancel, _writers(200)),
    "trades: read": (_get("/api/v1/trades?portfolio_id={p}"), _everyone(200)),
    "recommendations: read": (_get("/api/v1/recommendations?portfolio_id={p}"), _everyone(200)),
    "recommendations: generate": (_send("POST", GENERATE), _writers(200)),
    "tax: harvesting": (_get("/api/v1/tax-harvesting?portfolio_id={p}"), _everyone(200)),
    "tax years": (_send("PUT", "/api/v1/me/tax-years/2022", {"short_term_carryforward": "1"}), _people(200)),
    "households": (_get("/api/v1/me/household"), _people(200)),
    "alerts: create": (_send("POST", "/api/v1/alerts", ALERT), _writers(201)),
    "quotes": (_get("/api/v1/quotes/KO"), _everyone(200)),
}  # fmt: skip

CELLS = [
    pytest.param(group, who, expected[who], id=f"{group} | {who}")
    for group, (_, expected) in MATRIX.items()
    for who in WHO
]


@pytest.mark.parametrize(("group", "who", "expected"), CELLS)
def test_each_caller_gets_what_the_matrix_says(cast: Cast, group: str, who: str, expected: int) -> None:
    request, _ = MATRIX[group]

    response = request(cast, who)

    assert response.status_code == expected, f"{group} as {who}: {response.text[:300]}"
    if expected == 403 and who in cast.keys:
        assert response.json()["error"]["code"] == "FORBIDDEN"


def test_the_matrix_in_the_docs_names_every_group_tested() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    missing = [group for group in MATRIX if f"| {group} |" not in doc]
    assert not missing, f"docs/security.md lacks rows for {missing}"


# The findings, one by one ------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["read", "trade"])
def test_an_api_key_cannot_enrol_its_own_mfa_secret(cast: Cast, scope: str, database_url: str) -> None:
    key = f"{scope}_key"

    setup = cast.call(key, "POST", "/api/v1/auth/mfa/setup")
    enable = cast.call(key, "POST", "/api/v1/auth/mfa/enable", {"code": "123456"})

    error(setup, 403, "FORBIDDEN")
    error(enable, 403, "FORBIDDEN")
    assert "signed-in person" in setup.json()["error"]["message"]
    assert cast.investor.try_login().status_code == 200  # the owner still signs in with the password


def test_a_read_key_cannot_revoke_the_owners_other_keys(cast: Cast) -> None:
    target = data(
        cast.call("investor", "POST", "/api/v1/api-keys", {"name": "victim", "scopes": ["read"]}), 201
    )

    revoked = cast.call("read_key", "DELETE", f"/api/v1/api-keys/{target['id']}")

    error(revoked, 403, "FORBIDDEN")
    assert cast.http.get("/api/v1/me", headers={"X-API-Key": target["key"]}).status_code == 200


def test_a_trade_key_cannot_withdraw_cash(cast: Cast) -> None:
    path = f"/api/v1/portfolios/{cast.portfolio_id}/cash"
    before = data(cast.call("investor", "GET", f"/api/v1/portfolios/{cast.portfolio_id}"))["cash_balance"]

    withdrawal = cast.call("trade_key", "POST", path, {"amount": "-100.00"}, str(uuid.uuid4()))

    error(withdrawal, 403, "FORBIDDEN")
    after = data(cast.call("investor", "GET", f"/api/v1/portfolios/{cast.portfolio_id}"))["cash_balance"]
    assert after == before


def test_a_linked_advisor_cannot_generate_recommendations(cast: Cast) -> None:
    response = cast.call(
        "advisor", "POST", f"/api/v1/portfolios/{cast.portfolio_id}/recommendations/generate"
    )

    error(response, 403, "FORBIDDEN")


# Key changes need a fresh sign-in and, with MFA on, the current code -------------------------------


def test_key_changes_need_a_recent_sign_in(http: httpx.Client, database_url: str) -> None:
    person = new_person(http, database_url)
    fresh = person.login()
    key = data(http.post("/api/v1/api-keys", json={"name": "k"}, headers=fresh.headers), 201)
    stale = signed_in_long_ago(person, fresh, database_url)

    create = http.post("/api/v1/api-keys", json={"name": "late"}, headers=stale.headers)
    revoke = http.delete(f"/api/v1/api-keys/{key['id']}", headers=stale.headers)

    error(create, 401, "REAUTHENTICATION_REQUIRED")
    error(revoke, 401, "REAUTHENTICATION_REQUIRED")
    assert http.get("/api/v1/api-keys", headers=stale.headers).status_code == 200  # listing is not a change
    assert http.get("/api/v1/me", headers={"X-API-Key": key["key"]}).status_code == 200


def test_with_mfa_on_key_changes_need_the_current_code(http: httpx.Client, database_url: str) -> None:
    person = new_person(http, database_url)
    login = person.login()
    app = turn_on_mfa(person, login)

    error(http.post("/api/v1/api-keys", json={"name": "k"}, headers=login.headers), 401, "MFA_REQUIRED")
    wrong = http.post("/api/v1/api-keys", json={"name": "k", "totp_code": "000000"}, headers=login.headers)
    error(wrong, 401, "INVALID_MFA_CODE")
    key = data(
        http.post("/api/v1/api-keys", json={"name": "k", "totp_code": app.code()}, headers=login.headers), 201
    )

    path = f"/api/v1/api-keys/{key['id']}"
    error(http.delete(path, headers=login.headers), 401, "MFA_REQUIRED")
    revoked = http.request("DELETE", path, json={"totp_code": app.code()}, headers=login.headers)
    assert data(revoked)["revoked_at"] is not None


def test_wrong_codes_at_key_changes_count_towards_the_lockout(http: httpx.Client, database_url: str) -> None:
    person = new_person(http, database_url)
    login = person.login()
    turn_on_mfa(person, login)

    codes = [
        http.post(
            "/api/v1/api-keys", json={"name": "k", "totp_code": "000000"}, headers=login.headers
        ).status_code
        for _ in range(5)
    ]

    assert codes[:4] == [401] * 4 and codes[4] == 423
    with psycopg.connect(database_url) as conn:
        locked = conn.execute("SELECT locked_until > now() FROM users WHERE id = %s", (person.id,)).fetchone()
    assert locked == (True,)
