"""Evaluate an anomaly model on held-out real prices with injected, labelled anomalies.

Real series have no ground truth, so the evaluation makes some: into each
symbol's closes of the held-out test period it injects anomalies of known
kinds at known days, then asks three detectors to find them on the same
windows:

* the LSTM autoencoder (its reconstruction error, its validation threshold);
* a rolling z-score: ``|r_t - mean| / std`` of the log return against the
  ``zscore_lookback`` days before it, a window scoring its largest ``|z|``;
* an IsolationForest fitted on the same scaled training windows as the
  autoencoder (flattened), scoring ``-score_samples``.

Each detector's threshold is the same quantile of its own scores on the
clean validation windows (the autoencoder's is the one saved with it), so
all three raise alerts at the same rate on ordinary data and are compared on
what they catch. The table gives precision, recall and F1 at that threshold,
PR-AUC (average precision, threshold-free) and the recall per kind.

Kinds (``sigma`` is the standard deviation of the symbol's log returns over
the ``sigma_lookback`` days before the event, so a jump is large for *that*
stock at *that* time):

* ``price_jump``: one close off by ``±U(5, 8) sigma`` (log), back the next
  day; labels that day and the next (both returns are wrong);
* ``level_shift``: every close from a day on moved by ``±U(5, 8) sigma``;
  labels that day (the only return that changes);
* ``volatility_burst``: the log returns of ``U{5..15}`` days multiplied by
  ``U(3, 5)``, the closes after it moved by the difference; labels those days;
* ``flat_line``: the close frozen at the previous day's for ``U{5..15}`` days
  (a stale feed), then back to the real close; labels the frozen days and the
  catch-up day.

A window is anomalous when any of its days is labelled. Usage::

    python -m training.evaluate --registry .data/models --version 20240101-1 --out docs/model-card.md
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wealthalloc.marketdata import PriceHistory
from wealthalloc.ml.autoencoder import ModelBundle
from wealthalloc.ml.features import (
    TimeSplit,
    Windows,
    daily_features,
    make_windows,
    read_volume,
    split_rows,
)

PRICE_JUMP = "price_jump"
LEVEL_SHIFT = "level_shift"
VOLATILITY_BURST = "volatility_burst"
FLAT_LINE = "flat_line"
KINDS: tuple[str, ...] = (PRICE_JUMP, VOLATILITY_BURST, LEVEL_SHIFT, FLAT_LINE)

AUTOENCODER = "lstm_autoencoder"
ZSCORE = "rolling_zscore"
ISOLATION_FOREST = "isolation_forest"
METHODS: tuple[str, ...] = (AUTOENCODER, ZSCORE, ISOLATION_FOREST)

JUMP_SIGMAS = (5.0, 8.0)
BURST_FACTOR = (3.0, 5.0)
SPAN_DAYS = (5, 15)
SIGMA_LOOKBACK = 60
MIN_SPACING = 30
"""Clean days kept between two injected anomalies, so each is found (or missed) on its own."""

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class InjectedAnomaly:
    """One injected anomaly: its kind, the labelled days and its size.

    ``magnitude`` is the log move of a jump or shift, the return multiplier
    of a burst, the number of frozen days of a flat line.
    """

    kind: str
    start: pd.Timestamp
    end: pd.Timestamp
    magnitude: float


@dataclass(frozen=True, eq=False)
class Injection:
    """A series with anomalies injected and what was done where.

    Attributes
    ----------
    series : Series
        The closes, altered.
    labels : Series of bool
        Per day: the day's return was altered by an anomaly.
    kinds : Series of str
        Per day: the kind of the anomaly that altered it, ``""`` elsewhere.
    events : list of InjectedAnomaly
        In time order.
    """

    series: pd.Series
    labels: pd.Series
    kinds: pd.Series
    events: list[InjectedAnomaly]


def inject_anomalies(
    series: pd.Series,
    kinds: Sequence[str],
    rng: np.random.Generator,
    *,
    earliest: date | None = None,
    spacing: int = MIN_SPACING,
) -> Injection:
    """Inject one anomaly per entry of ``kinds`` into a close series, at random, non-overlapping days.

    The days from ``earliest`` to the last but one are cut into one equal
    share per anomaly (the kinds shuffled over the shares) and each anomaly
    starts at a random day of its share, ``spacing / 2`` days clear of its
    edges: anomalies are spread over the period and never closer than
    ``spacing`` days, and placement cannot fail at random.

    Parameters
    ----------
    series : Series
        Positive closes with a ``DatetimeIndex`` (sorted; NaN dropped).
    kinds : sequence of str
        From :data:`KINDS`; a kind named twice is injected twice.
    rng : numpy.random.Generator
        Every random choice comes from it: the same seed gives the same injection.
    earliest : date, optional
        No day before it is altered (the start of the test period).
    spacing : int
        Unaltered days kept between two anomalies.

    Returns
    -------
    Injection

    Raises
    ------
    ValueError
        For an unknown kind, or when the series is too short to place them all.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown anomaly kind(s) {', '.join(unknown)}; expected {', '.join(KINDS)}")
    closes = series.astype(np.float64).dropna().sort_index()
    if (closes <= 0).any():
        raise ValueError("closes must be positive")
    values = closes.to_numpy(dtype=np.float64)
    original_returns = np.diff(np.log(values))
    # Alterations are kept as a log offset per day and applied at the end, so an untouched close
    # comes back bit for bit (x * exp(0) == x), which exp(log(x)) does not promise.
    offset = np.zeros(len(values))
    frozen: list[tuple[int, int]] = []
    n = len(values)
    first = SIGMA_LOOKBACK + 1
    if earliest is not None:
        first = max(first, int(np.searchsorted(closes.index, pd.Timestamp(earliest), side="left")))
    labels = np.zeros(n, dtype=bool)
    kind_of = np.full(n, "", dtype=object)
    events: list[tuple[int, int, str, float]] = []
    order = [kinds[i] for i in rng.permutation(len(kinds))]  # which kind lands in which slot
    slot = (n - 1 - first) // max(len(order), 1)  # the last day stays clean: every event has its end
    half = (spacing + 1) // 2
    for number, kind in enumerate(order):
        length = int(rng.integers(SPAN_DAYS[0], SPAN_DAYS[1] + 1))
        span = {PRICE_JUMP: 2, LEVEL_SHIFT: 1, VOLATILITY_BURST: length, FLAT_LINE: length + 1}[kind]
        low = first + number * slot + half
        high = first + (number + 1) * slot - half - span
        if high < low:
            raise ValueError(
                f"no room for {len(order)} anomalies in {n} closes from position {first}: each needs "
                f"{span + 2 * half} days ({spacing} clean days between anomalies), a share is {slot}"
            )
        start = int(rng.integers(low, high + 1))
        sigma = float(np.std(original_returns[start - 1 - SIGMA_LOOKBACK : start - 1], ddof=1))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if kind == PRICE_JUMP:
            magnitude = sign * float(rng.uniform(*JUMP_SIGMAS)) * sigma
            offset[start] += magnitude
        elif kind == LEVEL_SHIFT:
            magnitude = sign * float(rng.uniform(*JUMP_SIGMAS)) * sigma
            offset[start:] += magnitude
        elif kind == VOLATILITY_BURST:
            magnitude = float(rng.uniform(*BURST_FACTOR))
            returns = original_returns[start - 1 : start + length - 1]
            extra = np.cumsum(returns * (magnitude - 1.0))
            offset[start : start + length] += extra
            offset[start + length :] += extra[-1]
        else:
            magnitude = float(length)
            frozen.append((start, length))
        labels[start : start + span] = True
        kind_of[start : start + span] = kind
        events.append((start, start + span - 1, kind, magnitude))
    altered = np.where(offset != 0, values * np.exp(offset), values)
    for start, length in frozen:
        altered[start : start + length] = altered[start - 1]
    index = closes.index
    return Injection(
        series=pd.Series(altered, index=index, name=closes.name),
        labels=pd.Series(labels, index=index, name="anomalous"),
        kinds=pd.Series(kind_of, index=index, name="kind", dtype=object),
        events=[
            InjectedAnomaly(kind=kind, start=index[a], end=index[b], magnitude=magnitude)
            for a, b, kind, magnitude in sorted(events)
        ],
    )


