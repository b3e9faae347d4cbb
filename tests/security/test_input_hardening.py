"""A NUL character (U+0000) in any text a client sends is refused as a validation error, in one place.

PostgreSQL text cannot hold U+0000, so before the fix a NUL that reached a query
failed there and answered 500 on every operation that stores or looks up text.
The API's outermost middleware now refuses it in JSON bodies (only escaped, as
``\\u0000``: a raw NUL byte is not JSON), path and query parameters and header
values, naming the field, with the status and code of every other validation
error.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.people import PASSWORD, Investor, error, fresh_ip

NUL = "\x00"

Call = Callable[[httpx.Client, Investor], httpx.Response]


def _portfolio_id(investor: Investor) -> Any:
    return investor.portfolio(f"P {uuid.uuid4().hex[:6]}")["id"]


OPERATIONS: dict[str, tuple[Call, str]] = {
    "login": (
        lambda http, person: http.post(
            "/api/v1/auth/login",
            json={"email": f"x{NUL}@example.com", "password": PASSWORD},
            headers={"X-Forwarded-For": fresh_ip()},
        ),
        "body.email",
    ),
    "register": (
        lambda http, person: http.post(
            "/api/v1/auth/register",
            json={
                "email": f"n-{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD,
                "full_name": f"A{NUL}B",
            },
            headers={"X-Forwarded-For": fresh_ip()},
        ),
        "body.full_name",
    ),
    "create portfolio": (
        lambda http, person: person.post("/api/v1/portfolios", json={"name": f"Main{NUL}"}),
        "body.name",
    ),
    "change my profile": (
        lambda http, person: http.patch(
            "/api/v1/me", json={"full_name": f"Ann{NUL}"}, headers=person.headers
        ),
        "body.full_name",
    ),
    "create an API key": (
        lambda http, person: person.post("/api/v1/api-keys", json={"name": f"ci{NUL}", "scopes": ["read"]}),
        "body.name",
    ),
    "set a price alert": (
        lambda http, person: person.post(
            "/api/v1/alerts",
            json={"symbol": "KO", "direction": "above", "level": "9999.00", "note": f"n{NUL}"},
        ),
        "body.note",
    ),
    "cash description": (
        lambda http, person: person.post(
            f"/api/v1/portfolios/{_portfolio_id(person)}/cash",
            json={"amount": "10.00", "description": f"pay{NUL}day"},
            key=str(uuid.uuid4()),
        ),
        "body.description",
    ),
    "query parameter": (
        lambda http, person: person.get(f"/api/v1/portfolios/{_portfolio_id(person)}/lots?symbol=KO%00"),
        "query.symbol",
    ),
    "path parameter": (
        lambda http, person: person.get("/api/v1/quotes/KO%00"),
        "path",
    ),
}


@pytest.fixture(scope="module")
def person(api_url: str, database_url: str) -> Investor:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        investor = Investor(client, database_url)
    return investor


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_nul_character_is_a_validation_error_naming_the_field(
    operation: str, http: httpx.Client, person: Investor
) -> None:
    person.http = http
    call, field = OPERATIONS[operation]
    response = call(http, person)
    body = error(response, 422, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field
    assert body["request_id"] == response.headers["x-request-id"]


def test_text_that_only_looks_like_the_escape_is_accepted(http: httpx.Client, person: Investor) -> None:
    """An escaped backslash before ``u0000`` is six ordinary characters, not a NUL."""
    person.http = http
    response = person.post("/api/v1/portfolios", json={"name": "backslash \\u0000 here"})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["name"] == "backslash \\u0000 here"


def test_a_nul_split_across_body_chunks_is_found(http: httpx.Client, person: Investor) -> None:
    """The check looks across the chunks a body arrives in, not only within one."""
    person.http = http
    payload = ('{"name": "' + "x" * 40 + "\\u0000" + '"}').encode()

    def chunks() -> Any:
        cut = payload.index(b"\\u0000") + 3
        yield payload[:cut]
        yield payload[cut:]

    response = http.post(
        "/api/v1/portfolios", content=chunks(), headers={**person.headers, "Content-Type": "application/json"}
    )
    assert error(response, 422, "VALIDATION_ERROR")["details"][0]["field"] == "body.name"
