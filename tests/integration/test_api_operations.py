"""The operations surface of the API, served by Ray Serve on real PostgreSQL, Redis and Ray."""

from __future__ import annotations

import httpx

from tests.conftest import OPERATOR

EXPECTED_CHECKS = {"database", "redis", "ray", "broker", "event_bus", "model"}


def test_health_is_200_with_every_check_healthy(http: httpx.Client) -> None:
    response = http.get("/health", headers=OPERATOR)
    assert response.status_code == 200, response.text
    report = response.json()["data"]
    assert report["status"] == "healthy"
    assert set(report["checks"]) == EXPECTED_CHECKS
    assert all(check["status"] == "healthy" for check in report["checks"].values())
    assert report["checks"]["ray"]["alive_nodes"] >= 1
    broker = report["checks"]["broker"]
    assert broker["broker"] == "paper" and broker["state"] == "healthy"
    model = report["checks"]["model"]  # the session's tiny model, loaded by the AnomalyDetector deployment
    assert model["promoted_version"] is not None and model["loaded_version"] == model["promoted_version"]
    assert report["uptime_seconds"] >= 0 and report["memory_mb"] > 0


def test_every_response_carries_a_request_id(http: httpx.Client) -> None:
    first = http.get("/health").headers["x-request-id"]
    second = http.get("/health").headers["x-request-id"]
    assert first and second and first != second


def test_unknown_path_answers_404_in_the_error_envelope(http: httpx.Client) -> None:
    response = http.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "NOT_FOUND"
    assert error["request_id"] == response.headers["x-request-id"]


def test_metrics_are_prometheus_text(http: httpx.Client) -> None:
    http.get("/health")
    response = http.get("/metrics", headers=OPERATOR)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'wealthalloc_http_requests_total{endpoint="/health",method="GET",status="200"}' in response.text
    assert 'wealthalloc_health_check_up{check="database"} 1.0' in response.text


def test_openapi_document_and_docs_are_served(http: httpx.Client) -> None:
    spec = http.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json()["info"]["title"] == "WealthAlloc API"
    assert "/health" in spec.json()["paths"]
    assert http.get("/docs").status_code == 200


def test_health_is_503_naming_redis_when_redis_is_dead(
    ray_local: None, api_url: str, api_settings: dict[str, str]
) -> None:
    from ray import serve

    from serve_apps.api.deployment import build

    broken = {**api_settings, "redis_url": "redis://127.0.0.1:1/0"}
    serve.run(build(broken), name="api-dead-redis", route_prefix="/dead-redis")
    try:
        response = httpx.get(f"{api_url}/dead-redis/health", timeout=30, headers=OPERATOR)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "SERVICE_UNAVAILABLE"
        assert set(error["details"]["failing"]) == {"redis", "event_bus"}
        assert "redis" in error["message"]
        assert error["details"]["checks"]["database"]["status"] == "healthy"
        anonymous = httpx.get(f"{api_url}/dead-redis/health", timeout=30)
        assert anonymous.status_code == 503
        assert anonymous.json()["error"]["details"] == {
            "status": "unhealthy",
            "version": error["details"]["version"],
        }
        assert "redis" not in anonymous.text
        ready = httpx.get(f"{api_url}/dead-redis/health/ready", timeout=30)
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert httpx.get(f"{api_url}/dead-redis/health/live", timeout=30).status_code == 200
    finally:
        serve.delete("api-dead-redis")


def test_the_market_clock_maps_today_onto_the_data(http: httpx.Client) -> None:
    from datetime import date

    body = http.get("/api/v1/market/clock").json()["data"]
    market_date = date.fromisoformat(body["market_date"])
    assert date.fromisoformat(body["data_start"]) <= market_date <= date.fromisoformat(body["data_end"])
    assert date.fromisoformat(body["real_date"]).year - market_date.year == body["offset_years"]


def test_securities_carry_sector_and_asset_class(http: httpx.Client) -> None:
    rows = {row["symbol"]: row for row in http.get("/api/v1/market/securities").json()["data"]}
    assert len(rows) == 26
    assert rows["AAPL"]["sector"] == "Information Technology"
    assert rows["SPX"]["asset_class"] == "index"


def test_prices_on_a_day_are_decimal_strings(http: httpx.Client) -> None:
    response = http.post("/api/v1/market/prices", json={"symbols": ["aapl", "MSFT"], "on": "2022-11-26"})
    assert response.status_code == 200, response.text
    body = response.json()["data"]
    assert body["closes"]["AAPL"] == "147.6800"  # Saturday: Friday's close
    assert set(body["closes"]) == {"AAPL", "MSFT"}


def test_a_malformed_json_body_answers_400_in_the_envelope(http: httpx.Client) -> None:
    response = http.post(
        "/api/v1/market/prices", content=b'{"symbols": ["AAPL"', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MALFORMED_JSON"


def test_unknown_symbols_wrong_types_and_unknown_fields_are_refused(http: httpx.Client) -> None:
    unknown = http.post("/api/v1/market/prices", json={"symbols": ["AAPL", "ZZZZ"]})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["details"] == {"symbols": ["ZZZZ"]}
    wrong_type = http.post("/api/v1/market/prices", json={"symbols": "AAPL"})
    assert wrong_type.status_code == 400 and wrong_type.json()["error"]["code"] == "VALIDATION_ERROR"
    extra = http.post("/api/v1/market/prices", json={"symbols": ["AAPL"], "price": "1"})
    assert extra.status_code == 400
    injection = http.post("/api/v1/market/prices", json={"symbols": ["AAPL'; DROP TABLE users;--"]})
    assert injection.status_code == 400
    before_data = http.post("/api/v1/market/prices", json={"symbols": ["MTUM"], "on": "2010-01-04"})
    assert before_data.status_code == 400 and before_data.json()["error"]["code"] == "NO_PRICE"


def test_the_dashboard_page_is_served_at_the_root(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<title>WealthAlloc</title>" in page
    assert '<script type="module" src="/static/js/main.js">' in page
    main = http.get("/static/js/main.js")
    assert main.status_code == 200 and "javascript" in main.headers["content-type"]
    client = http.get("/static/js/api.js").text  # the one module that speaks to the API
    dashboard = http.get("/static/js/screens/dashboard.js").text
    assert "/api/v1/auth/login" in client
    assert "/api/v1/dashboard" in dashboard and "/api/v1/portfolios/" in dashboard