def detection_metrics(labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of ``scores > threshold``, and the average precision of ``scores``.

    Precision (recall) is 0 when nothing was flagged (nothing was anomalous),
    as scikit-learn's ``zero_division=0``. PR-AUC is the average precision
    ``sum((R_k - R_{k-1}) P_k)`` over the distinct scores from the highest
    down, ties counted together; NaN without a positive label.
    """
    truth = np.asarray(labels, dtype=bool)
    score = np.asarray(scores, dtype=np.float64)
    if truth.shape != score.shape or truth.ndim != 1:
        raise ValueError(f"labels {truth.shape} and scores {score.shape} must be equal-length vectors")
    flagged = score > threshold
    tp = int(np.sum(flagged & truth))
    fp = int(np.sum(flagged & ~truth))
    fn = int(np.sum(~flagged & truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "pr_auc": average_precision(truth, score)}


def average_precision(labels: BoolArray, scores: FloatArray) -> float:
    """Area under the precision-recall curve as a step function (scikit-learn's definition)."""
    positives = int(labels.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], labels[order]
    true_pos = np.cumsum(hits)
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]
    tp = true_pos[last_of_tie].astype(np.float64)
    precision = tp / (last_of_tie + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True, eq=False)
class _Scored:
    windows: Windows
    zscores: FloatArray
    labels: BoolArray
    kinds: npt.NDArray[np.object_]


def evaluate(
    bundle: ModelBundle,
    prices: PriceHistory,
    *,
    symbols: Sequence[str] | None = None,
    kinds: Sequence[str] = KINDS,
    events_per_kind: int = 2,
    seed: int = 0,
    zscore_lookback: int = SIGMA_LOOKBACK,
    isolation_trees: int = 200,
    max_train_windows: int = 20_000,
    threshold_quantile: float | None = None,
) -> pd.DataFrame:
    """Compare the autoencoder with a rolling z-score and an IsolationForest on injected anomalies.

    Parameters
    ----------
    bundle : ModelBundle
        The model; its metadata names the symbols and the time split.
    prices : PriceHistory
        Real closes; the test period of the bundle's split is evaluated.
    symbols : sequence of str, optional
        Defaults to the symbols the model was trained on.
    kinds : sequence of str
        Kinds to inject, each ``events_per_kind`` times per symbol.
    events_per_kind : int
    seed : int
        Seeds the injection and the IsolationForest.
    zscore_lookback : int
        Days of history behind each day's z-score.
    isolation_trees : int
    max_train_windows : int
        The IsolationForest is fitted on at most this many training windows (sampled).
    threshold_quantile : float, optional
        Every method's threshold becomes this quantile of its validation
        scores, the autoencoder's included; by default the autoencoder keeps
        its saved threshold and the baselines use its quantile.

    Returns
    -------
    DataFrame
        One row per method (:data:`METHODS`), columns ``precision``,
        ``recall``, ``f1``, ``pr_auc``, ``threshold``, ``flagged`` (the share
        of windows flagged) and ``recall_<kind>`` per kind; ``attrs`` holds
        the window and event counts, seed and threshold quantile.

    Raises
    ------
    ValueError
        When the bundle does not record its split, or a period has no window.
    """
    from sklearn.ensemble import IsolationForest  # scikit-learn only where evaluation runs

    split_data = bundle.data.get("split")
    if not split_data:
        raise ValueError("the model's metadata has no time split: nothing says which days are held out")
    split = TimeSplit.from_dict(split_data)
    spec = bundle.spec
    names = list(symbols if symbols is not None else bundle.data.get("symbols", []))
    if not names:
        raise ValueError("no symbols to evaluate")
    rng = np.random.default_rng(seed)
    quantile = bundle.config.threshold_quantile if threshold_quantile is None else threshold_quantile
    if not 0 < quantile < 1:
        raise ValueError(f"threshold_quantile must be in (0, 1), got {quantile}")
    stride = int(bundle.data.get("stride", 1))
    index_closes = prices.closes(spec.index_symbol)

    train_parts: list[Windows] = []
    validation_parts: list[_Scored] = []
    test_parts: list[_Scored] = []
    events = 0
    for symbol in names:
        closes = prices.closes(symbol)
        volume = read_volume(prices, symbol)
        clean = daily_features(closes, index_closes, spec, volume=volume)
        rows = split_rows(clean, split)
        train_parts.append(make_windows(rows["train"], symbol, spec.window, stride))
        validation_parts.append(
            _score_windows(closes, make_windows(rows["validation"], symbol, spec.window), zscore_lookback)
        )
        test_days = rows["test"].index
        if len(test_days) < spec.window:
            raise ValueError(f"{symbol} has {len(test_days)} test days, fewer than one window")
        in_test = closes.loc[: pd.Timestamp(split.test_end)] if split.test_end else closes
        injection = inject_anomalies(
            in_test,
            [kind for kind in kinds for _ in range(events_per_kind)],
            rng,
            earliest=test_days[0].date(),
            spacing=max(spec.window, MIN_SPACING),
        )
        events += len(injection.events)
        dirty = daily_features(injection.series, index_closes, spec, volume=volume)
        test_rows = split_rows(dirty, split)["test"]
        windows = make_windows(test_rows, symbol, spec.window)
        scored = _score_windows(injection.series, windows, zscore_lookback)
        labels, window_kinds = _window_labels(windows, injection)
        test_parts.append(_Scored(windows, scored.zscores, labels, window_kinds))

    train = Windows.concat(train_parts)
    validation = _concat_scored(validation_parts)
    test = _concat_scored(test_parts)
    for name, size in (
        ("train", len(train)),
        ("validation", len(validation.windows)),
        ("test", len(test.windows)),
    ):
        if size == 0:
            raise ValueError(f"the {name} period has no window")

    forest_input = bundle.scaler.transform(train.values, train.symbols.tolist())
    if len(forest_input) > max_train_windows:
        forest_input = forest_input[rng.choice(len(forest_input), max_train_windows, replace=False)]
    forest = IsolationForest(n_estimators=isolation_trees, random_state=seed, n_jobs=1)
    forest.fit(forest_input.reshape(len(forest_input), -1))

    def forest_scores(windows: Windows) -> FloatArray:
        flat = bundle.scaler.transform(windows.values, windows.symbols.tolist()).reshape(len(windows), -1)
        return -np.asarray(forest.score_samples(flat), dtype=np.float64)

    ae_threshold = bundle.threshold
    if threshold_quantile is not None:
        ae_threshold = float(np.quantile(bundle.errors(validation.windows, max_batch=None), quantile))
    scores = {
        AUTOENCODER: (ae_threshold, bundle.errors(test.windows, max_batch=None)),
        ZSCORE: (float(np.quantile(validation.zscores, quantile)), test.zscores),
        ISOLATION_FOREST: (
            float(np.quantile(forest_scores(validation.windows), quantile)),
            forest_scores(test.windows),
        ),
    }
    rows_out: dict[str, dict[str, float]] = {}
    for method, (threshold, values) in scores.items():
        row = detection_metrics(test.labels, values, threshold)
        row["threshold"] = threshold
        row["flagged"] = float(np.mean(values > threshold))
        for kind in kinds:
            of_kind = test.kinds == kind
            row[f"recall_{kind}"] = float(np.mean(values[of_kind] > threshold)) if of_kind.any() else math.nan
        rows_out[method] = row
    table = pd.DataFrame.from_dict(rows_out, orient="index")
    table.index.name = "method"
    table.attrs.update(
        {
            "symbols": names,
            "test_windows": len(test.windows),
            "anomalous_windows": int(test.labels.sum()),
            "validation_windows": len(validation.windows),
            "train_windows": len(train),
            "events": events,
            "kinds": list(kinds),
            "seed": seed,
            "threshold_quantile": quantile,
            "split": split.to_dict(),
        }
    )
    return table


def write_model_card(table: pd.DataFrame, path: Path | str, *, bundle: ModelBundle | None = None) -> Path:
    """Write the evaluation as a Markdown model card: the model, the data, the table, who won.

    Parameters
    ----------
    table : DataFrame
        From :func:`evaluate`.
    path : Path
        Created with its parent directories.
    bundle : ModelBundle, optional
        Adds the model's configuration, features, data hash and training metrics.
    """
    attrs = table.attrs
    lines = ["# Model card: LSTM autoencoder for price anomalies", ""]
    if bundle is not None:
        lines += [
            "## Model",
            "",
            f"- Created: {bundle.created_at or 'unknown'}; data hash `{bundle.data_hash}`",
            f"- Config: {_inline(bundle.config.to_dict())}",
            f"- Features: {', '.join(bundle.feature_names)} ({_inline(bundle.spec.to_dict())})",
            f"- Threshold: {bundle.threshold:.6g} (validation quantile {bundle.config.threshold_quantile})",
            f"- Training: {_inline({k: round(v, 6) for k, v in bundle.metrics.items()})}",
            f"- Libraries: {_inline(bundle.versions)}",
            "",
        ]
    lines += [
        "## Evaluation",
        "",
        f"Held-out test period {_period(attrs.get('split'))} of {', '.join(attrs.get('symbols', []))}, with "
        f"{attrs.get('events', '?')} injected anomalies ({', '.join(attrs.get('kinds', []))}); "
        f"{attrs.get('anomalous_windows', '?')} of {attrs.get('test_windows', '?')} windows are anomalous. "
        f"Every threshold is the {attrs.get('threshold_quantile', '?')} quantile of the method's scores on "
        f"the clean validation windows; PR-AUC does not depend on it. Seed {attrs.get('seed', '?')}.",
        "",
        _markdown_table(table[["precision", "recall", "f1", "pr_auc", "flagged"]]),
        "",
        "Recall per kind of anomaly:",
        "",
        _markdown_table(table[[column for column in table.columns if column.startswith("recall_")]]),
        "",
        "## Verdict",
        "",
        *_verdict(table),
        "",
    ]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines))
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.evaluate``: evaluate a registry version and write its model card."""
    from wealthalloc.config import get_settings
    from wealthalloc.ml.registry import ModelRegistry

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--registry", default=settings.registry_uri, help="registry directory or URI")
    parser.add_argument(
        "--version", default=None, help="version to evaluate (default: promoted, else latest)"
    )
    parser.add_argument("--out", default="docs/model-card.md", help="where to write the Markdown card")
    parser.add_argument("--prices", default=str(settings.prices_dir), help="directory of Parquet prices")
    parser.add_argument("--symbols", default=None, help="comma-separated (default: the model's)")
    parser.add_argument("--events-per-kind", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threshold-quantile",
        type=float,
        default=None,
        help="validation quantile for every method's threshold (default: the model's own threshold)",
    )
    args = parser.parse_args(argv)

    registry = ModelRegistry(args.registry)
    versions = registry.versions()
    chosen = args.version or registry.promoted() or (versions[-1] if versions else None)
    if chosen is None:
        print(f"no model versions in {args.registry}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wealthalloc-model-") as scratch:
        bundle = ModelBundle.load(_local_version(args.registry, chosen, Path(scratch)))
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    table = evaluate(
        bundle,
        PriceHistory(args.prices),
        symbols=symbols,
        events_per_kind=args.events_per_kind,
        seed=args.seed,
        threshold_quantile=args.threshold_quantile,
    )
    path = write_model_card(table, args.out, bundle=bundle)
    print(_markdown_table(table[["precision", "recall", "f1", "pr_auc", "flagged"]]))
    print(f"model card for version {chosen} written to {path}")
    return 0


def _score_windows(closes: pd.Series, windows: Windows, lookback: int) -> _Scored:
    """Each window's largest rolling |z| of the daily log return over its days."""
    log_return = np.log(closes.astype(np.float64)).diff()
    mean = log_return.rolling(lookback, min_periods=lookback).mean().shift(1)
    std = log_return.rolling(lookback, min_periods=lookback).std(ddof=1).shift(1)
    z = ((log_return - mean).abs() / std.where(std > 0)).fillna(0.0)
    days = pd.DatetimeIndex(z.index).to_numpy(dtype="datetime64[D]")
    values = z.to_numpy(dtype=np.float64)
    first = np.searchsorted(days, windows.starts, side="left")
    last = np.searchsorted(days, windows.ends, side="right")
    peaks = np.array([values[a:b].max() if b > a else 0.0 for a, b in zip(first, last, strict=True)])
    empty = np.zeros(len(windows), dtype=bool)
    return _Scored(windows, peaks.astype(np.float64), empty, np.full(len(windows), "", dtype=object))


