"""The LSTM autoencoder on an accelerator beside the same model on the CPU, in one process.

Trains the model the platform trains (``wealthalloc.ml.autoencoder``, the
default architecture) on synthetic scaled windows for a fixed number of epochs,
and scores windows in the chunks the detector uses, once under the
accelerator's device scope and once under the CPU's; the CPU run is the
baseline. The scores of both devices, with the same weights, must agree to
float32 rounding: the printed ``max_score_difference`` says how close they are.

On a machine without an accelerator only the CPU runs (``accelerator: null``).
Keras picks the backend from ``KERAS_BACKEND`` (``torch`` or ``jax`` see a GPU
without TensorFlow's CUDA build). The last line printed is one JSON object of
the figures.

    KERAS_BACKEND=torch python bench/autoencoder_device.py [--windows 20000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _support import print_figures  # noqa: E402

from wealthalloc.ml.autoencoder import (  # noqa: E402
    AutoencoderConfig,
    _keras,
    build_model,
    reconstruction_errors,
)


def windows(count: int, window: int, features: int, seed: int) -> np.ndarray:
    """Scaled windows of correlated random walks: the shape and scale the detector scores."""
    rng = np.random.default_rng(seed)
    steps = rng.standard_normal((count, window, features)).astype(np.float32) * 0.1
    steps += rng.standard_normal((count, 1, features)).astype(np.float32) * 0.05
    walks = np.cumsum(steps, axis=1)
    return (walks - walks.mean(axis=1, keepdims=True)).astype(np.float32)


def accelerator(keras: Any) -> str | None:
    """The device name of the first accelerator the backend sees, or ``None``."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else None
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return "gpu:0" if gpus else None
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu:0" if tf.config.list_physical_devices("GPU") else None
    return None


def run_on(device: str, config: AutoencoderConfig, train: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """Train for ``config.epochs`` and score ``score`` on ``device``; seconds and windows/s."""
    keras = _keras()
    with keras.device(device):
        keras.utils.set_random_seed(config.seed)
        model = build_model(config, train.shape[-1])
        model.fit(train[:256], train[:256], epochs=1, batch_size=config.batch_size, verbose=0)  # warm-up
        started = time.perf_counter()
        model.fit(train, train, epochs=config.epochs, batch_size=config.batch_size, shuffle=True, verbose=0)
        train_s = time.perf_counter() - started
        reconstruction_errors(model, score[:1024])  # warm-up
        started = time.perf_counter()
        scores = reconstruction_errors(model, score, config.score_reduction)
        score_s = time.perf_counter() - started
    return {
        "model": model,
        "train_s": train_s,
        "train_windows_per_s": len(train) * config.epochs / train_s,
        "score_windows_per_s": len(score) / score_s,
        "scores": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20_000, help="Training windows.")
    parser.add_argument("--score-windows", type=int, default=50_000, help="Windows scored.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--features", type=int, default=8)
    args = parser.parse_args()

    keras = _keras()
    config = AutoencoderConfig(epochs=args.epochs, batch_size=args.batch_size)
    train = windows(args.windows, config.window, args.features, seed=1)
    score = windows(args.score_windows, config.window, args.features, seed=2)
    device = accelerator(keras)
    figures: dict[str, Any] = {
        "backend": keras.backend.backend(),
        "accelerator": device,
        "train_windows": args.windows,
        "score_windows": args.score_windows,
        "epochs": args.epochs,
    }
    cpu = run_on("cpu:0" if keras.backend.backend() != "torch" else "cpu", config, train, score)
    print(
        f"cpu: training {cpu['train_windows_per_s']:,.0f} windows/s ({cpu['train_s']:.1f} s),"
        f" scoring {cpu['score_windows_per_s']:,.0f} windows/s"
    )
    figures.update(
        cpu_train_windows_per_s=cpu["train_windows_per_s"], cpu_score_windows_per_s=cpu["score_windows_per_s"]
    )
    if device is not None:
        gpu = run_on(device, config, train, score)
        # The CPU-trained weights scored on the accelerator: the same model must give the same scores.
        with keras.device(device):
            twin = build_model(config, args.features)
            twin.set_weights(cpu["model"].get_weights())
            on_device = reconstruction_errors(twin, score, config.score_reduction)
        difference = float(np.max(np.abs(on_device - cpu["scores"]) / np.maximum(cpu["scores"], 1e-6)))
        print(
            f"{device}: training {gpu['train_windows_per_s']:,.0f} windows/s ({gpu['train_s']:.1f} s),"
            f" scoring {gpu['score_windows_per_s']:,.0f} windows/s"
            f" | speed-up training {gpu['train_windows_per_s'] / cpu['train_windows_per_s']:.1f}x,"
            f" scoring {gpu['score_windows_per_s'] / cpu['score_windows_per_s']:.1f}x"
            f" | same weights, largest relative score difference {difference:.2e}"
        )
        figures.update(
            accelerator_train_windows_per_s=gpu["train_windows_per_s"],
            accelerator_score_windows_per_s=gpu["score_windows_per_s"],
            train_speedup=gpu["train_windows_per_s"] / cpu["train_windows_per_s"],
            score_speedup=gpu["score_windows_per_s"] / cpu["score_windows_per_s"],
            max_relative_score_difference=difference,
        )
    else:
        print("no accelerator: the CPU figures only")
    print_figures(figures)


if __name__ == "__main__":
    main()
