"""Anomaly scoring: windows/s and latency through the AnomalyDetector deployment (``@serve.batch``),
beside the same model run raw in one process on the same windows, at batch 256.

One run, one machine; the Serve figures include the client (an asyncio
driver calling the deployment's handle), which shares the cores with the
replica, so compare the lines with each other, not with other machines:

- raw ``model.predict`` on batches of 256 scaled windows, and the deployment's
  own computation run in-process (scaling, ``predict_on_batch``, the error
  reduction) on batches of 256: windows/s, p50 and p99 per batch;
- the deployment, called through a ``DeploymentHandle`` by concurrent
  clients, each request carrying 256 windows, then 32 windows (eight requests
  merged into one model call): windows/s, p50 and p99 per request.

The four measurements alternate in rounds (``--seconds`` each in all), so
other work on the machine weighs on each alike. The ratio printed is the
deployment's best throughput over the faster raw baseline (the aim is at
least 0.8), then over ``model.predict``. The model has the default model's
architecture (30-day windows, 16 units, latent 4), trained for one epoch:
its weights do not change the cost of a forward pass. The last line printed is one JSON
object of the figures.

    .venv/bin/python bench/inference.py [--seconds 8] [--batch 256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _support import free_port, print_figures  # noqa: E402

SYMBOLS = ("AAPL", "JNJ", "JPM", "KO", "XOM", "MSFT", "PG", "AMD")


@dataclass
class Figures:
    """Windows scored, time spent and latencies of one way of scoring, summed over the rounds."""

    label: str
    windows: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.windows / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, int(len(ordered) * 0.99) - 1)]

    def line(self) -> str:
        return f"{self.label} {self.rate:,.0f} windows/s p50 {self.p50:.1f} ms p99 {self.p99:.1f} ms"

    def figures(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}windows_per_s": self.rate, f"{prefix}p50_ms": self.p50, f"{prefix}p99_ms": self.p99}


def _train(data_dir: Path) -> str:
    """A model of the default architecture in a registry under ``data_dir``; one epoch, no evaluation."""
    from training.default_model import DefaultModelRecipe, ensure_default_model
    from wealthalloc.config import Settings

    default = DefaultModelRecipe()
    recipe = replace(
        default, symbols=SYMBOLS[:3], config=replace(default.config, epochs=1), stride=4, evaluate=False
    )
    version = ensure_default_model(Settings(data_dir=data_dir), progress=False, recipe=recipe)
    assert version is not None
    return version


def _windows(data_dir: Path, spec: Any, count: int) -> tuple[np.ndarray, list[str]]:
    """``count`` real raw feature windows of several symbols (2020-2022), repeated when fewer exist."""
    from wealthalloc.marketdata import PriceHistory
    from wealthalloc.ml.features import Windows, make_windows, symbol_features

    prices = PriceHistory(data_dir / "prices")
    features = symbol_features(prices, SYMBOLS, spec)
    parts = [make_windows(rows.loc["2020":"2022"], symbol, spec.window) for symbol, rows in features.items()]
    every = Windows.concat(parts)
    picks = np.arange(count) % len(every)
    return every.values[picks], every.symbols[picks].tolist()


def _raw(figures: Figures, step: Any, batches: list[tuple[int, int]], seconds: float) -> None:
    """One round of the model in this process: ``step`` over batches for ``seconds``."""
    began, n = time.perf_counter(), len(figures.latencies_ms)
    while time.perf_counter() - began < seconds:
        start, end = batches[n % len(batches)]
        tick = time.perf_counter()
        step(start, end)
        figures.latencies_ms.append((time.perf_counter() - tick) * 1000)
        figures.windows += end - start
        n += 1
    figures.seconds += time.perf_counter() - began


async def _served(
    figures: Figures | None,
    handle: Any,
    requests: list[tuple[np.ndarray, list[str]]],
    clients: int,
    seconds: float,
) -> None:
    """One round of concurrent clients calling the deployment (``None``: a warm-up, not counted)."""
    until = time.perf_counter() + seconds

    async def client(n: int) -> None:
        i = n
        while time.perf_counter() < until:
            windows, names = requests[i % len(requests)]
            tick = time.perf_counter()
            scores = await handle.score.remote(windows, names)
            assert len(scores.errors) == len(windows)
            if figures is not None:
                figures.latencies_ms.append((time.perf_counter() - tick) * 1000)
                figures.windows += len(windows)
            i += clients

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    if figures is not None:
        figures.seconds += time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--windows", type=int, default=8192, help="distinct windows cycled through")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the four measurements")
    parser.add_argument("--replica-cpus", type=float, default=1.0, help="WEALTHALLOC_ANOMALY_NUM_CPUS")
    parser.add_argument("--replica-gpus", type=float, default=0.0, help="WEALTHALLOC_ANOMALY_NUM_GPUS")
    args = parser.parse_args()

    # As `make run` deploys Serve (wealthalloc.runtime.launcher.platform_env).
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from wealthalloc.marketdata import load_bundled_datasets
    from wealthalloc.ml.autoencoder import ModelBundle
    from wealthalloc.ml.registry import ModelRegistry

    data_dir = Path(tempfile.mkdtemp(prefix="wealthalloc-bench-"))
    load_bundled_datasets(data_dir / "prices", progress=False)
    version = _train(data_dir)
    registry = ModelRegistry(str(data_dir / "models"))
    bundle = ModelBundle.load(registry.version_path(version))
    values, symbols = _windows(data_dir, bundle.spec, args.windows)

    scaled = bundle.scaler.transform(values, symbols)
    batches = [(start, start + args.batch) for start in range(0, len(values) - args.batch + 1, args.batch)]
    predict = Figures(f"raw model.predict batch {args.batch}")
    errors = Figures(f"raw scale+predict_on_batch+errors batch {args.batch}")
    raw_steps = [
        (predict, lambda s, e: bundle.model.predict(scaled[s:e], batch_size=args.batch, verbose=0)),
        (errors, lambda s, e: bundle.errors(values[s:e], symbols[s:e], max_batch=None)),
    ]
    for _, step in raw_steps:  # warm-up: tracing, allocation
        for start, end in batches[:3]:
            step(start, end)

    import ray
    from ray import serve

    from serve_apps.anomaly.deployment import build_detector

    overrides = {
        "data_dir": str(data_dir),
        "log_level": "WARNING",
        "anomaly_max_batch_size": str(args.batch),
        "anomaly_num_cpus": str(args.replica_cpus),
        "anomaly_num_gpus": str(args.replica_gpus),
    }
    shapes = [(args.batch, 4), (32, 2 * args.batch // 32)]  # (windows per request, clients)
    served = [Figures(f"serve {size}/request x{clients} clients") for size, clients in shapes]
    requests = {
        size: [
            (values[start : start + size], symbols[start : start + size])
            for start in range(0, len(values) - size + 1, size)
        ]
        for size, _ in shapes
    }
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        handle = serve.run(build_detector(overrides), name="anomaly", route_prefix=None)

        async def measure() -> dict[str, Any]:
            # One event loop for every call, and Serve shut down on it: with
            # RAY_SERVE_THROUGHPUT_OPTIMIZED the handle's router lives on the caller's loop.
            try:
                for size, clients in shapes:
                    await _served(None, handle, requests[size], clients, 1.5)
                # Rounds alternate the ways of scoring, so other work on the machine weighs on each alike.
                for _ in range(args.rounds):
                    for figures, step in raw_steps:
                        _raw(figures, step, batches, args.seconds / args.rounds)
                    for figures, (size, clients) in zip(served, shapes, strict=True):
                        await _served(figures, handle, requests[size], clients, args.seconds / args.rounds)
                status: dict[str, Any] = await handle.status.remote()
                return status
            finally:
                await serve.shutdown_async()

        batching = asyncio.run(measure())["batching"]
    finally:
        ray.shutdown()

    best_raw = max((predict, errors), key=lambda f: f.rate)
    best_served = max(served, key=lambda f: f.rate)
    print(
        f"inference {version} on {os.cpu_count()} CPU(s): "
        + " | ".join(f.line() for f in (predict, errors, *served))
        + f" | serve/raw {best_served.rate / best_raw.rate:.2f}x"
        + f" (vs model.predict {best_served.rate / predict.rate:.1f}x)"
        + f" | mean batch {batching['windows'] / max(batching['batches'], 1):.0f} windows"
    )
    (small, small_clients), (large, large_clients) = shapes[1], shapes[0]
    print_figures(
        {
            "model_version": version,
            "cpus": os.cpu_count(),
            "batch": args.batch,
            **predict.figures("raw_predict_"),
            **errors.figures("raw_scale_predict_errors_"),
            **served[0].figures(f"serve_{large}_per_request_"),
            f"serve_{large}_per_request_clients": large_clients,
            **served[1].figures(f"serve_{small}_per_request_"),
            f"serve_{small}_per_request_clients": small_clients,
            "ratio": best_served.rate / best_raw.rate,
            "ratio_vs_predict": best_served.rate / predict.rate,
            "mean_batch_windows": batching["windows"] / max(batching["batches"], 1),
        }
    )


if __name__ == "__main__":
    main()
