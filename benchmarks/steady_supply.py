"""What a changing supply frequency does to the long window's lines, with and without the
pipeline's steadiness check (``edge_agent.pipeline.steady_supply``).

A healthy motor (8 A, 5th and 7th harmonics at -30 and -36 dB, noise at 0.2 %, no fault
line) at 15 kS/s, 40 s per case, its supply frequency changing as:

- ``step D/T``: a drive's new speed, D Hz higher, reached at a steady rate in T s at 12 s;
- ``chirp R``: a drive ramping at R Hz/s throughout (a steady rate of change);
- ``grid S``: a random drift of standard deviation S Hz (an Ornstein-Uhlenbeck process
  with a 20 s time constant, smoothed over 1 s as a grid's inertia does), two draws each.

For each family it prints the long-window analyses that were read (the rest are flagged
``unsteady``) and the highest lower broken-bar sideband, eccentricity line and bearing
line among them, in dB of the fundamental. Then, for a ramp within one 1 s window, how
far its i1, THD and rms read from a steady supply's (what the ``ramping`` flag is for).
Run: ``PYTHONPATH=. python benchmarks/steady_supply.py`` (about 30 s on 2 cores).
"""

from __future__ import annotations

import math
from collections import defaultdict
from unittest import mock

import numpy as np

from edge_agent import pipeline
from edge_agent.config import BearingConfig, Config, MotorConfig
from edge_agent.features import FeatureExtractor
from edge_agent.pipeline import Pipeline

FS = 15000.0
SECONDS = 40.0
BEARING_6205 = BearingConfig(n_balls=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04)
CONFIG = Config(motor=MotorConfig(bearing=BEARING_6205))
BEARINGS = ("outer", "inner", "ball", "cage")


def currents(f: np.ndarray) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(f) / FS
    rng = np.random.default_rng(0)
    peak = 8.0 * math.sqrt(2)
    out = []
    for m in range(3):
        th = phase - 2 * np.pi * m / 3
        y = peak * (np.cos(th) + 10 ** (-30 / 20) * np.cos(5 * th)
                    + 10 ** (-36 / 20) * np.cos(7 * th))  # fmt: skip
        out.append(y + 0.002 * 8.0 * rng.standard_normal(f.size))
    return np.column_stack(out)


def cases() -> dict[str, np.ndarray]:
    t = np.arange(round(SECONDS * FS)) / FS
    out = {"steady": np.full(t.size, 50.0)}
    for d in (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0):
        for ramp in (0.01, 0.3, 1.0, 3.0):
            out[f"step {d}/{ramp}"] = 50.0 + d * np.clip((t - 12.0) / ramp, 0.0, 1.0)
    for rate in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2):
        out[f"chirp {rate}"] = 50.0 + rate * t
    rng = np.random.default_rng(1)
    n = round(SECONDS * 10)
    a = math.exp(-0.1 / 20.0)
    for sigma in (0.01, 0.02, 0.05, 0.1):
        for k in range(2):
            x = np.zeros(n)
            for i in range(1, n):
                x[i] = a * x[i - 1] + sigma * math.sqrt(1 - a * a) * rng.standard_normal()
            x = np.convolve(x, np.ones(10) / 10, "same")
            out[f"grid {sigma}#{k}"] = 50.0 + np.interp(t, np.arange(n) / 10, x)
    return out


def analyses(x: np.ndarray) -> list[dict]:
    """The features of each fresh analysis of the long window (windows in between repeat
    them)."""
    out, last = [], None
    for r in Pipeline(CONFIG, FS, scorer=None).update(x):
        f = r.get("features") or {}
        key = f.get("brb_lsb_db"), f.get("bearing_cage_db")
        if r["type"] == "window" and key[0] is not None and key != last:
            out.append(f)
        last = key
    return out


def main() -> None:
    signals = {name: currents(f) for name, f in cases().items()}
    for label, patch in (
        ("without the check", mock.patch.object(pipeline, "steady_supply", lambda hz: True)),
        ("with the check (as shipped)", mock.patch.object(pipeline, "steady_supply",
                                                          pipeline.steady_supply)),
    ):  # fmt: skip
        rows: dict[str, list] = defaultdict(list)
        with patch:
            for name, x in signals.items():
                family = name.split(" ")[0] if not name.startswith("grid") else name.split("#")[0]
                rows[family].extend(analyses(x))
        print(f"\n{label}")
        print(f"{'case':<12} {'read':>5} {'brb_lsb_db':>10} {'ecc max':>8} {'bearing max':>11}")
        for family, feats in rows.items():
            if not feats:
                print(f"{family:<12} {0:>5}")
                continue
            brb = max(f["brb_lsb_db"] for f in feats)
            ecc = max(max(f["ecc_lsb_db"], f["ecc_usb_db"]) for f in feats)
            bearing = max(f[f"bearing_{d}_db"] for f in feats for d in BEARINGS)
            print(f"{family:<12} {len(feats):>5} {brb:>10.1f} {ecc:>8.1f} {bearing:>11.1f}")
    ramp_bias()


def ramp_bias() -> None:
    """i1, THD and rms of one 1 s window at 40 Hz ramping at R Hz/s, against a steady one."""
    extractor = FeatureExtractor(CONFIG.motor, FS, FS / 7)
    t = np.arange(round(FS)) / FS
    steady = None
    print("\nramp within the 1 s window: how far its features read from a steady supply's")
    print(f"{'Hz/s':>5} {'i1':>8} {'thd_a':>8} {'rms_a':>8}")
    for rate in (0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0):
        x = np.ascontiguousarray(currents(40.0 + rate * (t - 0.5)).T, dtype=np.float32)
        out = extractor.short(x, None)
        steady = steady or out
        print(
            f"{rate:>5} "
            + " ".join(
                f"{100 * (out[k] / steady[k] - 1):>+7.2f}%" for k in ("i1", "thd_a", "rms_a")
            )
        )


if __name__ == "__main__":
    main()