def _window_labels(windows: Windows, injection: Injection) -> tuple[BoolArray, npt.NDArray[np.object_]]:
    """A window is anomalous when one of its days is labelled; its kind is that day's kind."""
    days = pd.DatetimeIndex(injection.labels.index).to_numpy(dtype="datetime64[D]")
    counts = np.r_[0, np.cumsum(injection.labels.to_numpy(dtype=np.int64))]
    first = np.searchsorted(days, windows.starts, side="left")
    last = np.searchsorted(days, windows.ends, side="right")
    labels = counts[last] - counts[first] > 0
    kinds = np.full(len(windows), "", dtype=object)
    day_kinds = injection.kinds.to_numpy(dtype=object)
    for position in np.flatnonzero(labels):
        span = day_kinds[first[position] : last[position]]
        kinds[position] = next(kind for kind in span if kind)
    return labels, kinds


def _concat_scored(parts: Sequence[_Scored]) -> _Scored:
    return _Scored(
        windows=Windows.concat([part.windows for part in parts]),
        zscores=np.concatenate([part.zscores for part in parts]),
        labels=np.concatenate([part.labels for part in parts]),
        kinds=np.concatenate([part.kinds for part in parts]),
    )


def _local_version(registry_uri: str, version: str, scratch: Path) -> Path:
    """The version's directory on this machine: in place for a local registry, else copied to ``scratch``."""
    if "://" not in registry_uri:
        return Path(registry_uri) / "versions" / version
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(registry_uri)
    target = scratch / version
    fs.copy_files(
        f"{root}/versions/{version}",
        str(target),
        source_filesystem=filesystem,
        destination_filesystem=fs.LocalFileSystem(),
    )
    return target


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join([str(frame.index.name or ""), *map(str, frame.columns)]) + " |"
    rule = "|" + "|".join(["---"] + ["---:"] * len(frame.columns)) + "|"
    body = [
        "| " + " | ".join([str(name), *(_number(value) for value in row)]) + " |"
        for name, row in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    return "\n".join([header, rule, *body])


def _number(value: Any) -> str:
    number = float(value)
    return "n/a" if math.isnan(number) else f"{number:.3f}"


def _inline(data: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in data.items())


def _period(split: Any) -> str:
    if not isinstance(split, Mapping):
        return "(unknown)"
    return f"after {split.get('validation_end')} to {split.get('test_end') or 'the end of the data'}"


def _verdict(table: pd.DataFrame) -> list[str]:
    """Plain sentences on who won, including when the model did not."""
    lines = []
    for metric, label in (("pr_auc", "PR-AUC"), ("f1", "F1 at the validation threshold")):
        ranked = table[metric].astype(float).sort_values(ascending=False)
        best, value = str(ranked.index[0]), float(ranked.iloc[0])
        ours = float(table.loc[AUTOENCODER, metric])
        if best == AUTOENCODER:
            runner = str(ranked.index[1])
            lines.append(
                f"- {label}: the autoencoder is best ({ours:.3f}; next {runner} {float(ranked.iloc[1]):.3f})."
            )
        else:
            lines.append(f"- {label}: **{best} beats the autoencoder** ({value:.3f} against {ours:.3f}).")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
