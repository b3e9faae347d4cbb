"""People who use the API in integration tests: registered, logged in, one client address each."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from wealthalloc.security import totp

PASSWORD = "correct horse battery staple"


def fresh_ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


class Investor:
    def __init__(self, http: httpx.Client, database_url: str, tier: str = "premium") -> None:
        self.http = http
        self.database_url = database_url
        self.ip = fresh_ip()
        self.email = f"pf-{uuid.uuid4().hex[:10]}@example.com"
        created = http.post(
            "/api/v1/auth/register",
            json={"email": self.email, "password": PASSWORD},
            headers={"X-Forwarded-For": self.ip},
        )
        assert created.status_code == 201, created.text
        self.id = created.json()["data"]["id"]
        with psycopg.connect(database_url) as conn:  # premium: these tests make many requests
            conn.execute("UPDATE users SET tier = %s WHERE id = %s", (tier, self.id))
        tokens = http.post(
            "/api/v1/auth/login",
            json={"email": self.email, "password": PASSWORD},
            headers={"X-Forwarded-For": self.ip},
        ).json()["data"]
        self.headers = {"Authorization": f"Bearer {tokens['access_token']}", "X-Forwarded-For": self.ip}

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.http.get(path, headers=self.headers, **kw)  # type: ignore[arg-type]

    def post(self, path: str, json: object = None, key: str | None = None) -> httpx.Response:
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.post(path, json=json, headers=headers)

    def portfolio(self, name: str = "Main", **extra: object) -> dict[str, object]:
        response = self.post("/api/v1/portfolios", json={"name": name, **extra})
        assert response.status_code in (200, 201), response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    def deposit(self, portfolio_id: object, amount: str, key: str | None = None) -> httpx.Response:
        return self.post(
            f"/api/v1/portfolios/{portfolio_id}/cash", {"amount": amount}, key or str(uuid.uuid4())
        )

    def deposit_until_answered(
        self, portfolio_id: object, amount: str, key: str, *, http: httpx.Client, attempts: int = 120
    ) -> httpx.Response | None:
        """A deposit as a careful client of a money API makes it: after a dropped connection, a 5xx or a
        rate limit it is sent again under the same key, until an answer comes (None if none does).

        ``http`` is the caller's own client, so threads never share one."""
        for _attempt in range(attempts):
            try:
                answer = http.post(
                    f"/api/v1/portfolios/{portfolio_id}/cash",
                    json={"amount": amount},
                    headers={**self.headers, "Idempotency-Key": key},
                )
            except httpx.HTTPError:
                time.sleep(0.25)
                continue
            if answer.status_code == 429:  # the user's rate limit: wait as told
                time.sleep(float(answer.headers.get("Retry-After", "1")))
                continue
            if answer.status_code >= 500:
                time.sleep(0.25)
                continue
            return answer
        return None

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(path, headers=self.headers)

    def trade(self, portfolio_id: object, key: str | None = None, **order: object) -> httpx.Response:
        body = {"portfolio_id": str(portfolio_id), "order_type": "market", **order}
        return self.post("/api/v1/trades", body, key or str(uuid.uuid4()))

    def funded(self, amount: str = "100000.00", name: str = "Main") -> dict[str, object]:
        p = self.portfolio(name)
        assert self.deposit(p["id"], amount).status_code == 201
        return p

    def confirm_transfers(self, portfolio_id: object) -> list[str]:
        """An admin confirms the portfolio's pending transfers-in (as a broker sync would): what a
        test that sells transferred shares does first. The ids of the lots confirmed."""
        admin = _admin_headers(self.http, self.database_url)
        lots = self.get(f"/api/v1/portfolios/{portfolio_id}/lots").json()["data"]
        confirmed = []
        for lot in lots:
            if lot.get("transfer_status") == "pending":
                response = self.http.post(
                    f"/api/v1/portfolios/{portfolio_id}/lots/{lot['id']}/confirm",
                    json={"reason": "Transfer statement of the previous broker checked"},
                    headers=admin,
                )
                assert response.status_code == 200, response.text
                confirmed.append(lot["id"])
        return confirmed


_ADMINS: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}


