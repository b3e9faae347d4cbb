"""The overview dashboard for the Grafana that Ray's dashboard embeds, derived from the one for ``/metrics``.

``cluster/grafana/dashboards/wealthalloc-overview.json`` reads the Prometheus
that scrapes the API's ``/metrics``. Ray's Grafana reads the Prometheus that
scrapes each node's metrics agent, where the same series carry Ray's ``ray_``
prefix (``actors/ray_metrics.py``) and the datasource is whichever one Ray
provisioned, so this variant picks it with a ``datasource`` variable. Where
no ``/metrics`` target exists, the API replicas that are up come from Serve's
own gauge. The variant is written from the original by this module, never by
hand, and a test checks the file is what it writes, so the two never drift::

    python -m wealthalloc.ops.grafana [--check]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OVERVIEW = ROOT / "cluster" / "grafana" / "dashboards" / "wealthalloc-overview.json"
RAY_OVERVIEW = ROOT / "cluster" / "grafana" / "ray" / "wealthalloc-overview-ray.json"

RAY_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_API_UP = 'up{job="wealthalloc-api"}'
_RAY_API_UP = 'ray_serve_deployment_replica_healthy{deployment="ApiIngress"}'
# A platform metric name, not part of a longer name or a recording rule (``wealthalloc:...``).
_PLATFORM_METRIC = re.compile(r"(?<![\w:])(wealthalloc_\w+)")


def ray_expr(expr: str) -> str:
    """A query of the ``/metrics`` Prometheus as the same query of Ray's."""
    return _PLATFORM_METRIC.sub(r"ray_\1", expr.replace(_API_UP, _RAY_API_UP))


def for_ray(dashboard: dict[str, Any]) -> dict[str, Any]:
    """``dashboard`` with Ray's metric names and Ray's datasource, under a uid and title of its own."""
    variant = copy.deepcopy(dashboard)
    variant["uid"] = f"{dashboard['uid']}-ray"
    variant["title"] = f"{dashboard['title']} (Ray metrics)"
    variant["tags"] = [*dashboard.get("tags", []), "ray"]
    picker = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "hide": 0,
        "current": {},
    }
    templating = variant.setdefault("templating", {}).setdefault("list", [])
    templating.insert(0, picker)
    for panel in variant["panels"]:
        panel["datasource"] = dict(RAY_DATASOURCE)
        for target in panel.get("targets", []):
            target["datasource"] = dict(RAY_DATASOURCE)
            target["expr"] = ray_expr(target["expr"])
    return variant


def render(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wealthalloc.ops.grafana",
        description=f"Write {RAY_OVERVIEW.relative_to(ROOT)} from {OVERVIEW.relative_to(ROOT)}.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs instead of writing")
    args = parser.parse_args(argv)
    wanted = render(for_ray(json.loads(OVERVIEW.read_text())))
    if args.check:
        current = RAY_OVERVIEW.read_text() if RAY_OVERVIEW.is_file() else ""
        if current != wanted:
            print(
                f"{RAY_OVERVIEW.relative_to(ROOT)} is stale: run python -m wealthalloc.ops.grafana",
                file=sys.stderr,
            )
            return 1
        return 0
    RAY_OVERVIEW.parent.mkdir(parents=True, exist_ok=True)
    RAY_OVERVIEW.write_text(wanted)
    print(f"wrote {RAY_OVERVIEW.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
