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


# --- KubeRay RayService ---------------------------------------------------------------------------

RAYSERVICE = ROOT / "cluster" / "kuberay-rayservice.yaml"
RAYSERVICE_SCHEMA = ROOT / "cluster" / "schemas" / "ray.io_rayservices.v1.yaml"
KUBERNETES_VERSION = "1.30.0"


def _strict(schema: Any) -> Any:
    """The schema with unknown fields rejected, as `kubectl apply --validate=strict` does.

    The API server prunes fields a structural schema does not name, so a misspelt key
    would be dropped without a word; rejecting it here catches it before it ships.
    """
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@pytest.fixture(scope="module")
def rayservice() -> dict[str, Any]:
    return _load(RAYSERVICE)


@pytest.fixture(scope="module")
def rayservice_validator() -> Any:
    from jsonschema import Draft7Validator

    return Draft7Validator(_strict(yaml.load(RAYSERVICE_SCHEMA.read_text(), Loader=yaml.CSafeLoader)))


def _pod_templates(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pod templates by group: "head" and each worker group's name."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    templates = {"head": cluster["headGroupSpec"]["template"]}
    templates.update({g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]})
    return templates


def _containers(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {group: t["spec"]["containers"][0] for group, t in _pod_templates(rayservice).items()}


def test_the_rayservice_matches_the_kuberay_crd_schema(
    rayservice: dict[str, Any], rayservice_validator: Any
) -> None:
    assert (rayservice["apiVersion"], rayservice["kind"]) == ("ray.io/v1", "RayService")
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in rayservice_validator.iter_errors(rayservice)
    ]
    assert errors == []


def test_the_crd_schema_catches_a_misspelt_field(
    rayservice: dict[str, Any], rayservice_validator: Any
) -> None:
    broken = copy.deepcopy(rayservice)
    broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 20
    assert not rayservice_validator.is_valid(broken)


@pytest.mark.parametrize("group", ["head", "cpu", "gpu"])
def test_each_pod_template_is_a_valid_kubernetes_pod_template(rayservice: dict[str, Any], group: str) -> None:
    import kubernetes_validate

    pod_template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": f"wealthalloc-{group}"},
        "template": _pod_templates(rayservice)[group],
    }
    kubernetes_validate.validate(pod_template, KUBERNETES_VERSION, strict=True)


def test_serve_config_v2_runs_the_same_applications_as_serve_config(rayservice: dict[str, Any]) -> None:
    on_kubernetes = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    launcher = _load(SERVE_CONFIG)

    def shape(config: dict[str, Any]) -> list[tuple[str, str, str]]:
        return sorted((a["name"], a["route_prefix"], a["import_path"]) for a in config["applications"])

    assert shape(on_kubernetes) == shape(launcher)
    ours, theirs = _deployments(on_kubernetes), _deployments(launcher)
    assert set(ours) == set(theirs)
    for name, deployment in ours.items():
        assert deployment.get("ray_actor_options") == theirs[name].get("ray_actor_options"), name
        assert deployment.get("max_ongoing_requests") == theirs[name].get("max_ongoing_requests"), name


def _cpus(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_the_groups_request_what_the_deployments_need(rayservice: dict[str, Any]) -> None:
    cluster = rayservice["spec"]["rayClusterConfig"]
    deployments = _deployments(yaml.safe_load(rayservice["spec"]["serveConfigV2"]))
    containers = _containers(rayservice)
    api_cpus = deployments["ApiIngress"]["ray_actor_options"]["num_cpus"]
    assert _cpus(containers["cpu"]["resources"]["requests"]["cpu"]) >= api_cpus
    for group in containers:
        requests, limits = (
            containers[group]["resources"]["requests"],
            containers[group]["resources"]["limits"],
        )
        assert requests["memory"] == limits["memory"], f"{group}: Ray sizes its object store from the limit"
    gpu = containers["gpu"]["resources"]
    assert gpu["requests"]["nvidia.com/gpu"] == gpu["limits"]["nvidia.com/gpu"] == "1"
    gpu_group = next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu")
    assert gpu_group["rayStartParams"]["num-gpus"] == "1"


def test_the_autoscaler_scales_every_worker_group(rayservice: dict[str, Any]) -> None:
    cluster = rayservice["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    assert next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu")["minReplicas"] == 0


def test_the_head_probes_the_apis_health_endpoints(rayservice: dict[str, Any]) -> None:
    head = _containers(rayservice)["head"]
    serve_port = next(p["containerPort"] for p in head["ports"] if p["name"] == "serve")
    assert head["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": serve_port}
    assert head["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": serve_port}


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_every_secret_comes_from_the_kubernetes_secret(rayservice: dict[str, Any], name: str) -> None:
    for group, container in _containers(rayservice).items():
        env = {e["name"]: e for e in container["env"]}
        assert name in env, f"{group} lacks {name}"
        assert "value" not in env[name], f"{name} is inline in {group}"
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "wealthalloc"
