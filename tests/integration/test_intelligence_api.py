"""Anomaly scores and portfolio risk through the API on Ray Serve, with the AnomalyDetector composed in.

Real PostgreSQL, Redis and Ray; the model is the tiny one ``promoted_model``
trained on the bundled prices before the API started. Scores are checked
against the same model run in this process, risk against a numpy
computation written here from the definitions.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from tests.conftest import OPERATOR, tiny_model_recipe
from tests.integration.people import Investor
from wealthalloc.ml.autoencoder import METADATA_FILE, MODEL_FILE, ModelBundle
from wealthalloc.ml.features import FeatureSpec, daily_features, make_windows
from wealthalloc.ml.registry import ModelRegistry


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


@pytest.fixture(scope="module")
def http_module(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def service(http_module: httpx.Client, database_url: str) -> Investor:
    """The caller of the scoring endpoint: another service, signed in like anyone else."""
    return Investor(http_module, database_url)


@pytest.fixture(scope="module")
def served(service: Investor, promoted_model: str, data_dir: Path) -> dict[str, Any]:
    """What GET /anomaly/model says about the promoted model, and that model loaded here."""
    described = service.get("/api/v1/anomaly/model")
    assert described.status_code == 200, described.text
    registry = ModelRegistry(str(data_dir / "models"))
    return {**described.json()["data"], "bundle": ModelBundle.load(registry.version_path(promoted_model))}


def _closes(data_dir: Path, symbol: str) -> pd.Series:
    """A symbol's closes read straight from its Parquet file."""
    frame = pd.read_parquet(data_dir / "prices" / f"{symbol}.parquet")
    return pd.Series(frame["close"].to_numpy(float), index=pd.DatetimeIndex(pd.to_datetime(frame["date"])))


def _real_windows(data_dir: Path, spec: FeatureSpec, symbol: str, count: int, end: str) -> np.ndarray:
    """``count`` consecutive raw feature windows of a symbol ending on or before ``end``."""
    features = daily_features(_closes(data_dir, symbol)[:end], _closes(data_dir, spec.index_symbol), spec)
    return make_windows(features, symbol, spec.window).values[-count:]


def _score(service: Investor, windows: Any, symbols: list[str] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"windows": windows.tolist() if isinstance(windows, np.ndarray) else windows}
    if symbols is not None:
        body["symbols"] = symbols
    return service.post("/api/v1/anomaly/score", body)


# Scoring --------------------------------------------------------------------------------------------


def test_the_served_model_is_the_promoted_one_and_says_what_windows_it_takes(
    served: dict[str, Any], promoted_model: str
) -> None:
    assert served["version"] == promoted_model
    assert served["window"] == 20
    assert served["feature_names"] == ["log_return", "realised_vol", "relative_return"]
    assert served["threshold"] > 0 and served["load_failure"] is None


def test_scores_of_real_windows_are_the_models_reconstruction_errors(
    service: Investor, served: dict[str, Any], data_dir: Path
) -> None:
    spec = FeatureSpec.from_dict(served["features"])
    windows = _real_windows(data_dir, spec, "AAPL", 5, "2020-03-20")  # the pandemic crash among them
    response = _score(service, windows, ["AAPL"] * 5)
    assert response.status_code == 200, response.text
    scores = response.json()["data"]
    expected = served["bundle"].errors(windows, ["AAPL"] * 5)
    assert scores["model_version"] == served["version"] and scores["count"] == 5
    assert scores["threshold"] == pytest.approx(served["threshold"])
    assert scores["reconstruction_errors"] == pytest.approx(expected.tolist(), rel=1e-4)
    assert scores["is_anomaly"] == [bool(e > served["threshold"]) for e in scores["reconstruction_errors"]]


