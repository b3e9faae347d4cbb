"""The API answers in one envelope, whatever happens: the contract of API.md."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from serve_apps.api.app import create_app
from serve_apps.api.envelope import ApiError, success
from wealthalloc.config import Settings

OPERATIONS_TOKEN = "unit-operations-token-0123456789"
OPERATOR = {"Authorization": f"Bearer {OPERATIONS_TOKEN}"}


class _Deposit(BaseModel):
    amount: Decimal


class _Note(BaseModel):
    text: str


def _probe_router() -> APIRouter:
    router = APIRouter()

    @router.post("/probe/deposit")
    async def deposit(body: _Deposit, request: Request):  # type: ignore[no-untyped-def]
        return success(request, {"amount": body.amount}, status_code=201)

    @router.post("/probe/note")
    async def note(body: _Note, request: Request):  # type: ignore[no-untyped-def]
        return success(request, {"text": body.text}, status_code=201)

    @router.get("/probe/conflict")
    async def conflict() -> None:
        raise ApiError(409, "IDEMPOTENCY_CONFLICT", "Key reused with another body.", {"key": "k1"})

    @router.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    return router


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql://postgres@127.0.0.1:1/none",
        redis_url="redis://127.0.0.1:1/0",
        max_body_bytes=2048,
        operations_token=OPERATIONS_TOKEN,
    )
    app = create_app(settings, extra_routers=[_probe_router()])
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _assert_error_envelope(body: dict, code: str) -> None:
    error = body["error"]
    assert error["code"] == code
    assert set(error) == {"code", "message", "details", "timestamp", "request_id"}
    assert error["request_id"].startswith("req_") or error["request_id"]


def test_success_envelope_carries_decimal_strings_and_meta(client: TestClient) -> None:
    response = client.post("/probe/deposit", json={"amount": "1234.50"})
    assert response.status_code == 201
    body = response.json()
    assert body["data"] == {"amount": "1234.50"}
    assert body["meta"]["request_id"] == response.headers["x-request-id"]
    assert body["meta"]["version"]
    assert body["links"]["self"] == "/probe/deposit"


def test_unknown_path_is_404_in_the_envelope(client: TestClient) -> None:
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    _assert_error_envelope(response.json(), "NOT_FOUND")
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


def test_malformed_json_is_400_in_the_envelope(client: TestClient) -> None:
    response = client.post(
        "/probe/deposit", content=b'{"amount": "1.00",', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    _assert_error_envelope(response.json(), "MALFORMED_JSON")


def test_wrong_type_is_400_naming_the_field(client: TestClient) -> None:
    response = client.post("/probe/deposit", json={"amount": "lots"})
    assert response.status_code == 400
    body = response.json()
    _assert_error_envelope(body, "VALIDATION_ERROR")
    assert body["error"]["details"][0]["field"] == "body.amount"
    assert "lots" not in response.text  # inputs are not echoed back (they may be secrets)


def test_wrong_method_is_405_in_the_envelope(client: TestClient) -> None:
    response = client.delete("/probe/deposit")
    assert response.status_code == 405
    _assert_error_envelope(response.json(), "METHOD_NOT_ALLOWED")


def test_api_error_keeps_its_status_code_and_details(client: TestClient) -> None:
    response = client.get("/probe/conflict")
    assert response.status_code == 409
    body = response.json()
    _assert_error_envelope(body, "IDEMPOTENCY_CONFLICT")
    assert body["error"]["details"] == {"key": "k1"}


def test_unexpected_exception_is_500_without_a_stack_trace(client: TestClient) -> None:
    response = client.get("/probe/crash")
    assert response.status_code == 500
    _assert_error_envelope(response.json(), "INTERNAL_ERROR")
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"]


def test_oversized_body_is_413_before_it_is_read(client: TestClient) -> None:
    response = client.post(
        "/probe/deposit", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    _assert_error_envelope(response.json(), "PAYLOAD_TOO_LARGE")


def test_a_well_formed_client_request_id_is_kept_and_a_bad_one_replaced(client: TestClient) -> None:
    kept = client.get("/health/live", headers={"X-Request-ID": "trace-0123456789"})
    assert kept.headers["x-request-id"] == "trace-0123456789"
    replaced = client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"].startswith("req_")


def test_health_names_the_failing_dependencies_with_503(client: TestClient) -> None:
    response = client.get("/health", headers=OPERATOR)
    assert response.status_code == 503
    body = response.json()
    _assert_error_envelope(body, "SERVICE_UNAVAILABLE")
    report = body["error"]["details"]
    assert {"database", "redis", "event_bus"} <= set(report["failing"])
    assert report["checks"]["database"]["status"] == "unhealthy"
    assert "database" in body["error"]["message"]


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/api/v1/no-such-thing")
    text = client.get("/metrics", headers=OPERATOR).text
    assert 'wealthalloc_http_requests_total{endpoint="unmatched",method="GET",status="404"}' in text


def test_a_nul_in_a_header_value_is_refused_naming_the_header(client: TestClient) -> None:
    response = client.get("/health/live", headers=[(b"idempotency-key", b"k\x00ey")])
    assert response.status_code == 422
    _assert_error_envelope(response.json(), "VALIDATION_ERROR")
    assert response.json()["error"]["details"][0]["field"] == "header.idempotency-key"


def test_headers_over_32_kib_are_431_in_the_envelope(client: TestClient) -> None:
    response = client.get("/health/live", headers={"X-Padding": "a" * 40_000})
    assert response.status_code == 431
    _assert_error_envelope(response.json(), "REQUEST_HEADERS_TOO_LARGE")
    assert client.get("/health/live", headers={"X-Padding": "a" * 20_000}).status_code == 200


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    for response in (
        client.get("/health/live"),
        client.get("/api/v1/no-such-thing"),
        client.get("/probe/crash"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_a_nul_escape_split_across_body_chunks_is_found_and_named(client: TestClient) -> None:
    """The escape straddles two chunks; the field is named from the whole body, not the rest."""
    import asyncio
    import json

    body = b'{"text": "ab' + b"c" * 50 + b'\\u0000"}'
    cut = body.index(b"\\u0000") + 2
    chunks = [body[:10], body[10:cut], body[cut:]]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/probe/note",
        "raw_path": b"/probe/note",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 422
    error = json.loads(sent[1]["body"])["error"]  # type: ignore[arg-type]
    assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == "body.text"
