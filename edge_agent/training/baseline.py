"""Learning a motor's healthy baseline from recordings (``edge-agent train``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_agent.config import Config
from edge_agent.diagnosis import BASELINE_LINES, RUNNING_CURRENT
from edge_agent.errors import InputDataError
from edge_agent.features import FEATURE_RESOLUTION, MODEL_FEATURES
from edge_agent.pipeline import Pipeline
from edge_agent.recording import open_recording
from edge_agent.scoring import operating_limits
from edge_agent.training.autoencoder import (
    FitResult,
    choose_threshold,
    describe_threshold_rule,
    fit,
)
from edge_agent.training.bundle import sha256_file, write_bundle
from edge_agent.wiring import describe_wiring, nameplate_warning

MIN_WINDOWS = 8


# The threshold counts held-out scores: each fold of windows scored by a model fitted
# without it. The folds are the recordings when there are two or more (above MAX_FOLDS,
# grouped into that many), else STRETCHES consecutive stretches of the one recording.
MAX_FOLDS = 5
STRETCHES = 3
MIN_FOLD_TRAINING_WINDOWS = 4


# A line gets a healthy level in the card when this many analyses of the long window
# measured it (one every windows.long_hop_s, 2 s, once the window has filled).
MIN_LINE_ANALYSES = 8

# The operating range in the card spans these quantiles of the training windows.
OPERATING_QUANTILES = (0.01, 0.99)
# train warns when the training windows' currents span less than this ratio: one load.
NARROW_LOAD_SPAN = 1.2


@dataclass
class Baseline:
    X: np.ndarray  # (windows, features)
    fs: float
    sources: list[dict]
    recording: np.ndarray  # (windows,) index of the recording each window came from
    # Values of the diagnosis's baseline lines (BASELINE_LINES), one per analysis of the
    # long window in a clean window.
    lines: dict[str, list[float]] = field(default_factory=dict)
    # (i2, i1), A, of each clean window of a running motor.
    negative_sequence: list[tuple[float, float]] = field(default_factory=list)
    # Recordings with windows flagged "wiring" (left out): (path, windows, what was seen).
    miswired: list[tuple[str | Path, int, dict[str, str]]] = field(default_factory=list)
    # (i1 A, supply frequency Hz) of each row of X.
    operating: list[tuple[float, float]] = field(default_factory=list)
    # Windows of X flagged "unsteady": the load or the speed changed across the long
    # window, whose lines were then not read.
    unsteady: int = 0

    def line_levels(self) -> dict[str, dict[str, float | int]]:
        """The card's "baseline": median and 95th percentile (dB) of each line that enough
        analyses measured (without a bearing geometry or a long enough recording, none)."""
        return {
            name: {"p50": float(np.median(v)), "p95": float(np.quantile(v, 0.95)),
                   "analyses": len(v)}
            for name, v in sorted(self.lines.items())
            if len(v) >= MIN_LINE_ANALYSES
        }  # fmt: skip

    def operating_range(self) -> dict[str, list[float] | int]:
        """The card's "operating_range": the current i1 (A) and the supply frequency (Hz)
        the training windows ran at, their 1st and 99th percentiles (a window or two of a
        start does not widen it). Scorer.outside judges later windows by it."""
        i1, hz = np.asarray(self.operating, dtype=np.float64).T
        return {
            "i1": [float(v) for v in np.quantile(i1, OPERATING_QUANTILES)],
            "supply_hz": [float(v) for v in np.quantile(hz, OPERATING_QUANTILES)],
            "quantiles": list(OPERATING_QUANTILES),
            "windows": int(i1.size),
        }

    def negative_sequence_level(self) -> dict[str, float | int] | None:
        """The card's "negative_sequence": the median negative-sequence current of the
        training windows (A), its ratio to the median i1, and how far single windows stray
        from it, over their i1 (95th percentile); None with fewer than ``MIN_WINDOWS``
        windows of a running motor."""
        if len(self.negative_sequence) < MIN_WINDOWS:
            return None
        i2, i1 = np.asarray(self.negative_sequence, dtype=np.float64).T
        healthy = float(np.median(i2))
        return {
            "i2": healthy,
            "i2_i1": healthy / float(np.median(i1)),
            "change_p95": float(np.quantile(np.abs(i2 - healthy) / i1, 0.95)),
            "windows": int(i2.size),
        }


def describe_line_baseline(levels: dict, config: Config, unsteady: int = 0) -> str:
    """What the card's line baseline lets the diagnosis name, for `train` to say;
    ``unsteady``: the training windows flagged so."""
    kept = {f: [n for n in names if n in levels] for f, names in BASELINE_LINES.items()}
    if not any(kept.values()):
        why = (
            f"recordings longer than the {config.windows.long_length_s:g} s long window "
            f"(at least {MIN_LINE_ANALYSES} analyses of it, one every "
            f"{config.windows.long_hop_s:g} s once it has filled)"
        )
        if unsteady:
            why += (
                f", at a steady load and speed: in {unsteady} windows the load or the "
                "supply frequency changed across it (flagged unsteady), and its lines were "
                "not read. Record while the drive holds its speed"
            )
        return f"no healthy line levels, so no eccentricity or bearing alerts: they need {why}"
    said = [f"{fault} ({len(names)} lines)" for fault, names in kept.items() if names]
    if not kept["bearing"]:
        said.append(
            "no bearing lines" + ("" if config.motor.bearing else " ([motor.bearing] not set)")
        )
    return "healthy line levels kept for " + ", ".join(said)


def describe_operating_range(card_range: dict, config: Config) -> str:
    """What the card's operating range means for the anomaly alerts, for `train` to say;
    with a warning when the training windows ran at one load only."""
    (i1_low, i1_high), (f_low, f_high) = card_range["i1"], card_range["supply_hz"]
    margin = config.alerts.baseline_margin
    i1_min, hz_min, hz_max = operating_limits(card_range, margin)
    rated = config.motor.rated_current
    share = (
        f" ({100 * i1_low / rated:.0f}-{100 * i1_high / rated:.0f} % of the nameplate's "
        f"{rated:g} A)"
    )
    said = (
        f"operating range kept: i1 {i1_low:.3g}-{i1_high:.3g} A{share}, supply "
        f"{f_low:.1f}-{f_high:.1f} Hz. A window under {i1_min:.3g} A or "
        f"outside {hz_min:.1f}-{hz_max:.1f} Hz ([alerts] "
        f"baseline_margin = {margin:g}) is scored but raises no anomaly alert"
    )
    if i1_high < NARROW_LOAD_SPAN * i1_low:
        said += (
            "\nwarning: the training windows ran at one load; a lighter one will raise no "
            "anomaly alerts. Record healthy runs at the loads the motor sees"
        )
    return said


def describe_negative_sequence(level: dict | None, config: Config) -> str:
    """What the card's healthy negative sequence gives the stator rule, for `train` to say."""
    if level is None:
        return (
            f"no healthy negative sequence (fewer than {MIN_WINDOWS} windows with i1 at "
            f"{RUNNING_CURRENT:.0%} of the rated current or more), so without voltages the "
            "stator rule reads i2/i1 itself"
        )
    said = (
        f"healthy negative sequence kept: i2 {level['i2']:.3g} A (i2/i1 {level['i2_i1']:.3f}); "
        f"single windows stray from it by up to {level['change_p95']:.3f} x i1 (95 %). "
        "Without voltages the stator rule judges a short by the rise of i2 over it"
    )
    watch = config.alerts.stator_i2_change_watch
    if level["change_p95"] >= 0.5 * watch:
        said += (
            f". That spread is half the watch level ({watch:g}) or more: a short would be "
            "hard to tell from it. Record steadier runs at the loads the motor sees, or "
            "wire the voltages"
        )
    return said


