"""The HTTP edge, as a hostile client meets it through Ray Serve: request ids, oversized and
unparsable requests, security headers, and what /health and /metrics tell whom.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.conftest import OPERATOR
from tests.integration.people import PASSWORD, Investor, error

TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@pytest.fixture(scope="module")
def investor(api_url: str, database_url: str) -> Investor:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        return Investor(client, database_url)


@pytest.fixture(scope="module")
def admin(api_url: str, database_url: str) -> Investor:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        person = Investor(client, database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE users SET role = 'admin' WHERE id = %s", (person.id,))
    return person


def _as(person: Investor, http: httpx.Client) -> Investor:
    person.http = http
    return person


# --- X-Request-ID ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    ["<script>alert(1)</script>", "a" * 129, "id with spaces", "é-accented", 'quote"d'],
)
def test_a_client_request_id_that_is_not_a_short_token_is_replaced(http: httpx.Client, sent: str) -> None:
    response = http.get("/api/v1/no-such-thing", headers={"X-Request-ID": sent.encode("utf-8")})
    echoed = response.headers.get_list("x-request-id")
    assert len(echoed) == 1 and echoed[0] != sent and TOKEN.fullmatch(echoed[0])
    assert response.json()["error"]["request_id"] == echoed[0]


def test_a_client_request_id_that_is_a_short_token_is_kept(http: httpx.Client) -> None:
    response = http.get("/health/live", headers={"X-Request-ID": "trace-01:ab.CD_9"})
    assert response.headers.get_list("x-request-id") == ["trace-01:ab.CD_9"]
    assert response.json()["meta"]["request_id"] == "trace-01:ab.CD_9"


# --- Requests too large or unreadable ---------------------------------------------------------------


def test_a_100_kb_header_gets_the_error_envelope_with_a_request_id(http: httpx.Client) -> None:
    response = http.get("/api/v1/market/clock", headers={"X-Padding": "a" * 100_000})
    assert response.status_code == 431
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "REQUEST_HEADERS_TOO_LARGE"
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /\x01bad HTTP/1.1\r\nHost: x\r\n\r\n",
        b"BR0KEN REQUEST\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
def test_a_request_that_is_not_http_gets_the_error_envelope_with_a_request_id(
    api_url: str, raw: bytes
) -> None:
    parts = urlsplit(api_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert lines[0].startswith("HTTP/1.1 400")
    assert headers["content-type"] == "application/json"
    assert httpx.Response(400, content=body).json()["error"]["request_id"] == headers["x-request-id"]


# --- Security headers --------------------------------------------------------------------------------


def test_every_api_answer_says_nosniff_and_authenticated_ones_are_not_stored(
    http: httpx.Client, investor: Investor
) -> None:
    me = _as(investor, http).get("/api/v1/me")
    assert me.status_code == 200
    assert me.headers["x-content-type-options"] == "nosniff"
    assert me.headers["cache-control"] == "no-store"
    tokens = http.post(
        "/api/v1/auth/login",
        json={"email": investor.email, "password": PASSWORD},
        headers={"X-Forwarded-For": investor.ip},
    )
    assert tokens.status_code == 200 and "access_token" in tokens.json()["data"]
    assert tokens.headers["cache-control"] == "no-store"
    for anonymous in (http.get("/api/v1/no-such-thing"), http.get("/health/live")):
        assert anonymous.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in anonymous.headers["content-security-policy"]


def _policy(header: str) -> dict[str, str]:
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in header.split(";")
        if part.strip()
    }


def test_the_dashboard_page_runs_no_inline_script_and_cannot_be_framed(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200
    policy = _policy(page.headers["content-security-policy"])
    assert policy["script-src"] == "'self'" and "unsafe" not in page.headers["content-security-policy"]
    assert policy["frame-ancestors"] == "'none'" and policy["default-src"] == "'none'"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), "inline style or handler"
    assert "Demo-Investor-2026" not in html and not re.search(r'type="password"[^>]*value=', html)
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', html):
        served = http.get(asset)
        assert served.status_code == 200, asset
        assert served.headers["x-content-type-options"] == "nosniff"
        if asset.startswith("/static/"):  # kept, but checked on each use: an upgrade never mixes modules
            assert served.headers["cache-control"] == "no-cache", asset


def test_the_docs_load_swagger_ui_from_the_api_itself(http: httpx.Client) -> None:
    docs = http.get("/docs")
    assert docs.status_code == 200
    assert "//" not in re.sub(r"<!doctype[^>]*>", "", docs.text).replace("http-equiv", "")
    policy = _policy(docs.headers["content-security-policy"])
    assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', docs.text)
    assert {
        "/static/vendor/swagger-ui/swagger-ui-bundle.js",
        "/static/vendor/swagger-ui/swagger-ui.css",
    } <= set(assets)
    for asset in assets:
        served = http.get(asset)
        assert served.status_code == 200, asset
        assert "cdn" not in served.text[:2000].lower() or asset.endswith(".css")
    assert http.get("/openapi.json").status_code == 200


# --- What /health and /metrics tell whom ------------------------------------------------------------


def test_anonymous_health_is_the_status_only(http: httpx.Client, investor: Investor) -> None:
    for response in (http.get("/health"), _as(investor, http).get("/health")):
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"status": "healthy", "version": response.json()["meta"]["version"]}
        assert "memory" not in response.text and "/tmp" not in response.text and "pool" not in response.text


def test_an_operator_reads_the_whole_health_report(http: httpx.Client, admin: Investor) -> None:
    for headers in (OPERATOR, _as(admin, http).headers):
        report = http.get("/health", headers=headers).json()["data"]
        assert report["status"] == "healthy" and "database" in report["checks"]
        assert report["memory_mb"] > 0


def test_liveness_and_readiness_probes(http: httpx.Client) -> None:
    live = http.get("/health/live")
    assert live.status_code == 200 and live.json()["data"] == {"status": "alive"}
    ready = http.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["data"] == {"status": "ready"}


def test_metrics_need_an_operator(http: httpx.Client, investor: Investor, admin: Investor) -> None:
    error(http.get("/metrics"), 401, "UNAUTHORIZED")
    error(_as(investor, http).get("/metrics"), 403, "FORBIDDEN")
    error(http.get("/metrics", headers={"Authorization": "Bearer not-the-token"}), 401, "UNAUTHORIZED")
    for headers in (OPERATOR, _as(admin, http).headers):
        metrics = http.get("/metrics", headers=headers)
        assert metrics.status_code == 200 and "wealthalloc_http_requests_total" in metrics.text


# --- HAProxy's own answers (the ingress of `wealthalloc serve`) -------------------------------------


def test_haproxy_answers_its_own_errors_in_the_envelope(
    tmp_path: Path, unused_port: Callable[[], int]
) -> None:
    """The wrapper Serve runs as its HAProxy binary adds the JSON answers to the configuration Serve
    wrote, then runs the real HAProxy: its 503 for a dead backend is the envelope with a request id."""
    from wealthalloc.runtime import haproxy_errors

    wrapper = haproxy_errors.install(tmp_path / "haproxy")
    port = unused_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n    maxconn 50\n"
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
        f"    errorfile 503 {tmp_path / '500.http'}\n"
        f"frontend http_frontend\n    bind 127.0.0.1:{port}\n    default_backend app\n"
        f"backend app\n    server dead 127.0.0.1:{unused_port()}\n"
    )
    (tmp_path / "500.http").write_text("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    # As Serve runs it: the variable that names the binary names the wrapper itself.
    env = {**os.environ, "RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper)}
    process = subprocess.Popen([str(wrapper), "-db", "-f", str(config)], stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "HAProxy did not start"
                time.sleep(0.2)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        body = response.json()["error"]
        assert (
            body["code"] == "SERVICE_UNAVAILABLE" and body["request_id"] == response.headers["x-request-id"]
        )
        assert set(body) == {"code", "message", "details", "timestamp", "request_id"}
        assert TOKEN.fullmatch(body["request_id"]) and body["timestamp"].endswith("Z")
        again = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert again.headers["x-request-id"] != response.headers["x-request-id"]
        assert haproxy_errors.MARKER in config.read_text()  # Serve's own file, so its bookkeeping holds
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium package (apt-get install chromium)"
)
def test_the_pages_load_in_a_browser_with_no_content_security_policy_violation(
    tmp_path: Path, unused_port: Callable[[], int]
) -> None:
    """The dashboard page and Swagger UI under their real policies: the browser reports no blocked
    script, style or request, and /docs renders the operations it fetched from /openapi.json."""
    from playwright.sync_api import sync_playwright

    port = unused_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, uvicorn; from pathlib import Path; from serve_apps.api.app import create_app;"
            " from wealthalloc.config import Settings;"
            " s = Settings(data_dir=Path(sys.argv[1]), database_url='postgresql://postgres@127.0.0.1:1/none',"
            " redis_url='redis://127.0.0.1:1/0', log_level='ERROR');"
            " uvicorn.run(create_app(s), host='127.0.0.1', port=int(sys.argv[2]), log_level='error')",
            str(tmp_path),
            str(port),
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "the app did not start"
            time.sleep(0.3)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
            try:
                for path, rendered in (("/", "#login"), ("/docs", ".opblock-summary-path")):
                    page = browser.new_page()
                    console: list[str] = []
                    page.on("console", lambda message, seen=console: seen.append(message.text))
                    page.goto(f"http://127.0.0.1:{port}{path}")
                    page.wait_for_selector(rendered, state="attached", timeout=20_000)
                    blocked = [line for line in console if "Content Security Policy" in line]
                    assert not blocked, (path, blocked)
                    page.close()
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(10)
