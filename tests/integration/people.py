"""People who use the API in integration tests: registered, logged in, one client address each."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg

PASSWORD = "correct horse battery staple"


def fresh_ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


class Investor:
    def __init__(self, http: httpx.Client, database_url: str, tier: str = "premium") -> None:
        self.http = http
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

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(path, headers=self.headers)

    def trade(self, portfolio_id: object, key: str | None = None, **order: object) -> httpx.Response:
        body = {"portfolio_id": str(portfolio_id), "order_type": "market", **order}
        return self.post("/api/v1/trades", body, key or str(uuid.uuid4()))

    def funded(self, amount: str = "100000.00", name: str = "Main") -> dict[str, object]:
        p = self.portfolio(name)
        assert self.deposit(p["id"], amount).status_code == 201
        return p


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
