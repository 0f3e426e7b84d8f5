"""Learning a motor's healthy baseline from recordings (``edge-agent train``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_agent.config import Config
from edge_agent.diagnosis import BASELINE_LINES
from edge_agent.errors import InputDataError
from edge_agent.features import FEATURE_RESOLUTION, MODEL_FEATURES
from edge_agent.pipeline import Pipeline
from edge_agent.recording import open_recording
from edge_agent.training.autoencoder import (
    FitResult,
    choose_threshold,
    describe_threshold_rule,
    fit,
)
from edge_agent.training.bundle import sha256_file, write_bundle

MIN_WINDOWS = 8


# Leave-one-recording-out folds are fitted for the threshold when there are this many
# recordings or more; above MAX_FOLDS, recordings are grouped into that many folds.
MIN_RECORDINGS_FOR_CV = 3
MAX_FOLDS = 5


# A line gets a healthy level in the card when this many analyses of the long window
# measured it (one every windows.long_hop_s, 2 s, once the window has filled).
MIN_LINE_ANALYSES = 8


@dataclass
class Baseline:
    X: np.ndarray  # (windows, features)
    fs: float
    sources: list[dict]
    recording: np.ndarray  # (windows,) index of the recording each window came from
    # Values of the diagnosis's baseline lines (BASELINE_LINES), one per analysis of the
    # long window in a clean window.
    lines: dict[str, list[float]] = field(default_factory=dict)

    def line_levels(self) -> dict[str, dict[str, float | int]]:
        """The card's "baseline": median and 95th percentile (dB) of each line that enough
        analyses measured (without a bearing geometry or a long enough recording, none)."""
        return {
            name: {"p50": float(np.median(v)), "p95": float(np.quantile(v, 0.95)),
                   "analyses": len(v)}
            for name, v in sorted(self.lines.items())
            if len(v) >= MIN_LINE_ANALYSES
        }  # fmt: skip


def describe_line_baseline(levels: dict, config: Config) -> str:
    """What the card's line baseline lets the diagnosis name, for `train` to say."""
    kept = {f: [n for n in names if n in levels] for f, names in BASELINE_LINES.items()}
    if not any(kept.values()):
        return (
            "no healthy line levels, so no eccentricity or bearing alerts: they need "
            f"recordings longer than the {config.windows.long_length_s:g} s long window "
            f"(at least {MIN_LINE_ANALYSES} analyses of it, one every "
            f"{config.windows.long_hop_s:g} s once it has filled)"
        )
    said = [f"{fault} ({len(names)} lines)" for fault, names in kept.items() if names]
    if not kept["bearing"]:
        said.append(
            "no bearing lines" + ("" if config.motor.bearing else " ([motor.bearing] not set)")
        )
    return "healthy line levels kept for " + ", ".join(said)


def held_out_scores(base: Baseline, *, epochs: int, seed: int, min_scale: np.ndarray) -> np.ndarray:
    """Scores of each recording's windows under a model fitted without that recording.

    Windows of one recording overlap and resemble each other far more than two runs of the
    same motor do, so in-sample scores understate the healthy spread; held-out scores show it.
    Returns an empty array with fewer than ``MIN_RECORDINGS_FOR_CV`` recordings.
    """
    n_rec = len(base.sources)
    if n_rec < MIN_RECORDINGS_FOR_CV:
        return np.empty(0)
    fold_of = np.arange(n_rec) % min(MAX_FOLDS, n_rec)
    out = []
    for fold in np.unique(fold_of):
        test = np.isin(base.recording, np.flatnonzero(fold_of == fold))
        if test.all() or not test.any() or (~test).sum() < 4:
            continue
        r = fit(base.X[~test], epochs=epochs, seed=seed, min_scale=min_scale)
        out.append(r.model.score(base.X[test]))
    return np.concatenate(out) if out else np.empty(0)


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
    sources = []
    rate = None
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
            for r in pipe.feed(rec.chunks()):
                if r["type"] != "window" or r["flags"]:
                    continue
                for name in line_names:
                    # Windows between two analyses of the long window repeat its
                    # values exactly: count each analysis once.
                    value = r["features"].get(name)
                    if value is not None and value != last.get(name):
                        lines[name].append(value)
                        last[name] = value
                vec = [r["features"][k] for k in feature_names]
                if any(v is None for v in vec):
                    continue
                rows.append(vec)
                which.append(len(sources))
                n += 1
        sources.append({"path": Path(path).name, "sha256": sha256_file(path), "windows": n})
    if len(rows) < MIN_WINDOWS:
        raise InputDataError(
            f"{', '.join(str(p) for p in paths)}: {len(rows)} clean windows; a baseline needs "
            f"at least {MIN_WINDOWS} (about {MIN_WINDOWS * config.windows.hop_s:g} s of signal)"
        )
    return Baseline(
        np.asarray(rows, dtype=np.float64), float(rate), sources, np.asarray(which, dtype=int),
        lines,
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
    line_baseline: bool = True,
) -> tuple[Path, FitResult, float, Baseline]:
    """Fit the autoencoder on healthy recordings and write a model bundle to ``out_dir``.

    With ``line_baseline`` the card keeps the healthy level of the eccentricity and
    bearing lines, which the diagnosis judges later windows by: only for recordings of
    the motor itself, never for a stand-in (the bundled default is trained on a simulator).
    """
    base = collect_features(paths, config, fs=fs, columns=columns)
    floor = np.array([FEATURE_RESOLUTION.get(k, 0.0) for k in MODEL_FEATURES])
    result = fit(base.X, epochs=epochs, seed=seed, min_scale=floor)
    held = held_out_scores(base, epochs=epochs, seed=seed, min_scale=floor)
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
    }
    if line_baseline:
        # What the eccentricity and bearing rules compare each line with (diagnosis.py).
        extra["baseline"] = base.line_levels()
    bundle = write_bundle(
        Path(out_dir),
        result,
        list(MODEL_FEATURES),
        threshold=threshold,
        threshold_rule=describe_threshold_rule(cross_validated=held.size > 0),
        sources=base.sources,
        created=created,
        extra=extra,
    )
    return bundle, result, threshold, base