def folds(base: Baseline) -> tuple[np.ndarray, str]:
    """The held-out fold of each window, and what a fold is: ``"recording"`` (two or more
    recordings) or ``"stretch"`` (one recording, cut into ``STRETCHES`` in time)."""
    # Recordings whose windows were all flagged give none: count those that did.
    present, which = np.unique(base.recording, return_inverse=True)
    if present.size >= 2:
        return which % min(MAX_FOLDS, present.size), "recording"
    n = base.X.shape[0]
    return np.arange(n) * STRETCHES // n, "stretch"


def held_out_scores(
    base: Baseline, *, epochs: int, seed: int, min_scale: np.ndarray, overlap: int = 1
) -> tuple[np.ndarray, str]:
    """Scores of each fold's windows (:func:`folds`) under a model fitted without them,
    and what a fold is.

    Windows of one recording overlap and resemble each other far more than two runs of the
    same motor do, so in-sample scores understate the healthy spread; held-out scores show
    it. Between recordings they show the spread between runs; between stretches of one
    recording only its drift, which is less: better than nothing, and ``train`` says so.
    ``overlap``: how many windows on each side share samples with a window (1 for 1 s
    windows every 0.5 s); a stretch's neighbours are left out of its model's training.
    """
    fold, kind = folds(base)
    out = []
    for k in np.unique(fold):
        test = fold == k
        train = ~test
        if kind == "stretch":
            idx = np.flatnonzero(test)
            train[max(0, idx[0] - overlap) : idx[-1] + overlap + 1] = False
        if train.sum() < MIN_FOLD_TRAINING_WINDOWS:
            continue
        r = fit(base.X[train], epochs=epochs, seed=seed, min_scale=min_scale)
        out.append(r.model.score(base.X[test]))
    return (np.concatenate(out) if out else np.empty(0)), kind


