"""Readiness for an orchestrator: a replica takes traffic once PostgreSQL and Redis answer, the
anomaly model has been loaded and the portfolio shards are up; liveness asks for nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve_apps.api.app import create_app
from serve_apps.api.health import READY_CHECKS, CheckFailed, check_model_loaded, check_shards
from wealthalloc.config import Settings


class _Detector:
    """An AnomalyDetector handle whose ``status.remote()`` answers a fixed status."""

    def __init__(self, **status: Any) -> None:
        answer = {"promoted_version": "v2", "loaded_version": None, "load_failure": None, **status}

        async def remote() -> dict[str, Any]:
            return answer

        self.status = SimpleNamespace(remote=remote)


def _model_loaded(detector: _Detector | None) -> dict[str, Any]:
    return asyncio.run(check_model_loaded(SimpleNamespace(anomaly=detector)))  # type: ignore[arg-type]


def test_readiness_waits_for_the_model_and_the_shards_as_well_as_the_stores() -> None:
    assert READY_CHECKS == ("database", "redis", "model_loaded", "shards")


def test_a_model_still_loading_keeps_the_replica_out_of_rotation() -> None:
    with pytest.raises(CheckFailed, match="v2 is still loading"):
        _model_loaded(_Detector())


def test_a_loaded_model_is_ready() -> None:
    assert _model_loaded(_Detector(loaded_version="v2")) == {"loaded_version": "v2"}


def test_a_model_that_failed_to_load_does_not_hold_the_replica_back() -> None:
    """The replica serves everything else; /health names the failure and a restart would not fix it."""
    failure = {"version": "v2", "error": "damaged file"}
    assert _model_loaded(_Detector(load_failure=failure)) == {"loaded_version": None}


def test_with_nothing_promoted_there_is_nothing_to_wait_for() -> None:
    assert _model_loaded(_Detector(promoted_version=None)) == {"loaded_version": None}


def test_an_app_without_a_detector_has_no_model_to_wait_for() -> None:
    assert _model_loaded(None) == {"model": "none in this app"}


def test_outside_a_cluster_there_are_no_shards_to_wait_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ray.is_initialized", lambda: False)  # as in a plain app, whatever ran before
    res: Any = SimpleNamespace(settings=Settings(shard_count=4))
    assert asyncio.run(check_shards(res)) == {"shards": "none outside a cluster"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql://postgres@127.0.0.1:1/none",
        redis_url="redis://127.0.0.1:1/0",
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def test_not_ready_names_what_is_missing_and_asks_to_retry(client: TestClient) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    error = response.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert error["details"] == {"status": "not_ready", "failing": ["database", "redis"]}


def test_liveness_answers_while_every_dependency_is_down(client: TestClient) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200 and response.json()["data"] == {"status": "alive"}