def test_concurrent_requests_are_merged_into_fewer_model_calls_and_each_gets_its_own_scores(
    service: Investor, served: dict[str, Any], data_dir: Path, api_url: str
) -> None:
    spec = FeatureSpec.from_dict(served["features"])
    symbols = ["AAPL", "KO", "JPM", "XOM", "MSFT", "JNJ", "PG", "BAC"]
    requests = [
        (symbol, _real_windows(data_dir, spec, symbol, 3, end))
        for symbol in symbols
        for end in ("2019-06-28", "2022-06-30")
    ]
    headers = service.headers
    before = _batching(service)

    def post(item: tuple[str, np.ndarray]) -> httpx.Response:
        symbol, windows = item
        with httpx.Client(base_url=api_url, timeout=60) as client:
            return client.post(
                "/api/v1/anomaly/score",
                json={"windows": windows.tolist(), "symbols": [symbol] * len(windows)},
                headers=headers,
            )

    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(post, requests))
    after = _batching(service)

    for (symbol, windows), response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        expected = served["bundle"].errors(windows, [symbol] * len(windows))
        assert response.json()["data"]["reconstruction_errors"] == pytest.approx(expected.tolist(), rel=1e-4)
    assert after["requests"] - before["requests"] == len(requests)
    assert after["windows"] - before["windows"] == 3 * len(requests)
    assert after["batches"] - before["batches"] < len(requests), "no two requests shared a model call"