def collect_features(
    paths: Sequence[str | Path],
    config: Config,
    *,
    fs: float | None = None,
    columns: Sequence[str] | None = None,
    feature_names: Sequence[str] = MODEL_FEATURES,
) -> Baseline:
    """Feature vectors of every clean window of the recordings (flagged windows are left out)."""
    rows: list[list[float]] = []
    which: list[int] = []
    line_names = [n for names in BASELINE_LINES.values() for n in names]
    lines: dict[str, list[float]] = {n: [] for n in line_names}
    negative: list[tuple[float, float]] = []
    operating: list[tuple[float, float]] = []
    unsteady = 0
    miswired: list[tuple[str | Path, int, dict[str, str]]] = []
    sources = []
    rate = None
    stopped: list[tuple[str | Path, int, str | None]] = []
    for path in paths:
        with open_recording(path, fs=fs, columns=columns) as rec:
            if rate is not None and abs(rec.fs - rate) > 1e-3 * rate:
                raise InputDataError(
                    f"{rec.path}: sampled at {rec.fs:g} Hz but the other recordings at "
                    f"{rate:g} Hz; a baseline needs one sample rate"
                )
            rate = rec.fs
            pipe = Pipeline(config, rec.fs, rec.roles, scorer=None)
            n = 0
            last: dict[str, float] = {}
            running = RUNNING_CURRENT * config.motor.rated_current
            for r in pipe.feed(rec.chunks()):
                # An unsteady window's short-window features are sound; its long
                # window's lines are null (not read), and left out below.
                if r["type"] != "window" or any(f != "unsteady" for f in r["flags"]):
                    continue
                for name in line_names:
                    # Windows between two analyses of the long window repeat its
                    # values exactly: count each analysis once.
                    value = r["features"].get(name)
                    if value is not None and value != last.get(name):
                        lines[name].append(value)
                        last[name] = value
                i1, i2 = r["features"].get("i1"), r["features"].get("i2")
                if i2 is not None and i1 is not None and i1 > 0 and i1 >= running:
                    negative.append((i2, i1))
                vec = [r["features"][k] for k in feature_names]
                hz = r["features"].get("supply_hz")
                if any(v is None for v in vec) or i1 is None or hz is None:
                    continue
                rows.append(vec)
                operating.append((i1, hz))
                unsteady += "unsteady" in r["flags"]
                which.append(len(sources))
                n += 1
        sources.append({"path": Path(path).name, "sha256": sha256_file(path), "windows": n})
        if pipe.wiring_seen:
            miswired.append((path, pipe.stats.wiring_windows, pipe.wiring_seen))
        if pipe.stats.stopped_windows:
            stopped.append((path, pipe.stats.stopped_windows, pipe.energised_seen))
    if len(rows) < MIN_WINDOWS:
        why = "".join(f"; {path}: {describe_wiring(n, seen)}" for path, n, seen in miswired)
        why += "".join(
            f"; {path}: {n} windows: {said}" if said else
            f"; {path}: {n} windows of a stopped motor (every phase under "
            f"{RUNNING_CURRENT:.0%} of [motor] rated_current = {config.motor.rated_current:g} A)"
            for path, n, said in stopped
        )  # fmt: skip
        raise InputDataError(
            f"{', '.join(str(p) for p in paths)}: {len(rows)} clean windows; a baseline needs "
            f"at least {MIN_WINDOWS} (about {MIN_WINDOWS * config.windows.hop_s:g} s of "
            f"signal){why}"
        )
    return Baseline(
        np.asarray(rows, dtype=np.float64), float(rate), sources, np.asarray(which, dtype=int),
        lines, negative, miswired, operating, unsteady,
    )  # fmt: skip


