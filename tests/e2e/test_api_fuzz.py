"""Generated requests against every documented operation: none makes the API answer 5xx.

Schemathesis derives valid and invalid requests from the OpenAPI document
(wrong types, missing fields, boundary values, odd strings) and sends them to
the API on Ray Serve as a signed-in investor with an API key. Slow: run with
``make test-all``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def api_key(api_url: str) -> str:
    email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=api_url, timeout=30) as http:
        http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        token = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["data"]
        key = http.post(
            "/api/v1/api-keys",
            json={"name": "fuzz", "scopes": ["read", "trade"]},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        http.post(
            "/api/v1/portfolios",
            json={"name": "Fuzzed"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
    return str(key.json()["data"]["key"])


@pytest.mark.slow
def test_no_generated_request_makes_the_api_fail(api_url: str, api_key: str) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(cli),
            "run",
            f"{api_url}/openapi.json",
            "--header",
            f"X-API-Key: {api_key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--exclude-path-regex",
            "logout|refresh|/admin/",
            "--seed",
            "20261125",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