def _batching(service: Investor) -> dict[str, int]:
    return service.get("/api/v1/anomaly/model").json()["data"]["batching"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("windows", "code", "message"),
    [
        (np.zeros((2, 19, 3)).tolist(), "INVALID_WINDOWS", "20 days long"),
        (np.zeros((2, 20, 4)).tolist(), "INVALID_WINDOWS", "3 features per day"),
        ([np.zeros((20, 3)).tolist(), np.zeros((19, 3)).tolist()], "INVALID_WINDOWS", "same number of days"),
        ([], "INVALID_WINDOWS", "Empty batch"),
        (np.zeros((20, 3)).tolist(), "VALIDATION_ERROR", "not valid"),  # one window, not a batch of them
        ([[["a", "b", "c"]] * 20], "VALIDATION_ERROR", "not valid"),
    ],
    ids=["short-window", "extra-feature", "ragged", "empty", "not-a-batch", "not-numbers"],
)
def test_windows_of_the_wrong_shape_are_400_saying_what_is_wrong(
    service: Investor, served: dict[str, Any], windows: Any, code: str, message: str
) -> None:
    response = _score(service, windows)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and message in error["message"]


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinite_values_are_400(service: Investor, served: dict[str, Any], bad: str) -> None:
    windows = np.zeros((3, 20, 3)).tolist()
    text = json.dumps({"windows": windows}).replace("0.0", bad, 1)
    response = service.http.post(
        "/api/v1/anomaly/score",
        content=text.encode(),
        headers={**service.headers, "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_WINDOWS", error
    assert "NaN or infinite" in error["message"] and "window 0" in error["message"]


def test_a_batch_over_the_limit_is_413_and_symbols_must_match_the_windows(
    service: Investor, served: dict[str, Any]
) -> None:
    window = [[0, 0, 0]] * 20
    too_many = _score(service, [window] * 1025)
    assert too_many.status_code == 413, too_many.text
    assert too_many.json()["error"]["code"] == "BATCH_TOO_LARGE"
    assert too_many.json()["error"]["details"] == {"windows": 1025, "limit": 1024}
    at_the_limit = _score(service, [window] * 1024)
    assert at_the_limit.status_code == 200 and at_the_limit.json()["data"]["count"] == 1024
    mismatched = _score(service, [window] * 2, ["AAPL"])
    assert (
        mismatched.status_code == 400 and "1 symbols for 2 windows" in mismatched.json()["error"]["message"]
    )


def test_scoring_needs_credentials(http: httpx.Client) -> None:
    response = http.post("/api/v1/anomaly/score", json={"windows": np.zeros((1, 20, 3)).tolist()})
    assert response.status_code == 401


# A portfolio's anomalies ------------------------------------------------------------------------------


def _with_lots(investor: Investor, lots: dict[str, str], cash: str = "0") -> dict[str, Any]:
    p = investor.portfolio(f"Book {uuid.uuid4().hex[:6]}")
    for symbol, shares in lots.items():
        response = investor.post(
            f"/api/v1/portfolios/{p['id']}/lots",
            {"symbol": symbol, "shares": shares, "cost_basis": "5000.00", "acquired_at": "2019-03-01"},
            str(uuid.uuid4()),
        )
        assert response.status_code == 201, response.text
    if Decimal(cash):
        assert investor.deposit(p["id"], cash).status_code == 201
    snapshot = investor.get(f"/api/v1/portfolios/{p['id']}").json()["data"]
    return snapshot  # type: ignore[no-any-return]


def test_each_holding_gets_its_latest_window_scored_as_of_the_market_clock(
    investor: Investor, served: dict[str, Any], data_dir: Path
) -> None:
    portfolio = _with_lots(investor, {"AAPL": "30", "KO": "80", "MTUM": "12"})
    response = investor.get(f"/api/v1/portfolios/{portfolio['id']}/anomalies")
    assert response.status_code == 200, response.text
    body = response.json()["data"]
    as_of = portfolio["as_of"]
    assert body["as_of"] == as_of and body["model_version"] == served["version"]
    rows = {row["symbol"]: row for row in body["holdings"]}
    assert set(rows) == {"AAPL", "KO", "MTUM"}
    spec = FeatureSpec.from_dict(served["features"])
    for symbol, row in rows.items():
        window = _real_windows(data_dir, spec, symbol, 1, as_of)
        expected = float(served["bundle"].errors(window, [symbol])[0])
        assert row["status"] == "scored" and row["model_version"] == served["version"]
        assert row["reconstruction_error"] == pytest.approx(expected, rel=1e-4)
        assert row["threshold"] == pytest.approx(served["threshold"])
        assert row["is_anomaly"] is (expected > served["threshold"])
        last_close = _closes(data_dir, symbol)[:as_of].index[-1].date()
        assert row["window_end"] == last_close.isoformat()
    assert body["anomalies"] == sum(row["is_anomaly"] for row in rows.values())


def test_an_empty_portfolio_has_no_anomalies_but_names_the_model(
    investor: Investor, served: dict[str, Any]
) -> None:
    portfolio = investor.portfolio("Nothing yet")
    body = investor.get(f"/api/v1/portfolios/{portfolio['id']}/anomalies").json()["data"]
    assert body["holdings"] == [] and body["anomalies"] == 0 and body["model_version"] == served["version"]


def test_someone_elses_portfolio_is_404_for_anomalies_and_risk(
    investor: Investor, http: httpx.Client, database_url: str
) -> None:
    portfolio = _with_lots(investor, {"AAPL": "10"})
    stranger = Investor(http, database_url)
    for path in ("anomalies", "risk"):
        response = stranger.get(f"/api/v1/portfolios/{portfolio['id']}/{path}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
        assert stranger.get(f"/api/v1/portfolios/{uuid.uuid4()}/{path}").status_code == 404


# Risk -------------------------------------------------------------------------------------------------


def _expected_risk(
    data_dir: Path, holdings: list[dict[str, Any]], total: Decimal, as_of: str, days: int = 252
) -> dict[str, Any]:
    """The risk figures from their definitions, in numpy, on the last ``days`` daily returns."""
    symbols = [h["symbol"] for h in holdings]
    weights = np.array([float(Decimal(h["market_value"]) / total) for h in holdings])
    closes = pd.concat({s: _closes(data_dir, s) for s in [*symbols, "SPX"]}, axis=1)[:as_of].tail(days + 1)
    prices = closes.to_numpy()
    assert not np.isnan(prices).any()
    returns = prices[1:] / prices[:-1] - 1
    portfolio, index = returns[:, :-1] @ weights, returns[:, -1]
    n = len(portfolio)
    worst = np.sort(-portfolio)[::-1]  # the largest loss first
    tail = 0.05 * n  # 12.6 days of 252: twelve whole days and 0.6 of the thirteenth
    whole = math.floor(tail)
    var = worst[whole]
    cvar = (worst[:whole].sum() + (tail - whole) * worst[whole]) / tail
    mu, sigma = portfolio.mean(), portfolio.std(ddof=1)
    z = norm.ppf(0.95)
    volatility = sigma * math.sqrt(252)
    hhi = float(((weights / weights.sum()) ** 2).sum())
    sectors: dict[str, float] = {}
    for h, w in zip(holdings, weights, strict=True):
        sectors[h["sector"]] = sectors.get(h["sector"], 0.0) + w
    invested = float(weights.sum())
    score = 100 * (0.5 * min(volatility / 0.50, 1) + 0.3 * min(cvar / 0.065, 1) + 0.2 * invested * hhi)
    return {
        "observations": n,
        "volatility": volatility,
        "var_historical": var,
        "cvar_historical": cvar,
        "var_parametric": -mu + sigma * z,
        "cvar_parametric": -mu + sigma * norm.pdf(z) / 0.05,
        "beta": np.cov(portfolio, index, ddof=1)[0, 1] / np.var(index, ddof=1),
        "hhi": hhi,
        "invested_weight": invested,
        "cash_weight": 1 - invested,
        "sector_exposure": sectors,
        "risk_score": score,
    }


def test_risk_matches_an_independent_computation_on_the_bundled_prices(
    investor: Investor, data_dir: Path
) -> None:
    portfolio = _with_lots(investor, {"AAPL": "40", "KO": "120", "JPM": "30", "MTUM": "25"}, cash="2500.00")
    response = investor.get(f"/api/v1/portfolios/{portfolio['id']}/risk")
    assert response.status_code == 200, response.text
    risk = response.json()["data"]
    total = Decimal(portfolio["total_value"])
    expected = _expected_risk(data_dir, portfolio["holdings"], total, portfolio["as_of"])

    assert risk["as_of"] == portfolio["as_of"] and risk["end"] == portfolio["as_of"]
    assert risk["benchmark"] == "SPX" and risk["confidence"] == "0.95" and risk["horizon_days"] == 1
    assert risk["observations"] == expected["observations"] == 252
    for name in ("volatility", "var_historical", "cvar_historical", "var_parametric", "cvar_parametric"):
        assert isinstance(risk[name], str), name
        assert float(risk[name]) == pytest.approx(expected[name], abs=1e-6), name
    for name in ("beta", "hhi", "invested_weight", "cash_weight"):
        assert float(risk[name]) == pytest.approx(expected[name], abs=1e-6), name
    assert {k: float(v) for k, v in risk["sector_exposure"].items()} == pytest.approx(
        expected["sector_exposure"], abs=1e-6
    )
    assert float(risk["risk_score"]) == pytest.approx(expected["risk_score"], abs=0.01)
    assert 0 <= float(risk["risk_score"]) <= 100
    assert Decimal(risk["var_historical_amount"]) == (total * Decimal(risk["var_historical"])).quantize(
        Decimal("0.01")
    )
    assert risk["var_historical"] < risk["cvar_historical"] or float(risk["var_historical"]) == 0


def test_a_single_stock_is_fully_concentrated_and_riskier_than_a_spread_of_four(
    investor: Investor,
) -> None:
    single = _with_lots(investor, {"AMD": "100"})
    spread = _with_lots(investor, {"AAPL": "10", "KO": "10", "JPM": "10", "XOM": "10"})
    one = investor.get(f"/api/v1/portfolios/{single['id']}/risk").json()["data"]
    four = investor.get(f"/api/v1/portfolios/{spread['id']}/risk").json()["data"]
    assert one["hhi"] == "1.000000" and one["effective_positions"] == "1.000000"
    assert Decimal(four["hhi"]) < Decimal("0.5")
    assert Decimal(one["risk_score"]) > Decimal(four["risk_score"])


def test_a_cash_only_portfolio_has_no_market_risk(investor: Investor) -> None:
    p = investor.funded("10000.00", name="Cash only")
    risk = investor.get(f"/api/v1/portfolios/{p['id']}/risk").json()["data"]
    for name in ("volatility", "var_historical", "cvar_historical", "var_parametric", "cvar_parametric"):
        assert Decimal(risk[name]) == 0, name
    assert risk["risk_score"] == "0.00" and risk["cash_weight"] == "1.000000"
    assert risk["sector_exposure"] == {} and risk["effective_positions"] is None


def test_a_lookback_out_of_range_is_400(investor: Investor) -> None:
    p = investor.portfolio("Bounds")
    response = investor.get(f"/api/v1/portfolios/{p['id']}/risk", params={"lookback_days": 5})
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"


# Health -----------------------------------------------------------------------------------------------


def test_health_reports_the_model_loaded_by_the_deployment(api_url: str, promoted_model: str) -> None:
    _, model = _model_check(api_url)
    assert model["status"] == "healthy"
    assert model["promoted_version"] == model["loaded_version"] == promoted_model
    assert model["load_failure"] is None


# Hot reload, on an application of its own with its own registry ------------------------------------------


@pytest.fixture(scope="module")
def lab(
    ray_local: None, api_url: str, api_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The API and its detector deployed again, on an empty registry that these tests change."""
    from ray import serve

    from serve_apps.api.deployment import build

    registry_dir = tmp_path_factory.mktemp("lab-registry")
    serve.run(
        build({**api_settings, "model_registry_uri": str(registry_dir)}),
        name="api-model-lab",
        route_prefix="/lab",
    )
    try:
        yield {"url": f"{api_url}/lab", "registry": ModelRegistry(str(registry_dir)), "dir": registry_dir}
    finally:
        serve.delete("api-model-lab")


def _model_check(url: str) -> tuple[int, dict[str, Any]]:
    """/health's status and its model check, whether or not another check is failing."""
    response = httpx.get(f"{url}/health", timeout=30, headers=OPERATOR)
    body = response.json()
    report = body["data"] if response.status_code == 200 else body["error"]["details"]
    return response.status_code, report["checks"]["model"]


def _wait_for_model(url: str, until: Any, timeout_s: float = 60) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    while True:
        _, model = _model_check(url)
        if until(model):
            return time.monotonic() - started, model
        assert time.monotonic() - started < timeout_s, f"the model check never got there: {model}"
        time.sleep(0.2)


def _failed(version: str) -> Any:
    return lambda model: (model.get("load_failure") or {}).get("version") == version


def _copy_version(source: ModelRegistry, version: str, target: ModelRegistry, scratch: Path) -> str:
    folder = source.download(version, scratch / f"copy-{uuid.uuid4().hex[:6]}")
    return target.publish(folder)


def test_the_deployment_follows_the_registry_from_nothing_to_a_new_version(
    lab: dict[str, Any], data_dir: Path, promoted_model: str, tmp_path: Path, service: Investor
) -> None:
    from training.default_model import ensure_default_model
    from wealthalloc.config import Settings

    url, registry = lab["url"], lab["registry"]
    headers = service.headers
    windows = {"windows": np.zeros((2, 20, 3)).tolist()}

    status, model = _model_check(url)
    assert status == 503 and model["status"] == "unhealthy" and model["loaded_version"] is None
    assert "no model version is promoted" in model["error"]
    refused = httpx.post(f"{url}/api/v1/anomaly/score", json=windows, headers=headers, timeout=30)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "MODEL_UNAVAILABLE"

    first = _copy_version(ModelRegistry(str(data_dir / "models")), promoted_model, registry, tmp_path)
    registry.promote(first)
    waited, model = _wait_for_model(url, lambda m: m.get("loaded_version") == first)
    assert model["status"] == "healthy", model

    second = ensure_default_model(
        Settings(data_dir=data_dir, model_registry_uri=str(lab["dir"])),
        progress=False,
        recipe=tiny_model_recipe(seed=1),
        force=True,
    )
    assert second is not None and registry.promoted() == second
    waited, model = _wait_for_model(url, lambda m: m.get("loaded_version") == second)
    assert waited < 1 + 20, f"took {waited:.1f} s with a 1 s poll"  # the poll, then the load and warm-up
    assert model["status"] == "healthy" and model["promoted_version"] == second
    scored = httpx.post(f"{url}/api/v1/anomaly/score", json=windows, headers=headers, timeout=30)
    assert scored.status_code == 200, scored.text
    assert scored.json()["data"]["model_version"] == second
    # A model of its own, trained with another seed: its own threshold.
    assert scored.json()["data"]["threshold"] == pytest.approx(registry.describe(second)["threshold"])


def test_a_version_that_fails_to_load_leaves_the_previous_one_serving_and_health_says_so(
    lab: dict[str, Any], data_dir: Path, promoted_model: str, tmp_path: Path, service: Investor
) -> None:
    url, registry = lab["url"], lab["registry"]
    headers = service.headers
    windows = {"windows": np.zeros((2, 20, 3)).tolist()}
    good = _copy_version(ModelRegistry(str(data_dir / "models")), promoted_model, registry, tmp_path)
    registry.promote(good)
    _wait_for_model(url, lambda m: m.get("loaded_version") == good)

    # A model file Keras cannot read, with a matching checksum: damaged before it was published.
    broken_dir = ModelRegistry(str(data_dir / "models")).download(promoted_model, tmp_path / "broken")
    (broken_dir / MODEL_FILE).write_bytes(b"PK\x03\x04 this is not a Keras archive")
    metadata = json.loads((broken_dir / METADATA_FILE).read_text())
    metadata["model_sha256"] = hashlib.sha256((broken_dir / MODEL_FILE).read_bytes()).hexdigest()
    (broken_dir / METADATA_FILE).write_text(json.dumps(metadata))
    broken = registry.publish(broken_dir)
    registry.promote(broken)

    _, model = _wait_for_model(url, _failed(broken))
    status, model = _model_check(url)
    assert status == 503 and model["status"] == "unhealthy"
    assert model["promoted_version"] == broken and model["loaded_version"] == good
    assert (
        f"promoted version {broken} failed to load" in model["error"]
        and f"still serving {good}" in model["error"]
    )
    assert "Keras cannot load" in model["load_failure"]["error"]
    still = httpx.post(f"{url}/api/v1/anomaly/score", json=windows, headers=headers, timeout=30)
    assert still.status_code == 200 and still.json()["data"]["model_version"] == good

    # A pointer naming a version the registry does not have (edited by hand).
    (lab["dir"] / "PROMOTED").write_text("v-does-not-exist\n")
    _, model = _wait_for_model(url, _failed("v-does-not-exist"))
    assert model["status"] == "unhealthy" and model["loaded_version"] == good
    assert "not a complete version" in model["load_failure"]["error"]

    registry.promote(good)  # the rollback: promote the version that works
    _, model = _wait_for_model(url, lambda m: m["status"] == "healthy" and m["load_failure"] is None)
    assert model["loaded_version"] == model["promoted_version"] == good


def test_the_lab_registry_leaves_the_session_model_alone(api_url: str, promoted_model: str) -> None:
    """The lab's promotions are its own: the API every other test uses still serves the session model."""
    _, model = _model_check(api_url)
    assert model["loaded_version"] == promoted_model
