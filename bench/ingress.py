"""GET /api/v1/market/clock through Ray Serve's HAProxy ingress, beside the same app on plain uvicorn.

Prints one line: requests/s and p50/p99 latency at 50 concurrent clients for
both, measured in the same run by the same raw-socket client (``_loadgen.py``,
which shares the machine's cores with the servers, so compare the two
figures, not absolutes); then, as the last line, one JSON object of the figures.

    .venv/bin/python bench/ingress.py [--seconds 10] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _loadgen import Request, run  # noqa: E402
from _support import free_port, print_figures  # noqa: E402

PATH = "/api/v1/market/clock"


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + PATH, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}{PATH} never answered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()

    from wealthalloc.marketdata import load_bundled_datasets

    data_dir = Path(tempfile.mkdtemp(prefix="wealthalloc-bench-"))
    load_bundled_datasets(data_dir / "prices", progress=False)
    overrides = {"data_dir": str(data_dir), "log_level": "WARNING", "database_pool_min": "0"}

    uvicorn_port = free_port()
    baseline = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, uvicorn; sys.path.insert(0, sys.argv[1]);"
            "from serve_apps.api.app import create_app; from wealthalloc.config import Settings;"
            "settings = Settings(data_dir=sys.argv[2], log_level='WARNING', database_pool_min=0);"
            f"uvicorn.run(create_app(settings), host='127.0.0.1', port={uvicorn_port}, log_level='warning')",
            str(ROOT),
            str(data_dir),
        ],
    )
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] = str(free_port())
    os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(free_port())
    import ray
    from ray import serve

    from serve_apps.api.deployment import build

    serve_port = free_port()
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
        serve.run(build(overrides), name="api", route_prefix="/")
        serve_url, base_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{uvicorn_port}"
        _wait(serve_url)
        _wait(base_url)
        requests = [Request("GET", PATH, {})]
        asyncio.run(run(serve_url, requests, seconds=2, clients=args.clients))  # warm-up
        served = asyncio.run(run(serve_url, requests, seconds=args.seconds, clients=args.clients))
        plain = asyncio.run(run(base_url, requests, seconds=args.seconds, clients=args.clients))
        print(
            f"ingress GET {PATH} x{args.clients} clients: "
            f"{served.line('serve+haproxy')} | {plain.line('baseline uvicorn')}"
        )
        figures = {
            "clients": args.clients,
            **served.figures("req", "serve_"),
            **plain.figures("req", "baseline_"),
        }
    finally:
        baseline.terminate()
        serve.shutdown()
        ray.shutdown()
    print_figures(figures)  # once Ray is down: its messages as it stops would follow the JSON line


if __name__ == "__main__":
    main()
