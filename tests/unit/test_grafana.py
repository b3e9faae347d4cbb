"""The Ray variant of the overview dashboard is the overview, read through Ray's metrics agent.

Ray's Grafana reads the same series as the ``/metrics`` Prometheus under Ray's ``ray_`` prefix
(actors/ray_metrics.py), from the datasource Ray provisioned; the file is written by
``python -m wealthalloc.ops.grafana`` and must be what it writes.
"""

from __future__ import annotations

import json
from typing import Any

from tests.unit.test_operations_metrics import metric_names
from wealthalloc.ops import grafana


def _panels(path: Any) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["panels"])


def test_the_ray_dashboard_is_the_one_the_overview_writes() -> None:
    assert grafana.main(["--check"]) == 0, "run: python -m wealthalloc.ops.grafana"


def test_each_ray_panel_reads_the_overview_s_metrics_under_ray_s_names() -> None:
    overview, ray = _panels(grafana.OVERVIEW), _panels(grafana.RAY_OVERVIEW)
    assert [panel["title"] for panel in ray] == [panel["title"] for panel in overview]
    for original, variant in zip(overview, ray, strict=True):
        for before, after in zip(original["targets"], variant["targets"], strict=True):
            expected = {
                "ray_serve_deployment_replica_healthy" if name == "up" else f"ray_{name}"
                for name in metric_names(before["expr"])
            }
            assert metric_names(after["expr"]) == expected, original["title"]


def test_every_ray_panel_reads_the_datasource_ray_provisioned() -> None:
    dashboard = json.loads(grafana.RAY_OVERVIEW.read_text())
    assert dashboard["templating"]["list"][0] == {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "hide": 0,
        "current": {},
    }
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert all(target["datasource"] == panel["datasource"] for target in panel["targets"])
    assert dashboard["uid"] != json.loads(grafana.OVERVIEW.read_text())["uid"]
