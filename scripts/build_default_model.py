#!/usr/bin/env python3
"""Rebuild models/default/ from simulated healthy recordings, byte for byte.

The bundled model describes the default nameplate (4-pole, 1440 rpm at 50 Hz, 10 A,
400 V) at 15 kS/s over loads from 30 % to 100 %. It lets ``edge-agent replay`` run with no
training; a real motor needs its own baseline (``edge-agent train``).

    python scripts/build_default_model.py            # writes models/default/
    python scripts/build_default_model.py --check    # fails if the shipped files differ
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from pathlib import Path

# The FFT library is part of the arithmetic: build with scipy's, which every installation
# has, whether or not pyFFTW is installed here. (The rebuild is byte-identical on a CPU
# like the one it was built on; vectorised sums round differently on another: on an AMD
# EPYC the threshold moves by 2 %.)
os.environ["EDGE_AGENT_FFT"] = "scipy"

from edge_agent.config import Config
from edge_agent.simulate import SimulationSpec, write_recording
from edge_agent.training.baseline import train_baseline

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "models" / "default"
CREATED = "2026-11-23T00:00:00Z"  # fixed, so a rebuild is byte-identical
LOADS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SUPPLY_HZ = (49.9, 50.0, 50.1)
# CT gain errors drawn per recording within ±1 % (class 1 CTs), so the model does not
# take one set of perfectly matched sensors for the only healthy state.
CT_MISMATCH = 0.01


def build(out: Path) -> None:
    cfg = Config()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        # Two runs per load, so that each recording held out for the threshold has a
        # sibling at its load among the others (loads are interpolated, not extrapolated).
        for i, (run, load) in enumerate((r, ld) for r in (0, 1) for ld in LOADS):
            spec = SimulationSpec(
                fs=15000.0,
                duration_s=10.0,
                supply_hz=SUPPLY_HZ[i % len(SUPPLY_HZ)],
                load=load,
                seed=100 + i,
                ct_mismatch=CT_MISMATCH,
            )
            path = Path(tmp) / f"healthy_load{round(load * 100):03d}_run{run}.npy"
            write_recording(path, spec, cfg.motor)
            paths.append(path)
        # Simulated: no motor baseline (a simulated motor's eccentricity and bearing lines
        # sit at the noise floor, and its negative sequence is its CT gains', so a real
        # motor's healthy lines and asymmetry would read as a fault against them), and the
        # card says so, so that `run` does not judge a real motor on an ADC with it.
        train_baseline(paths, out, cfg, fs=15000.0, seed=0, created=CREATED, simulated=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped bundle")
    args = ap.parse_args()
    if not args.check:
        build(OUT)
        print(f"wrote {OUT}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        same = all(
            filecmp.cmp(Path(tmp) / f, OUT / f, shallow=False) for f in ("model.onnx", "model.json")
        )
    print("models/default is current" if same else "models/default differs from a rebuild")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