def _admin_headers(http: httpx.Client, database_url: str) -> dict[str, str]:
    """An admin's headers for this API and database, signed in again before the token expires."""
    key = (str(http.base_url), database_url)
    made = _ADMINS.get(key)
    if made is None or time.time() - made[0] > 20 * 60:
        ip, email = fresh_ip(), f"admin-{uuid.uuid4().hex[:10]}@example.com"
        created = http.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD},
            headers={"X-Forwarded-For": ip},
        )
        assert created.status_code == 201, created.text
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE users SET role = 'admin' WHERE id = %s", (created.json()["data"]["id"],))
        tokens = http.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, headers={"X-Forwarded-For": ip}
        ).json()["data"]
        made = (time.time(), {"Authorization": f"Bearer {tokens['access_token']}", "X-Forwarded-For": ip})
        _ADMINS[key] = made
    return made[1]


def data(response: httpx.Response, status: int = 200) -> Any:
    """The envelope's data, once the status is the one expected."""
    assert response.status_code == status, response.text
    return response.json()["data"]


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The envelope's error, once the status and code are the ones expected and the shape is whole."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    assert set(body) == {"code", "message", "details", "timestamp", "request_id"}
    return body


# People with logins: each login is a session of its own ---------------------------------------------


@dataclass
class Login:
    """One sign-in (a session): its access and refresh tokens."""

    access_token: str
    refresh_token: str
    ip: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}", "X-Forwarded-For": self.ip}

    @property
    def claims(self) -> dict[str, Any]:
        """The access token's claims, read without checking the signature (the server checks it)."""
        payload = self.access_token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


@dataclass
class Person:
    """Someone registered through the API (premium, so tests rarely meet the rate limit)."""

    http: httpx.Client
    id: str
    email: str
    ip: str
    password: str = PASSWORD

    def try_login(self, **extra: str) -> httpx.Response:
        return self.http.post(
            "/api/v1/auth/login",
            json={"email": self.email, "password": self.password, **extra},
            headers={"X-Forwarded-For": self.ip},
        )

    def login(self, **extra: str) -> Login:
        tokens = data(self.try_login(**extra))
        return Login(tokens["access_token"], tokens["refresh_token"], self.ip)

    def refresh(self, login: Login) -> Login:
        response = self.http.post(
            "/api/v1/auth/refresh",
            json={"refresh_token": login.refresh_token},
            headers={"X-Forwarded-For": self.ip},
        )
        tokens = data(response)
        return Login(tokens["access_token"], tokens["refresh_token"], self.ip)


def new_person(
    http: httpx.Client, database_url: str, *, role: str = "investor", prefix: str = "sec"
) -> Person:
    ip = fresh_ip()
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    created = http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Test Person"},
        headers={"X-Forwarded-For": ip},
    )
    user_id = data(created, 201)["id"]
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE users SET role = %s, tier = 'premium' WHERE id = %s", (role, user_id))
    return Person(http=http, id=user_id, email=email, ip=ip)


def signed_in_long_ago(person: Person, login: Login, database_url: str, *, minutes: int = 60) -> Login:
    """The same session as ``login`` as it is after a sign-in ``minutes`` ago and a refresh since:
    a valid access token whose sign-in is no longer recent."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE sessions SET authenticated_at = now() - make_interval(mins => %s) WHERE id = %s",
            (minutes, login.claims["sid"]),
        )
    return person.refresh(login)


class Authenticator:
    """A person's authenticator app: the code of a 30-second step, each step given out once.

    The server accepts the current step and one either side, each only once and in increasing
    order, so this hands out the earliest step the server will still take, waiting for the
    clock when all three are spent, and keeps clear of a step boundary about to pass.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.last_step: int | None = None

    def code(self) -> str:
        while True:
            now = time.time()
            current, into = divmod(now, totp.STEP_SECONDS)
            earliest = int(current) - 1 if into < totp.STEP_SECONDS - 5 else int(current)
            step = earliest if self.last_step is None else max(self.last_step + 1, earliest)
            if step <= int(current) + 1:
                self.last_step = step
                return totp.code_at(self.secret, datetime.fromtimestamp(step * totp.STEP_SECONDS, UTC))
            time.sleep(totp.STEP_SECONDS - into + 0.05)


def turn_on_mfa(person: Person, login: Login) -> Authenticator:
    setup = data(person.http.post("/api/v1/auth/mfa/setup", headers=login.headers))
    app = Authenticator(setup["secret"])
    enabled = person.http.post("/api/v1/auth/mfa/enable", json={"code": app.code()}, headers=login.headers)
    assert enabled.status_code == 204, enabled.text
    return app
