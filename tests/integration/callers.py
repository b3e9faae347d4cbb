"""Callers of the auth API, signed in step by step so a test can stop between the steps.

``Person`` here carries its tokens and is changed by ``login``; the session-oriented
helpers of ``people.py`` return a ``Login`` per sign-in instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from tests.integration.people import PASSWORD, fresh_ip


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
