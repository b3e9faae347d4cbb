"""The cluster configs start: each is checked by the validator its own tool runs, offline.

`ray up` runs Ray's ``prepare_config`` and ``validate_config`` (ray-schema.json plus its own
checks) before it touches a cloud; a mistake there would otherwise surface only on the
first deployment. The same holds for the KubeRay ``RayService``: ``kubectl apply`` checks it
against the CRD's schema installed in the cluster, so the test checks it against that
schema, vendored in cluster/schemas/.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "ray-cluster.yaml"
SERVE_CONFIG = ROOT / "cluster" / "serve-config.yaml"

SECRET_SETTINGS = (
    "WEALTHALLOC_DATABASE_URL",
    "WEALTHALLOC_REDIS_URL",
    "WEALTHALLOC_SECRET_KEY",
    "WEALTHALLOC_OPERATIONS_TOKEN",
)


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), f"{path.name} is not a mapping"
    return loaded


def _deployments(serve_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Deployments by name across all applications."""
    return {d["name"]: d for app in serve_config["applications"] for d in app.get("deployments", [])}


# --- Ray cluster launcher -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return _load(LAUNCHER)


@pytest.fixture(scope="module")
def prepared(launcher: dict[str, Any]) -> dict[str, Any]:
    """The config as `ray up` sees it after filling in the provider's defaults."""
    return prepare_config(copy.deepcopy(launcher))


def test_ray_up_accepts_the_launcher_config(prepared: dict[str, Any]) -> None:
    validate_config(prepared)


def test_a_misspelt_key_is_caught_by_the_same_validation(launcher: dict[str, Any]) -> None:
    broken = copy.deepcopy(launcher)
    broken["available_node_types"]["cpu_worker"]["max_worker"] = 8
    with pytest.raises(Exception, match="max_worker"):
        validate_config(prepare_config(broken))


def test_the_launcher_has_a_head_a_cpu_and_a_gpu_worker_type(prepared: dict[str, Any]) -> None:
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head"
    assert set(types) == {"head", "cpu_worker", "gpu_worker"}
    assert types["head"]["max_workers"] == 0
    assert types["cpu_worker"]["min_workers"] >= 1, "the API needs a CPU worker from the start"
    assert types["gpu_worker"]["min_workers"] == 0, "GPU nodes start only when a GPU task waits"


def test_the_autoscaler_can_reach_every_worker_type(prepared: dict[str, Any]) -> None:
    types = prepared["available_node_types"]
    worker_max = sum(t["max_workers"] for name, t in types.items() if name != prepared["head_node_type"])
    assert prepared["max_workers"] >= types["cpu_worker"]["max_workers"]
    assert prepared["max_workers"] <= worker_max, "a global cap above every type's cap is never used"
    assert prepared["idle_timeout_minutes"] > 0


def test_worker_types_offer_what_the_serve_deployments_ask_for(prepared: dict[str, Any]) -> None:
    types = prepared["available_node_types"]
    api = _deployments(_load(SERVE_CONFIG))["ApiIngress"]
    assert types["cpu_worker"]["resources"]["CPU"] >= api["ray_actor_options"]["num_cpus"]
    assert types["gpu_worker"]["resources"]["GPU"] >= 1, "AnomalyDetector asks for a whole GPU"


def test_every_node_exports_the_secrets_file_before_ray_starts(launcher: dict[str, Any]) -> None:
    mounts = launcher["file_mounts"]
    assert mounts["~/wealthalloc.env"].startswith("~/"), "the secrets stay outside the repository"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(launcher[key])
        assert ". ~/wealthalloc.env" in start
        assert start.index("wealthalloc.env") < start.index("ray start")
        assert "WEALTHALLOC_EMBEDDED_SERVICES=false" in start
    assert ".env" in launcher["rsync_exclude"], "a developer's local .env never reaches the cluster"
    text = LAUNCHER.read_text()
    for name in SECRET_SETTINGS:
        assert f"{name}=" not in text, f"{name} is set inline in ray-cluster.yaml"