def train_baseline(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    config: Config,
    *,
    fs: float | None = None,
    columns: Sequence[str] | None = None,
    epochs: int = 1500,
    seed: int = 0,
    created: str | None = None,
    simulated: bool = False,
) -> tuple[Path, FitResult, float, Baseline]:
    """Fit the autoencoder on healthy recordings and write a model bundle to ``out_dir``.

    The card keeps the healthy level of the eccentricity and bearing lines, and the
    healthy negative sequence, which the diagnosis judges later windows by; not when the
    recordings are ``simulated`` (the bundled default). A simulated motor is no reference
    for a real one: the card then says ``"simulated": true``, and `run` does not use the
    model on an ADC (``Scorer.refusal``).
    """
    base = collect_features(paths, config, fs=fs, columns=columns)
    floor = np.array([FEATURE_RESOLUTION.get(k, 0.0) for k in MODEL_FEATURES])
    result = fit(base.X, epochs=epochs, seed=seed, min_scale=floor)
    w = config.windows
    overlap = max(0, math.ceil(w.length_s / w.hop_s - 1e-9) - 1)
    held, fold_kind = held_out_scores(
        base, epochs=epochs, seed=seed, min_scale=floor, overlap=overlap
    )
    threshold = choose_threshold(np.concatenate([result.train_scores, result.val_scores, held]))
    extra = {
        "held_out": {
            "windows": int(held.size),
            "score_p50": float(np.quantile(held, 0.5)) if held.size else None,
            "score_max": float(held.max()) if held.size else None,
        },
        "fs": base.fs,
        "motor": config.motor.model_dump(mode="json"),
        "windows": config.windows.model_dump(mode="json"),
        # Of the model's own training windows, so also for a stand-in motor's.
        "operating_range": base.operating_range(),
        "simulated": simulated,
    }
    if not simulated:
        # What the eccentricity and bearing rules compare each line with, and the stator
        # rule, without voltages, the negative sequence (diagnosis.py).
        extra["baseline"] = base.line_levels()
        negative = base.negative_sequence_level()
        if negative is not None:
            extra["negative_sequence"] = negative
    bundle = write_bundle(
        Path(out_dir),
        result,
        list(MODEL_FEATURES),
        threshold=threshold,
        threshold_rule=describe_threshold_rule(cross_validated=held.size > 0, folds=fold_kind),
        sources=base.sources,
        created=created,
        extra=extra,
    )
    return bundle, result, threshold, base


def describe_nameplate(base: Baseline, config: Config) -> str | None:
    """A warning for `train` when the training windows' median i1 is over the nameplate
    current by more than an overload would last (wiring.OVERLOAD)."""
    if not base.negative_sequence:
        return None
    i1 = float(np.median([i1 for _, i1 in base.negative_sequence]))
    said = nameplate_warning(i1, config.motor.rated_current)
    return None if said is None else f"warning: {said}"


def describe_threshold_folds(base: Baseline) -> str | None:
    """A warning for `train` when the threshold could not see runs of the motor apart."""
    n_rec = np.unique(base.recording).size  # recordings that gave windows
    if n_rec >= 3:
        return None
    if n_rec == 2:
        seen = "two runs of the motor, each scored by a model of the other"
    else:
        seen = f"{STRETCHES} stretches of one recording, each scored by a model of the others"
    return (
        f"warning: the threshold has seen {seen}; a third run on another day may score "
        "higher. Train on 3 or more healthy recordings, at the loads the motor sees, "
        "before trusting its anomaly alerts"
    )
